"""Benchmark results: the one result schema, and the run directory that holds it.

A run directory looks like::

    <run_dir>/
        run.json                          RunInfo: everything needed to reproduce the run
        stats.json, stats.yaml            statistics, computed only from the result files
        <lang>/<name>/result.json         TaskResult, one per finished task (written atomically)
        <lang>/<name>/try-N.*             the agent's logs per try
        <lang>/exercises/practice/<name>/.aider.results.json
                                          the same task in Aider's format, where Aider's own
                                          ``benchmark.py --stats`` looks for it
        workspaces/<lang>/<name>/         the agent's workspace (the sandbox root)

``TaskResult`` is THE result schema: statistics, reports and resume read nothing else.
Every file is written to a temporary file in the same folder, fsynced, then renamed over
the target (``os.replace``), so a crash leaves either the old file or the new one.

The schema (``result.json``; every field has a docstring below):

- ``TaskResult``: ``id``, ``language``, ``name``, ``agent``, ``max_tries``, ``tries``,
  ``error`` (an infrastructure error: the task is excluded from every rate and listed),
  ``started_at``, ``finished_at``, ``duration_s``.
- ``TryResult`` (one per try): ``index``, ``passed`` (exit 0 *and* the framework's report
  shows at least one test run and none failed), ``failure`` (why it did not pass),
  ``test_report`` (``TestReport``: the counts the framework printed), ``timed_out``,
  ``exit_code``, ``test_duration_s``, ``agent_duration_s`` (model time), ``test_output``
  (what try N+1 sees), ``test_command``, ``stop_reason`` (why the agent stopped:
  ``finished``, ``max_turns``, ``context_exceeded``, ``request_timeout``,
  ``format_errors``, ``time_limit``, ...), ``agent_timed_out``, ``error``, ``usage``,
  ``files_created`` / ``files_changed`` / ``files_deleted`` (the workspace against the
  exercise's starting files), ``files_not_carried`` (created or changed files the test
  run did not use), ``syntax_errors`` / ``indentation_errors`` (Aider's counts of
  output lines starting ``SyntaxError`` / ``IndentationError`` in a failed run).

Failures the model causes (context overflow, a generation past ``request_timeout``,
malformed-output exhaustion, max turns, the agent time limit) are failed tries: the tests
still run on what was written. Only faults outside the model's control (the model could
not load or crashed, the sandbox failed, a harness bug) set ``error``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RESULT_FILE = "result.json"
AIDER_RESULT_FILE = ".aider.results.json"
RUN_FILE = "run.json"
STATS_FILE = "stats.json"
STATS_YAML_FILE = "stats.yaml"
WORKSPACES_DIR = "workspaces"
TEST_OUTPUT_CAP = 200_000
"""Characters of test output kept per try in result.json (head and tail are kept): above
the cap the runner applies (``localcode.harness.runner.DEFAULT_OUTPUT_CHARS``), so the file
holds exactly what the next try saw."""
AIDER_TASK_DIR = "{language}/exercises/practice/{name}"
"""Where ``.aider.results.json`` goes in a run folder: the layout Aider's ``--stats`` globs."""

SCHEMA_VERSION = 1


def cap_text(text: str, limit: int = TEST_OUTPUT_CAP) -> str:
    """``text`` shortened to about ``limit`` characters, keeping its head and tail."""
    if len(text) <= limit:
        return text
    half = limit // 2
    dropped = len(text) - 2 * half
    return f"{text[:half]}\n... [{dropped} characters cut] ...\n{text[-half:]}"


def atomic_write_text(path: Path, text: str, *, sync_dir: bool = True) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half.

    ``sync_dir=False`` skips the fsync of the folder, for a caller that writes another file
    into the same folder next and syncs it then (one folder sync covers both renames).
    Raises OSError when the folder cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; results are ordinary user files.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # KeyboardInterrupt included: never leave a stray temp file behind.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if not sync_dir:
        return
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class _Model(BaseModel):
    # Old result files with fields a newer version dropped must still load.
    model_config = ConfigDict(extra="ignore")


