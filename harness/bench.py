"""Benchmark orchestration: solve each task in up to N tries, test each try, record results.

The seams are two small Protocols. A ``Solver`` is created once per run (it owns the model);
``Solver.start`` opens a ``TaskSession`` for one task, and that session spans every try of
the task, so try 2 continues the conversation of try 1::

    solver = make_solver("oracle")
    session = solver.start(exercise, workspace)
    report = session.attempt(prompt, try_index=1, deadline=None)   # edits files in workspace
    ...                                                             # tests run on the workspace
    report = session.attempt(retry_prompt, try_index=2, deadline=None)
    session.close()

Scheduling: generation is serial (one in-process model, the main thread), while the tests
of finished tries run concurrently on a thread pool (``jobs`` in flight), so the model
never waits for a compile. A task's next try waits for its own test result; other tasks
proceed meanwhile. Tasks waiting for a retry go before new tasks, which keeps few
conversations open.

Failures the model causes (context overflow, a generation past ``request_timeout``,
malformed-output exhaustion, max turns, the agent time limit) end the try, and the tests
still run on what was written: the task is a failed case in every denominator. Only
faults outside the model's control end the task with ``TaskResult.error`` set: an
``AttemptReport.error`` (the model could not run: load failure, backend crash), a sandbox
error, or an exception from the solver (a harness bug). They are excluded from the rates
and listed with their reasons.
Ctrl-C (KeyboardInterrupt) stops scheduling, cancels queued test runs, closes the open
sessions and re-raises; finished results are already on disk, half-done tasks have none.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from localcode.errors import ConfigError
from localcode.harness.dataset import Exercise
from localcode.harness.results import AgentUsage, ResultStore, RunInfo, TaskResult, TryResult, cap_text
from localcode.harness.workspace import create_workspace, workspace_dir, write_refusal

if TYPE_CHECKING:
    from localcode.config import AgentConfig

AIDER_TIMEOUT_OUTPUT = "Tests timed out!"
"""What Aider's harness sends try 2 after a test run that timed out (instead of the output)."""

AIDER_IGNORED_FILES = ("CMakeLists.txt", "Cargo.toml")
"""Solution files Aider's harness leaves out of the file list (``ignore_files``)."""


# --------------------------------------------------------------------------- protocols
class AttemptReport(BaseModel):
    """What a ``TaskSession.attempt`` reports back. Edits are in the workspace, not here."""

    error: str | None = None
    """An infrastructure error (the model could not load or crashed) with its reason.
    The task ends with this error; the tests do not run and it never counts as a fail.
    Never for what the model did: a context overflow or a generation timeout is a
    ``stop_reason``, and the tests decide."""
    stop_reason: str = ""
    """Why the attempt ended: ``finish``, ``max_turns``, ``time_limit``, ``context_exceeded``,
    ``request_timeout``, ``format_errors``, ``no_op``, ..."""
    timed_out: bool = False
    """The per-try agent time limit expired; the tests still run on what was written."""
    usage: AgentUsage = Field(default_factory=AgentUsage)
    """Tokens, tool calls and tool errors of this attempt."""


@runtime_checkable
class TaskSession(Protocol):
    """One task's conversation with the agent, across all its tries."""

    def attempt(self, prompt: str, try_index: int, deadline: float | None) -> AttemptReport:
        """Work on the task: read ``prompt``, edit files in the workspace, return a report.

        ``try_index`` is 1-based; try 2+ continues the same conversation. ``deadline`` is a
        ``time.monotonic()`` value after which the attempt should stop (None: no limit).
        Exceptions are caught by the harness and recorded as infrastructure errors.
        """
        ...

    def close(self) -> None:
        """Release what the session holds (conversation, logs). Called exactly once."""
        ...


