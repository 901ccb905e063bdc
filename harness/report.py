"""``localcode report``: read run folders back and compare them.

Reads only result files (``run.json``, ``<lang>/<name>/result.json``, the agent's
``try-N.jsonl`` logs for the reasons of unusual endings, and ``repeats.json`` of a
``bench --repeat`` run); never the model. The statistics of one run come from
``localcode.harness.stats.compute_stats``, the function ``bench`` prints, so the report of
a run agrees with bench's own table. Comparison statistics (intervals, McNemar, flips,
repeats) come from ``localcode.harness.compare``.

``build_report(runs)`` returns one JSON-ready dict; ``to_markdown``, ``to_yaml`` and
``render_rich`` draw it, ``localcode.harness.report_html.render_html`` makes the page.

A repeat run (``bench --repeat N``) is a folder holding ``repeats.json`` and one complete
run folder per repeat (``repeat-1/`` ... ``repeat-N/``); its repeats are loaded as runs
labelled ``NAME#k`` and summarised together (mean ± sd, per-task solve frequency).
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcode.errors import ConfigError
from localcode.harness import compare
from localcode.harness.results import RUN_FILE, ResultStore, RunInfo, TaskResult, atomic_write_text
from localcode.harness.stats import AIDER_YAML_KEYS, compute_stats

REPEATS_FILE = "repeats.json"
"""Manifest of a ``bench --repeat N`` run: ``{"repeats": N, "seeds": [...], "runs": ["repeat-1", ...]}``."""

NORMAL_ENDINGS = frozenset({"", "finished", "finish", "answered", "no_op"})
"""Stop reasons that need no explanation in the list of unusual endings."""


def repeat_dir_name(k: int) -> str:
    """Folder of the ``k``-th repeat (1-based) inside a repeat run."""
    return f"repeat-{k}"


def write_repeats_manifest(top: Path, repeats: int, seeds: list[int | None],
                           key: dict[str, Any] | None = None) -> None:
    """Write ``repeats.json`` of a repeat run (atomically); ``key`` is the runs' resume key."""
    manifest = {"repeats": repeats, "seeds": seeds, "runs": [repeat_dir_name(k) for k in range(1, repeats + 1)],
                "key": key}
    atomic_write_text(top / REPEATS_FILE, json.dumps(manifest, indent=2) + "\n")


