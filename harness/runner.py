"""Running an exercise's tests in a sandbox and deciding, from the framework's own word, whether they passed.

**What runs.** Every test run gets a pristine copy of the exercise: every file of the
dataset's exercise folder except ``.meta/`` (tests, support files, build and test
configuration), with the language's test-file rewrites applied (``xtest(`` → ``test(``,
``@Disabled`` removed). Onto it only the workspace files the language carries are copied
(``localcode.harness.workspace.is_carried``: the solution's source files, never a
``conftest.py``, ``Cargo.toml``, ``jest.config.js``, ``*_test.go``...). The copy lives under
``<sandbox root>/.testruns/`` for the run and is deleted afterwards; the workspace itself is
never changed by a test run.

**What passes.** Exit status 0 *and* a report of the framework that shows at least one test
run and none failed or errored (``parse_report``): pytest's final summary line, the sum of
``cargo test``'s ``test result:`` lines, ``go test -json`` events, jest's ``Tests:`` and
``Test Suites:`` lines, the JUnit console launcher's summary, Catch's final line. A run that
exits 0 without such a report fails, with the reason in ``TestOutcome.failure``.

Code that runs inside the test process can still forge any of these reports (print a fake
summary and exit, patch the framework); no harness that runs the tests in the solution's
process can prevent that, Aider's neither. What this closes is the cheap way: files beside
the solution that reconfigure the test run, and early exits that skip the tests.

**What the model sees.** The output is cleaned as Aider's ``cleanup_test_output`` cleans it
(``\\bin \\d+\\.\\d+s\\b`` removed, the test folder's path shown as the exercise name), plus
terminal colour codes. Go's ``-json`` events are turned back into ``go test``'s plain text
(``go_plain_output``). The whole output goes to the next try; only output beyond
``DEFAULT_OUTPUT_CHARS`` (far above real test outputs) is cut, keeping the start and the
tail, with the cut marked.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field

from localcode.harness.dataset import Exercise
from localcode.harness.languages import Language, get_language
from localcode.harness.results import TestReport
from localcode.harness.sandbox import Sandbox
from localcode.harness.workspace import WorkspaceChanges, remove_tree, workspace_changes

DEFAULT_TEST_TIMEOUT = 180.0
"""Seconds one test run may take (Aider's ``60 * 3``)."""

DEFAULT_OUTPUT_CHARS = 150_000
"""Characters of cleaned test output kept for the next prompt (Aider keeps all of it; this
cap only stops pathological output, e.g. an endless loop printing)."""

TEST_RUNS_DIR = ".testruns"
"""Folder under the sandbox root holding the pristine copies of running test runs."""


class TestOutcome(BaseModel):
    """The verdict of one test run."""

    __test__ = False  # not a pytest test class

    passed: bool
    """Exit code 0, no timeout, and the framework's report shows tests run and none failed."""
    timed_out: bool
    """The run was killed at the test timeout (then ``passed`` is False)."""
    exit_code: int | None
    """The test command's exit status; None when it was killed at the timeout."""
    duration_s: float
    """Wall-clock seconds of the run in the sandbox, including its private copy of the
    exercise (about 0.1 s with Docker)."""
    output: str
    """Cleaned, capped output, ready to show the model."""
    command: str
    """The command that ran, as a shell line."""
    report: TestReport | None = None
    """The framework's own counts; None when the output held no report."""
    failure: str = ""
    """Why the run did not pass; empty when it passed."""
    files: WorkspaceChanges = Field(default_factory=WorkspaceChanges)
    """The workspace against the exercise's starting files, and what was carried."""


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
AIDER_TIMING = re.compile(r"\bin \d+\.\d+s\b")
"""Aider's ``cleanup_test_output`` pattern (benchmark/benchmark.py), verbatim."""


def clean_output(output: str, workspace: Path, name: str) -> str:
    """Aider's cleaning: timings ``in 0.12s`` removed, the test folder's path shown as the
    exercise name; also colour codes and carriage returns (none appear without a terminal)."""
    text = _ANSI.sub("", output).replace("\r\n", "\n")
    text = AIDER_TIMING.sub("", text)
    return text.replace(str(workspace), name)


def cap_output(text: str, limit: int = DEFAULT_OUTPUT_CHARS) -> str:
    """Keep at most about ``limit`` characters: a quarter from the start (where compile
    errors are) and the rest from the end (where failures and summaries are), whole lines,
    with the cut marked."""
    if len(text) <= limit:
        return text
    head_size = limit // 4
    tail_size = limit - head_size
    head = text[:head_size].rsplit("\n", 1)[0]
    tail = text[-tail_size:].split("\n", 1)[-1]
    omitted = text[len(head) : len(text) - len(tail)].count("\n")
    return f"{head}\n\n[... {omitted} lines of test output omitted ...]\n\n{tail}"


# --------------------------------------------------------------------------- reports
_PYTEST_SUMMARY = re.compile(r"^=+ (.*\b(?:passed|failed|errors?|skipped|no tests ran|deselected|xfailed|xpassed)\b.*?) =+$")
_COUNT = re.compile(r"(\d+) ([a-z]+)")
_CARGO = re.compile(r"^test result: (ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored;", re.MULTILINE)
_JEST_TESTS = re.compile(r"^Tests:\s+(.*\d+ total)\s*$", re.MULTILINE)
_JEST_SUITES = re.compile(r"^Test Suites:\s+(.*\d+ total)\s*$", re.MULTILINE)
_JUNIT = re.compile(r"^\[\s*(\d+) (tests|containers) (successful|failed|aborted|skipped)\s*\]\s*$", re.MULTILINE)
_CATCH_OK = re.compile(r"^All tests passed \((\d+) assertions? in (\d+) test cases?\)\s*$", re.MULTILINE)
_CATCH_FAIL = re.compile(r"^test cases:\s*(\d+)\s*\|(.*)$", re.MULTILINE)


def _counts(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for num, word in _COUNT.findall(text):
        out[word] = out.get(word, 0) + int(num)
    return out


def parse_report(kind: str, output: str) -> TestReport | None:
    """The framework's report in ``output`` (raw or cleaned), or None when there is none.

    ``kind`` is ``Language.report``. Only lines that start where the framework prints them
    count (a solution's indented log line is not a summary).
    """
    if kind == "pytest":
        lines = [m.group(1) for line in output.splitlines() if (m := _PYTEST_SUMMARY.match(line.rstrip()))]
        if not lines:
            return None
        c = _counts(lines[-1])
        return TestReport(framework=kind, passed=c.get("passed", 0) + c.get("xpassed", 0),
                          failed=c.get("failed", 0), errors=c.get("error", 0) + c.get("errors", 0),
                          skipped=c.get("skipped", 0) + c.get("xfailed", 0) + c.get("deselected", 0))
    if kind == "cargo":
        rows = _CARGO.findall(output)
        if not rows:
            return None
        return TestReport(framework=kind, passed=sum(int(r[1]) for r in rows), failed=sum(int(r[2]) for r in rows),
                          skipped=sum(int(r[3]) for r in rows))
    if kind == "go-json":
        return go_plain_output(output)[1]
    if kind == "jest":
        tests = _JEST_TESTS.findall(output)
        if not tests:
            return None
        c = _counts(tests[-1])
        suites = _JEST_SUITES.findall(output)
        failed_suites = _counts(suites[-1]).get("failed", 0) if suites else 0
        # A suite that failed without a failed test could not run (a syntax error, an import).
        return TestReport(framework=kind, passed=c.get("passed", 0), failed=c.get("failed", 0),
                          skipped=c.get("skipped", 0) + c.get("todo", 0),
                          errors=0 if c.get("failed") else failed_suites)
    if kind == "junit-console":
        rows = _JUNIT.findall(output)
        if not rows:
            return None
        seen: dict[tuple[str, str], int] = {}
        for num, what, state in rows:
            seen[(what, state)] = int(num)  # the last summary wins
        return TestReport(framework=kind, passed=seen.get(("tests", "successful"), 0),
                          failed=seen.get(("tests", "failed"), 0),
                          skipped=seen.get(("tests", "skipped"), 0) + seen.get(("tests", "aborted"), 0),
                          errors=seen.get(("containers", "failed"), 0) + seen.get(("containers", "aborted"), 0))
    if kind == "catch2":
        ok = _CATCH_OK.findall(output)
        if ok:
            return TestReport(framework=kind, passed=int(ok[-1][1]))
        bad = _CATCH_FAIL.findall(output)
        if not bad:
            return None
        total, rest = int(bad[-1][0]), _counts(bad[-1][1])
        failed = rest.get("failed", 0)
        return TestReport(framework=kind, passed=rest.get("passed", max(0, total - failed)), failed=failed,
                          skipped=rest.get("skipped", 0))
    raise ValueError(f"unknown test report kind {kind!r}")


_GO_NOISE = ("=== RUN", "=== PAUSE", "=== CONT", "=== NAME")


def go_plain_output(raw: str) -> tuple[str, TestReport | None]:
    """``go test -json`` output as ``go test``'s plain text, and the counts of its events.

    Output of tests that passed or were skipped is dropped, as plain ``go test`` does;
    a failed test's output is kept (in the order it was printed); package lines (``FAIL``,
    ``ok  pkg``), build errors and any non-JSON line are kept. The report is None when no
    event with an action was seen (e.g. the toolchain refused the module).
    """
    out: list[str] = []
    held: dict[tuple[str, str], list[str]] = {}
    report: TestReport | None = None
    for line in raw.splitlines(keepends=True):
        event = _json_event(line)
        if event is None:
            out.append(line if line.endswith("\n") else line + "\n")
            continue
        if report is None:
            report = TestReport(framework="go-json")
        action = event.get("Action")
        package = str(event.get("Package") or event.get("ImportPath") or "")
        test = str(event.get("Test") or "")
        text = str(event.get("Output") or "")
        if action == "build-output":
            out.append(text)
        elif action == "output":
            if text.startswith(_GO_NOISE) or text.strip() == "PASS":
                continue
            if test:
                held.setdefault((package, test.split("/")[0]), []).append(text)
            else:
                out.append(text)
        elif action in ("pass", "fail", "skip") and test:
            if action == "pass":
                report.passed += 1
            elif action == "fail":
                report.failed += 1
            else:
                report.skipped += 1
            if "/" not in test:
                lines = held.pop((package, test), [])
                if action == "fail":
                    out.extend(t for t in lines if not t.lstrip().startswith(("--- PASS", "--- SKIP")))
        elif action in ("fail", "build-fail") and not test:
            report.errors += 1
    return "".join(out), report


def _json_event(line: str) -> dict[str, object] | None:
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "Action" in event else None


def verdict(exit_code: int | None, timed_out: bool, report: TestReport | None, kind: str) -> tuple[bool, str]:
    """(passed, why not): exit 0 and the report shows at least one test run, none failed."""
    if timed_out:
        return False, "timed out"
    if exit_code != 0:
        return False, f"exit code {exit_code}"
    if report is None:
        return False, f"exit code 0 but no test report ({kind}) in the output"
    if report.failed or report.errors:
        return False, f"exit code 0 but the report shows {report.failed} failed and {report.errors} errors"
    if report.passed < 1:
        return False, "exit code 0 but no test ran"
    return True, ""


def count_aider_errors(output: str) -> tuple[int, int]:
    """Aider's ``syntax_errors`` and ``indentation_errors`` of one failed run's output."""
    lines = output.splitlines()
    return (sum(1 for line in lines if line.startswith("SyntaxError")),
            sum(1 for line in lines if line.startswith("IndentationError")))


# --------------------------------------------------------------------------- the test copy
def _dataset_files(exercise: Exercise) -> list[str]:
    """Every file of the exercise folder except ``.meta/``."""
    root = exercise.path
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d != ".meta"]
        for fn in filenames:
            out.append((here / fn).relative_to(root).as_posix())
    return sorted(out)


def _place(dest: Path, data: bytes, executable: bool = False) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    dest.write_bytes(data)
    # Readable by the sandbox's unprivileged user, whatever the host umask.
    dest.chmod(0o755 if executable else 0o644)


def prepare_test_dir(exercise: Exercise, workspace: Path, dest: Path, language: Language | None = None, *,
                     reference_build: bool = False) -> WorkspaceChanges:
    """Make ``dest`` the folder the tests run in: the exercise's pristine files (test
    rewrites applied) plus the carried workspace files. Returns the workspace's changes.

    ``reference_build`` uses the language's ``reference_build_files`` from ``.meta`` (the
    oracle's reference solutions that need crates); never anything from the workspace.
    """
    language = language or get_language(exercise.language)
    tests = set(exercise.hidden_files)
    for rel in _dataset_files(exercise):
        src = exercise.path / rel
        data = src.read_bytes()
        if rel in tests and language.test_rewrites:
            data = language.prepare_test_file(rel, data.decode("utf-8")).encode("utf-8")
        _place(dest / rel, data, os.access(src, os.X_OK))
    if reference_build:
        for rel, meta in language.reference_build_files:
            if (exercise.path / meta).is_file():
                _place(dest / rel, (exercise.path / meta).read_bytes())
    changes = workspace_changes(exercise, workspace)
    for rel in changes.carried:
        _place(dest / rel, (Path(workspace) / rel).read_bytes())
    for folder in [dest, *(p for p in dest.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    return changes


def restore_test_files(exercise: Exercise, workspace: Path, language: Language | None = None) -> list[str]:
    """Copy the exercise's test files (with their support files, ``hidden_files``), editor
    and invalidator files and the language's build files fresh into ``workspace`` and apply
    the test-file rewrites. Returns the relative paths written. (``solve``-style checks on
    a folder; benchmark test runs use ``prepare_test_dir``.)"""
    language = language or get_language(exercise.language)
    written: list[str] = []
    tests = [*exercise.test_files, *exercise.hidden_files]
    rel_paths = [*tests, *exercise.editor_files, *exercise.invalidator_files, *language.build_files]
    for rel in dict.fromkeys(rel_paths):
        src = exercise.path / rel
        if not src.is_file():
            continue
        dst = workspace / rel
        if dst.parent.exists() and not os.access(dst.parent, os.W_OK):
            dst.parent.chmod(dst.parent.stat().st_mode | 0o700)
        data = src.read_bytes()
        if rel in tests and language.test_rewrites:
            data = language.prepare_test_file(rel, data.decode("utf-8")).encode("utf-8")
        _place(dst, data, os.access(src, os.X_OK))
        written.append(rel)
    return written


class TestRunner:
    """Runs an exercise's tests in a sandbox and reports a ``TestOutcome``."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        sandbox: Sandbox,
        timeout: float = DEFAULT_TEST_TIMEOUT,
        *,
        max_output_chars: int = DEFAULT_OUTPUT_CHARS,
        reference_build: bool = False,
    ) -> None:
        """Args:
        sandbox: where the tests run (the pristine copies go under its root).
        timeout: seconds one test run may take.
        max_output_chars: cap on the cleaned output kept in the outcome.
        reference_build: test with the reference build files from ``.meta`` (the oracle).
        """
        self.sandbox = sandbox
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self.reference_build = reference_build

    def run(self, exercise: Exercise, workspace: Path) -> TestOutcome:
        """Run the tests of ``exercise`` on a pristine copy plus the carried files of ``workspace``.

        A failing or timed-out test run is a normal outcome (``passed=False``).

        Raises:
            ConfigError: the exercise's language is unknown.
            SandboxError: the sandbox failed (an infrastructure error, not a test failure).
        """
        language = get_language(exercise.language)
        base = Path(self.sandbox.root) / TEST_RUNS_DIR
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        holder = Path(tempfile.mkdtemp(prefix=f"{exercise.language}-", dir=base))
        test_dir = holder / exercise.name  # the folder's name is the exercise's (C++'s CMakeLists reads it)
        try:
            holder.chmod(0o755)
            changes = prepare_test_dir(exercise, Path(workspace), test_dir, language,
                                       reference_build=self.reference_build)
            argv = list(language.test_command)
            result = self.sandbox.exec(argv, timeout=self.timeout, cwd=test_dir)
        finally:
            remove_tree(holder)
        raw = result.output
        if language.report == "go-json":
            raw, report = go_plain_output(raw)
        else:
            report = parse_report(language.report, raw)
        output = clean_output(raw, test_dir, exercise.name)
        if result.timed_out:
            output = f"{output.rstrip()}\n\nTests timed out after {self.timeout:g} seconds!"
        elif result.exit_code == 137:
            output = f"{output.rstrip()}\n\nThe tests were killed (out of memory?)."
        passed, failure = verdict(result.exit_code, result.timed_out, report, language.report)
        return TestOutcome(
            passed=passed,
            timed_out=result.timed_out,
            exit_code=result.exit_code,
            duration_s=round(result.duration_s, 3),
            output=cap_output(output.strip("\n"), self.max_output_chars),
            command=shlex.join(argv),
            report=report,
            failure=failure,
            files=changes,
        )


__all__ = [
    "DEFAULT_OUTPUT_CHARS",
    "DEFAULT_TEST_TIMEOUT",
    "TestOutcome",
    "TestRunner",
    "clean_output",
    "count_aider_errors",
    "go_plain_output",
    "parse_report",
    "prepare_test_dir",
    "restore_test_files",
    "verdict",
]
