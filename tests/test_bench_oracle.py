"""The oracle mapping for every exercise, and `localcode bench` end to end in Docker.

The end-to-end tests run the real CLI with the real Docker sandbox on one exercise per
language: ``--agent oracle`` must pass every one, ``--agent none`` must fail every one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcode.harness.bench import OracleSolver
from localcode.harness.dataset import load_dataset
from localcode.harness.oracle import reference_files
from localcode.harness.workspace import create_workspace, listing, protected_paths, workspace_dir
from sandbox_util import dataset_root

DATASET = dataset_root()
ONE_PER_LANGUAGE = ["cpp/all-your-base", "go/bowling", "java/bowling", "javascript/bowling",
                    "python/bowling", "rust/bowling"]


@pytest.fixture(scope="module")
def dataset():
    assert DATASET.is_dir(), f"the polyglot benchmark copy is missing at {DATASET}"
    return load_dataset(DATASET)


def test_reference_files_map_for_all_225(dataset):
    assert len(dataset.exercises) == 225
    for ex in dataset.exercises:
        mapping = reference_files(ex)
        assert mapping, ex.id
        for dest, src in mapping.items():
            assert src.is_file() and src.stat().st_size > 0, (ex.id, dest)
            assert src.is_relative_to(ex.path / ".meta"), (ex.id, src)
            assert not dest.startswith("."), (ex.id, dest)
            assert dest not in protected_paths(ex), (ex.id, dest)
        # every listed example file is used (except Java helpers that are read-only editor files)
        used = {src.relative_to(ex.path).as_posix() for src in mapping.values()}
        unused = set(ex.example_files) - used
        assert all(ex.language == "java" for _ in unused), (ex.id, unused)
        # every solution file with the language's main extension gets a reference
        assert set(mapping) & set(ex.solution_files), ex.id


def test_oracle_writes_through_the_workspace_without_leaking_meta(dataset, tmp_path):
    solver = OracleSolver()
    for ex in dataset.exercises:
        ws = create_workspace(ex, workspace_dir(tmp_path, ex))
        session = solver.start(ex, ws)
        report = session.attempt("", 1, None)
        session.close()
        assert report.error is None and report.usage.tool_errors == {}, ex.id
        files = listing(ws)
        assert not any(f.startswith(".meta") for f in files), ex.id
        assert not set(ex.hidden_files) & set(files), ex.id
        for dest, src in reference_files(ex).items():
            assert (ws / dest).read_bytes() == src.read_bytes(), (ex.id, dest)


def _bench(tmp_path: Path, agent: str, *extra: str) -> tuple[int, Path]:
    from localcode.cli import main

    run_dir = tmp_path / f"run-{agent}"
    argv = ["bench", "--agent", agent, "-k", ",".join(ONE_PER_LANGUAGE), "--dataset", str(DATASET),
            "--results-dir", str(run_dir), "--no-progress", "--jobs", "2", "--json", *extra]
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code, run_dir


def _results(run_dir: Path) -> dict[str, dict]:
    out = {}
    for tid in ONE_PER_LANGUAGE:
        path = run_dir / tid / "result.json"
        assert path.is_file(), f"no result for {tid}"
        out[tid] = json.loads(path.read_text())
        lang, name = tid.split("/")
        assert (run_dir / lang / "exercises" / "practice" / name / ".aider.results.json").is_file()
    return out


@pytest.mark.docker
@pytest.mark.slow
def test_bench_oracle_passes_and_none_fails_in_docker(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    code, run_dir = _bench(tmp_path, "oracle")
    out = capsys.readouterr()
    assert code == 0, out.err
    results = _results(run_dir)
    for tid, r in results.items():
        assert r["error"] is None, (tid, r["error"])
        assert [t["passed"] for t in r["tries"]] == [True], (tid, r["tries"][-1]["test_output"][-2000:])
    stats = json.loads(out.out)
    assert stats["pass_rate_1"] == 100.0 and stats["completed_tests"] == 6
    assert json.loads((run_dir / "stats.json").read_text())["pass_rate_2"] == 100.0
    run = json.loads((run_dir / "run.json").read_text())
    assert run["visible_tests"] is False and run["image_id"] and run["sandbox"] == "docker"
    assert run["dataset"]["content_hash"] or run["dataset"]["commit"]

    # a rerun of the same command resumes: everything is done, nothing runs again
    before = {tid: (run_dir / tid / "result.json").stat().st_mtime_ns for tid in ONE_PER_LANGUAGE}
    code, _ = _bench(tmp_path, "oracle")
    assert code == 0
    assert before == {tid: (run_dir / tid / "result.json").stat().st_mtime_ns for tid in ONE_PER_LANGUAGE}
    capsys.readouterr()

    code, run_dir = _bench(tmp_path, "none")
    out = capsys.readouterr()
    assert code == 0, out.err
    for tid, r in _results(run_dir).items():
        assert r["error"] is None, (tid, r["error"])
        assert [t["passed"] for t in r["tries"]] == [False, False], tid
        assert r["tries"][0]["test_output"].strip(), tid
    stats = json.loads(out.out)
    assert stats["pass_rate_2"] == 0.0 and stats["completed_tests"] == 6


def test_cli_interrupt_exits_130_then_the_same_command_resumes(tmp_path, monkeypatch, capsys):
    """Ctrl-C mid-run: exit 130, finished results kept, no partial ones; a rerun does the rest.

    Uses the local sandbox with the host's pytest (python exercises only).
    """
    import localcode.harness.bench as bench_mod
    from localcode.cli import main

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    ids = ["python/bowling", "python/beer-song", "python/book-store"]
    started: list[str] = []

    class InterruptOnThird(bench_mod.OracleSolver):
        def start(self, exercise, workspace):
            started.append(exercise.id)
            if len(started) == 3:
                raise KeyboardInterrupt
            return super().start(exercise, workspace)

    real_make = bench_mod.make_solver
    monkeypatch.setattr(bench_mod, "make_solver", lambda spec, **kw: InterruptOnThird())
    argv = ["bench", "--agent", "oracle", "-k", ",".join(ids), "--dataset", str(DATASET), "--sandbox", "local",
            "--jobs", "1", "--no-progress", "--run-name", "r1"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 130
    run_dir = tmp_path / "home" / "runs" / "r1"
    have = sorted(p.parent.relative_to(run_dir).as_posix() for p in run_dir.glob("*/*/result.json"))
    # tasks whose test was still queued or running when interrupted have no result
    assert set(have) <= set(started[:2]) and started[2] not in have
    assert not list(run_dir.rglob("*.tmp"))

    monkeypatch.setattr(bench_mod, "make_solver", real_make)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([*argv, "--json"])
    assert e.value.code == 0
    out = capsys.readouterr()
    assert f"{3 - len(have)} to run ({len(have)} already have results)" in out.err
    stats = json.loads(out.out)
    assert stats["completed_tests"] == 3 and stats["pass_rate_1"] == 100.0
    run = json.loads((run_dir / "run.json").read_text())
    assert run["task_ids"] == sorted(ids)