@runtime_checkable
class Solver(Protocol):
    """An agent for a whole run. Created once; ``start`` is called once per task."""

    name: str
    """The agent spec as the user gave it (``oracle``, ``gguf/NAME``...)."""

    def start(self, exercise: Exercise, workspace: Path) -> TaskSession:
        """Open a session for ``exercise`` whose files are in ``workspace``.

        The agent must not write ``localcode.harness.workspace.protected_paths(exercise)``.
        """
        ...

    def info(self) -> dict[str, Any]:
        """Facts for ``run.json`` (``RunInfo.agent_info``): model file, sha256, config..."""
        ...

    def close(self) -> None:
        """Release the model. Called once at the end of the run."""
        ...


class TestOutcomeLike(Protocol):
    """The fields of a test run's outcome the harness reads."""

    passed: bool
    timed_out: bool
    exit_code: int | None
    duration_s: float
    output: str
    command: Any


class TestRunnerLike(Protocol):
    """Runs an exercise's tests on a workspace (``localcode.harness.runner.TestRunner``)."""

    def run(self, exercise: Exercise, workspace: Path) -> TestOutcomeLike: ...


# --------------------------------------------------------------------------- built-in solvers
class _NoopSession:
    def __init__(self, stop_reason: str) -> None:
        self.stop_reason = stop_reason

    def attempt(self, prompt: str, try_index: int, deadline: float | None) -> AttemptReport:
        return AttemptReport(stop_reason=self.stop_reason)

    def close(self) -> None:
        pass


class NoneSolver:
    """The ``none`` agent: changes nothing. Every exercise should fail."""

    name = "none"

    def start(self, exercise: Exercise, workspace: Path) -> TaskSession:
        return _NoopSession("no_op")

    def info(self) -> dict[str, Any]:
        return {"kind": "builtin", "description": "changes nothing"}

    def close(self) -> None:
        pass


class _OracleSession:
    def __init__(self, exercise: Exercise, workspace: Path) -> None:
        self.exercise = exercise
        self.workspace = workspace

    def attempt(self, prompt: str, try_index: int, deadline: float | None) -> AttemptReport:
        from localcode.harness.oracle import reference_files

        usage = AgentUsage()
        for dest, src in reference_files(self.exercise).items():
            usage.tool_calls["write_file"] = usage.tool_calls.get("write_file", 0) + 1
            if write_refusal(self.exercise, dest) is not None:
                usage.tool_errors["write_file"] = usage.tool_errors.get("write_file", 0) + 1
                continue
            target = self.workspace / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
        return AttemptReport(stop_reason="finish", usage=usage)

    def close(self) -> None:
        pass


class OracleSolver:
    """The ``oracle`` agent: writes the reference solution (``.meta`` example files).

    It writes into the workspace folder exactly where a model's tools would, and refuses
    protected paths the same way, so a pass proves the workspace, the test copy and the
    sandbox, not a shortcut. Its test runs use the reference build files of ``.meta``
    where an exercise ships them (``reference_build``; Rust's ``Cargo-example.toml``).
    """

    name = "oracle"
    reference_build = True

    def start(self, exercise: Exercise, workspace: Path) -> TaskSession:
        return _OracleSession(exercise, workspace)

    def info(self) -> dict[str, Any]:
        return {"kind": "builtin", "description": "writes the reference solution from .meta"}

    def close(self) -> None:
        pass


def agent_overrides(agent_args: str | None = None, url: str | None = None,
                    model_path: str | None = None) -> dict[str, Any]:
    """``--agent-args``, ``--url`` and ``--model`` as one dict of config overrides (dotted keys)."""
    from localcode.config import parse_agent_args

    overrides: dict[str, Any] = parse_agent_args(agent_args) if agent_args else {}
    if url:
        overrides["url"] = url
    if model_path:
        overrides["server_config.model_path"] = model_path
    return overrides


def check_agent(agent_spec: str, overrides: dict[str, Any] | None = None) -> None:
    """Validate ``--agent`` and its overrides without loading anything. Raises ``ConfigError``."""
    if agent_spec in ("oracle", "none"):
        if overrides:
            raise ConfigError(f"--agent {agent_spec} takes no --agent-args, --url or --model")
        return
    from localcode.config import merge_overrides, resolve_agent

    config = resolve_agent(agent_spec)
    if overrides:
        merge_overrides(config, overrides)


