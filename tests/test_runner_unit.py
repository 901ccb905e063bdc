"""Unit tests of the test runner's logic: language table, the carry rule, test-file
preparation, the frameworks' reports, output cleaning and capping. No Docker; the real dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localcode.errors import ConfigError
from localcode.harness.dataset import load_dataset
from localcode.harness.languages import LANGUAGES, get_language
from localcode.harness.runner import (
    cap_output,
    clean_output,
    count_aider_errors,
    go_plain_output,
    parse_report,
    prepare_test_dir,
    restore_test_files,
    verdict,
)
from localcode.harness.workspace import create_workspace, is_carried, workspace_changes, write_refusal
from sandbox_util import dataset_root

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exercises():
    return load_dataset(dataset_root(), warn=False).by_id()


def test_every_dataset_language_has_a_table_entry(exercises):
    assert {ex.language for ex in exercises.values()} == set(LANGUAGES)
    assert set(LANGUAGES) == {"cpp", "go", "java", "javascript", "python", "rust"}


def test_aider_parity_commands():
    assert get_language("python").test_command == ("pytest",)
    assert get_language("rust").test_command == ("cargo", "test", "--", "--include-ignored")
    # go test -json: the plain output of a passing package holds no test count
    assert get_language("go").test_command == ("go", "test", "-json", "./...")
    assert get_language("go").aider_command == "go test ./..."


def test_unknown_language_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown language 'cobol'.*python"):
        get_language("cobol")


def test_language_table_is_read_only():
    with pytest.raises(TypeError):
        LANGUAGES["x"] = LANGUAGES["python"]  # type: ignore[index]


def test_test_scripts_exist_and_are_executable():
    from localcode.paths import package_dir

    for lang in LANGUAGES.values():
        if lang.test_command[0].startswith("localcode-test-"):
            script = package_dir("docker") / "bin" / lang.test_command[0]
            assert script.is_file() and os.access(script, os.X_OK), script


def test_javascript_xtest_rewrite(exercises, tmp_path):
    ex = exercises["javascript/two-bucket"]
    original = (ex.path / ex.test_files[0]).read_text()
    assert "xtest(" in original
    restore_test_files(ex, tmp_path)
    rewritten = (tmp_path / ex.test_files[0]).read_text()
    assert "xtest(" not in rewritten
    assert rewritten.count("test(") == original.count("test(")  # only the x went away


def test_java_disabled_rewrite_follows_aider(exercises, tmp_path):
    ex = exercises["java/bowling"]
    original = (ex.path / ex.test_files[0]).read_text()
    assert '@Disabled("Remove to run test")' in original
    restore_test_files(ex, tmp_path)
    rewritten = (tmp_path / ex.test_files[0]).read_text()
    assert "@Disabled(" not in rewritten
    assert rewritten.count("@Test") == original.count("@Test")
    # a bare @Disabled (no parentheses) is left alone, as Aider's regex does
    java = get_language("java")
    assert java.prepare_test_file("T.java", "@Disabled\n@Test\n") == "@Disabled\n@Test\n"
    assert java.prepare_test_file("T.kt", '@Disabled("x")\n') == '@Disabled("x")\n'


def test_restore_overwrites_edited_and_read_only_tests(exercises, tmp_path):
    ex = exercises["python/bowling"]
    test = tmp_path / ex.test_files[0]
    test.write_text("def test_cheat(): pass\n")
    test.chmod(0o444)
    written = restore_test_files(ex, tmp_path)
    assert ex.test_files[0] in written
    assert test.read_bytes() == (ex.path / ex.test_files[0]).read_bytes()
    assert test.stat().st_mode & 0o044 == 0o044  # readable by the sandbox user


def test_restore_brings_back_test_support_files(exercises, tmp_path):
    ex = exercises["cpp/all-your-base"]
    restore_test_files(ex, tmp_path)
    assert (tmp_path / "test" / "catch.hpp").is_file()
    assert (tmp_path / "all_your_base_test.cpp").is_file()
    assert (tmp_path / "CMakeLists.txt").read_bytes() == (ex.path / "CMakeLists.txt").read_bytes()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Aider's cleanup_test_output: r"\bin \d+\.\d+s\b" removed, nothing else
        ("===== 1 failed, 2 passed in 0.03s =====", "===== 1 failed, 2 passed  ====="),
        ("test result: FAILED. 1 passed; 2 failed; 0 ignored; finished in 0.00s",
         "test result: FAILED. 1 passed; 2 failed; 0 ignored; finished "),
        ("--- FAIL: TestScore (0.00s)", "--- FAIL: TestScore (0.00s)"),
        ("  ✓ rolls a gutter game (3 ms)", "  ✓ rolls a gutter game (3 ms)"),
        ("\x1b[31mFAIL\x1b[0m", "FAIL"),
    ],
)
def test_clean_output_is_aiders(raw, expected):
    assert clean_output(raw, Path("/nowhere"), "x") == expected


def test_clean_output_replaces_the_test_folder_path():
    ws = Path("/runs/2025/python/bowling")
    out = clean_output(f'File "{ws}/bowling.py", line 3', ws, "bowling")
    assert out == 'File "bowling/bowling.py", line 3'


def test_cap_output_keeps_head_and_tail():
    lines = [f"line {i}" for i in range(5000)]
    text = "\n".join(lines)
    capped = cap_output(text, 2000)
    assert len(capped) < 2200
    assert capped.startswith("line 0\n")
    assert capped.endswith("line 4999")
    assert "lines of test output omitted" in capped
    assert cap_output("short", 2000) == "short"


def test_default_cap_keeps_real_outputs_whole(exercises):
    from localcode.harness.runner import DEFAULT_OUTPUT_CHARS

    # Far above a real failing run (the longest test file of the dataset as output).
    longest = max(len((ex.path / f).read_text()) for ex in exercises.values() for f in ex.test_files)
    assert DEFAULT_OUTPUT_CHARS > 2 * longest


def test_missing_tools_are_named(tmp_path):
    python = get_language("python")
    assert python.missing_tools(path=str(tmp_path)) == ["pytest"]
    (tmp_path / "pytest").write_text("#!/bin/sh\n")
    (tmp_path / "pytest").chmod(0o755)
    assert python.missing_tools(path=str(tmp_path)) == []


# --------------------------------------------------------------------------- the carry rule
@pytest.mark.parametrize(
    ("exercise_id", "rel", "carried"),
    [
        ("python/bowling", "bowling.py", True),
        ("python/bowling", "helpers.py", True),
        ("python/bowling", "conftest.py", False),
        ("python/bowling", "bowling_test.py", False),
        ("python/bowling", "test_extra.py", False),
        ("python/bowling", "setup.py", False),
        ("python/bowling", "sitecustomize.py", False),
        ("python/bowling", "os.py", False),
        ("python/bowling", "pytest.ini", False),
        ("python/bowling", "pyproject.toml", False),
        ("python/bowling", "sub/helpers.py", False),
        ("rust/bowling", "src/lib.rs", True),
        ("rust/bowling", "src/game/frame.rs", True),
        ("rust/bowling", "Cargo.toml", False),
        ("rust/bowling", "build.rs", False),
        ("rust/bowling", "tests/bowling.rs", False),
        ("rust/bowling", ".cargo/config.toml", False),
        ("go/bowling", "bowling.go", True),
        ("go/bowling", "frame.go", True),
        ("go/bowling", "main_test.go", False),
        ("go/bowling", "go.mod", False),
        ("javascript/bowling", "bowling.js", True),
        ("javascript/bowling", "frame.js", True),
        ("javascript/bowling", "jest.config.js", False),
        ("javascript/bowling", "babel.config.js", False),
        ("javascript/bowling", "x.spec.js", False),
        ("javascript/bowling", "package.json", False),
        ("java/bowling", "src/main/java/BowlingGame.java", True),
        ("java/bowling", "src/main/java/Frame.java", True),
        ("java/bowling", "src/test/java/Cheat.java", False),
        ("java/bowling", "build.gradle", False),
        ("cpp/all-your-base", "all_your_base.cpp", True),
        ("cpp/all-your-base", "helpers.h", True),
        ("cpp/all-your-base", "CMakeLists.txt", False),
        ("cpp/all-your-base", "all_your_base_test.cpp", False),
        ("cpp/all-your-base", "test/catch.hpp", False),
    ],
)
def test_carry_rule(exercises, exercise_id, rel, carried):
    ex = exercises[exercise_id]
    assert is_carried(ex, rel) is carried
    refusal = write_refusal(ex, rel)
    assert (refusal is None) is carried
    if not carried:
        assert rel in refusal


def test_every_solution_source_file_is_carried(exercises):
    for ex in exercises.values():
        for rel in ex.solution_files:
            if rel in ("Cargo.toml",):
                assert not is_carried(ex, rel)
            else:
                assert is_carried(ex, rel), (ex.id, rel)


def test_refusal_names_the_rule_and_the_solution_file(exercises):
    msg = write_refusal(exercises["rust/bowling"], "Cargo.toml")
    assert "would not be used by the test run" in msg and "src/lib.rs" in msg
    assert "protected" in write_refusal(exercises["python/bowling"], "bowling_test.py")


def test_prepare_test_dir_is_pristine_plus_carried_files(exercises, tmp_path):
    ex = exercises["python/bowling"]
    ws = create_workspace(ex, tmp_path / "ws" / "bowling")
    (ws / "bowling.py").write_text("SOLVED = 1\n")
    (ws / "helpers.py").write_text("X = 1\n")
    (ws / "conftest.py").write_text("import pytest\n")
    (ws / "pytest.ini").write_text("[pytest]\naddopts = -p no:python\n")
    dest = tmp_path / "run" / "bowling"
    changes = prepare_test_dir(ex, ws, dest)
    assert (dest / "bowling.py").read_text() == "SOLVED = 1\n"
    assert (dest / "helpers.py").is_file()
    assert not (dest / "conftest.py").exists() and not (dest / "pytest.ini").exists()
    assert (dest / "bowling_test.py").read_bytes() == (ex.path / "bowling_test.py").read_bytes()
    assert not (dest / ".meta").exists()
    assert changes.changed == ["bowling.py"]
    assert sorted(changes.created) == ["conftest.py", "helpers.py", "pytest.ini"]
    assert sorted(changes.not_carried) == ["conftest.py", "pytest.ini"]


def test_prepare_test_dir_restores_config_and_deleted_stubs(exercises, tmp_path):
    ex = exercises["rust/bowling"]
    ws = create_workspace(ex, tmp_path / "ws" / "bowling")
    (ws / "Cargo.toml").write_text((ws / "Cargo.toml").read_text() + "autotests = false\n")
    (ws / "src" / "lib.rs").unlink()
    dest = tmp_path / "run" / "bowling"
    changes = prepare_test_dir(ex, ws, dest)
    assert (dest / "Cargo.toml").read_bytes() == (ex.path / "Cargo.toml").read_bytes()
    assert (dest / "src" / "lib.rs").read_bytes() == (ex.path / "src" / "lib.rs").read_bytes()
    assert changes.deleted == ["src/lib.rs"] and changes.not_carried == ["Cargo.toml"]


def test_reference_build_takes_the_manifest_from_meta(exercises, tmp_path):
    ex = exercises["rust/decimal"]
    ws = create_workspace(ex, tmp_path / "ws" / "decimal")
    dest = tmp_path / "run" / "decimal"
    prepare_test_dir(ex, ws, dest, reference_build=True)
    assert (dest / "Cargo.toml").read_bytes() == (ex.path / ".meta" / "Cargo-example.toml").read_bytes()


def test_prepare_test_dir_applies_test_rewrites(exercises, tmp_path):
    ex = exercises["javascript/two-bucket"]
    ws = create_workspace(ex, tmp_path / "ws" / "two-bucket")
    dest = tmp_path / "run" / "two-bucket"
    prepare_test_dir(ex, ws, dest)
    assert "xtest(" not in (dest / ex.test_files[0]).read_text()


def test_workspace_changes_of_a_fresh_workspace_are_empty(exercises, tmp_path):
    ex = exercises["java/bowling"]
    ws = create_workspace(ex, tmp_path / "bowling")
    changes = workspace_changes(ex, ws)
    assert changes.created == changes.changed == changes.deleted == changes.not_carried == []


# --------------------------------------------------------------------------- the frameworks' reports
PYTEST_PASS = """============================= test session starts ==============================
collected 31 items

