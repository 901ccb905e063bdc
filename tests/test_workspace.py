"""Workspace isolation: what the agent may see, tests restored fresh, protected paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localcode.harness.dataset import load_dataset
from localcode.harness.workspace import (
    create_workspace,
    is_protected,
    listing,
    protected_paths,
    restore_tests,
    strip_tests,
    workspace_dir,
)

from sandbox_util import dataset_root  # noqa: E402

DATASET = dataset_root()


@pytest.fixture(scope="module")
def dataset():
    assert DATASET.is_dir(), f"the polyglot benchmark copy is missing at {DATASET}"
    return load_dataset(DATASET)


def test_every_workspace_holds_only_solution_and_build_files(dataset, tmp_path):
    for ex in dataset.exercises:
        ws = create_workspace(ex, workspace_dir(tmp_path, ex))
        files = listing(ws)
        assert set(files) == set(ex.workspace_files), ex.id
        assert set(ex.solution_files) <= set(files), ex.id
        for rel in files:
            assert not rel.startswith((".meta/", ".docs/", ".approaches/")), (ex.id, rel)
        for rel in ex.test_files:
            assert not (ws / rel).exists(), (ex.id, rel)
        # solution files are writable copies, not links into the read-only dataset
        for rel in ex.solution_files:
            p = ws / rel
            assert not p.is_symlink() and os.access(p, os.W_OK), (ex.id, rel)
            assert p.read_bytes() == (ex.path / rel).read_bytes()


def test_build_files_are_there(dataset, tmp_path):
    by = dataset.by_id()
    expect = {"rust/bowling": "Cargo.toml", "go/bowling": "go.mod", "cpp/all-your-base": "CMakeLists.txt",
              "javascript/bowling": "package.json", "java/bowling": "build.gradle"}
    for tid, build_file in expect.items():
        ws = create_workspace(by[tid], tmp_path / tid)
        assert (ws / build_file).is_file(), tid


def test_tests_restored_fresh_then_stripped(dataset, tmp_path):
    ex = dataset.by_id()["cpp/all-your-base"]
    ws = create_workspace(ex, tmp_path / "ws")
    restore_tests(ex, ws)
    for rel in ex.hidden_files:  # test file and Catch's support files
        assert (ws / rel).read_bytes() == (ex.path / rel).read_bytes()
    # an agent (or a test run) edits the test, then it is restored again
    test = ws / ex.test_files[0]
    os.chmod(test, 0o644)
    test.write_text("// all tests removed\n")
    restore_tests(ex, ws)
    assert test.read_bytes() == (ex.path / ex.test_files[0]).read_bytes()
    (ws / "build").mkdir()
    (ws / "build" / "a.out").write_text("x")
    (ws / ex.solution_files[0]).write_text("// my solution\n")
    strip_tests(ex, ws)
    assert set(listing(ws)) == set(ex.workspace_files)
    assert not (ws / "test").exists() and not (ws / "build").exists()
    assert (ws / ex.solution_files[0]).read_text() == "// my solution\n"


def test_visible_tests_are_read_only(dataset, tmp_path):
    ex = dataset.by_id()["python/bowling"]
    ws = create_workspace(ex, tmp_path / "ws", visible_tests=True)
    test = ws / ex.test_files[0]
    assert test.is_file()
    assert not (test.stat().st_mode & 0o222)
    assert set(listing(ws)) == set(ex.workspace_files) | set(ex.hidden_files)


def test_create_workspace_replaces_an_old_one(dataset, tmp_path):
    ex = dataset.by_id()["python/bowling"]
    ws = create_workspace(ex, tmp_path / "ws", visible_tests=True)
    (ws / "junk.py").write_text("x")
    create_workspace(ex, ws)
    assert set(listing(ws)) == set(ex.workspace_files)


def test_protected_paths(dataset):
    by = dataset.by_id()
    go = by["go/two-bucket"]
    assert protected_paths(go) == {"two_bucket_test.go", "cases_test.go", "bonus_test.go", "go.mod"}
    assert is_protected(go, "./cases_test.go")
    assert not is_protected(go, "two_bucket.go")
    java = by["java/dominoes"]
    prot = protected_paths(java)
    assert "src/test/java/DominoesTest.java" in prot
    assert "src/main/java/Domino.java" in prot  # a read-only editor file
    assert "build.gradle" in prot  # an invalidator: the runner restores it before each run
    assert "src/main/java/Dominoes.java" not in prot
    for ex in dataset.exercises:
        assert set(ex.test_files) <= protected_paths(ex)
        assert not set(ex.solution_files) & protected_paths(ex), ex.id
