"""Statistics for comparing benchmark runs: intervals, paired tests, flips, repeats.

Pure functions over plain numbers and outcome maps; ``localcode.harness.report`` feeds
them from result files. Nothing here reads files or imports heavy libraries.

- ``wilson_interval(k, n)``: the Wilson score interval of a pass rate (good at small n and
  at rates near 0 or 1, where the normal approximation fails).
- ``bootstrap_interval(values)``: a percentile bootstrap over tasks of a mean.
- ``paired_bootstrap_diff(a, b)``: the bootstrap interval of the difference of two pass rates
  on the same tasks (tasks resampled together, so the pairing is kept).
- ``mcnemar_exact(b, c)``: the exact two-sided McNemar test on the discordant pairs of a
  paired 2x2 table (a binomial test of ``b`` against ``b + c`` at p = 0.5).
- ``flips(outcomes)``: tasks solved in some runs and not in others.
- ``mean_sd(values)``: mean and sample standard deviation of repeated pass rates.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials, as fractions in [0, 1].

    ``n == 0`` gives ``(0.0, 1.0)``: nothing is known. Raises ValueError when ``k`` is not
    within ``0..n``.
    """
    if not 0 <= k <= n:
        raise ValueError(f"k must be within 0..n (k={k}, n={n})")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # k = 0 and k = n give exactly 0 and 1 in theory; floating point leaves a little noise.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips (p = 0.5).

    The distribution is symmetric, so the two-sided value is twice the smaller tail, capped at 1.
    """
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for a paired 2x2 table.

    ``b``: tasks the first run solved and the second did not; ``c``: the reverse. The tasks
    both runs solved (or both failed) carry no information about a difference.
    """
    return binomial_two_sided(b, b + c)