class AgentUsage(_Model):
    """What the agent consumed during one try (zeros for agents without a model)."""

    model_calls: int = 0
    """Chat requests sent to the model."""
    prompt_tokens: int = 0
    """Prompt tokens over all model calls (including cached ones)."""
    cached_tokens: int = 0
    """Prompt tokens served from the prompt cache (KV reuse)."""
    completion_tokens: int = 0
    """Generated tokens over all model calls."""
    prompt_ms: float = 0.0
    """Milliseconds spent in prompt processing (prefill)."""
    decode_ms: float = 0.0
    """Milliseconds spent generating tokens (decode)."""
    prompt_eval_tokens: int = 0
    """Prompt tokens actually evaluated (not served from the cache), as the backend timed them."""
    decode_tokens: int = 0
    """Tokens generated, as the backend timed them (decode tokens/s = decode_tokens / decode_ms)."""
    malformed_responses: int = 0
    """Responses whose tool calls could not be parsed."""
    repairs: int = 0
    """Tool calls whose arguments needed repair or renaming before they ran."""
    text_calls: int = 0
    """Tool calls written as JSON text, not the family's call format, that the parser repaired."""
    repetition_stops: int = 0
    """Responses cut off by the repetition guard (a loop, e.g. one line written until max_tokens)."""
    exhausted_context_windows: int = 0
    """Times the conversation did not fit the context window."""
    tool_calls: dict[str, int] = Field(default_factory=dict)
    """Tool calls per tool name."""
    tool_errors: dict[str, int] = Field(default_factory=dict)
    """Tool calls per tool name that returned an error to the model."""

    def __add__(self, other: AgentUsage) -> AgentUsage:
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            a, b = getattr(self, name), getattr(other, name)
            if isinstance(a, dict):
                merged = dict(a)
                for k, v in b.items():
                    merged[k] = merged.get(k, 0) + v
                out[name] = merged
            else:
                out[name] = a + b
        return AgentUsage(**out)


class TestReport(_Model):
    """What the test framework itself reported about one run (its summary or events)."""

    __test__ = False  # not a pytest test class

    framework: str
    """Whose report: ``pytest``, ``cargo``, ``go-json``, ``jest``, ``junit-console``, ``catch2``."""
    passed: int = 0
    """Tests that passed."""
    failed: int = 0
    """Tests that failed."""
    errors: int = 0
    """Errors outside single tests (collection or suite errors, failed containers or packages)."""
    skipped: int = 0
    """Tests skipped or ignored."""

    @property
    def ran(self) -> int:
        """Tests that ran (passed or failed)."""
        return self.passed + self.failed


class TryResult(_Model):
    """One try of a task: the agent's attempt, then the test run on what it wrote."""

    index: int
    """1-based try number."""
    passed: bool = False
    """Exit status 0 and the framework's report shows at least one test run and none failed.
    False when they failed, timed out, gave no report or never ran (see ``failure``, ``error``)."""
    failure: str = ""
    """Why the try did not pass (``exit code 1``, ``timed out``, ``exit code 0 but no test
    report``, ``0 tests ran``...); empty when it passed or never ran."""
    test_report: TestReport | None = None
    """The framework's own counts; None when its output held no report."""
    timed_out: bool = False
    """The test run hit the test timeout."""
    exit_code: int | None = None
    """Exit code of the test command; None when it did not run to an exit."""
    test_duration_s: float = 0.0
    """Wall seconds of the test run (copying tests in, build and run)."""
    agent_duration_s: float = 0.0
    """Wall seconds the agent (the model and its tools) spent on this try: Aider's ``duration``."""
    test_output: str = ""
    """Cleaned test output, capped to ``TEST_OUTPUT_CAP`` characters."""
    test_command: str = ""
    """The test command as run, for the record."""
    stop_reason: str = ""
    """Why the agent ended its attempt (e.g. ``finish``, ``max_turns``, ``time_limit``)."""
    agent_timed_out: bool = False
    """The per-try agent time limit expired; the tests still ran on what was written."""
    error: str | None = None
    """An infrastructure error during this try (sandbox, solver crash); never a test failure."""
    usage: AgentUsage = Field(default_factory=AgentUsage)
    """Tokens, tool calls and errors of the agent during this try."""
    files_created: list[str] = Field(default_factory=list)
    """Workspace files that the exercise did not start with (after this try)."""
    files_changed: list[str] = Field(default_factory=list)
    """Starting files whose content differs from the exercise's (after this try)."""
    files_deleted: list[str] = Field(default_factory=list)
    """Starting files that are gone (the test run used the exercise's own)."""
    files_not_carried: list[str] = Field(default_factory=list)
    """Created or changed files that the test run did not use (build or test configuration,
    files outside the solution's source folders): see ``Language.carry``."""
    syntax_errors: int = 0
    """Lines of this failed run's output that start with ``SyntaxError`` (Aider's count)."""
    indentation_errors: int = 0
    """Lines of this failed run's output that start with ``IndentationError`` (Aider's count)."""


