"""Phase control: off, rules, llm (a scripted probe), hybrid; hints; phase_log; never in the conversation."""

from __future__ import annotations

import io

import pytest

from agent_support import assert_paired, call, config, context, events, finish
from localcode.agent.logs import RunLogger
from localcode.agent.loop import run_agent
from localcode.agent.phase import classify
from localcode.backends.scripted import ScriptedChatModel
from localcode.config import PhaseControl
from localcode.errors import ConfigError


def phased(mode: str, **control) -> dict:
    return {"phase_control": PhaseControl(mode=mode, **control)}


def test_off_has_no_phase(tmp_path):
    run = run_agent(ScriptedChatModel([call("read", path="a.py"), finish()]), config(), "t", context(tmp_path))
    assert run.phase is None and run.phase_events == []


def test_rules_move_context_plan_implement_verify(tmp_path):
    script = [call("read", path="a.py"), call("write", path="a.py", content="x = 2\n"),
              call("shell", command="true"), finish()]
    cfg = config(tools=["read", "write", "shell", "finish"], **phased("rules"))
    ctx = context(tmp_path, shell_enabled=True)
    model = ScriptedChatModel(script)
    run = run_agent(model, cfg, "t", ctx)
    assert [(e["from"], e["to"], e["by"]) for e in run.phase_events] == [
        ("context", "plan", "rules"), ("plan", "implement", "rules"), ("implement", "verify", "rules")]
    assert run.phase == "verify"
    # the hint of the current phase is in the system prompt the model got
    assert "gathering context" in model.requests[0]["messages"][0]["content"]
    assert "planning" in model.requests[1]["messages"][0]["content"]
    assert "implementing" in model.requests[2]["messages"][0]["content"]
    assert "verifying" in model.requests[3]["messages"][0]["content"]
    # nothing about phases in the conversation itself
    assert not any("phase" in str(m.get("content", "")).lower() for m in run.messages[1:])
    assert model.requests[0]["messages"][1:] == run.messages[1:2]


def test_rules_respect_their_switches(tmp_path):
    cfg = config(**phased("rules", rules={"min_files_read_for_plan": 2, "write_to_implement": False}))
    model = ScriptedChatModel([call("read", path="a.py"), call("write", path="a.py", content="y"),
                               call("read", path="pkg/b.py"), finish()])
    run = run_agent(model, cfg, "t", context(tmp_path))
    assert [(e["to"], e["turn"]) for e in run.phase_events] == [("plan", 3)]


def test_custom_hints_and_states(tmp_path):
    cfg = config(**phased("rules", states=["context", "implement"], default="context",
                          hints={"context": "LOOK FIRST", "implement": "NOW WRITE"}))
    model = ScriptedChatModel([call("read", path="a.py"), call("write", path="a.py", content="y"), finish()])
    run = run_agent(model, cfg, "t", context(tmp_path))
    assert [e["to"] for e in run.phase_events] == ["implement"]  # "plan" is not a state here
    assert model.requests[0]["messages"][0]["content"].endswith("LOOK FIRST")
    assert model.requests[2]["messages"][0]["content"].endswith("NOW WRITE")


def test_llm_probe_classifies_outside_the_conversation(tmp_path):
    cfg = config(**phased("llm", llm={"temperature": 0.1, "max_tokens": 5}))
    model = ScriptedChatModel([call("read", path="a.py"), "Phase: plan",
                               call("write", path="a.py", content="y"), "implement.",
                               finish()])
    run = run_agent(model, cfg, "t", context(tmp_path))
    assert run.reason == "finished"
    assert [(e["to"], e["by"]) for e in run.phase_events] == [("plan", "llm"), ("implement", "llm")]
    probe = model.requests[1]
    assert len(probe["messages"]) == 1 and probe["tools"] is None
    assert probe["options"].temperature == 0.1 and probe["options"].max_tokens == 5
    assert "read" in probe["messages"][0]["content"]  # it saw the latest steps
    probe_text = probe["messages"][0]["content"]
    for req in (model.requests[0], model.requests[2], model.requests[4]):
        assert all(m.get("content") != probe_text for m in req["messages"])
    assert all(m.get("content") not in ("Phase: plan", "implement.") for m in run.messages)
    assert run.side_calls == {"phase_probe": 2}
    assert run.usage.model_calls == 5 and run.side_usage.model_calls == 2
    assert run.turns == 3
    assert_paired(run.messages)


