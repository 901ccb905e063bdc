"""Running an exercise's tests in a sandbox and turning the result into a prompt-ready outcome.

Before every run the test files with their support files, the read-only editor files,
the invalidators (``go.mod``, ``build.gradle``) and the build files the harness relies
on (``CMakeLists.txt``, ``package.json``) are copied fresh from the dataset into the
workspace, so an agent that edited them gains nothing; then the language's test-file
rewrites are applied (``xtest(`` → ``test(``, ``@Disabled`` removed), and the
language's command runs in the sandbox.

The output is cleaned as Aider cleans it (``cleanup_test_output``: timings removed,
the workspace path shown as the exercise name) plus colour codes and the other
duration formats of the six test tools, so the next prompt does not change from run
to run. Aider's harness does not cap test output; local models have small context
windows, so here it is capped (head and tail kept, the middle elided).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

from pydantic import BaseModel

from localcode.harness.dataset import Exercise
from localcode.harness.languages import Language, get_language
from localcode.harness.sandbox import Sandbox

DEFAULT_TEST_TIMEOUT = 180.0
"""Seconds one test run may take (Aider's ``60 * 3``)."""

DEFAULT_OUTPUT_CHARS = 12_000
"""Characters of cleaned test output kept for the next prompt."""


class TestOutcome(BaseModel):
    """The verdict of one test run."""

    __test__ = False  # not a pytest test class

    passed: bool
    """Every test passed: exit code 0 and no timeout."""
    timed_out: bool
    """The run was killed at the test timeout (then ``passed`` is False)."""
    exit_code: int | None
    """The test command's exit status; None when it was killed at the timeout."""
    duration_s: float
    """Wall-clock seconds of the run in the sandbox, including its private copy of the
    workspace (about 0.1 s with Docker)."""
    output: str
    """Cleaned, capped output, ready to show the model."""
    command: str
    """The command that ran, as a shell line."""


_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_TIMINGS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bin \d+(?:\.\d+)?s\b"), ""),  # Aider's rule: pytest "in 0.03s", cargo "in 0.38s"
    (re.compile(r" ?\(\d+(?:\.\d+)? ?m?s\)"), ""),  # jest "(3 ms)", go "--- FAIL: TestX (0.00s)"
    (re.compile(r"\t\d+\.\d+s\b"), ""),  # go "ok  \tpkg\t0.003s"
    (re.compile(r"\b(after|finished in) \d+(?:\.\d+)? ?m?s\b"), r"\1"),  # junit, cargo
    (re.compile(r"^(Time:|Ran all test suites).*\d+(?:\.\d+)? ?m?s.*$", re.MULTILINE), r"\1"),  # jest
    (re.compile(r"\b\d+(?:\.\d+)? ?ms\b"), ""),  # junit tree "12 ms"
    (re.compile(r"^ *Blocking waiting for file lock.*\n", re.MULTILINE), ""),  # cargo, shared target
)


def clean_output(output: str, workspace: Path, name: str) -> str:
    """Remove what changes between identical runs: colours, timings, the workspace path."""
    text = _ANSI.sub("", output).replace("\r\n", "\n")
    for pattern, replacement in _TIMINGS:
        text = pattern.sub(replacement, text)
    text = text.replace(str(workspace), name)
    return "\n".join(line.rstrip() for line in text.split("\n"))


def cap_output(text: str, limit: int = DEFAULT_OUTPUT_CHARS) -> str:
    """Keep at most about ``limit`` characters: a third from the start (where compile
    errors are) and two thirds from the end (where test summaries are), whole lines."""
    if len(text) <= limit:
        return text
    head_size, tail_size = limit // 3, limit - limit // 3
    head = text[:head_size].rsplit("\n", 1)[0]
    tail = text[-tail_size:].split("\n", 1)[-1]
    omitted = text[len(head) : len(text) - len(tail)].count("\n")
    return f"{head}\n\n[... {omitted} lines of test output omitted ...]\n\n{tail}"


def restore_test_files(exercise: Exercise, workspace: Path, language: Language | None = None) -> list[str]:
    """Copy the exercise's test files (with their support files, ``hidden_files``), editor,
    invalidator and the language's build files fresh into ``workspace`` and apply the language's test-file
    rewrites. Returns the relative paths written."""
    language = language or get_language(exercise.language)
    written: list[str] = []
    tests = [*exercise.test_files, *exercise.hidden_files]
    rel_paths = [*tests, *exercise.editor_files, *exercise.invalidator_files, *language.build_files]
    for rel in dict.fromkeys(rel_paths):
        src = exercise.path / rel
        if not src.is_file():
            continue
        dst = workspace / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(dst.parent, os.W_OK):
            dst.parent.chmod(dst.parent.stat().st_mode | 0o700)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if rel in tests and language.test_rewrites:
            text = src.read_text(encoding="utf-8")
            dst.write_text(language.prepare_test_file(rel, text), encoding="utf-8")
        else:
            shutil.copyfile(src, dst)
        # Readable by the sandbox's unprivileged user, whatever the host umask.
        dst.chmod(0o755 if os.access(src, os.X_OK) else 0o644)
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
    ) -> None:
        """Args:
        sandbox: where the tests run (its root must contain the workspaces).
        timeout: seconds one test run may take.
        max_output_chars: cap on the cleaned output kept in the outcome.
        """
        self.sandbox = sandbox
        self.timeout = timeout
        self.max_output_chars = max_output_chars

    def run(self, exercise: Exercise, workspace: Path) -> TestOutcome:
        """Restore the tests into ``workspace`` and run them.

        A failing or timed-out test run is a normal outcome (``passed=False``).

        Raises:
            ConfigError: the exercise's language is unknown.
            ValueError: ``workspace`` is not under the sandbox root.
            SandboxError: the sandbox failed (an infrastructure error, not a test failure).
        """
        language = get_language(exercise.language)
        workspace = Path(workspace).resolve()
        restore_test_files(exercise, workspace, language)
        argv = list(language.test_command)
        result = self.sandbox.exec(argv, timeout=self.timeout, cwd=workspace)
        output = clean_output(result.output, workspace, exercise.name)
        if result.timed_out:
            output = f"{output.rstrip()}\n\nTests timed out after {self.timeout:g} seconds!"
        elif result.exit_code == 137:
            output = f"{output.rstrip()}\n\nThe tests were killed (out of memory?)."
        return TestOutcome(
            passed=result.exit_code == 0 and not result.timed_out,
            timed_out=result.timed_out,
            exit_code=result.exit_code,
            duration_s=round(result.duration_s, 3),
            output=cap_output(output.strip("\n"), self.max_output_chars),
            command=shlex.join(argv),
        )