class TaskResult(_Model):
    """The result of one task (exercise) of a run. The only result schema.

    ``tries`` holds the tries that ran the tests (or ended in an infrastructure error).
    A task that passed on try 1 has one entry. ``error`` is set when the task ended in
    an infrastructure error (a fault outside the model's control): such a task is neither
    a pass nor a fail, it is listed under the statistics and rerun by ``--retry-errors``.
    """

    schema_version: int = SCHEMA_VERSION
    """Version of this schema."""
    id: str
    """``language/name``."""
    language: str
    """Exercise language (cpp, go, java, javascript, python, rust)."""
    name: str
    """Exercise name (the folder name)."""
    agent: str
    """The agent spec of the run (``oracle``, ``gguf/NAME``, ...)."""
    max_tries: int
    """Tries allowed for this task."""
    tries: list[TryResult] = Field(default_factory=list)
    """Tries in order."""
    error: str | None = None
    """Infrastructure error that ended the task, with its reason; None when the task ran to an outcome."""
    started_at: str = ""
    """UTC ISO-8601 time the task started."""
    finished_at: str = ""
    """UTC ISO-8601 time the task ended."""
    duration_s: float = 0.0
    """Wall seconds from start to end, including waiting for a test slot."""

    @property
    def outcomes(self) -> list[bool]:
        """Pass/fail per try that ran its tests (Aider's ``tests_outcomes``)."""
        return [t.passed for t in self.tries if t.error is None]

    @property
    def passed(self) -> bool:
        """The tests passed on some try."""
        return any(t.passed for t in self.tries)

    @property
    def passed_on_try(self) -> int | None:
        """The 1-based try that passed, or None."""
        for t in self.tries:
            if t.passed:
                return t.index
        return None

    @property
    def finished(self) -> bool:
        """The task ran to an outcome (no infrastructure error)."""
        return self.error is None

    @property
    def usage(self) -> AgentUsage:
        """Usage summed over all tries."""
        total = AgentUsage()
        for t in self.tries:
            total = total + t.usage
        return total

    @property
    def agent_duration_s(self) -> float:
        """Agent seconds over all tries."""
        return sum(t.agent_duration_s for t in self.tries)

    @property
    def test_duration_s(self) -> float:
        """Test seconds over all tries."""
        return sum(t.test_duration_s for t in self.tries)

    @property
    def test_timeouts(self) -> int:
        """Test runs that timed out."""
        return sum(1 for t in self.tries if t.timed_out)

    @property
    def syntax_errors(self) -> int:
        """Aider's ``syntax_errors`` over all tries."""
        return sum(t.syntax_errors for t in self.tries)

    @property
    def indentation_errors(self) -> int:
        """Aider's ``indentation_errors`` over all tries."""
        return sum(t.indentation_errors for t in self.tries)

    def to_aider(self, run_info: RunInfo | None, testdir: Path) -> dict[str, Any]:
        """This result in the format of Aider's ``.aider.results.json``.

        ``duration`` is the agent's (model) time, as Aider measures it; ``syntax_errors`` and
        ``indentation_errors`` are counted from the failed test outputs as Aider does. Fields
        with no meaning here (cost, lazy_comments, user asks, chat_hashes) are zero so
        Aider's tools can read the file.
        """
        usage = self.usage
        return {
            "testdir": str(testdir),
            "testcase": self.name,
            "model": run_info.model if run_info else self.agent,
            "edit_format": run_info.edit_format if run_info else "tools",
            "tests_outcomes": self.outcomes,
            "cost": 0.0,
            "duration": self.agent_duration_s,
            "test_timeouts": self.test_timeouts,
            "commit_hash": (run_info.localcode_commit or "") if run_info else "",
            "num_error_outputs": sum(usage.tool_errors.values()),
            "num_user_asks": 0,
            "num_exhausted_context_windows": usage.exhausted_context_windows,
            "num_malformed_responses": usage.malformed_responses,
            "syntax_errors": self.syntax_errors,
            "indentation_errors": self.indentation_errors,
            "lazy_comments": 0,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "thinking_tokens": 0,
            "chat_hashes": [],
        }


class DatasetInfo(_Model):
    """Which dataset a run used."""

    path: str
    """Absolute path of the dataset folder."""
    commit: str | None = None
    """Git commit when the dataset is a git checkout."""
    content_hash: str | None = None
    """sha256 over sorted relative paths and bytes, when it is not a git checkout."""