def bootstrap_interval(values: Sequence[float], *, confidence: float = 0.95, samples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (tasks resampled with replacement).

    When the values take at most three distinct values (solved 0/1, paired differences
    -1/0/1: every use in reports) the bootstrap distribution is computed exactly, as the
    multinomial distribution of the resampled counts: the limit of infinitely many resamples,
    with no sampling noise and no cost in ``samples``. Otherwise ``samples`` resamples are
    drawn, deterministically for a given ``seed``. An empty sequence gives ``(0.0, 1.0)``.
    """
    n = len(values)
    if n == 0:
        return 0.0, 1.0
    distinct = sorted(set(values))
    if len(distinct) <= 3:
        return _quantiles(_exact_mean_distribution(values, distinct), confidence)
    rng = random.Random(seed)
    choices = rng.choices
    means = sorted(sum(choices(values, k=n)) / n for _ in range(samples))
    return _quantiles([(m, 1.0 / samples) for m in means], confidence)


def _exact_mean_distribution(values: Sequence[float], distinct: list[float]) -> list[tuple[float, float]]:
    """(mean, probability) of the bootstrap resample mean, sorted by mean, for <= 3 distinct values."""
    n = len(values)
    counts = [sum(1 for v in values if v == d) for d in distinct]
    while len(distinct) < 3:  # pad to three categories of probability 0
        distinct, counts = [*distinct, 0.0], [*counts, 0]
    lf = [math.lgamma(i + 1) for i in range(n + 1)]
    # a[j][k] = k * log(p_j) - log(k!): the log multinomial term is lf[n] + a0[k0] + a1[k1] + a2[k2]
    a = [[k * math.log(c / n) - lf[k] for k in range(n + 1)] if c else [0.0] + [-math.inf] * n for c in counts]
    a0, a1, a2 = a
    d0, d1, d2 = distinct
    probs: dict[float, float] = {}
    for k1 in range(n + 1 if counts[1] else 1):
        base = lf[n] + a1[k1]
        for k2 in range(n + 1 - k1 if counts[2] else 1):
            k0 = n - k1 - k2
            logp = base + a2[k2] + a0[k0]
            if logp < -745:  # below the smallest double: contributes nothing
                continue
            mean = (d0 * k0 + d1 * k1 + d2 * k2) / n
            probs[mean] = probs.get(mean, 0.0) + math.exp(logp)
    return sorted(probs.items())


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95,
                          samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of ``mean(b) - mean(a)`` over paired values (the same tasks).

    Raises ValueError when the sequences differ in length.
    """
    if len(a) != len(b):
        raise ValueError("paired values must have the same length")
    diffs = [y - x for x, y in zip(a, b)]
    return bootstrap_interval(diffs, confidence=confidence, samples=samples, seed=seed) if diffs else (0.0, 0.0)


def _quantiles(dist: list[tuple[float, float]], confidence: float) -> tuple[float, float]:
    """The two-sided percentile interval of a discrete distribution given as sorted (value, probability)."""
    alpha = (1 - confidence) / 2
    lo = hi = dist[-1][0]
    cum = 0.0
    found_lo = False
    for value, prob in dist:
        cum += prob
        if not found_lo and cum >= alpha - 1e-12:
            lo, found_lo = value, True
        if cum >= 1 - alpha - 1e-12:
            hi = value
            break
    return lo, hi


@dataclass(frozen=True)
class PairedTest:
    """Two runs compared on the tasks both ran to an outcome."""

    a: str
    """Label of the first run."""
    b: str
    """Label of the second run."""
    common: int
    """Tasks both runs finished (no infrastructure error in either)."""
    both: int
    """Solved by both."""
    a_only: int
    """Solved by ``a`` only (McNemar's b)."""
    b_only: int
    """Solved by ``b`` only (McNemar's c)."""
    neither: int
    """Solved by neither."""
    rate_a: float
    """Pass rate of ``a`` on the common tasks, percent."""
    rate_b: float
    """Pass rate of ``b`` on the common tasks, percent."""
    diff: float
    """``rate_b - rate_a`` in percentage points."""
    diff_low: float
    """Lower end of the paired bootstrap 95% interval of ``diff``, points."""
    diff_high: float
    """Upper end of that interval, points."""
    p_value: float
    """Exact two-sided McNemar p-value."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def paired_test(a_label: str, b_label: str, a: Mapping[str, bool], b: Mapping[str, bool],
                *, seed: int = 0) -> PairedTest:
    """McNemar and a paired bootstrap of two runs' solved/unsolved maps on their common tasks.

    ``a`` and ``b`` map task id -> solved, for the tasks each run finished.
    """
    common = sorted(set(a) & set(b))
    xa = [1.0 if a[t] else 0.0 for t in common]
    xb = [1.0 if b[t] else 0.0 for t in common]
    both = sum(1 for x, y in zip(xa, xb) if x and y)
    a_only = sum(1 for x, y in zip(xa, xb) if x and not y)
    b_only = sum(1 for x, y in zip(xa, xb) if y and not x)
    n = len(common)
    lo, hi = paired_bootstrap_diff(xa, xb, seed=seed)
    ra = 100.0 * sum(xa) / n if n else 0.0
    rb = 100.0 * sum(xb) / n if n else 0.0
    return PairedTest(
        a=a_label, b=b_label, common=n, both=both, a_only=a_only, b_only=b_only, neither=n - both - a_only - b_only,
        rate_a=round(ra, 1), rate_b=round(rb, 1), diff=round(rb - ra, 1),
        diff_low=round(100.0 * lo, 1), diff_high=round(100.0 * hi, 1), p_value=mcnemar_exact(a_only, b_only),
    )


def flips(solved: Mapping[str, Mapping[str, bool]]) -> list[str]:
    """Tasks whose solved status differs between at least two runs, sorted.

    ``solved`` maps run label -> (task id -> solved) over the tasks that run finished; a
    task missing from a run (not run, or an infrastructure error) does not make a flip.
    """
    by_task: dict[str, set[bool]] = {}
    for outcomes in solved.values():
        for task, ok in outcomes.items():
            by_task.setdefault(task, set()).add(bool(ok))
    return sorted(t for t, seen in by_task.items() if len(seen) > 1)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for fewer than two values; (0, 0) for none)."""
    if not values:
        return 0.0, 0.0
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, sd


def solve_frequency(solved: Sequence[Mapping[str, bool]]) -> dict[str, tuple[int, int]]:
    """Per task: (times solved, times finished) over repeats of one configuration."""
    out: dict[str, tuple[int, int]] = {}
    for outcomes in solved:
        for task, ok in outcomes.items():
            k, n = out.get(task, (0, 0))
            out[task] = (k + int(bool(ok)), n + 1)
    return dict(sorted(out.items()))
