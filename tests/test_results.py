"""Results: atomic writes, the schema, Aider's format, and resume / --retry-errors.

The orchestration tests use a fake test runner (unit tests of scheduling logic): it passes
a workspace when every solution file equals the reference solution.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from localcode.harness.bench import (
    AttemptReport,
    BenchOptions,
    BenchRunner,
    NoneSolver,
    OracleSolver,
    Solver,
    TaskSession,
    first_prompt,
)
from localcode.harness.dataset import Exercise, load_dataset
from localcode.harness.oracle import reference_files
from localcode.harness.results import (
    AgentUsage,
    DatasetInfo,
    ResultStore,
    RunInfo,
    TaskResult,
    TryResult,
    atomic_write_text,
    cap_text,
)
from localcode.harness.stats import compute_stats
from sandbox_util import dataset_root

DATASET = dataset_root()
IDS = ["python/bowling", "go/bowling", "rust/bowling", "java/bowling"]


@pytest.fixture(scope="module")
def exercises():
    assert DATASET.is_dir(), f"the polyglot benchmark copy is missing at {DATASET}"
    by = load_dataset(DATASET).by_id()
    return [by[i] for i in IDS]


class FakeOutcome:
    def __init__(self, passed: bool, output: str) -> None:
        self.passed = passed
        self.timed_out = False
        self.exit_code = 0 if passed else 1
        self.duration_s = 0.01
        self.output = output
        self.command = ["fake-test"]


class FakeRunner:
    """Passes when the workspace holds the reference solution; records what it saw."""

    def __init__(self, fail_ids: set[str] = frozenset(), delay: float = 0.0) -> None:
        self.fail_ids = set(fail_ids)
        self.delay = delay
        self.calls: list[str] = []
        self.seen_tests: dict[str, bool] = {}
        self.lock = threading.Lock()

    def run(self, exercise: Exercise, workspace: Path) -> FakeOutcome:
        with self.lock:
            self.calls.append(exercise.id)
        if exercise.id in self.fail_ids:
            raise RuntimeError("docker exec failed: container gone")
        time.sleep(self.delay)
        self.seen_tests[exercise.id] = all((workspace / t).is_file() for t in exercise.hidden_files)
        ok = all((workspace / dest).read_bytes() == src.read_bytes()
                 for dest, src in reference_files(exercise).items())
        return FakeOutcome(ok, "" if ok else "FAILED test_one\nAssertionError: 1 != 2\n")


class SecondTrySolver:
    """Writes nothing on try 1, the reference on try 2; records the prompts it got."""

    name = "second-try"

    def __init__(self) -> None:
        self.prompts: dict[str, list[str]] = {}
        self.closed: list[str] = []

    def start(self, exercise: Exercise, workspace: Path) -> TaskSession:
        solver = self

        class S:
            def attempt(self, prompt: str, try_index: int, deadline: float | None) -> AttemptReport:
                solver.prompts.setdefault(exercise.id, []).append(prompt)
                if try_index >= 2:
                    for dest, src in reference_files(exercise).items():
                        (workspace / dest).write_bytes(src.read_bytes())
                return AttemptReport(stop_reason="finish", usage=AgentUsage(prompt_tokens=10, completion_tokens=5,
                                                                            tool_calls={"write_file": 1}))

            def close(self) -> None:
                solver.closed.append(exercise.id)

        return S()

    def info(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def _run_info(tmp: Path, agent: str, ids: list[str], tries: int = 2) -> RunInfo:
    return RunInfo(run_name=tmp.name, created_at="2025-01-01T00:00:00+00:00", command_line=["localcode", "bench"],
                   localcode_version="0", agent=agent, dataset=DatasetInfo(path=str(DATASET)), sandbox="local",
                   tries=tries, test_timeout_s=180, task_ids=ids)


def _bench(tmp_path: Path, solver: Solver, runner: FakeRunner, exercises: list[Exercise], tries: int = 2,
           jobs: int = 2) -> list[TaskResult]:
    store = ResultStore(tmp_path)
    info = _run_info(tmp_path, solver.name, [e.id for e in exercises], tries)
    return BenchRunner(solver=solver, runner=runner, store=store, options=BenchOptions(tries=tries, jobs=jobs),
                       run_info=info).run(exercises)


# ----------------------------------------------------------------------------- files
def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "a" / "result.json"
    atomic_write_text(target, "old")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(target.parent) == ["result.json"]  # no stray temp file
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_schema_round_trip_and_derived_fields(tmp_path):
    r = TaskResult(id="python/x", language="python", name="x", agent="a", max_tries=2, tries=[
        TryResult(index=1, passed=False, timed_out=True, test_duration_s=2, agent_duration_s=3, syntax_errors=2,
                  indentation_errors=1,
                  usage=AgentUsage(prompt_tokens=5, tool_calls={"edit": 2}, tool_errors={"edit": 1})),
        TryResult(index=2, passed=True, test_duration_s=1, agent_duration_s=4,
                  usage=AgentUsage(prompt_tokens=7, malformed_responses=1, tool_calls={"edit": 1, "read": 3})),
    ])
    store = ResultStore(tmp_path)
    store.write(r)
    back = store.read("python/x")
    assert back == r
    assert back.outcomes == [False, True] and back.passed and back.passed_on_try == 2
    assert back.usage.prompt_tokens == 12 and back.usage.tool_calls == {"edit": 3, "read": 3}
    assert back.test_timeouts == 1 and back.agent_duration_s == 7
    # where Aider's own --stats globs: */exercises/practice/*/.aider.results.json
    aider_file = tmp_path / "python" / "exercises" / "practice" / "x" / ".aider.results.json"
    assert list(tmp_path.glob("*/exercises/practice/*/.aider.results.json")) == [aider_file]
    aider = json.loads(aider_file.read_text())
    assert aider["testdir"] == str(aider_file.parent)
    for key in ("testdir", "testcase", "model", "edit_format", "tests_outcomes", "cost", "duration",
                "test_timeouts", "num_error_outputs", "num_malformed_responses", "syntax_errors",
                "indentation_errors", "lazy_comments", "chat_hashes", "num_user_asks",
                "num_exhausted_context_windows", "prompt_tokens", "completion_tokens"):
        assert key in aider
    assert aider["tests_outcomes"] == [False, True]
    assert aider["test_timeouts"] == 1 and aider["num_error_outputs"] == 1 and aider["num_malformed_responses"] == 1
    # Aider's duration is the model's time; its syntax/indentation counts come from the test output
    assert aider["duration"] == 7 and aider["syntax_errors"] == 2 and aider["indentation_errors"] == 1


def test_an_infrastructure_error_has_no_aider_result(tmp_path):
    store = ResultStore(tmp_path)
    ok = TaskResult(id="python/x", language="python", name="x", agent="a", max_tries=1,
                    tries=[TryResult(index=1, passed=True)])
    store.write(ok)
    aider_file = store.aider_dir("python/x") / ".aider.results.json"
    assert aider_file.is_file()
    store.write(ok.model_copy(update={"error": "test run failed: SandboxError: container gone"}))
    # Aider counts a results file as a completed case: an excluded task must have none
    assert not aider_file.exists() and aider_file.parent.is_dir()


def test_unreadable_result_counts_as_missing(tmp_path):
    store = ResultStore(tmp_path)
    (tmp_path / "python" / "x").mkdir(parents=True)
    (tmp_path / "python" / "x" / "result.json").write_text("{half")
    assert store.read("python/x") is None and list(store.results()) == []


def test_cap_text_keeps_head_and_tail():
    text = "A" * 100 + "B" * 100
    capped = cap_text(text, 50)
    assert capped.startswith("A" * 25) and capped.endswith("B" * 25) and "cut" in capped
    assert cap_text("short", 50) == "short"


# ----------------------------------------------------------------------------- orchestration
def test_oracle_passes_none_fails_with_prompts_and_tries(tmp_path, exercises):
    runner = FakeRunner()
    results = {r.id: r for r in _bench(tmp_path / "o", OracleSolver(), runner, exercises)}
    assert all(r.passed and r.passed_on_try == 1 and len(r.tries) == 1 for r in results.values())
    # the workspace never holds the tests: the runner tests a pristine copy of the exercise
    assert not any(runner.seen_tests.values()) and len(runner.seen_tests) == len(exercises)
    runner = FakeRunner()
    results = {r.id: r for r in _bench(tmp_path / "n", NoneSolver(), runner, exercises)}
    assert all(not r.passed and r.outcomes == [False, False] and r.error is None for r in results.values())
    # workspaces end without tests (hidden protocol) and without .meta
    for ex in exercises:
        ws = tmp_path / "n" / "workspaces" / ex.language / ex.name
        assert not any((ws / t).exists() for t in ex.hidden_files)
        assert not (ws / ".meta").exists()


def test_second_try_sees_test_output_and_pass_accounting(tmp_path, exercises):
    solver = SecondTrySolver()
    results = _bench(tmp_path, solver, FakeRunner(), exercises, tries=2)
    for ex in exercises:
        p1, p2 = solver.prompts[ex.id]
        assert p1 == first_prompt(ex)
        assert p2.startswith("FAILED test_one\nAssertionError: 1 != 2")
        assert "The tests are correct, don't try and change them." in p2
    # try 1 of a task has no syntax errors counted unless its output shows some
    assert all(t.syntax_errors == 0 for r in results for t in r.tries)
    assert sorted(solver.closed) == sorted(IDS)  # one session per task, closed once
    stats = compute_stats(results, tries=2)
    assert stats["pass_rate_1"] == 0.0 and stats["pass_rate_2"] == 100.0
    assert stats["pass_num_2"] == len(exercises) and stats["completed_tests"] == len(exercises)
    assert stats["prompt_tokens"] == 20 * len(exercises)
    assert set(stats["per_language"]) == {"python", "go", "rust", "java"}


def test_infrastructure_errors_are_not_failures_and_resume(tmp_path, exercises):
    broken = {"go/bowling"}
    _bench(tmp_path, OracleSolver(), FakeRunner(fail_ids=broken), exercises)
    store = ResultStore(tmp_path)
    assert store.errored_ids() == broken
    assert store.finished_ids() == set(IDS) - broken
    err = store.read("go/bowling")
    assert "docker exec failed" in err.error and not err.passed and err.outcomes == []
    stats = compute_stats(store.results(), tries=2)
    assert stats["infrastructure_errors"] == 1 and stats["completed_tests"] == 3 and stats["pass_rate_1"] == 100.0

    # a plain rerun runs only tasks without a result: nothing here
    have = {r.id for r in store.results()}
    todo = [e for e in exercises if e.id not in have]
    runner = FakeRunner()
    _bench(tmp_path, OracleSolver(), runner, todo)
    assert runner.calls == []
    # --retry-errors reruns only the errored task
    todo = [e for e in exercises if e.id in store.errored_ids()]
    runner = FakeRunner()
    _bench(tmp_path, OracleSolver(), runner, todo)
    assert runner.calls == ["go/bowling"]
    assert store.errored_ids() == set() and store.finished_ids() == set(IDS)


def test_solver_exception_is_an_error_and_the_run_goes_on(tmp_path, exercises):
    class Crashy(OracleSolver):
        name = "crashy"

        def start(self, exercise, workspace):
            if exercise.language == "rust":
                raise RuntimeError("model crashed")
            return super().start(exercise, workspace)

    results = {r.id: r for r in _bench(tmp_path, Crashy(), FakeRunner(), exercises)}
    assert "model crashed" in results["rust/bowling"].error
    assert all(results[i].passed for i in IDS if i != "rust/bowling")


def test_report_error_ends_task_without_test(tmp_path, exercises):
    class Crashed(NoneSolver):
        name = "crashed"

        def start(self, exercise, workspace):
            class S:
                def attempt(self, prompt, try_index, deadline):
                    return AttemptReport(error="model error: the backend crashed", stop_reason="model_error")

                def close(self):
                    pass
            return S()

    runner = FakeRunner()
    results = _bench(tmp_path, Crashed(), runner, exercises[:1])
    assert runner.calls == [] and results[0].error == "model error: the backend crashed"
    stats = compute_stats(results, tries=2)
    assert stats["completed_tests"] == 0 and stats["infrastructure_errors"] == 1
    assert stats["infrastructure_error_tasks"] == [{"id": exercises[0].id, "reason": "model error: the backend crashed"}]


def test_model_failures_are_failed_cases_whose_tests_run(tmp_path, exercises):
    """Overflow, a generation timeout, malformed-output exhaustion, max turns: the tests run on
    what was written and the task counts in every denominator (Aider's accounting)."""
    endings = ["context_exceeded", "request_timeout", "format_errors", "max_turns"]

    class Failing(OracleSolver):
        name = "failing"

        def start(self, exercise, workspace):
            inner = super().start(exercise, workspace)
            ending = endings[IDS.index(exercise.id)]

            class S:
                def attempt(self, prompt, try_index, deadline):
                    if exercise.id == IDS[0]:  # the first writes the reference solution, then overflows
                        inner.attempt(prompt, try_index, deadline)
                    usage = AgentUsage(exhausted_context_windows=int(ending == "context_exceeded"))
                    return AttemptReport(stop_reason=ending, usage=usage)

                def close(self):
                    pass
            return S()

    runner = FakeRunner()
    results = {r.id: r for r in _bench(tmp_path, Failing(), runner, exercises, tries=2)}
    assert sorted(runner.calls) == sorted(IDS + IDS[1:])  # every try was tested
    assert all(r.error is None for r in results.values())
    assert results[IDS[0]].passed and [t.stop_reason for t in results[IDS[0]].tries] == ["context_exceeded"]
    stats = compute_stats(results.values(), tries=2)
    assert stats["test_cases"] == 4 and stats["completed_tests"] == 4 and stats["pass_rate_2"] == 25.0
    assert stats["exhausted_context_windows"] == 1 and stats["infrastructure_errors"] == 0


def test_interrupt_leaves_finished_results_and_no_partial_ones(tmp_path, exercises):
    class Interrupting(OracleSolver):
        name = "int"

        def start(self, exercise, workspace):
            if exercise.id == "rust/bowling":
                raise KeyboardInterrupt
            return super().start(exercise, workspace)

    with pytest.raises(KeyboardInterrupt):
        _bench(tmp_path, Interrupting(), FakeRunner(), exercises, jobs=1)
    store = ResultStore(tmp_path)
    have = {r.id for r in store.results()}
    assert "rust/bowling" not in have and "java/bowling" not in have
    assert not list(tmp_path.rglob("*.tmp"))
    # rerun resumes: only the missing tasks run
    runner = FakeRunner()
    todo = [e for e in exercises if e.id not in have]
    _bench(tmp_path, OracleSolver(), runner, todo)
    assert sorted(runner.calls) == sorted(e.id for e in todo)
    assert store.finished_ids() == set(IDS)


def test_tests_run_concurrently_while_solving(tmp_path, exercises):
    """Two test runs are in flight at once, and the solver starts the next task meanwhile."""
    barrier = threading.Barrier(2, timeout=10)
    solving_next = threading.Event()

    class Waiting(FakeRunner):
        def run(self, exercise, workspace):
            if exercise.id == IDS[0]:
                # the solver must reach task 2 while task 1's test is still running
                assert solving_next.wait(10), "the solver waited for a test run"
            if exercise.id in IDS[:2]:
                barrier.wait()  # raises BrokenBarrierError unless both runs overlap
            return super().run(exercise, workspace)

    class Signalling(OracleSolver):
        def start(self, exercise, workspace):
            if exercise.id == IDS[1]:
                solving_next.set()
            return super().start(exercise, workspace)

    results = _bench(tmp_path, Signalling(), Waiting(), exercises, jobs=2)
    assert [r.error for r in results] == [None] * len(exercises)
    assert all(r.passed for r in results)


def test_find_run_dir_resumes_only_matching_incomplete_runs(tmp_path):
    from localcode.commands.bench import find_run_dir

    runs = tmp_path / "runs"
    a = ResultStore(runs / "2025-01-01--oracle")
    info = _run_info(a.run_dir, "oracle", ["python/x", "python/y"])
    a.write_run_info(info)
    key = info.resume_key()
    assert find_run_dir(runs, key, retry_errors=False) == a.run_dir
    other = _run_info(a.run_dir, "none", ["python/x", "python/y"])
    assert find_run_dir(runs, other.resume_key(), retry_errors=False) is None
    for tid in ("python/x", "python/y"):
        a.write(TaskResult(id=tid, language="python", name=tid.split("/")[1], agent="oracle", max_tries=2,
                           error="boom" if tid == "python/y" else None))
    assert find_run_dir(runs, key, retry_errors=False) is None  # complete: a rerun starts a new run
    assert find_run_dir(runs, key, retry_errors=True) == a.run_dir


def test_infrastructure_errors_are_listed_under_the_table(tmp_path, exercises):
    from rich.console import Console

    from localcode.harness.stats import render_stats

    _bench(tmp_path, OracleSolver(), FakeRunner(fail_ids={"go/bowling"}), exercises)
    stats = compute_stats(ResultStore(tmp_path).results(), tries=2)
    console = Console(record=True, width=160)
    console.print(render_stats(stats))
    text = console.export_text()
    assert "1 task(s) left out of every rate" in text
    assert "go/bowling: test run failed: RuntimeError: docker exec failed: container gone" in text
    assert stats["test_cases"] == 3 and stats["total_tests"] == 4