bowling_test.py ...............................                          [100%]

============================== 31 passed in 0.05s ==============================
"""
PYTEST_FAIL = """bowling_test.py F.                                                       [100%]

=================================== FAILURES ===================================
FAILED bowling_test.py::BowlingTest::test_x - AssertionError
========================= 1 failed, 1 passed in 0.07s ==========================
"""
PYTEST_COLLECT_ERROR = """==================================== ERRORS ====================================
E   SyntaxError: invalid syntax
=========================== short test summary info ============================
ERROR bowling_test.py
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
=============================== 1 error in 0.10s ===============================
"""
CARGO_PASS = """running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 31 tests
test result: ok. 31 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s

   Doc-tests bowling

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
"""
CARGO_NONE = CARGO_PASS.replace("31 passed", "0 passed")
JEST_PASS = """PASS ./bowling.spec.js
  Bowling
    ✓ should be able to score a game with all zeros (2 ms)

Test Suites: 1 passed, 1 total
Tests:       31 passed, 31 total
Snapshots:   0 total
Time:        0.61 s
Ran all test suites matching /.\\/bowling.spec.js/i.
"""
JEST_NO_TESTS = """No tests found, exiting with code 0
"""
JEST_SUITE_ERROR = """FAIL ./bowling.spec.js
  ● Test suite failed to run