def make_solver(agent_spec: str, *, overrides: dict[str, Any] | None = None, seed: int | None = None,
                verbose: bool = False) -> Solver:
    """The solver for ``--agent``: ``oracle``, ``none``, or a model agent (``gguf/NAME``, ``mlx/NAME``, a path).

    A model agent's config is resolved and validated here, with ``overrides`` applied
    (defaults < agent JSON < ``--agent-args`` < flags) and ``seed`` as the sampler seed
    when the config sets none; its model is loaded once, here.
    Raises ``ConfigError`` for a bad spec or config, and the backend's load errors.
    """
    if agent_spec == "oracle":
        return OracleSolver()
    if agent_spec == "none":
        return NoneSolver()
    from localcode.harness.agent_solver import ModelSolver

    return ModelSolver.load(agent_spec, agent_config(agent_spec, overrides=overrides, seed=seed), verbose=verbose)


def agent_config(agent_spec: str, *, overrides: dict[str, Any] | None = None, seed: int | None = None) -> AgentConfig:
    """The validated ``AgentConfig`` of a model agent, as ``make_solver`` loads it (nothing is loaded here):
    the resolved config with ``overrides`` applied and ``seed`` when the config sets none.
    ``bench --ray`` resolves it once on the driver and sends it to every worker.
    Raises ``ConfigError``.
    """
    from localcode.config import merge_overrides, resolve_agent

    config = resolve_agent(agent_spec)
    if overrides:
        config = merge_overrides(config, overrides)
    if config.seed is None and seed is not None:
        config = merge_overrides(config, {"seed": seed}, source="--seed")
    return config


def agent_config_hash(agent_spec: str, overrides: dict[str, Any] | None = None, seed: int | None = None) -> str | None:
    """sha256 of the effective config of a model agent (overrides and seed applied, as
    ``make_solver`` builds it), or None for ``oracle`` and ``none``. Loads nothing.
    Part of a run's identity: a rerun with another config does not continue the run.
    Raises ``ConfigError``."""
    if agent_spec in ("oracle", "none"):
        return None
    import hashlib
    import json

    from localcode.config import merge_overrides, resolve_agent

    config = resolve_agent(agent_spec)
    if overrides:
        config = merge_overrides(config, overrides)
    if config.seed is None and seed is not None:
        config = merge_overrides(config, {"seed": seed}, source="--seed")
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- prompts
def _file_list(exercise: Exercise) -> str:
    # Aider lists the file names (not paths) of the solution files, less its ignore_files
    # (CMakeLists.txt, Cargo.toml, test and example files).
    ignored = {*AIDER_IGNORED_FILES, *exercise.test_files, *exercise.example_files}
    return " ".join(Path(f).name for f in exercise.solution_files if f not in ignored)


@functools.cache
def _environment(folder: str) -> Any:
    # One environment per prompts folder: it keeps the compiled templates (compiling one
    # per task was a measurable part of the harness overhead, benchmarks/bench_overhead.py).
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )


def _template(name: str) -> Any:
    from localcode import paths

    return _environment(str(paths.package_dir("prompts"))).get_template(name)


def first_prompt(exercise: Exercise) -> str:
    """Try 1: the instructions plus Aider's addendum (which files, keep names, stdlib only)."""
    return _template("bench_try1.md").render(instructions=exercise.instructions, file_list=_file_list(exercise))


def retry_prompt(exercise: Exercise, test_output: str) -> str:
    """Try 2+: the whole cleaned test output and "the tests are correct" (Aider's
    ``prompts.test_failures``), joined as Aider joins them."""
    return _template("bench_retry.md").render(test_output="\n".join(test_output.splitlines()),
                                              file_list=_file_list(exercise))


