"""Which exercises a run covers.

- ``-k a,b``: exact names (``bowling``: every language's bowling), ``lang/name`` ids, or
  fnmatch globs over either (``python/*``, ``*-cipher``). A pattern that matches nothing is
  a usage error that names it.
- ``-l/--languages python,go``: only these languages (combines with the others).
- ``--all``: the 49 JavaScript exercises, as the original localcode tool ran.
- ``--full``: all 225 exercises.
- ``-n N --seed S``: a reproducible random sample of N from what the other flags selected.

Without ``-k``, ``--all``, ``--full``, ``-l`` or ``-n`` nothing is selected: ``SelectionError``
asks for one, because silently running 225 tasks with a slow model costs hours.
"""

from __future__ import annotations

import fnmatch
import random

from pydantic import BaseModel, Field

from localcode.errors import ConfigError
from localcode.harness.dataset import Exercise

ALL_LANGUAGE = "javascript"
"""``--all`` means every exercise of this language (the original tool's "all")."""


class SelectionError(ConfigError):
    """The selection flags are wrong or select nothing (a usage error)."""


class Selection(BaseModel):
    """The selection flags as given; recorded in ``run.json``."""

    keywords: list[str] = Field(default_factory=list)
    """``-k`` patterns: names, ``lang/name`` ids or globs."""
    languages: list[str] = Field(default_factory=list)
    """``-l`` languages."""
    all: bool = False
    """``--all``: the JavaScript exercises."""
    full: bool = False
    """``--full``: every exercise."""
    n: int | None = None
    """``-n``: sample size."""
    seed: int = 0
    """``--seed``: seed of the sample."""

    @property
    def empty(self) -> bool:
        return not (self.keywords or self.languages or self.all or self.full or self.n)


def split_csv(values: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"a,b" + ["c"]`` -> ``["a", "b", "c"]`` (click multiple options and commas both work)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def _matches(pattern: str, ex: Exercise) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(ex.id, pattern) or fnmatch.fnmatchcase(ex.name, pattern)
    return pattern == ex.id or pattern == ex.name


def select(exercises: list[Exercise], selection: Selection) -> list[Exercise]:
    """The exercises ``selection`` picks, in dataset order (sorted by id), sampled last.

    Raises SelectionError when nothing was asked for, a ``-k`` pattern or ``-l`` language
    matches nothing, or ``--all``/``--full`` are combined with ``-k``.
    """
    if selection.empty:
        raise SelectionError(
            "no exercises selected: pass -k NAMES, -l LANGS, --all (JavaScript), --full (all 225) or -n N"
        )
    if selection.all and selection.full:
        raise SelectionError("--all and --full exclude each other: --all is the JavaScript set, --full is everything")
    if selection.keywords and (selection.all or selection.full):
        raise SelectionError("-k cannot be combined with --all or --full")
    if selection.n is not None and selection.n < 1:
        raise SelectionError(f"-n must be at least 1 (got {selection.n})")

    known_languages = sorted({e.language for e in exercises})
    for lang in selection.languages:
        if lang not in known_languages:
            raise SelectionError(f"unknown language {lang!r} for -l: choose from {', '.join(known_languages)}")

    pool = sorted(exercises, key=lambda e: e.id)
    if selection.all:
        pool = [e for e in pool if e.language == ALL_LANGUAGE]
    if selection.languages:
        pool = [e for e in pool if e.language in selection.languages]
    if selection.keywords:
        missing = [k for k in selection.keywords if not any(_matches(k, e) for e in pool)]
        if missing:
            where = f" in {', '.join(selection.languages)}" if selection.languages else ""
            raise SelectionError(f"-k matched no exercise{where}: {', '.join(missing)}")
        pool = [e for e in pool if any(_matches(k, e) for k in selection.keywords)]
    if selection.n is not None and selection.n < len(pool):
        rng = random.Random(selection.seed)
        picked = set(id(e) for e in rng.sample(pool, selection.n))
        pool = [e for e in pool if id(e) in picked]
    return pool
