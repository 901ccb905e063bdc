"""Run statistics: a pure function of the result files.

``compute_stats`` reads nothing but ``TaskResult`` records (and, for labels, ``RunInfo``).
Key names follow Aider's benchmark wherever Aider has one (``pass_rate_1``,
``pass_rate_2``, ``percent_cases_well_formed``, ``seconds_per_case``, ``test_timeouts``,
``prompt_tokens``, ``completion_tokens``, ``exhausted_context_windows``, ...).

Pass rates are CUMULATIVE: ``pass_rate_2`` is the percent of tasks passed on try 1 or 2.
Their denominator is the tasks that ran to an outcome (``test_cases`` = ``completed_tests``,
as Aider): every failure the model causes (context overflow, generation timeout, malformed
output, max turns) is such an outcome, a failed case. Only tasks that ended in an
infrastructure error (the model could not load or crashed, the sandbox failed, a harness
bug) are left out; they are counted in ``infrastructure_errors`` and listed with their
reasons in ``infrastructure_error_tasks`` (and under the table).

``seconds_per_case`` is Aider's: the agent's (model) seconds per completed case;
``total_seconds_per_case`` adds the test runs, ``test_seconds_per_case`` is those alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from localcode.harness.results import AgentUsage, RunInfo, TaskResult


def _pct(num: float, den: float) -> float:
    return round(100.0 * num / den, 1) if den else 0.0


def _pass_block(results: list[TaskResult], tries: int) -> dict[str, Any]:
    completed = [r for r in results if r.finished]
    out: dict[str, Any] = {"completed_tests": len(completed)}
    for i in range(1, tries + 1):
        n = sum(1 for r in completed if r.passed_on_try is not None and r.passed_on_try <= i)
        out[f"pass_num_{i}"] = n
        out[f"pass_rate_{i}"] = _pct(n, len(completed))
    return out


def compute_stats(
    results: Iterable[TaskResult],
    tries: int | None = None,
    run_info: RunInfo | None = None,
    total_tests: int | None = None,
) -> dict[str, Any]:
    """Statistics of a run from its results.

    ``tries`` defaults to ``run_info.tries`` or the most tries any result allowed;
    ``total_tests`` to the number of selected tasks in ``run_info`` (else the results).
    """
    results = sorted(results, key=lambda r: r.id)
    if tries is None:
        tries = run_info.tries if run_info else max((r.max_tries for r in results), default=1)
    if total_tests is None:
        total_tests = len(run_info.task_ids) if run_info and run_info.task_ids else len(results)
    completed = [r for r in results if r.finished]
    n = len(completed)
    usage = AgentUsage()
    for r in results:
        usage = usage + r.usage
    with_malformed = sum(1 for r in completed if r.usage.malformed_responses)
    agent_s = sum(r.agent_duration_s for r in completed)
    test_s = sum(r.test_duration_s for r in completed)
    test_runs = sum(1 for r in completed for t in r.tries if t.error is None)

    stats: dict[str, Any] = {
        "model": run_info.model if run_info else "",
        "edit_format": run_info.edit_format if run_info else "tools",
        "agent": run_info.agent if run_info else (results[0].agent if results else ""),
        "dirname": run_info.run_name if run_info else "",
        "test_cases": n,
        "total_tests": total_tests,
        "tries": tries,
    }
    stats.update(_pass_block(results, tries))
    stats.update({
        "infrastructure_errors": sum(1 for r in results if not r.finished),
        "infrastructure_error_tasks": [{"id": r.id, "reason": r.error} for r in results if not r.finished],
        "missing_results": max(0, total_tests - len(results)),
        "percent_cases_well_formed": round(100.0 * (1 - with_malformed / n), 1) if n else 0.0,
        "num_malformed_responses": usage.malformed_responses,
        "num_with_malformed_responses": with_malformed,
        "error_outputs": sum(usage.tool_errors.values()),
        "user_asks": 0,
        "lazy_comments": 0,
        "syntax_errors": sum(r.syntax_errors for r in completed),
        "indentation_errors": sum(r.indentation_errors for r in completed),
        "exhausted_context_windows": usage.exhausted_context_windows,
        "test_timeouts": sum(r.test_timeouts for r in completed),
        # tries the agent ended early because it repeated a failing call (localcode.agent.loop.Stuck)
        "stuck_endings": sum(1 for r in results for t in r.tries if t.stop_reason == "stuck"),
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": usage.cached_tokens,
        "completion_tokens": usage.completion_tokens,
        "model_calls": usage.model_calls,
        "prompt_eval_tokens": usage.prompt_eval_tokens,
        # Rates over the tokens the backend actually evaluated / generated (cached tokens cost nothing).
        "prefill_tokens_per_s": round(usage.prompt_eval_tokens / (usage.prompt_ms / 1000), 1) if usage.prompt_ms else None,
        "decode_tokens_per_s": round(usage.decode_tokens / (usage.decode_ms / 1000), 1) if usage.decode_ms else None,
        "repairs": usage.repairs,
        "text_calls": usage.text_calls,
        "repetition_stops": usage.repetition_stops,
        "tool_calls": dict(sorted(usage.tool_calls.items())),
        "tool_errors": dict(sorted(usage.tool_errors.items())),
        "seconds_per_case": round(agent_s / n, 2) if n else 0.0,
        "total_seconds_per_case": round((agent_s + test_s) / n, 2) if n else 0.0,
        "agent_seconds_per_case": round(agent_s / n, 2) if n else 0.0,
        "test_seconds_per_case": round(test_s / n, 2) if n else 0.0,
        "seconds_per_test_run": round(test_s / test_runs, 2) if test_runs else 0.0,
        "total_cost": 0.0,
    })
    by_lang: dict[str, list[TaskResult]] = defaultdict(list)
    for r in results:
        by_lang[r.language].append(r)
    per_language: dict[str, Any] = {}
    for lang in sorted(by_lang):
        rs = by_lang[lang]
        done = [r for r in rs if r.finished]
        block = {"cases": len(rs)}
        block.update(_pass_block(rs, tries))
        block["infrastructure_errors"] = len(rs) - len(done)
        block["test_timeouts"] = sum(r.test_timeouts for r in done)
        block["seconds_per_case"] = round(sum(r.agent_duration_s for r in done) / len(done), 2) if done else 0.0
        block["test_seconds_per_case"] = round(sum(r.test_duration_s for r in done) / len(done), 2) if done else 0.0
        per_language[lang] = block
    stats["per_language"] = per_language
    if run_info is not None:
        stats["command"] = " ".join(run_info.command_line)
        stats["date"] = run_info.created_at
        stats["versions"] = run_info.localcode_version
        stats["commit_hash"] = run_info.localcode_commit or ""
        model = run_info.agent_info.get("model") or {}
        stats["model_load_seconds"] = model.get("load_seconds")
        stats["peak_memory_mb"] = run_info.peak_memory_mb
    return stats


AIDER_YAML_KEYS = (
    "dirname", "test_cases", "model", "edit_format", "commit_hash", "pass_rate_1", "pass_rate_2", "pass_num_1",
    "pass_num_2", "percent_cases_well_formed", "error_outputs", "num_malformed_responses",
    "num_with_malformed_responses", "user_asks", "lazy_comments", "syntax_errors", "indentation_errors",
    "exhausted_context_windows", "prompt_tokens", "completion_tokens", "test_timeouts", "total_tests", "command",
    "date", "versions", "seconds_per_case", "total_cost",
)
"""The keys of an entry in Aider's leaderboard YAML (aider/website/_data/polyglot_leaderboard.yml)."""