def read_repeats_manifest(top: Path) -> dict[str, Any] | None:
    """``repeats.json`` of ``top``, or None when it has none (or it does not parse)."""
    try:
        data = json.loads((top / REPEATS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("runs"), list) else None


def find_repeat_run(runs_dir: Path, key: dict[str, Any], repeats: int, retry_errors: bool = False) -> Path | None:
    """The newest repeat run under ``runs_dir`` with this resume key and number of repeats that
    still has work to do (a repeat not started, tasks without a result, or errors to retry)."""
    if not runs_dir.is_dir():
        return None
    for top in sorted((p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        manifest = read_repeats_manifest(top)
        if manifest is None or manifest.get("repeats") != repeats or manifest.get("key") != json.loads(json.dumps(key)):
            continue
        for name in manifest["runs"]:
            store = ResultStore(top / name)
            info = store.read_run_info()
            if info is None:
                return top
            have = {r.id: r for r in store.results()}
            if any(t not in have or (retry_errors and not have[t].finished) for t in info.task_ids):
                return top
    return None


# --------------------------------------------------------------------------- finding runs
def _is_run(path: Path) -> bool:
    return (path / RUN_FILE).is_file() or (path / REPEATS_FILE).is_file()


def resolve_run_dirs(specs: list[str] | tuple[str, ...], runs_dir: Path) -> list[Path]:
    """Run folders for ``specs``: folder paths, run names under ``runs_dir``, or globs over either.

    Order follows the specs (a glob's matches sorted by name); duplicates are dropped.
    Raises ConfigError (one line, naming the runs folder) when a spec matches no run.
    """
    out: list[Path] = []
    for spec in specs:
        direct = Path(spec).expanduser()
        found: list[Path] = []
        # a run folder here wins over one of that name under the runs dir; then any folder (to say why not)
        folders = [c for c in (direct, runs_dir / spec) if c.is_dir()]
        if folders:
            found = [next((c for c in folders if _is_run(c)), folders[0])]
        elif any(c in spec for c in "*?["):
            hits = glob.glob(str(direct)) + glob.glob(str(runs_dir / spec))
            found = sorted({Path(h) for h in hits if Path(h).is_dir() and _is_run(Path(h))}, key=lambda p: p.name)
        if not found:
            raise ConfigError(f"no run matches {spec!r}: give a run folder, a run name or a glob under {runs_dir} "
                              "(each folder there is one run)")
        for path in found:
            if not _is_run(path):
                raise ConfigError(f"{path} is not a run folder (it has no {RUN_FILE}): give the folder "
                                  f"'localcode bench' printed after 'results:', or a glob such as '{path}/*'")
            path = path.resolve()
            if path not in out:
                out.append(path)
    return out


def tasks_from_run(spec: str, runs_dir: Path, failed: bool) -> tuple[Path, list[str]]:
    """The run folder ``spec`` names and its selected tasks; with ``failed`` only the tasks that
    failed or ended in an infrastructure error (in any repeat of a repeat run), sorted.

    Raises ConfigError when ``spec`` names no run, or more than one.
    """
    dirs = resolve_run_dirs([spec], runs_dir)
    if len(dirs) != 1:
        raise ConfigError(f"{spec!r} matches {len(dirs)} runs: name one run folder")
    top = dirs[0]
    manifest = read_repeats_manifest(top)
    folders = [top / name for name in manifest["runs"]] if manifest else [top]
    ids: set[str] = set()
    for folder in folders:
        store = ResultStore(folder)
        info = store.read_run_info()
        results = {r.id: r for r in store.results()}
        selected = info.task_ids if info is not None and info.task_ids else sorted(results)
        if failed:
            ids.update(t for t in selected if t in results and not results[t].passed)
        else:
            ids.update(selected)
    return top, sorted(ids)


@dataclass
class Run:
    """One run as the report sees it: its facts, its results, and bench's statistics."""

    label: str
    """Short unique name in tables (the folder name; ``NAME#k`` for a repeat)."""
    path: Path
    """The run folder."""
    info: RunInfo | None
    """``run.json`` (None for a folder without one)."""
    results: dict[str, TaskResult]
    """Task id -> result, only the run's selected tasks."""
    stats: dict[str, Any]
    """``compute_stats`` of the results, exactly as bench computes it."""
    group: str | None = None
    """Label of the repeat run this run is a repeat of."""
    seed: int | None = None
    """The model seed of this run, when recorded."""
    task_ids: list[str] = field(default_factory=list)
    """The selected tasks (from ``run.json``; else the tasks with results)."""

    @property
    def tries(self) -> int:
        return int(self.stats.get("tries", 1))


def _load_single(path: Path, label: str, group: str | None = None, seed: int | None = None) -> Run:
    store = ResultStore(path)
    info = store.read_run_info()
    results = {r.id: r for r in store.results()}
    if info is not None and info.task_ids:
        wanted = set(info.task_ids)
        results = {k: v for k, v in results.items() if k in wanted}
        task_ids = list(info.task_ids)
    else:
        task_ids = sorted(results)
    stats = compute_stats(results.values(), run_info=info)
    if seed is None and info is not None:
        seed = info.agent_info.get("seed")
    return Run(label=label, path=path, info=info, results=results, stats=stats, group=group, seed=seed,
               task_ids=task_ids)


def load_runs(paths: list[Path]) -> tuple[list[Run], list[dict[str, Any]]]:
    """The runs in ``paths`` (a repeat run expands into its repeats) and the repeat groups.

    A group is ``{"label", "path", "repeats", "seeds", "runs": [labels]}``.
    """
    labels = _labels(paths)
    runs: list[Run] = []
    groups: list[dict[str, Any]] = []
    for path, label in zip(paths, labels):
        manifest = read_repeats_manifest(path)
        if manifest is None:
            runs.append(_load_single(path, label))
            continue
        seeds = list(manifest.get("seeds") or [])
        members = []
        for k, name in enumerate(manifest["runs"], start=1):
            sub = path / name
            if not (sub / RUN_FILE).is_file():
                continue  # a repeat that has not started yet
            seed = seeds[k - 1] if k - 1 < len(seeds) else None
            run = _load_single(sub, f"{label}#{k}", group=label, seed=seed)
            runs.append(run)
            members.append(run.label)
        groups.append({"label": label, "path": str(path), "repeats": int(manifest.get("repeats", len(members))),
                       "seeds": seeds, "runs": members})
    return runs, groups


def _labels(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    out = []
    for p in paths:
        out.append(p.name if names.count(p.name) == 1 else f"{p.parent.name}/{p.name}")
    return out


# --------------------------------------------------------------------------- per task
def outcome(result: TaskResult) -> str:
    """``"pass@K"`` (passed on try K), ``"fail"`` or ``"error"`` (infrastructure error)."""
    if not result.finished:
        return "error"
    k = result.passed_on_try
    return f"pass@{k}" if k is not None else "fail"


def solved_map(run: Run, k: int | None = None) -> dict[str, bool]:
    """Task id -> solved within ``k`` tries (all tries when None), for the tasks the run finished."""
    out = {}
    for tid, r in run.results.items():
        if not r.finished:
            continue
        on = r.passed_on_try
        out[tid] = on is not None and (k is None or on <= k)
    return out


def try_log(run_dir: Path, task_id: str, index: int) -> list[dict[str, Any]]:
    """The events of one try's agent log (``<task>/try-N.jsonl``); empty when it has none."""
    path = ResultStore(run_dir).task_dir(task_id) / f"try-{index}.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash
        if isinstance(event, dict):
            events.append(event)
    return events


def _try_end(run: Run, task_id: str, index: int) -> dict[str, Any] | None:
    """The ``end`` event of a try's agent log, if the log exists."""
    return next((e for e in reversed(try_log(run.path, task_id, index))
                 if e.get("kind") == "end" and not e.get("agent")), None)


def tool_seconds(events: list[dict[str, Any]]) -> float:
    """Seconds spent inside tool calls: from each ``tool_call`` event to its ``tool_result``
    (the main agent's calls; a sub-agent's calls run inside its parent's call)."""
    started: dict[str, float] = {}
    total = 0.0
    for e in events:
        if e.get("agent"):
            continue
        if e.get("kind") == "tool_call" and e.get("id") is not None:
            started[str(e["id"])] = float(e.get("t", 0.0))
        elif e.get("kind") == "tool_result" and str(e.get("id")) in started:
            total += max(0.0, float(e.get("t", 0.0)) - started.pop(str(e.get("id"))))
    return total


def task_rows(run: Run) -> list[dict[str, Any]]:
    """One row per task: outcome, and per try: passed, stop reason, turns, tokens, seconds."""
    rows = []
    for tid in sorted(run.results):
        r = run.results[tid]
        tries = []
        for t in r.tries:
            tries.append({
                "index": t.index, "passed": t.passed, "failure": getattr(t, "failure", ""),
                "stop_reason": t.stop_reason, "error": t.error,
                "test_timed_out": t.timed_out, "agent_timed_out": t.agent_timed_out,
                "turns": t.usage.model_calls, "prompt_tokens": t.usage.prompt_tokens,
                "completion_tokens": t.usage.completion_tokens,
                "agent_seconds": round(t.agent_duration_s, 2), "test_seconds": round(t.test_duration_s, 2),
            })
        usage = r.usage
        rows.append({
            "id": tid, "language": r.language, "name": r.name, "outcome": outcome(r), "error": r.error,
            "turns": usage.model_calls, "tokens": usage.prompt_tokens + usage.completion_tokens,
            "seconds": round(r.agent_duration_s + r.test_duration_s, 2), "tries": tries,
        })
    return rows


def unusual_endings(run: Run) -> list[dict[str, Any]]:
    """Tries that ended in an infrastructure error, an unusual stop (``stuck``, ``max_turns``,
    ``context_exceeded``, ``time_limit``, ...), a context overflow or a test timeout, with reasons."""
    out = []
    for tid in sorted(run.results):
        r = run.results[tid]
        for t in r.tries:
            kinds = []
            if t.error:
                kinds.append("error")
            if t.stop_reason not in NORMAL_ENDINGS:
                kinds.append(t.stop_reason)
            if t.usage.exhausted_context_windows and "context_exceeded" not in kinds:
                kinds.append("context overflow")
            if t.timed_out:
                kinds.append("test timeout")
            if not kinds:
                continue
            end = _try_end(run, tid, t.index) or {}
            reason = t.error or end.get("detail") or ""
            out.append({"task": tid, "try": t.index, "kind": ", ".join(kinds), "stop_reason": t.stop_reason,
                        "reason": str(reason)})
        if r.error and not any(t.error for t in r.tries):
            out.append({"task": tid, "try": None, "kind": "error", "stop_reason": "", "reason": r.error})
    return out


def time_split(run: Run) -> dict[str, Any]:
    """Seconds per finished case (agent and tests); the agent's time split into prefill, decode,
    tools (from each tool call to its result, in the try logs) and the rest (prompt rendering,
    parsing, the agent's own work); the tests; tokens/s; the share of prompt tokens served from the cache."""
    done = [r for r in run.results.values() if r.finished]
    n = len(done)
    prefill = sum(t.usage.prompt_ms for r in done for t in r.tries) / 1000
    decode = sum(t.usage.decode_ms for r in done for t in r.tries) / 1000
    agent = sum(r.agent_duration_s for r in done)
    tests = sum(r.test_duration_s for r in done)
    tools = sum(tool_seconds(try_log(run.path, r.id, t.index)) for r in done for t in r.tries)
    prompt = sum(r.usage.prompt_tokens for r in done)
    cached = sum(r.usage.cached_tokens for r in done)

    def per(x: float) -> float:
        return round(x / n, 2) if n else 0.0

    return {
        "cases": n,
        "total_seconds_per_case": per(agent + tests),
        "agent_seconds_per_case": per(agent),
        "prefill_seconds_per_case": per(prefill),
        "decode_seconds_per_case": per(decode),
        "tools_seconds_per_case": per(tools),
        "other_seconds_per_case": per(max(0.0, agent - prefill - decode - tools)),
        "test_seconds_per_case": per(tests),
        "prefill_tokens_per_s": run.stats.get("prefill_tokens_per_s"),
        "decode_tokens_per_s": run.stats.get("decode_tokens_per_s"),
        "cached_token_share": round(100.0 * cached / prompt, 1) if prompt else 0.0,
    }


def run_facts(run: Run) -> dict[str, Any]:
    """What a run was, from its ``run.json``: the facts that tell two runs apart (model file and
    quantization, context, sampler, tools, overrides, protocol, versions, machine)."""
    info = run.info
    if info is None:
        return {}
    ai = info.agent_info or {}
    model = ai.get("model") if isinstance(ai.get("model"), dict) else {}
    config = ai.get("effective_config") or {}
    sampler = ai.get("sampler") or {}
    return {
        "agent": info.agent, "model": info.model, "quantization": model.get("quantization"),
        "model_sha256": (model.get("sha256") or "")[:12] or None, "context_window": ai.get("context_window"),
        "temperature": sampler.get("temperature"), "max_tokens": sampler.get("max_tokens"), "seed": run.seed,
        "tools": config.get("tools"), "max_turns": config.get("max_turns"), "overrides": info.agent_overrides,
        "tries": info.tries, "visible_tests": info.visible_tests, "sandbox": info.sandbox,
        "localcode": f"{info.localcode_version} {(info.localcode_commit or '')[:12]}".strip(),
        "dataset": (info.dataset.commit or info.dataset.content_hash or "")[:12] or None,
        "machine": info.machine, "created_at": info.created_at,
    }


# --------------------------------------------------------------------------- the report
def _interval(k: int, n: int) -> dict[str, Any]:
    lo, hi = compare.wilson_interval(k, n)
    return {"k": k, "n": n, "rate": round(100.0 * k / n, 1) if n else 0.0,
            "low": round(100.0 * lo, 1), "high": round(100.0 * hi, 1)}


def _run_block(run: Run) -> dict[str, Any]:
    s = run.stats
    tries = run.tries
    n = int(s.get("completed_tests", 0))
    pass_at = {}
    for k in range(1, tries + 1):
        block = _interval(int(s.get(f"pass_num_{k}", 0)), n)
        values = [1.0 if v else 0.0 for v in solved_map(run, k).values()]
        lo, hi = compare.bootstrap_interval(values, seed=k)
        block["bootstrap_low"], block["bootstrap_high"] = round(100.0 * lo, 1), round(100.0 * hi, 1)
        pass_at[str(k)] = block
    per_language = {}
    for lang, lb in s.get("per_language", {}).items():
        ln = int(lb.get("completed_tests", 0))
        per_language[lang] = {"cases": lb.get("cases", 0), "errors": lb.get("infrastructure_errors", 0),
                              "pass_at": {str(k): _interval(int(lb.get(f"pass_num_{k}", 0)), ln)
                                          for k in range(1, tries + 1)}}
    info = run.info
    return {
        "label": run.label, "path": str(run.path), "group": run.group, "seed": run.seed,
        "agent": s.get("agent", ""), "model": s.get("model", ""), "tries": tries,
        "created_at": info.created_at if info else "", "task_count": len(run.task_ids),
        "completed": n, "errors": int(s.get("infrastructure_errors", 0)),
        "facts": run_facts(run),
        "pass_at": pass_at, "per_language": per_language, "time": time_split(run), "stats": s,
        "tasks": task_rows(run), "unusual_endings": unusual_endings(run),
    }


def build_report(runs: list[Run], groups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole report as one JSON-ready dict (what ``--json`` prints)."""
    groups = groups or []
    blocks = [_run_block(r) for r in runs]
    sets = [set(r.task_ids) for r in runs]
    common = set.intersection(*sets) if sets else set()
    union = set.union(*sets) if sets else set()
    matrix = {tid: {r.label: outcome(r.results[tid]) for r in runs if tid in r.results} for tid in sorted(union)}
    final = {r.label: solved_map(r) for r in runs}
    flipped = compare.flips(final)
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            # each pair on the tasks both selected (and, inside paired_test, both finished)
            shared = set(a.task_ids) & set(b.task_ids)
            for k in range(1, min(a.tries, b.tries) + 1):
                sa = {t: v for t, v in solved_map(a, k).items() if t in shared}
                sb = {t: v for t, v in solved_map(b, k).items() if t in shared}
                test = compare.paired_test(a.label, b.label, sa, sb, seed=k).as_dict()
                test["k"] = k
                pairs.append(test)
    repeats = []
    for g in groups:
        members = [r for r in runs if r.group == g["label"]]
        if not members:
            continue
        tries = min(r.tries for r in members)
        summary: dict[str, Any] = {"label": g["label"], "repeats": g["repeats"], "finished_repeats": len(members),
                                   "seeds": g["seeds"], "runs": [r.label for r in members], "pass_at": {}}
        for k in range(1, tries + 1):
            values = [float(r.stats.get(f"pass_rate_{k}", 0.0)) for r in members]
            mean, sd = compare.mean_sd(values)
            summary["pass_at"][str(k)] = {"mean": round(mean, 1), "sd": round(sd, 1), "values": values}
        freq = compare.solve_frequency([solved_map(r) for r in members])
        summary["solve_frequency"] = {t: {"solved": s, "runs": n} for t, (s, n) in freq.items()}
        repeats.append(summary)
    return {
        "runs": blocks,
        "task_sets_differ": len({frozenset(s) for s in sets}) > 1,
        "common_tasks": len(common),
        "all_tasks": len(union),
        "matrix": matrix,
        "flips": [{"task": t, "outcomes": matrix[t]} for t in flipped],
        "pairs": pairs,
        "repeats": repeats,
    }


# --------------------------------------------------------------------------- text formats
def _pct_ci(block: dict[str, Any]) -> str:
    return f"{block['rate']:.1f}% [{block['low']:.1f}, {block['high']:.1f}]"


def _fmt_p(p: float) -> str:
    return f"{p:.4f}" if p >= 0.0001 else f"{p:.1e}"


def _md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v if v is not None else "").replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out + [""]


FACT_KEYS = ("model", "quantization", "model_sha256", "context_window", "temperature", "max_tokens", "seed", "tools",
             "max_turns", "overrides", "tries", "visible_tests", "sandbox", "localcode", "dataset", "machine")
"""The run facts the Markdown and HTML configuration tables show (those set in some run)."""


def fact_text(value: Any) -> str:
    """A run fact as table text (lists joined, dicts as key=value)."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


def max_tries(report: dict[str, Any]) -> int:
    """The most tries any run of the report allowed."""
    return max((b["tries"] for b in report["runs"]), default=1)


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (for a README or a pull request)."""
    runs = report["runs"]
    tries = max_tries(report)
    out = ["# localcode report", ""]
    if report["task_sets_differ"]:
        out += [f"The runs cover different task sets ({report['all_tasks']} tasks in all, {report['common_tasks']} "
                "common to all): each pair is compared on the tasks both ran.", ""]
    out += ["## Runs", "", "Pass rates are cumulative over tries, with 95% Wilson intervals; the denominator is "
            "the tasks that ran to an outcome (infrastructure errors excluded and counted).", ""]
    head = ["run", "agent", "tasks", "completed", "errors"] + [f"pass@{k}" for k in range(1, tries + 1)] + ["s/case"]
    rows = [[b["label"], b["agent"], b["task_count"], b["completed"], b["errors"],
             *[_pct_ci(b["pass_at"][str(k)]) if str(k) in b["pass_at"] else "" for k in range(1, tries + 1)],
             b["stats"].get("seconds_per_case", 0.0)] for b in runs]
    out += _md_table(head, rows)
    keys = [k for k in FACT_KEYS if any(b["facts"].get(k) not in (None, "", [], {}) for b in runs)]
    if keys:
        out += ["## Configurations", ""]
        out += _md_table(["", *[b["label"] for b in runs]],
                         [[k, *[fact_text(b["facts"].get(k)) for b in runs]] for k in keys])
    out += ["## Per language", ""]
    head = ["language", "run", "cases", "errors"] + [f"pass@{k}" for k in range(1, tries + 1)]
    rows = []
    for lang in sorted({lang for b in runs for lang in b["per_language"]}):
        for b in runs:
            lb = b["per_language"].get(lang)
            if lb is None:
                continue
            rows.append([lang, b["label"], lb["cases"], lb["errors"],
                         *[_pct_ci(lb["pass_at"][str(k)]) if str(k) in lb["pass_at"] else ""
                           for k in range(1, tries + 1)]])
    out += _md_table(head, rows)
    if report["pairs"]:
        out += ["## Paired tests", "", "Each pair on the tasks both finished: exact McNemar p-value on the tasks "
                "only one solved, and the difference B − A with a paired bootstrap 95% interval.", ""]
        head = ["pass@", "A", "B", "common", "both", "A only", "B only", "neither", "A %", "B %", "B − A (pp)",
                "95% CI", "p"]
        rows = [[p["k"], p["a"], p["b"], p["common"], p["both"], p["a_only"], p["b_only"], p["neither"],
                 p["rate_a"], p["rate_b"], p["diff"], f"[{p['diff_low']}, {p['diff_high']}]", _fmt_p(p["p_value"])]
                for p in report["pairs"]]
        out += _md_table(head, rows)
    if len(runs) > 1:
        out += ["## Flips", "", f"Tasks solved in some runs and not in others: {len(report['flips'])}.", ""]
        if report["flips"]:
            labels = [b["label"] for b in runs]
            out += _md_table(["task", *labels], [[f["task"], *[f["outcomes"].get(lb, "") for lb in labels]]
                                                 for f in report["flips"]])
    for g in report["repeats"]:
        out += [f"## Repeats: {g['label']}", "",
                f"{g['finished_repeats']} of {g['repeats']} repeats, seeds {g['seeds']}.", ""]
        out += _md_table(["pass@", "mean", "sd", "values"],
                         [[k, v["mean"], v["sd"], ", ".join(f"{x:.1f}" for x in v["values"])]
                          for k, v in g["pass_at"].items()])
        out += _md_table(["task", "solved", "of"], [[t, f["solved"], f["runs"]]
                                                   for t, f in g["solve_frequency"].items()])
    out += ["## Time and tokens", "", "Seconds per finished case: the agent's prefill, decode, tool calls and "
            "other work (prompt rendering, parsing), then the test runs.", ""]
    head = ["run", "total s/case", "prefill", "decode", "tools", "other", "tests", "prefill tok/s", "decode tok/s",
            "cached %"]
    rows = [[b["label"], t["total_seconds_per_case"], t["prefill_seconds_per_case"], t["decode_seconds_per_case"],
             t["tools_seconds_per_case"], t["other_seconds_per_case"], t["test_seconds_per_case"],
             t["prefill_tokens_per_s"],
             t["decode_tokens_per_s"], t["cached_token_share"]] for b in runs for t in [b["time"]]]
    out += _md_table(head, rows)
    if len(runs) == 1:
        b = runs[0]
        out += ["## Statistics", ""]
        out += _md_table(["metric", "value"], [[k, v] for k, v in b["stats"].items()
                                               if not isinstance(v, (dict, list))])
        out += ["## Tasks", ""]
        head = ["task", "outcome", "tries", "stop reasons", "turns", "tokens", "seconds"]
        rows = [[t["id"], t["outcome"], " ".join("pass" if x["passed"] else ("error" if x["error"] else "fail")
                                                 for x in t["tries"]),
                 " ".join(x["stop_reason"] or "-" for x in t["tries"]), t["turns"], t["tokens"], t["seconds"]]
                for t in b["tasks"]]
        out += _md_table(head, rows)
    else:
        labels = [b["label"] for b in runs]
        out += ["## Tasks", ""]
        out += _md_table(["task", *labels], [[tid, *[cells.get(lb, "") for lb in labels]]
                                             for tid, cells in report["matrix"].items()])
    endings = [(b["label"], e) for b in runs for e in b["unusual_endings"]]
    if endings:
        out += ["## Unusual endings", ""]
        out += _md_table(["run", "task", "try", "kind", "reason"],
                         [[lb, e["task"], e["try"] or "", e["kind"], e["reason"]] for lb, e in endings])
    return "\n".join(out).rstrip() + "\n"


def to_yaml(report: dict[str, Any]) -> str:
    """One entry per run in the format of Aider's leaderboard YAML (the keys of ``stats.yaml``)."""
    import yaml

    entries = [{k: b["stats"][k] for k in AIDER_YAML_KEYS if k in b["stats"]} for b in report["runs"]]
    return yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)


def render_rich(report: dict[str, Any], runs: list[Run]) -> Any:
    """Rich renderables: for one run, bench's own statistics table first, then the report's tables."""
    from rich.console import Group
    from rich.table import Table

    from localcode.harness.stats import render_stats

    parts: list[Any] = []
    blocks = report["runs"]
    tries = max_tries(report)
    if len(runs) == 1:
        parts.append(render_stats(runs[0].stats))
        tasks = Table(title="tasks")
        for col in ("task", "outcome", "tries", "stop reasons", "turns", "tokens", "seconds"):
            tasks.add_column(col, justify="right" if col in ("turns", "tokens", "seconds") else "left")
        for t in blocks[0]["tasks"]:
            tasks.add_row(t["id"], t["outcome"],
                          " ".join("pass" if x["passed"] else ("error" if x["error"] else "fail") for x in t["tries"]),
                          " ".join(x["stop_reason"] or "-" for x in t["tries"]),
                          str(t["turns"]), str(t["tokens"]), f"{t['seconds']:.1f}")
        parts.append(tasks)
    summary = Table(title="pass rates (95% Wilson interval)" + (
        f" — different task sets ({report['common_tasks']} of {report['all_tasks']} common to all): "
        "pairs compare the tasks both ran" if report["task_sets_differ"] else ""))
    for col in ("run", "agent", "completed", "errors", *[f"pass@{k}" for k in range(1, tries + 1)], "s/case"):
        summary.add_column(col)
    for b in blocks:
        summary.add_row(b["label"], b["agent"], str(b["completed"]), str(b["errors"]),
                        *[_pct_ci(b["pass_at"][str(k)]) if str(k) in b["pass_at"] else "" for k in range(1, tries + 1)],
                        str(b["stats"].get("seconds_per_case", 0.0)))
    parts.append(summary)
    if len(blocks) > 1:
        langs = Table(title="per language (95% Wilson interval)")
        for col in ("language", "run", "cases", "errors", *[f"pass@{k}" for k in range(1, tries + 1)]):
            langs.add_column(col)
        for lang in sorted({lang for b in blocks for lang in b["per_language"]}):
            for b in blocks:
                lb = b["per_language"].get(lang)
                if lb is not None:
                    langs.add_row(lang, b["label"], str(lb["cases"]), str(lb["errors"]),
                                  *[_pct_ci(lb["pass_at"][str(k)]) if str(k) in lb["pass_at"] else ""
                                    for k in range(1, tries + 1)])
        parts.append(langs)
    time_table = Table(title="seconds per case and tokens")
    for col in ("run", "total s/case", "prefill", "decode", "tools", "other", "tests", "prefill tok/s",
                "decode tok/s", "cached %"):
        time_table.add_column(col, justify="right" if col != "run" else "left")
    for b in blocks:
        t = b["time"]
        time_table.add_row(b["label"], *[str(t[k]) for k in (
            "total_seconds_per_case", "prefill_seconds_per_case", "decode_seconds_per_case",
            "tools_seconds_per_case", "other_seconds_per_case", "test_seconds_per_case", "prefill_tokens_per_s",
            "decode_tokens_per_s", "cached_token_share")])
    parts.append(time_table)
    if report["pairs"]:
        pairs = Table(title="paired tests on common tasks (exact McNemar)")
        for col in ("pass@", "A", "B", "common", "A only", "B only", "B − A (pp)", "95% CI", "p"):
            pairs.add_column(col)
        for p in report["pairs"]:
            pairs.add_row(str(p["k"]), p["a"], p["b"], str(p["common"]), str(p["a_only"]), str(p["b_only"]),
                          f"{p['diff']:+.1f}", f"[{p['diff_low']}, {p['diff_high']}]", _fmt_p(p["p_value"]))
        parts.append(pairs)
    if len(blocks) > 1:
        labels = [b["label"] for b in blocks]
        matrix = Table(title=f"tasks × runs ({len(report['flips'])} flipped)")
        matrix.add_column("task")
        for lb in labels:
            matrix.add_column(lb)
        flipped = {f["task"] for f in report["flips"]}
        for tid, cells in report["matrix"].items():
            matrix.add_row(tid + (" *" if tid in flipped else ""), *[cells.get(lb, "") for lb in labels])
        parts.append(matrix)
    for g in report["repeats"]:
        rep = Table(title=f"repeats of {g['label']}: {g['finished_repeats']}/{g['repeats']}, seeds {g['seeds']}")
        rep.add_column("pass@")
        rep.add_column("mean ± sd")
        rep.add_column("values")
        for k, v in g["pass_at"].items():
            rep.add_row(k, f"{v['mean']:.1f} ± {v['sd']:.1f}", ", ".join(f"{x:.1f}" for x in v["values"]))
        parts.append(rep)
    endings = [(b["label"], e) for b in blocks for e in b["unusual_endings"]]
    if endings:
        table = Table(title="unusual endings")
        for col in ("run", "task", "try", "kind", "reason"):
            table.add_column(col)
        for lb, e in endings:
            table.add_row(lb, e["task"], str(e["try"] or ""), e["kind"], e["reason"][:200])
        parts.append(table)
    return Group(*parts)
