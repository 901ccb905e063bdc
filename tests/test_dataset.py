"""Dataset parsing: the real polyglot benchmark, malformed exercises, dataset identity."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from localcode.errors import DatasetError
from sandbox_util import dataset_root
from localcode.harness.dataset import content_hash, dataset_identity, load_dataset, resolve_dataset_dir

DATASET = dataset_root()


@pytest.fixture(scope="module")
def real():
    assert DATASET.is_dir(), f"the polyglot benchmark copy is missing at {DATASET}"
    return load_dataset(DATASET)


def test_real_dataset_has_225_exercises_per_language(real):
    assert not real.problems
    counts = Counter(e.language for e in real.exercises)
    assert counts == {"cpp": 26, "go": 39, "java": 47, "javascript": 49, "python": 34, "rust": 30}
    ids = [e.id for e in real.exercises]
    assert ids == sorted(ids) and len(set(ids)) == 225


def test_instructions_are_intro_instructions_append_in_order(real):
    ex = real.by_id()["go/alphametics"]
    docs = ex.path / ".docs"
    parts = [docs / n for n in ("introduction.md", "instructions.md", "instructions.append.md") if (docs / n).exists()]
    assert len(parts) >= 2
    assert ex.instructions == "".join(p.read_text() for p in parts)


def test_files_come_from_config(real):
    ex = real.by_id()["go/robot-simulator"]
    assert ex.solution_files == ["robot_simulator.go"]
    assert ex.test_files == ["robot_simulator_test.go"]
    assert ex.example_files == [".meta/example.go"]
    assert ex.editor_files == ["defs.go"]
    # extra *_test.go files are tests even though config.json does not list them
    assert set(ex.hidden_files) == {"robot_simulator_test.go", "robot_simulator_step2_test.go",
                                    "robot_simulator_step3_test.go"}
    assert set(ex.workspace_files) == {"robot_simulator.go", "defs.go", "go.mod"}


def test_every_exercise_partitions_its_files(real):
    for ex in real.exercises:
        assert set(ex.test_files) <= set(ex.hidden_files), ex.id
        assert set(ex.solution_files) <= set(ex.workspace_files), ex.id
        assert not set(ex.hidden_files) & set(ex.workspace_files), ex.id
        for rel in ex.hidden_files + ex.workspace_files:
            assert not rel.startswith((".meta/", ".docs/", ".approaches/")), (ex.id, rel)


def _make_exercise(root: Path, lang: str, name: str, files: dict | None = None, config: str | None = None) -> Path:
    folder = root / lang / "exercises" / "practice" / name
    (folder / ".meta").mkdir(parents=True)
    (folder / ".docs").mkdir()
    (folder / ".docs" / "instructions.md").write_text(f"Do {name}.\n")
    (folder / f"{name}.py").write_text("def f():\n    pass\n")
    (folder / f"{name}_test.py").write_text("from x import f\n")
    (folder / ".meta" / "example.py").write_text("def f():\n    return 1\n")
    if config is None:
        config = json.dumps({"files": files or {
            "solution": [f"{name}.py"], "test": [f"{name}_test.py"], "example": [".meta/example.py"]}})
    (folder / ".meta" / "config.json").write_text(config)
    return folder


def test_malformed_exercises_are_reported_with_their_path_and_skipped(tmp_path, capsys):
    _make_exercise(tmp_path, "python", "good")
    bad_json = _make_exercise(tmp_path, "python", "badjson", config="{not json")
    no_files = _make_exercise(tmp_path, "python", "nofiles", config=json.dumps({"blurb": "x"}))
    missing = _make_exercise(tmp_path, "python", "missing", files={
        "solution": ["missing.py", "gone.py"], "test": ["missing_test.py"], "example": [".meta/example.py"]})
    load = load_dataset(tmp_path)
    assert [e.id for e in load.exercises] == ["python/good"]
    problems = {p.path: p.reason for p in load.problems}
    assert set(problems) == {bad_json, no_files, missing}
    assert "not valid JSON" in problems[bad_json]
    assert "files" in problems[no_files]
    assert "gone.py" in problems[missing]
    err = capsys.readouterr().err
    for folder in (bad_json, no_files, missing):
        assert str(folder) in err


def test_empty_or_missing_dataset_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match="no exercises"):
        load_dataset(tmp_path)
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOCALCODE_DATASET", raising=False)
    with pytest.raises(DatasetError, match=r"dataset not found at .*: run 'localcode setup' or pass --dataset"):
        resolve_dataset_dir(None)
    monkeypatch.setenv("LOCALCODE_DATASET", str(tmp_path))
    assert resolve_dataset_dir(None) == tmp_path.resolve()
    with pytest.raises(DatasetError, match="dataset not found"):
        resolve_dataset_dir(tmp_path / "nope")


def test_content_hash_is_stable_and_sees_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    _make_exercise(tmp_path / "ds", "python", "one")
    h1 = content_hash(tmp_path / "ds")
    assert h1 == content_hash(tmp_path / "ds")  # cached path
    (tmp_path / "home" / "cache" / "dataset-hashes.json").unlink()
    assert h1 == content_hash(tmp_path / "ds")  # recomputed from scratch
    f = tmp_path / "ds" / "python" / "exercises" / "practice" / "one" / "one.py"
    f.write_text("def f():\n    return 2\n")
    assert content_hash(tmp_path / "ds") != h1
    assert dataset_identity(tmp_path / "ds") == (None, content_hash(tmp_path / "ds"))


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_checkout_is_identified_by_its_commit(tmp_path):
    ds = tmp_path / "ds"
    _make_exercise(ds, "python", "one")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", str(ds)], check=True, env=env)
    subprocess.run(["git", "-C", str(ds), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(ds), "commit", "-qm", "x"], check=True, env=env)
    head = subprocess.run(["git", "-C", str(ds), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert dataset_identity(ds) == (head, None)


def test_setup_checks_a_given_dataset_without_image(tmp_path, monkeypatch, capsys):
    from localcode.cli import main

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit) as e:
        main(["setup", "--dataset", str(DATASET), "--no-image"])
    assert e.value.code == 0
    assert "225 exercises" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_setup_clones_with_git_and_explains_a_failure(tmp_path, monkeypatch, capsys):
    import localcode.commands.setup as setup_mod
    from localcode.cli import main

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOCALCODE_DATASET", raising=False)
    monkeypatch.setattr(setup_mod, "DATASET_URL", str(tmp_path / "no-such-repo"))
    with pytest.raises(SystemExit) as e:
        main(["setup", "--no-image"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "could not clone" in err and "--dataset" in err
    assert not (tmp_path / "home" / "datasets" / "polyglot-benchmark").exists()

    # a reachable repository (a local one standing in for GitHub) is cloned into the data dir
    src = tmp_path / "upstream"
    _make_exercise(src, "python", "one")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", str(src)], check=True, env=env)
    subprocess.run(["git", "-C", str(src), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(src), "commit", "-qm", "x"], check=True, env=env)
    monkeypatch.setattr(setup_mod, "DATASET_URL", f"file://{src}")
    with pytest.raises(SystemExit) as e:
        main(["setup", "--no-image"])
    assert e.value.code == 0, capsys.readouterr().err
    cloned = tmp_path / "home" / "datasets" / "polyglot-benchmark"
    assert [x.id for x in load_dataset(cloned).exercises] == ["python/one"]
    assert dataset_identity(cloned)[0] is not None
