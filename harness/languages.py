"""The six benchmark languages: every per-language fact lives here, once.

Test commands follow Aider's benchmark harness (``benchmark/benchmark.py``,
``run_unit_tests``) so pass rates are comparable:

=========== ======================================== ========================================== ===========================
language    test command                             test-file preparation                      the framework's report
=========== ======================================== ========================================== ===========================
python      ``pytest``                               none                                       the final summary line
rust        ``cargo test -- --include-ignored``      none (ignored tests are run)               ``test result:`` lines
go          ``go test -json ./...``                  none                                       the JSON events
javascript  jest via ``npm run test``                ``xtest(`` → ``test(`` in ``*.spec.js``    ``Tests:``/``Test Suites:``
cpp         cmake + make, ``EXERCISM_RUN_ALL_TESTS`` none                                       Catch's final line
java        javac + JUnit console launcher           ``@Disabled(...)`` lines removed           the launcher's summary
=========== ======================================== ========================================== ===========================

Go runs with ``-json`` (Aider: ``go test ./...``) because the plain output of a passing
package holds no test count; the runner turns the events back into ``go test``'s plain
text for the model (``localcode.harness.runner``).

**What a solution may contain** (``Language.carry``): the tests run on a pristine copy of
the exercise (everything from the dataset except ``.meta/``), onto which only the
workspace files matching ``carry`` and no ``carry_exclude`` pattern are copied. Build and
test configuration (``Cargo.toml``, ``go.mod``, ``package.json``, ``babel.config.js``,
``jest.config.*``, ``CMakeLists.txt``, ``build.gradle``, ``pytest.ini``, ``conftest.py``,
...) therefore always comes from the dataset, and the agent's file tools refuse to write
anything that would not be carried (``localcode.harness.workspace.write_refusal``). This
table is the one source of truth for both.

The JavaScript, C++ and Java commands are small shell scripts in ``docker/bin/``
(``localcode-test-<language>``), the counterparts of Aider's ``npm-test.sh`` and
``cpp-test.sh``; the test image puts them on ``PATH`` and ``LocalSandbox`` does the same
from the installed package. Java differs from Aider on purpose: Aider runs
``./gradlew test``, which downloads Gradle and the jars from the network; here javac
compiles and the JUnit console launcher runs the same JUnit 5 tests offline.
"""

from __future__ import annotations

import functools
import re
import sys
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
    """argv run in the test folder; a pass needs exit code 0 *and* the framework's report
    (``report``) of at least one test run and none failed."""
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
    carry: tuple[str, ...] = ()
    """Workspace paths (globs: ``*`` stays within a folder, ``**/`` spans folders) carried
    into the test run: the solution's source files."""
    carry_exclude: tuple[str, ...] = ()
    """Paths matching ``carry`` that are never carried (tests, configuration, hooks)."""
    carry_rule: str = ""
    """``carry`` in words, for the file tools' refusal message."""
    report: str = ""
    """Which report of the test framework decides a pass (``localcode.harness.runner``)."""
    reference_build_files: tuple[tuple[str, str], ...] = ()
    """(destination, ``.meta`` source) pairs used instead of the dataset's build files when
    the reference solution is tested (the ``oracle`` agent): e.g. Rust's
    ``.meta/Cargo-example.toml`` for references that need crates. Never from a workspace."""

    def carries(self, rel: str) -> bool:
        """True when the workspace-relative POSIX path ``rel`` is carried into test runs."""
        return any(_glob(p).fullmatch(rel) for p in self.carry) and not any(
            _glob(p).fullmatch(rel) for p in self.carry_exclude
        )

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


@functools.cache
def _glob(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` within one path segment, ``**/`` any number of folders."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:[^/]+/)*"
            i += 3
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


_PYTHON_SHADOWS = tuple(
    f"{name}.py"
    for name in sorted({*sys.stdlib_module_names, "pytest", "_pytest", "py", "pluggy", "iniconfig", "packaging"})
)
"""Extra Python files named like a module pytest or the standard library imports: carried,
they could replace that module in the test process."""


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
            carry=("*.py",),
            carry_exclude=("conftest.py", "*_test.py", "test_*.py", "setup.py", "sitecustomize.py",
                           "usercustomize.py", "__init__.py", "__main__.py", *_PYTHON_SHADOWS),
            carry_rule="top-level .py source files (not tests, conftest.py, setup.py, "
                       "sitecustomize.py or a standard-library module name)",
            report="pytest",
        ),
        Language(
            name="rust",
            display_name="Rust",
            extensions=(".rs",),
            test_command=("cargo", "test", "--", "--include-ignored"),
            aider_command="cargo test -- --include-ignored",
            artifact_paths=("target", "Cargo.lock"),
            tools=("cargo", "rustc"),
            carry=("src/**/*.rs",),
            carry_rule=".rs files under src/ (Cargo.toml comes from the exercise)",
            report="cargo",
            reference_build_files=(("Cargo.toml", ".meta/Cargo-example.toml"),),
        ),
        Language(
            name="go",
            display_name="Go",
            extensions=(".go",),
            test_command=("go", "test", "-json", "./..."),
            aider_command="go test ./...",
            tools=("go",),
            carry=("*.go",),
            carry_exclude=("*_test.go",),
            carry_rule="top-level .go files that are not *_test.go (go.mod comes from the exercise)",
            report="go-json",
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
            carry=("*.js",),
            carry_exclude=("*.spec.js", "*.test.js", "*.config.js", "babel.config.js", "jest.config.js",
                           ".*.js", "setupTests.js", "jest.setup.js"),
            carry_rule="top-level .js source files (not *.spec.js, *.test.js or *.config.js; "
                       "package.json and babel.config.js come from the exercise)",
            report="jest",
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
            carry=("*.cpp", "*.h", "*.hpp"),
            carry_exclude=("*_test.cpp", "tests-main.cpp", "catch.hpp"),
            carry_rule="top-level .cpp/.h/.hpp files that are not *_test.cpp "
                       "(CMakeLists.txt comes from the exercise)",
            report="catch2",
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
            carry=("src/main/java/**/*.java",),
            carry_rule=".java files under src/main/java/ (build.gradle comes from the exercise)",
            report="junit-console",
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
