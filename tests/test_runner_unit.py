"""Unit tests of the test runner's logic: language table, test-file preparation,
output cleaning and capping, restoring tests. No Docker; the real dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localcode.errors import ConfigError
from localcode.harness.dataset import load_dataset
from localcode.harness.languages import LANGUAGES, get_language
from localcode.harness.runner import cap_output, clean_output, restore_test_files
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
    assert get_language("go").test_command == ("go", "test", "./...")


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
        ("===== 1 failed, 2 passed in 0.03s =====", "===== 1 failed, 2 passed  ====="),
        ("--- FAIL: TestScore (0.00s)", "--- FAIL: TestScore"),
        ("ok  \tbowling\t0.003s", "ok  \tbowling"),
        ("  ✓ rolls a gutter game (3 ms)", "  ✓ rolls a gutter game"),
        ("test result: FAILED. 1 passed; 2 failed; finished in 0.00s", "test result: FAILED. 1 passed; 2 failed; finished"),
        ("Test run finished after 123 ms", "Test run finished after"),
        ("\x1b[31mFAIL\x1b[0m", "FAIL"),
        ("    Blocking waiting for file lock on build directory\nerror[E0425]", "error[E0425]"),
    ],
)
def test_clean_output_removes_timings_and_colours(raw, expected):
    assert clean_output(raw, Path("/nowhere"), "x") == expected


def test_clean_output_replaces_the_workspace_path():
    ws = Path("/runs/2025/python/bowling")
    out = clean_output(f'File "{ws}/bowling.py", line 3', ws, "bowling")
    assert out == 'File "bowling/bowling.py", line 3'


def test_clean_output_is_stable_across_runs():
    a = "FAILED test_x - assert 1 == 2\n1 failed in 0.51s\nTime:        1.234 s\n"
    b = "FAILED test_x - assert 1 == 2\n1 failed in 0.07s\nTime:        0.9 s\n"
    assert clean_output(a, Path("/w"), "w") == clean_output(b, Path("/w"), "w")


def test_cap_output_keeps_head_and_tail():
    lines = [f"line {i}" for i in range(5000)]
    text = "\n".join(lines)
    capped = cap_output(text, 2000)
    assert len(capped) < 2200
    assert capped.startswith("line 0\n")
    assert capped.endswith("line 4999")
    assert "lines of test output omitted" in capped
    assert cap_output("short", 2000) == "short"


def test_missing_tools_are_named(tmp_path):
    python = get_language("python")
    assert python.missing_tools(path=str(tmp_path)) == ["pytest"]
    (tmp_path / "pytest").write_text("#!/bin/sh\n")
    (tmp_path / "pytest").chmod(0o755)
    assert python.missing_tools(path=str(tmp_path)) == []
