"""Sweeps and the parts of ``bench --ray`` that need no cluster (issue 14).

- ``--agent A --agent B`` and ``--sweep FILE``: one run folder per agent, each a complete
  run that ``report``/resume read as usual; bad sweep files fail with one line.
- Worker placement from the nodes' resources (``plan_workers``).
- A missing Ray is one line naming ``pip install 'localcode[ray]'``, before any work.
- ``write_task``: a task's agent logs replace an earlier run's, ``result.json`` comes last.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from localcode.errors import ConfigError, MissingDependency
from localcode.harness.results import ResultStore, TaskResult, TryResult
from localcode.harness.sweep import load_sweep, sweep_entries
from sandbox_util import dataset_root


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from localcode.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_sweep_runs_each_agent_into_its_own_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("agents:\n  - none\n")
    argv = ["bench", "--agent", "oracle", "--sweep", str(sweep), "-k", "python/bowling,python/wordy",
            "--dataset", str(dataset_root()), "--sandbox", "local", "--jobs", "1", "--tries", "1",
            "--no-progress", "--results-dir", str(tmp_path / "runs"), "--json"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err[-2000:]
    summary = json.loads(out)
    assert [(row["agent"], Path(row["run_dir"]).name) for row in summary] == [("oracle", "oracle"), ("none", "none")]
    assert summary[0]["stats"]["pass_rate_1"] == 100.0 and summary[1]["stats"]["pass_rate_1"] == 0.0
    for agent in ("oracle", "none"):
        store = ResultStore(tmp_path / "runs" / agent)
        assert store.read_run_info().agent == agent
        assert sorted(r.id for r in store.results()) == ["python/bowling", "python/wordy"]
    # the same command again resumes both runs: nothing left to do
    code, out, err = _run(argv, capsys)
    assert code == 0 and err.count("0 to run") == 2, err[-2000:]


def test_sweep_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agents:\n  - {agent: oracle, temperature: 0}\n")
    with pytest.raises(ConfigError, match=r"entry 1: temperature: .*agent_args"):
        load_sweep(bad)
    bad.write_text("just text")
    with pytest.raises(ConfigError, match="expected a list of agents"):
        load_sweep(bad)
    good = tmp_path / "good.yaml"
    good.write_text("- oracle\n- {agent: gguf/gemma-3-270m, agent_args: 'temperature=0.7'}\n")
    entries = sweep_entries(("none",), good)
    assert [(e.agent, e.agent_args) for e in entries] == [
        ("none", None), ("oracle", None), ("gguf/gemma-3-270m", "temperature=0.7")]
    with pytest.raises(ConfigError, match="listed twice"):
        sweep_entries(("oracle",), good)
    with pytest.raises(ConfigError, match="no agent"):
        sweep_entries((), None)


def _node(node_id: str, head: bool = False, **resources: float) -> dict:
    res = {"CPU": 2.0, f"node:10.0.0.{node_id}": 1.0, **resources}
    if head:
        res["node:__internal_head__"] = 1.0
    return {"NodeID": node_id, "Alive": True, "NodeManagerAddress": f"10.0.0.{node_id}", "Resources": res}


def test_workers_are_placed_per_node_gpu_or_resource():
    from localcode.harness.ray_runner import WORKER_RESOURCE, plan_workers

    nodes = [_node("3", GPU=2.0), _node("2", **{WORKER_RESOURCE: 3.0}), _node("1", head=True),
             {**_node("4"), "Alive": False}]
    plan = plan_workers(nodes)
    assert [(n["NodeID"], opts) for n, opts in plan] == [
        ("1", {}),                                                    # the head first: one worker
        ("2", {"resources": {WORKER_RESOURCE: 1}}), ("2", {"resources": {WORKER_RESOURCE: 1}}),
        ("2", {"resources": {WORKER_RESOURCE: 1}}),                   # as many as the node advertises
        ("3", {"num_gpus": 1}), ("3", {"num_gpus": 1}),                # one per GPU
    ]                                                                 # dead nodes get none
    assert [n["NodeID"] for n, _ in plan_workers(nodes, max_workers=2)] == ["1", "2"]


def test_missing_ray_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    from localcode.harness.ray_runner import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra looks like
    with pytest.raises(MissingDependency, match=r"pip install 'localcode\[ray\]'"):
        import_ray()
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    code, out, err = _run(["bench", "--agent", "oracle", "-k", "python/bowling", "--dataset", str(dataset_root()),
                           "--sandbox", "local", "--no-progress", "--results-dir", str(tmp_path / "run"),
                           "--ray"], capsys)
    lines = [line for line in err.splitlines() if "localcode[ray]" in line]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert not list((tmp_path / "run").glob("*/*/result.json"))


def test_write_task_replaces_old_logs_and_writes_the_result_last(tmp_path):
    from localcode.harness.ray_runner import TaskOutput, write_task

    store = ResultStore(tmp_path / "run")
    folder = store.task_dir("python/bowling")
    folder.mkdir(parents=True)
    (folder / "try-2.jsonl").write_text("from an earlier run that ended in an error")
    result = TaskResult(id="python/bowling", language="python", name="bowling", agent="x", max_tries=2,
                        tries=[TryResult(index=1, passed=True)], finished_at="t")
    write_task(store, None, TaskOutput(result=result, logs={"try-1.jsonl": b"{}\n", "../escape": b"no"}))
    names = {p.name for p in folder.iterdir()}
    assert {"result.json", "try-1.jsonl"} <= names and "try-2.jsonl" not in names
    assert not (tmp_path / "run" / "python" / "escape").exists() and not (folder.parent / "escape").exists()
    assert store.read("python/bowling") == result


def test_limited_runner_passes_reference_build_through() -> None:
    """bench sets ``reference_build`` on the oracle's runner; the Ray worker's wrapper must pass it on."""
    from types import SimpleNamespace

    from localcode.harness.ray_runner import _LimitedRunner

    inner = SimpleNamespace(reference_build=False)
    limited = _LimitedRunner(inner, jobs=1)
    assert hasattr(limited, "reference_build") and limited.reference_build is False
    limited.reference_build = True
    assert inner.reference_build is True and limited.reference_build is True