Test Suites: 1 failed, 1 passed, 2 total
Tests:       3 passed, 3 total
"""
JUNIT_PASS = """Test run finished after 95 ms
[         3 containers found      ]
[         0 containers skipped    ]
[         3 containers started    ]
[         0 containers aborted    ]
[         3 containers successful ]
[         0 containers failed     ]
[        31 tests found           ]
[         0 tests skipped         ]
[        31 tests started         ]
[         0 tests aborted         ]
[        31 tests successful      ]
[         0 tests failed          ]
"""
CATCH_PASS = """===============================================================================
All tests passed (30 assertions in 31 test cases)

[100%] Built target test_bowling
"""
CATCH_FAIL = """===============================================================================
test cases: 31 | 30 passed | 1 failed
assertions: 31 | 30 passed | 1 failed
"""


@pytest.mark.parametrize(
    ("kind", "output", "passed", "failed", "errors"),
    [
        ("pytest", PYTEST_PASS, 31, 0, 0),
        ("pytest", PYTEST_FAIL, 1, 1, 0),
        ("pytest", PYTEST_COLLECT_ERROR, 0, 0, 1),
        ("pytest", clean_output(PYTEST_PASS, Path("/x"), "x"), 31, 0, 0),
        ("cargo", CARGO_PASS, 31, 0, 0),
        ("jest", JEST_PASS, 31, 0, 0),
        ("jest", JEST_SUITE_ERROR, 3, 0, 1),
        ("junit-console", JUNIT_PASS, 31, 0, 0),
        ("catch2", CATCH_PASS, 31, 0, 0),
        ("catch2", CATCH_FAIL, 30, 1, 0),
    ],
)
def test_parse_report(kind, output, passed, failed, errors):
    report = parse_report(kind, output)
    assert report is not None
    assert (report.passed, report.failed, report.errors) == (passed, failed, errors)


@pytest.mark.parametrize(
    ("kind", "output"),
    [
        ("pytest", ""),  # os._exit(0) before pytest printed anything
        ("pytest", "bowling_test.py ....\n    ===== 31 passed in 0.01s =====\n"),  # indented: not pytest's line
        ("cargo", "   Compiling bowling v1.2.0\n"),
        ("jest", JEST_NO_TESTS),
        ("jest", "    console.log\n      Tests:       31 passed, 31 total\n"),
        ("junit-console", "Exception in thread main\n"),
        ("catch2", "[100%] Built target bowling\n"),
        ("go-json", "go: go.mod requires go >= 1.30 (running go 1.27.4; GOTOOLCHAIN=local)\n"),
    ],
)
def test_no_report_is_none(kind, output):
    assert parse_report(kind, output) is None


def test_verdict_needs_exit_zero_and_a_report_of_tests_run():
    ok = parse_report("pytest", PYTEST_PASS)
    assert verdict(0, False, ok, "pytest") == (True, "")
    assert verdict(1, False, ok, "pytest") == (False, "exit code 1")
    assert verdict(None, True, None, "pytest") == (False, "timed out")
    passed, why = verdict(0, False, None, "pytest")
    assert not passed and "no test report" in why
    passed, why = verdict(0, False, parse_report("cargo", CARGO_NONE), "cargo")
    assert not passed and why == "exit code 0 but no test ran"
    passed, why = verdict(0, False, parse_report("jest", JEST_SUITE_ERROR), "jest")
    assert not passed and "1 errors" in why


def _ev(**kw):
    import json

    return json.dumps(kw) + "\n"


def test_go_json_becomes_plain_text_and_counts():
    raw = "".join([
        _ev(Action="start", Package="bowling"),
        _ev(Action="run", Package="bowling", Test="TestRoll"),
        _ev(Action="output", Package="bowling", Test="TestRoll", Output="=== RUN   TestRoll\n"),
        _ev(Action="output", Package="bowling", Test="TestRoll", Output="--- PASS: TestRoll (0.00s)\n"),
        _ev(Action="pass", Package="bowling", Test="TestRoll"),
        _ev(Action="run", Package="bowling", Test="TestScore"),
        _ev(Action="output", Package="bowling", Test="TestScore", Output="=== RUN   TestScore\n"),
        _ev(Action="output", Package="bowling", Test="TestScore/strike", Output="=== RUN   TestScore/strike\n"),
        _ev(Action="output", Package="bowling", Test="TestScore/strike",
            Output="    bowling_test.go:42: Score() = 0, want 10\n"),
        _ev(Action="output", Package="bowling", Test="TestScore/strike",
            Output="    --- FAIL: TestScore/strike (0.00s)\n"),
        _ev(Action="fail", Package="bowling", Test="TestScore/strike"),
        _ev(Action="output", Package="bowling", Test="TestScore", Output="--- FAIL: TestScore (0.00s)\n"),
        _ev(Action="fail", Package="bowling", Test="TestScore"),
        _ev(Action="output", Package="bowling", Output="FAIL\n"),
        _ev(Action="output", Package="bowling", Output="FAIL\tbowling\t0.003s\n"),
        _ev(Action="fail", Package="bowling"),
    ])
    text, report = go_plain_output(raw)
    assert text == ("    bowling_test.go:42: Score() = 0, want 10\n    --- FAIL: TestScore/strike (0.00s)\n"
                    "--- FAIL: TestScore (0.00s)\nFAIL\nFAIL\tbowling\t0.003s\n")
    assert (report.passed, report.failed, report.errors) == (1, 2, 1)


def test_go_json_without_tests_is_no_test_run():
    # TestMain calling os.Exit(0), or an init() that exits: the package "passes", no test ran
    raw = _ev(Action="start", Package="bowling") + _ev(Action="output", Package="bowling",
                                                      Output="ok  \tbowling\t0.002s\n") + _ev(
        Action="pass", Package="bowling")
    text, report = go_plain_output(raw)
    assert text == "ok  \tbowling\t0.002s\n"
    assert verdict(0, False, report, "go-json") == (False, "exit code 0 but no test ran")


def test_go_build_errors_are_kept():
    raw = ("# bowling [bowling.test]\n./bowling.go:3:1: syntax error\n"
           + _ev(Action="build-output", ImportPath="bowling", Output="./x.go:1: undefined: y\n")
           + _ev(Action="build-fail", ImportPath="bowling"))
    text, report = go_plain_output(raw)
    assert "./bowling.go:3:1: syntax error" in text and "undefined: y" in text
    assert report.errors == 1


def test_aider_error_counts():
    out = "Traceback\nSyntaxError: invalid syntax\n  SyntaxError: indented\nIndentationError: x\n"
    assert count_aider_errors(out) == (1, 1)
