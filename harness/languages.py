"""The six benchmark languages: every per-language fact lives here, once.

Test commands follow Aider's benchmark harness (``benchmark/benchmark.py``,
``run_unit_tests``) so pass rates are comparable:

=========== ======================================== ==========================================
language    test command                             test-file preparation
=========== ======================================== ==========================================
python      ``pytest``                               none
rust        ``cargo test -- --include-ignored``      none (ignored tests are run)
go          ``go test ./...``                        none
javascript  jest via ``npm run test``                ``xtest(`` → ``test(`` in ``*.spec.js``
cpp         cmake + make, ``EXERCISM_RUN_ALL_TESTS`` none
java        javac + JUnit console launcher           ``@Disabled(...)`` lines removed
=========== ======================================== ==========================================

The JavaScript, C++ and Java commands are small shell scripts in ``docker/bin/``
(``localcode-test-<language>``), the counterparts of Aider's ``npm-test.sh`` and
``cpp-test.sh``; the test image puts them on ``PATH`` and ``LocalSandbox`` does the same
from the installed package. Java differs from Aider on purpose: Aider runs
``./gradlew test``, which downloads Gradle and the jars from the network; here javac
compiles and the JUnit console launcher runs the same JUnit 5 tests offline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict

from localcode.errors import ConfigError


class TestFileRewrite(BaseModel):
    """A regex substitution applied to a language's test files before every test run."""

    model_config = ConfigDict(frozen=True)

    suffix: str
    """Only files whose name ends with this are rewritten, e.g. ``.spec.js``."""
    pattern: str
    """A Python regular expression (``re.sub`` syntax)."""
    replacement: str
    """What each match becomes."""

    def apply(self, path: str, text: str) -> str:
        """Return ``text`` rewritten when ``path`` has the right suffix, else unchanged."""
        if not path.endswith(self.suffix):
            return text
        return re.sub(self.pattern, self.replacement, text)


class Language(BaseModel):
    """One benchmark language: how its exercises are tested."""

    model_config = ConfigDict(frozen=True)

    name: str
    """The dataset's folder name, e.g. ``javascript``."""
    display_name: str
    """For people, e.g. ``JavaScript``."""
    extensions: tuple[str, ...]
    """Source file extensions of the language (the first is the main one)."""
    test_command: tuple[str, ...]
    """argv run in the exercise folder; exit code 0 means every test passed."""
    aider_command: str
    """The command Aider's harness runs, recorded for comparison."""
    test_rewrites: tuple[TestFileRewrite, ...] = ()
    """Applied to the test files after they are copied fresh, before each run."""
    build_files: tuple[str, ...] = ()
    """Build files restored from the dataset before each run, like the test files: the
    harness relies on them (Aider keeps them out of the model's reach, e.g. CMakeLists.txt)."""
    artifact_paths: tuple[str, ...] = ()
    """Build outputs a test run may create in a workspace (never part of a solution)."""
    tools: tuple[str, ...] = ()
    """Executables the test command needs, checked by ``LocalSandbox`` users."""

    def missing_tools(self, path: str | None = None) -> list[str]:
        """The ``tools`` not found on ``path`` (default ``$PATH``): what ``--sandbox local``
        needs installed on the host before it can test this language."""
        import shutil

        return [tool for tool in self.tools if shutil.which(tool, path=path) is None]

    def prepare_test_file(self, path: str, text: str) -> str:
        """Apply this language's rewrites to the test file at relative ``path``."""
        for rewrite in self.test_rewrites:
            text = rewrite.apply(path, text)
        return text


def _languages() -> Mapping[str, Language]:
    langs = [
        Language(
            name="python",
            display_name="Python",
            extensions=(".py",),
            test_command=("pytest",),
            aider_command="pytest",
            artifact_paths=("__pycache__", ".pytest_cache"),
            tools=("pytest",),
        ),
        Language(
            name="rust",
            display_name="Rust",
            extensions=(".rs",),
            test_command=("cargo", "test", "--", "--include-ignored"),
            aider_command="cargo test -- --include-ignored",
            artifact_paths=("target", "Cargo.lock"),
            tools=("cargo", "rustc"),
        ),
        Language(
            name="go",
            display_name="Go",
            extensions=(".go",),
            test_command=("go", "test", "./..."),
            aider_command="go test ./...",
            tools=("go",),
        ),
        Language(
            name="javascript",
            display_name="JavaScript",
            extensions=(".js",),
            test_command=("localcode-test-javascript",),
            aider_command="benchmark/npm-test.sh (npm run test)",
            test_rewrites=(
                TestFileRewrite(suffix=".spec.js", pattern=r"\bxtest\(", replacement="test("),
            ),
            build_files=("package.json", "babel.config.js", ".npmrc"),
            artifact_paths=("node_modules", "package-lock.json"),
            tools=("node", "npm"),
        ),
        Language(
            name="cpp",
            display_name="C++",
            extensions=(".cpp", ".h", ".hpp"),
            test_command=("localcode-test-cpp",),
            aider_command="benchmark/cpp-test.sh (cmake; make)",
            build_files=("CMakeLists.txt",),
            artifact_paths=("build",),
            tools=("cmake", "make", "g++"),
        ),
        Language(
            name="java",
            display_name="Java",
            extensions=(".java",),
            test_command=("localcode-test-java",),
            aider_command="./gradlew test",
            test_rewrites=(
                # Aider's exact rule: bare `@Disabled` (no parentheses) is left alone.
                TestFileRewrite(suffix=".java", pattern=r"@Disabled\([^)]*\)\s*\n", replacement=""),
            ),
            artifact_paths=("build", ".gradle"),
            tools=("javac", "java"),
        ),
    ]
    return MappingProxyType({lang.name: lang for lang in langs})


LANGUAGES: Mapping[str, Language] = _languages()
"""Every supported language by name (read-only)."""


def get_language(name: str) -> Language:
    """The language called ``name``.

    Raises:
        ConfigError: no such language; the message lists the known ones.
    """
    try:
        return LANGUAGES[name]
    except KeyError:
        known = ", ".join(sorted(LANGUAGES))
        raise ConfigError(f"unknown language {name!r}: use one of {known}") from None
