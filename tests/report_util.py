"""Hand-made run folders with known outcomes, for the tests of ``localcode report``."""

from __future__ import annotations

import json
from pathlib import Path

from localcode.harness.report import repeat_dir_name, write_repeats_manifest
from localcode.harness.results import AgentUsage, DatasetInfo, ResultStore, RunInfo, TaskResult, TryResult

# Two runs over overlapping task sets (run B has go/h, which A lacks; A errored on go/g).
RUN_A = {"python/a": "1", "python/b": "1", "python/c": "2", "python/d": "fail",
         "go/e": "1", "go/f": "stuck", "go/g": "error"}
RUN_B = {"python/a": "1", "python/b": "fail", "python/c": "1", "python/d": "2",
         "go/e": "1", "go/f": "fail", "go/g": "1", "go/h": "1"}

AGENT_S, TEST_S, PROMPT_MS, DECODE_MS = 10.0, 2.0, 3000.0, 5000.0
PROMPT_TOKENS, CACHED_TOKENS, COMPLETION_TOKENS = 1000, 400, 200


def _try(index: int, passed: bool, stop_reason: str = "finished", error: str | None = None) -> TryResult:
    usage = AgentUsage(model_calls=3, prompt_tokens=PROMPT_TOKENS, cached_tokens=CACHED_TOKENS,
                       completion_tokens=COMPLETION_TOKENS, prompt_ms=PROMPT_MS, decode_ms=DECODE_MS,
                       prompt_eval_tokens=PROMPT_TOKENS - CACHED_TOKENS, decode_tokens=COMPLETION_TOKENS,
                       tool_calls={"write": 1, "finish": 1})
    return TryResult(index=index, passed=passed, exit_code=0 if passed else (None if error else 1),
                     agent_duration_s=AGENT_S, test_duration_s=0.0 if error else TEST_S,
                     test_output="" if error else ("1 passed" if passed else "FAILED test_x - assert 1 == 2"),
                     test_command="pytest", stop_reason=stop_reason, error=error, usage=usage)


def task_result(task_id: str, outcome: str, tries: int = 2, agent: str = "gguf/x") -> TaskResult:
    """A result with a known outcome: ``"1"``/``"2"`` (passed on that try), ``"fail"``, ``"stuck"``
    (failed, every try ended stuck) or ``"error"`` (an infrastructure error on try 1)."""
    language, name = task_id.split("/")
    error = None
    if outcome == "error":
        error = "test run failed: DockerException: the engine went away"
        rows = [_try(1, False, stop_reason="finished", error=error)]
    elif outcome in ("fail", "stuck"):
        rows = [_try(i, False, "stuck" if outcome == "stuck" else "max_turns") for i in range(1, tries + 1)]
    else:
        k = int(outcome)
        rows = [_try(i, i == k) for i in range(1, k + 1)]
    return TaskResult(id=task_id, language=language, name=name, agent=agent, max_tries=tries, tries=rows,
                      error=error, started_at="2026-11-25T10:00:00+00:00", finished_at="2026-11-25T10:01:00+00:00",
                      duration_s=60.0)


def make_run(path: Path, outcomes: dict[str, str], *, tries: int = 2, agent: str = "gguf/x",
             seed: int | None = None, task_ids: list[str] | None = None, logs: bool = True) -> Path:
    """A run folder at ``path`` with ``run.json``, one result per task of ``outcomes`` and, with
    ``logs``, a ``try-N.jsonl`` agent log per try (a short conversation)."""
    store = ResultStore(path)
    info = RunInfo(run_name=path.name, created_at="2026-11-25T10:00:00+00:00",
                   command_line=["localcode", "bench", "--agent", agent], localcode_version="0.1.0", agent=agent,
                   model=agent, agent_info={"seed": seed}, dataset=DatasetInfo(path="/data/polyglot"),
                   sandbox="local", tries=tries, test_timeout_s=60.0,
                   task_ids=task_ids if task_ids is not None else sorted(outcomes))
    store.write_run_info(info)
    for tid, outcome in outcomes.items():
        result = task_result(tid, outcome, tries, agent)
        store.write(result, info)
        if logs:
            for t in result.tries:
                write_try_log(store.task_dir(tid) / f"try-{t.index}.jsonl", tid, t)
    return path


def write_try_log(path: Path, task_id: str, t: TryResult) -> None:
    """A small agent log in the format of ``localcode.agent.logs.RunLogger``."""
    events = [
        # as RunLogger writes them: session_start names the agent; a sub-agent's events carry its tag
        {"t": 0.0, "kind": "session_start", "agent": "coder", "depth": 0, "continued": t.index > 1,
         "task": f"Solve {task_id} (try {t.index}). <b>not bold</b>"},
        {"t": 0.1, "kind": "session_start", "agent": "helper", "depth": 1, "continued": False,
         "task": "a sub-agent's task"},
        {"t": 0.2, "kind": "response", "agent": "helper", "turn": 1, "finish_reason": "stop",
         "content": "a sub-agent's answer", "reasoning": "", "tool_calls": [], "malformed": []},
        {"t": 0.5, "kind": "response", "turn": 1, "finish_reason": "tool_calls", "content": "Let me write it.",
         "reasoning": "", "tool_calls": [{"id": "c1", "name": "write",
                                          "arguments": json.dumps({"path": "x.py", "content": "print(1)"})}],
         "malformed": []},
        {"t": 0.6, "kind": "tool_call", "turn": 1, "id": "c1", "name": "write", "tool": "write",
         "arguments": "{}"},
        {"t": 0.7, "kind": "tool_result", "turn": 1, "id": "c1", "ok": True, "skipped": False, "error_kind": None,
         "text": f"ok: wrote x.py for {task_id}"},
        *([{"t": 0.8, "kind": "stuck", "turn": 3, "call": 'read {"path": "missing.py"}', "repeats": 3}]
          if t.stop_reason == "stuck" else []),
        {"t": 1.0, "kind": "end", "reason": t.stop_reason, "detail": "same failing call 3 times"
         if t.stop_reason == "stuck" else "", "final_answer": "done", "turns": 3, "seconds": 1.0},
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")


def make_repeat_run(path: Path, repeats: list[dict[str, str]], seeds: list[int | None], **kw) -> Path:
    """A ``bench --repeat`` folder: ``repeats.json`` and one run folder per repeat."""
    path.mkdir(parents=True, exist_ok=True)
    write_repeats_manifest(path, len(repeats), seeds)
    for k, outcomes in enumerate(repeats, start=1):
        make_run(path / repeat_dir_name(k), outcomes, seed=seeds[k - 1], **kw)
    return path
