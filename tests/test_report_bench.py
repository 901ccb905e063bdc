"""``localcode report`` on real runs of ``localcode bench`` with a scripted model (host
toolchains, python exercises): its table agrees with bench's own; ``bench --from-run RUN
--failed`` selects what failed; ``bench --repeat N`` records seeds, resumes, and the
report shows mean ± sd."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcode.harness.dataset import Exercise, load_dataset
from localcode.harness.results import RESULT_FILE, STATS_FILE
from sandbox_util import dataset_root

# task -> the try on which the scripted model writes the reference solution (None: never)
PLAN = {"python/bowling": 1, "python/wordy": 2, "python/transpose": None}


def _exercises(ids: list[str]) -> list[Exercise]:
    by_id = {e.id: e for e in load_dataset(dataset_root()).exercises}
    return [by_id[i] for i in ids]


def plan_policy(exs: list[Exercise]) -> Any:
    """A scripted model's response as a function of the conversation: on the planned try, write
    the reference files one call per turn, then finish; on other tries finish at once."""
    from localcode.harness.bench import first_prompt
    from localcode.harness.oracle import reference_files

    by_prompt = {first_prompt(e): e for e in exs}

    def respond(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
        ex = by_prompt[messages[1]["content"]]
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        try_index = len(users)
        step = sum(1 for m in messages[users[-1]:] if m.get("role") == "assistant")
        plan: list[tuple[str, dict[str, Any]]] = []
        if PLAN[ex.id] == try_index:
            plan += [("write", {"path": d, "content": s.read_text()}) for d, s in reference_files(ex).items()]
        plan.append(("finish", {"status": "done", "summary": "done" if plan else "no idea"}))
        name, args = plan[min(step, len(plan) - 1)]
        return {"tool_calls": [{"name": name, "arguments": args}]}

    return respond


@pytest.fixture
def model_loads() -> list[Any]:
    """The configs the patched model loader was called with, in order."""
    return []


@pytest.fixture
def scripted(tmp_path, monkeypatch, model_loads) -> Path:
    """An agent config whose model is the scripted plan (the loader is patched); LOCALCODE_HOME in tmp."""
    import localcode.backends.loader as loader
    from localcode.backends.scripted import ScriptedChatModel

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "120")
    exs = _exercises(list(PLAN))

    def load_model(config: Any) -> ScriptedChatModel:
        model_loads.append(config)
        return ScriptedChatModel([plan_policy(exs)] * 500)

    monkeypatch.setattr(loader, "load_model", load_model)
    agent = tmp_path / "scripted.json"
    agent.write_text(json.dumps({"name": "scripted", "tools": ["read", "write", "finish"], "max_turns": 8}))
    return agent


def run_cli(argv: list[str]) -> int:
    from localcode.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0)


def bench_argv(agent: Path, ids: list[str], *extra: str) -> list[str]:
    return ["bench", "--agent", str(agent), "-k", ",".join(ids), "--dataset", str(dataset_root()),
            "--sandbox", "local", "--jobs", "1", "--tries", "2", "--no-progress", *extra]


@pytest.mark.slow
def test_report_agrees_with_bench_and_reruns_failed(tmp_path, scripted, capsys):
    assert run_cli(bench_argv(scripted, list(PLAN), "--run-name", "r", "--json")) == 0
    out = capsys.readouterr()
    bench_stats = json.loads(out.out)
    bench_table = out.err[out.err.index("\n", out.err.index("run ")) + 1:out.err.index("results: ")]
    run_dir = tmp_path / "home" / "runs" / "r"
    assert (bench_stats["pass_num_1"], bench_stats["pass_num_2"], bench_stats["completed_tests"]) == (1, 2, 3)

    assert run_cli(["report", "r", "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    (block,) = report["runs"]
    # one source of truth: the report's statistics are bench's, and its table is bench's table
    assert block["stats"] == bench_stats == json.loads((run_dir / STATS_FILE).read_text())
    assert bench_table.strip() and bench_table.strip() in out.err
    tasks = {t["id"]: t for t in block["tasks"]}
    assert {t: tasks[t]["outcome"] for t in PLAN} == {"python/bowling": "pass@1", "python/wordy": "pass@2",
                                                      "python/transpose": "fail"}
    assert [x["stop_reason"] for x in tasks["python/wordy"]["tries"]] == ["finished", "finished"]
    assert tasks["python/transpose"]["turns"] == 2 and tasks["python/bowling"]["tokens"] > 0
    assert block["pass_at"]["2"]["k"] == 2 and block["pass_at"]["2"]["n"] == 3
    facts = block["facts"]
    assert (facts["tools"], facts["max_turns"], facts["tries"], facts["sandbox"]) == \
        (["read", "write", "finish"], 8, 2, "local")
    # the page's drill-down data is read from the real try logs
    from localcode.harness.report import load_runs
    from localcode.harness.report_html import conversations

    (run,) = load_runs([run_dir])[0]
    wordy = conversations(run)["python/wordy"]
    assert [t["index"] for t in wordy] == [1, 2] and wordy[1]["passed"] and not wordy[0]["passed"]
    kinds = [e["kind"] for e in wordy[1]["events"]]
    assert kinds[0] == "session_start" and kinds[-1] == "end" and "tool_result" in kinds
    assert wordy[0]["events"][0]["task"].startswith("# Instructions") and wordy[1]["events"][0]["continued"]
    calls = [c["name"] for e in wordy[1]["events"] if e["kind"] == "response" for c in e["tool_calls"]]
    assert calls[:1] == ["write"] and calls[-1] == "finish"
    assert wordy[0]["test_output"] and wordy[1]["test_command"]
    # the YAML entry is bench's stats.yaml entry
    assert run_cli(["report", "r", "--yaml", "-q"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == yaml.safe_load((run_dir / "stats.yaml").read_text())

    # rerun what failed: a new run holding only python/transpose
    assert run_cli(["bench", "--agent", str(scripted), "--from-run", "r", "--failed", "--dataset",
                    str(dataset_root()), "--sandbox", "local", "--no-progress", "--run-name", "r2"]) == 0
    info = json.loads((tmp_path / "home" / "runs" / "r2" / "run.json").read_text())
    assert info["task_ids"] == ["python/transpose"]
    assert info["selection"]["from_run"] == str(run_dir) and info["selection"]["failed"] is True
    # --select-from is the same option; -k narrows it; --failed alone is a usage error
    capsys.readouterr()
    assert run_cli(["bench", "--agent", str(scripted), "--select-from", str(run_dir), "-k", "python/wordy",
                    "--dataset", str(dataset_root()), "--sandbox", "local", "--no-progress", "--run-name", "r3"]) == 0
    assert json.loads((tmp_path / "home" / "runs" / "r3" / "run.json").read_text())["task_ids"] == ["python/wordy"]
    assert run_cli(["bench", "--agent", str(scripted), "--failed", "--dataset", str(dataset_root())]) == 2
    assert "--failed needs --from-run" in capsys.readouterr().err
    assert run_cli(["bench", "--agent", str(scripted), "--from-run", "nope", "--failed",
                    "--dataset", str(dataset_root())]) == 1
    assert "no run matches 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_repeat_records_seeds_resumes_and_reports(tmp_path, scripted, model_loads, capsys):
    ids = ["python/bowling", "python/transpose"]
    argv = bench_argv(scripted, ids, "--repeat", "2", "--seed", "5")
    assert run_cli(argv) == 0
    assert [c.seed for c in model_loads] == [5]  # the model loaded once for both repeats
    runs = tmp_path / "home" / "runs"
    (top,) = list(runs.iterdir())
    manifest = json.loads((top / "repeats.json").read_text())
    assert manifest["repeats"] == 2 and manifest["seeds"] == [5, 6]
    for k, seed in ((1, 5), (2, 6)):
        info = json.loads((top / f"repeat-{k}" / "run.json").read_text())
        assert info["agent_info"]["seed"] == seed and info["agent_overrides"]["seed"] == seed
        assert sorted(info["task_ids"]) == ids
        assert all((top / f"repeat-{k}" / t / RESULT_FILE).is_file() for t in ids)

    # an interrupted repeat: one result lost; the same command resumes that folder and reruns only it
    kept = top / "repeat-1" / "python" / "bowling" / RESULT_FILE
    before = kept.stat().st_mtime_ns
    (top / "repeat-2" / "python" / "transpose" / RESULT_FILE).unlink()
    capsys.readouterr()
    assert run_cli(argv) == 0
    assert list(runs.iterdir()) == [top]
    assert kept.stat().st_mtime_ns == before
    assert (top / "repeat-2" / "python" / "transpose" / RESULT_FILE).is_file()
    assert "pass_rate_2 over 2 repeats: 50.0 +- 0.0" in capsys.readouterr().err

    assert run_cli(["report", str(top), "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [b["label"] for b in report["runs"]] == [f"{top.name}#1", f"{top.name}#2"]
    (g,) = report["repeats"]
    assert g["seeds"] == [5, 6] and g["pass_at"]["2"] == {"mean": 50.0, "sd": 0.0, "values": [50.0, 50.0]}
    assert g["solve_frequency"] == {"python/bowling": {"solved": 2, "runs": 2},
                                    "python/transpose": {"solved": 0, "runs": 2}}
    # a plain run of the same selection never resumes into the repeat folder
    assert run_cli(bench_argv(scripted, ids, "--seed", "5")) == 0
    assert len(list(runs.iterdir())) == 2