# --------------------------------------------------------------------------- the run
class BenchOptions(BaseModel):
    """How a run treats each task."""

    tries: int = 2
    """Tries per task (try 2+ sees the failing test output)."""
    jobs: int = 1
    """Test runs in flight at once."""
    visible_tests: bool = False
    """Show the tests to the agent (read-only); default hides them (Aider's protocol)."""
    agent_timeout_s: float | None = None
    """Per-try agent time limit; on expiry the tests still run on what was written."""


class ProgressSink(Protocol):
    """Receives progress events (the CLI draws a rich progress bar from them)."""

    def task_started(self, task_id: str, try_index: int) -> None: ...

    def task_finished(self, result: TaskResult) -> None: ...


@dataclass
class _Task:
    exercise: Exercise
    workspace: Path
    session: TaskSession | None
    result: TaskResult
    started: float
    next_try: int = 1
    prompt: str = ""


def _record_details(tr: TryResult, outcome: TestOutcomeLike) -> None:
    """Copy what a real ``TestOutcome`` adds (report, failure, file changes) into ``tr``."""
    from localcode.harness.runner import count_aider_errors

    report = getattr(outcome, "report", None)
    tr.test_report = report.model_copy() if report is not None else None
    tr.failure = str(getattr(outcome, "failure", "") or ("" if tr.passed else "failed"))
    files = getattr(outcome, "files", None)
    if files is not None:
        tr.files_created, tr.files_changed = list(files.created), list(files.changed)
        tr.files_deleted, tr.files_not_carried = list(files.deleted), list(files.not_carried)
    if not tr.passed and not tr.timed_out:
        tr.syntax_errors, tr.indentation_errors = count_aider_errors(outcome.output or "")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class BenchRunner:
    """Runs a list of exercises through a solver and a test runner, writing results.

    ``runner`` runs the tests of one workspace (it copies the listed test files in fresh;
    this class also restores every other test-support file beforehand). Workspaces go
    under ``store.workspaces_dir``, which must be the sandbox root.
    """

    def __init__(
        self,
        *,
        solver: Solver,
        runner: TestRunnerLike,
        store: ResultStore,
        options: BenchOptions,
        run_info: RunInfo | None = None,
        progress: ProgressSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.solver = solver
        self.runner = runner
        self.store = store
        self.options = options
        self.run_info = run_info
        self.progress = progress
        self.clock = clock
        if getattr(solver, "reference_build", False) and hasattr(runner, "reference_build"):
            runner.reference_build = True  # type: ignore[attr-defined]  # the oracle's reference manifests

    # -- public ----------------------------------------------------------------------
    def run(self, exercises: Iterable[Exercise]) -> list[TaskResult]:
        """Solve and test every exercise; return the results written (in finishing order).

        Raises KeyboardInterrupt after cleaning up when interrupted.
        """
        pending: deque[Exercise] = deque(exercises)
        ready: deque[_Task] = deque()
        running: dict[Future[Any], _Task] = {}
        done: list[TaskResult] = []
        open_tasks: list[_Task] = []
        max_queued = max(1, self.options.jobs) * 2
        pool = ThreadPoolExecutor(max_workers=max(1, self.options.jobs), thread_name_prefix="localcode-test")
        try:
            while pending or ready or running:
                self._collect(running, ready, done, open_tasks, block=False)
                if ready:
                    self._attempt(ready.popleft(), pool, running, done, open_tasks)
                elif pending and len(running) < max_queued:
                    task = self._open(pending.popleft(), done)
                    if task is not None:
                        open_tasks.append(task)
                        self._attempt(task, pool, running, done, open_tasks)
                elif running:
                    self._collect(running, ready, done, open_tasks, block=True)
        except BaseException:
            for fut in running:
                fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            for task in open_tasks:
                self._close_session(task)
            raise
        pool.shutdown(wait=True)
        return done

    # -- steps -----------------------------------------------------------------------
    def _open(self, exercise: Exercise, done: list[TaskResult]) -> _Task | None:
        result = TaskResult(
            id=exercise.id, language=exercise.language, name=exercise.name,
            agent=self.solver.name, max_tries=self.options.tries, started_at=_now(),
        )
        task = _Task(exercise=exercise, workspace=workspace_dir(self.store.workspaces_dir, exercise),
                     session=None, result=result, started=self.clock())
        try:
            create_workspace(exercise, task.workspace, visible_tests=self.options.visible_tests)
            task.session = self.solver.start(exercise, task.workspace)
        except Exception as e:  # infrastructure: the task ends with an error, the run goes on
            self._finish(task, done, None, error=f"could not start the task: {_describe(e)}")
            return None
        task.prompt = first_prompt(exercise)
        return task

    def _attempt(self, task: _Task, pool: ThreadPoolExecutor, running: dict[Future[Any], _Task],
                 done: list[TaskResult], open_tasks: list[_Task]) -> None:
        index = task.next_try
        if self.progress:
            self.progress.task_started(task.exercise.id, index)
        deadline = self.clock() + self.options.agent_timeout_s if self.options.agent_timeout_s else None
        t0 = self.clock()
        try:
            assert task.session is not None
            report = task.session.attempt(task.prompt, index, deadline)
        except Exception as e:
            tr = TryResult(index=index, agent_duration_s=self.clock() - t0, error=f"agent failed: {_describe(e)}")
            task.result.tries.append(tr)
            self._finish(task, done, open_tasks, error=tr.error)
            return
        tr = TryResult(
            index=index, agent_duration_s=self.clock() - t0, stop_reason=report.stop_reason,
            agent_timed_out=report.timed_out, usage=report.usage,
        )
        task.result.tries.append(tr)
        if report.error:
            tr.error = report.error
            self._finish(task, done, open_tasks, error=report.error)
            return
        running[pool.submit(self.runner.run, task.exercise, task.workspace)] = task

    def _collect(self, running: dict[Future[Any], _Task], ready: deque[_Task], done: list[TaskResult],
                 open_tasks: list[_Task], block: bool) -> None:
        if not running:
            return
        finished, _ = wait(list(running), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in finished:
            task = running.pop(fut)
            tr = task.result.tries[-1]
            try:
                outcome = fut.result()
            except Exception as e:
                tr.error = f"test run failed: {_describe(e)}"
                self._finish(task, done, open_tasks, error=tr.error)
                continue
            tr.passed = bool(outcome.passed)
            tr.timed_out = bool(outcome.timed_out)
            tr.exit_code = outcome.exit_code
            tr.test_duration_s = float(outcome.duration_s)
            tr.test_output = cap_text(outcome.output or "")
            cmd = outcome.command
            tr.test_command = " ".join(cmd) if isinstance(cmd, (list, tuple)) else str(cmd or "")
            _record_details(tr, outcome)
            if tr.passed or tr.index >= self.options.tries:
                self._finish(task, done, open_tasks, error=None)
            else:
                task.next_try = tr.index + 1
                # Aider sends "Tests timed out!" instead of the output of a run that timed out.
                output = AIDER_TIMEOUT_OUTPUT if tr.timed_out else (outcome.output or "")
                task.prompt = retry_prompt(task.exercise, output)
                ready.append(task)

    def _close_session(self, task: _Task) -> None:
        if task.session is not None:
            session, task.session = task.session, None
            try:
                session.close()
            except Exception:  # closing must not hide the outcome that is being recorded, nor fail silently
                logging.getLogger(__name__).warning("%s: closing the agent session failed", task.exercise.id,
                                                    exc_info=True)

    def _finish(self, task: _Task, done: list[TaskResult], open_tasks: list[_Task] | None,
                error: str | None) -> None:
        self._close_session(task)
        if open_tasks is not None and task in open_tasks:
            open_tasks.remove(task)
        task.result.error = error
        task.result.finished_at = _now()
        task.result.duration_s = self.clock() - task.started
        self.store.write(task.result, self.run_info)
        done.append(task.result)
        if self.progress:
            self.progress.task_finished(task.result)