def test_llm_probe_answer_naming_no_state_changes_nothing(tmp_path):
    model = ScriptedChatModel([call("read", path="a.py"), "banana", finish()])
    logger = RunLogger(tmp_path / "logs" / "run")
    run = run_agent(model, config(**phased("llm")), "t", context(tmp_path), logger=logger)
    assert run.phase_events == [] and run.phase == "context"
    probes = [e for e in events(tmp_path / "logs" / "run.jsonl") if e["kind"] == "phase_probe"]
    assert probes[0]["ok"] is False and probes[0]["answer"] == "banana"


def test_hybrid_probes_only_when_the_rules_did_not_move(tmp_path):
    cfg = config(**phased("hybrid", rules={"min_files_read_for_plan": 5}))
    model = ScriptedChatModel([
        call("read", path="a.py"), "plan",                # rules: nothing (1 of 5 files) -> probe -> plan
        call("write", path="a.py", content="y"),          # rules: implement -> no probe
        call("ls", path="."), "verify",                   # rules: nothing -> probe -> verify
        finish(),
    ])
    run = run_agent(model, cfg, "t", context(tmp_path))
    assert run.reason == "finished"
    assert [(e["to"], e["by"]) for e in run.phase_events] == [("plan", "llm"), ("implement", "rules"), ("verify", "llm")]
    assert run.side_calls == {"phase_probe": 2}


def test_phase_log_modes(tmp_path, monkeypatch):
    script = [call("read", path="a.py"), finish()]
    for mode, console_has, log_has in (("off", False, False), ("stdout", True, False), ("log", False, True),
                                       ("both", True, True)):
        console = io.StringIO()
        logger = RunLogger(tmp_path / mode / "run", console=console)
        cfg = config(phase_log=mode, **phased("rules"))
        run_agent(ScriptedChatModel(list(script)), cfg, "t", context(tmp_path / mode), logger=logger)
        assert ("[phase] context -> plan" in console.getvalue()) is console_has, mode
        text = (tmp_path / mode / "run.log").read_text()
        assert ("=== PHASE EVENTS" in text and "context -> plan by rules" in text) is log_has, mode
        assert any(e["kind"] == "phase" for e in events(tmp_path / mode / "run.jsonl")), mode


def test_env_overrides_phase_log(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALCODE_PHASE_LOG", "log")
    logger = RunLogger(tmp_path / "run")
    cfg = config(phase_log="off", **phased("rules"))
    run_agent(ScriptedChatModel([call("read", path="a.py"), finish()]), cfg, "t", context(tmp_path), logger=logger)
    assert "=== PHASE EVENTS" in (tmp_path / "run.log").read_text()
    monkeypatch.setenv("LOCALCODE_PHASE_LOG", "loud")
    with pytest.raises(ConfigError, match="LOCALCODE_PHASE_LOG"):
        run_agent(ScriptedChatModel([finish()]), cfg, "t", context(tmp_path / "x"))


def test_default_must_be_a_state(tmp_path):
    with pytest.raises(ConfigError, match="default"):
        run_agent(ScriptedChatModel([finish()]), config(**phased("rules", default="nap")), "t", context(tmp_path))


def test_classify():
    states = ["context", "plan", "implement", "verify"]
    assert classify("plan", states) == "plan"
    assert classify("The agent is implementing... I'd say IMPLEMENT now, not plan", states) == "implement"
    assert classify("planning", states) is None
    assert classify("", states) is None