def aider_yaml(stats: dict[str, Any]) -> str:
    """``stats.yaml``: the run as one entry of Aider's leaderboard YAML (a one-item list)."""
    import yaml

    entry = {k: stats[k] for k in AIDER_YAML_KEYS if k in stats}
    return yaml.safe_dump([entry], sort_keys=False, allow_unicode=True)


def render_stats(stats: dict[str, Any]) -> Any:
    """Rich renderables (overall table, per-language table) for the stats of a run."""
    from rich.console import Group
    from rich.table import Table

    tries = int(stats.get("tries", 1))
    overall = Table(title=f"{stats.get('agent') or stats.get('model')}: {stats.get('completed_tests', 0)} "
                          f"of {stats.get('total_tests', 0)} tasks", show_header=True)
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    for i in range(1, tries + 1):
        overall.add_row(f"pass_rate_{i} (cumulative)", f"{stats.get(f'pass_rate_{i}', 0.0):.1f}%  "
                        f"({stats.get(f'pass_num_{i}', 0)})")
    for key in ("seconds_per_case", "total_seconds_per_case", "test_seconds_per_case", "test_timeouts",
                "infrastructure_errors", "missing_results", "percent_cases_well_formed",
                "num_malformed_responses", "stuck_endings", "exhausted_context_windows", "prompt_tokens", "cached_tokens",
                "completion_tokens", "prefill_tokens_per_s", "decode_tokens_per_s", "model_load_seconds",
                "peak_memory_mb"):
        value = stats.get(key)
        if value is None:
            continue
        overall.add_row(key, str(value))
    langs = Table(title="per language")
    langs.add_column("language")
    langs.add_column("cases", justify="right")
    for i in range(1, tries + 1):
        langs.add_column(f"pass_rate_{i}", justify="right")
    langs.add_column("errors", justify="right")
    langs.add_column("agent s/case", justify="right")
    for lang, block in stats.get("per_language", {}).items():
        langs.add_row(lang, str(block["cases"]),
                      *[f"{block.get(f'pass_rate_{i}', 0.0):.1f}%" for i in range(1, tries + 1)],
                      str(block["infrastructure_errors"]), f"{block['seconds_per_case']:.1f}")
    parts: list[Any] = [overall, langs]
    errored = stats.get("infrastructure_error_tasks") or []
    if errored:
        from rich.text import Text

        lines = [f"{len(errored)} task(s) left out of every rate (infrastructure errors, rerun with --retry-errors):"]
        lines += [f"  {e['id']}: {e['reason']}" for e in errored]
        parts.append(Text("\n".join(lines)))
    return Group(*parts)