class RunInfo(_Model):
    """``run.json``: everything needed to reproduce a run.

    Fields the model-agent integration fills (model file, sampler, effective config) go
    into ``agent_info``, which this schema does not constrain.
    """

    schema_version: int = SCHEMA_VERSION
    """Version of this schema."""
    run_name: str
    """Folder name of the run."""
    created_at: str
    """UTC ISO-8601 time the run was created."""
    command_line: list[str]
    """argv of the command that created (or last resumed) the run."""
    localcode_version: str
    """Package version."""
    localcode_commit: str | None = None
    """Git commit of localcode when run from a checkout (``+dirty`` when it has changes)."""
    agent: str
    """Agent spec as given (``oracle``, ``none``, ``gguf/NAME``, a path)."""
    agent_overrides: dict[str, Any] = Field(default_factory=dict)
    """``--agent-args`` (and ``--url`` / ``--model``) as given: part of what makes a run the same run."""
    model: str = ""
    """Model name for reports (Aider's ``model``); the agent spec for built-in agents."""
    edit_format: str = "tools"
    """Aider's ``edit_format``: localcode edits through tool calls."""
    agent_info: dict[str, Any] = Field(default_factory=dict)
    """Agent-specific facts: model file, sha256, quantization, effective config, sampler, seed."""
    agent_config_sha256: str | None = None
    """sha256 of the effective agent config (JSON, overrides and seed applied); None for
    the built-in agents. Part of the experiment's identity (``identity``)."""
    model_sha256: str | None = None
    """sha256 of the model file, when the backend has one. Part of the experiment's identity."""
    dataset: DatasetInfo
    """The dataset and its identity."""
    sandbox: str
    """``docker`` or ``local``."""
    image_id: str | None = None
    """Docker image id of the test image (docker sandbox)."""
    visible_tests: bool = False
    """Protocol: False = tests hidden from the agent (Aider's protocol), True = visible read-only."""
    tries: int
    """Tries per task."""
    test_timeout_s: float
    """Timeout of one test run."""
    agent_timeout_s: float | None = None
    """Per-try agent time limit, if any."""
    jobs: int = 1
    """Test runs in flight at once."""
    selection: dict[str, Any] = Field(default_factory=dict)
    """The selection flags as given (keywords, languages, all, full, n, seed)."""
    task_ids: list[str] = Field(default_factory=list)
    """The selected tasks, in run order."""
    python: str = ""
    """Python version."""
    platform: str = ""
    """OS and version."""
    machine: str = ""
    """CPU architecture, processor and logical CPU count."""
    peak_memory_mb: float | None = None
    """Peak resident memory of the localcode process (model included) over the run's sessions."""

    def resume_key(self) -> dict[str, Any]:
        """What was asked (agent, selection, protocol): a rerun with the same key continues
        this run, provided its ``identity`` matches too."""
        return {
            "agent": self.agent,
            "agent_overrides": self.agent_overrides,
            "dataset": self.dataset.path,
            "sandbox": self.sandbox,
            "visible_tests": self.visible_tests,
            "tries": self.tries,
            "test_timeout_s": self.test_timeout_s,
            "task_ids": sorted(self.task_ids),
        }

    def identity(self) -> dict[str, Any]:
        """What the experiment was run with: the effective agent config, the model file,
        the dataset's content, the test image and localcode's version. A run continues
        only when a rerun's identity is the same (fields not known yet are skipped)."""
        return {
            "agent config": self.agent_config_sha256,
            "model sha256": self.model_sha256,
            "dataset": self.dataset.commit or self.dataset.content_hash,
            "test image": self.image_id,
            "localcode version": self.localcode_version,
        }

    def identity_changes(self, other: RunInfo) -> list[str]:
        """``what: old -> new`` for each identity fact that differs between this run and
        ``other`` (a rerun); facts one of them does not know (None: not measured yet, or a
        run killed during start-up) are not compared."""
        mine, theirs = self.identity(), other.identity()
        changes = []
        for what, new in theirs.items():
            old = mine.get(what)
            if new is not None and old is not None and old != new:
                changes.append(f"{what}: {_short(old)} -> {_short(new)}")
        return changes


def _short(value: Any) -> str:
    text = "none" if value is None else str(value)
    # sha256 hex and image ids read better shortened; the full values are in run.json.
    return text[:19] + "..." if len(text) > 24 else text


class ResultStore:
    """One run directory: ``run.json``, one ``result.json`` per task, ``stats.json``.

    Writes are atomic; reads skip (and report) result files that do not parse, so a
    damaged file makes its task run again instead of breaking the run.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    # -- paths ---------------------------------------------------------------------
    def task_dir(self, task_id: str) -> Path:
        """Folder of one task's result files."""
        language, name = task_id.split("/", 1)
        return self.run_dir / language / name

    def result_path(self, task_id: str) -> Path:
        return self.task_dir(task_id) / RESULT_FILE

    def aider_dir(self, task_id: str) -> Path:
        """Folder of the task's ``.aider.results.json`` (``<lang>/exercises/practice/<name>``)."""
        language, name = task_id.split("/", 1)
        return self.run_dir / AIDER_TASK_DIR.format(language=language, name=name)

    @property
    def workspaces_dir(self) -> Path:
        """Root of the agent workspaces (bind-mounted into the sandbox)."""
        return self.run_dir / WORKSPACES_DIR

    # -- run.json ------------------------------------------------------------------
    def write_run_info(self, info: RunInfo) -> None:
        atomic_write_text(self.run_dir / RUN_FILE, info.model_dump_json(indent=2) + "\n")

    def read_run_info(self) -> RunInfo | None:
        """The run's ``run.json``, or None when absent or unreadable."""
        path = self.run_dir / RUN_FILE
        try:
            return RunInfo.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError):
            return None

    # -- results -------------------------------------------------------------------
    def write(self, result: TaskResult, run_info: RunInfo | None = None) -> None:
        """Write ``result.json`` and ``.aider.results.json`` for one task, atomically each.

        A task that ended in an infrastructure error gets no ``.aider.results.json`` (an
        older one is removed), only its folder: Aider's statistics then count it in
        ``total_tests`` but not in ``completed_tests``, exactly as ``stats.json`` does.
        ``result.json`` is written last: its presence is what marks the task finished.
        """
        folder = self.task_dir(result.id)
        aider_dir = self.aider_dir(result.id)
        if result.finished:
            aider = result.to_aider(run_info, aider_dir)
            atomic_write_text(aider_dir / AIDER_RESULT_FILE, json.dumps(aider, indent=4) + "\n")
        else:
            aider_dir.mkdir(parents=True, exist_ok=True)
            (aider_dir / AIDER_RESULT_FILE).unlink(missing_ok=True)
        atomic_write_text(folder / RESULT_FILE, result.model_dump_json(indent=2) + "\n")

    def read(self, task_id: str) -> TaskResult | None:
        """The result of one task, or None when it has none (or it does not parse)."""
        path = self.result_path(task_id)
        try:
            return TaskResult.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError):
            return None

    def results(self) -> Iterator[TaskResult]:
        """Every readable result of the run, sorted by task id."""
        for path in sorted(self.run_dir.glob(f"*/*/{RESULT_FILE}")):
            if path.parent.parent.name == WORKSPACES_DIR:
                continue
            try:
                yield TaskResult.model_validate_json(path.read_text(encoding="utf-8"))
            except (OSError, ValidationError, ValueError):
                continue

    def finished_ids(self) -> set[str]:
        """Tasks that ran to an outcome (pass or fail): a resumed run skips these."""
        return {r.id for r in self.results() if r.finished}

    def errored_ids(self) -> set[str]:
        """Tasks whose result holds an infrastructure error: ``--retry-errors`` reruns these."""
        return {r.id for r in self.results() if not r.finished}

    def remove_temp_files(self) -> list[Path]:
        """Delete the temporary files of writes that a killed process never finished
        (``.<name>.*.tmp`` beside ``run.json`` and in the task folders); returns them.

        Only for a run no other process is writing: call it before resuming.
        """
        removed = []
        for pattern in (".*.tmp", "*/*/.*.tmp", "*/exercises/practice/*/.*.tmp"):
            for path in self.run_dir.glob(pattern):
                if path.parent.parent.name == WORKSPACES_DIR or not path.is_file():
                    continue
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def write_stats(self, stats: dict[str, Any]) -> None:
        """``stats.json`` and Aider's leaderboard-entry ``stats.yaml``."""
        from localcode.harness.stats import aider_yaml

        atomic_write_text(self.run_dir / STATS_FILE, json.dumps(stats, indent=2) + "\n")
        atomic_write_text(self.run_dir / STATS_YAML_FILE, aider_yaml(stats))
