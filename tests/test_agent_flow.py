"""Staged flows: presets, custom stages, blocked tools, flow_stage_done, plan_tasks."""

from __future__ import annotations

import pytest

from agent_support import assert_paired, call, config, context, events, finish
from localcode.agent.flow import PRESETS, preset
from localcode.agent.logs import RunLogger
from localcode.agent.loop import run_agent
from localcode.agent.state import AgentState
from localcode.backends.scripted import ScriptedChatModel
from localcode.config import FlowStage
from localcode.errors import ConfigError

TASKS = [{"title": "set x to 2", "files": ["a.py"], "details": "edit the assignment"}, "check b.py"]


def tool_texts(run) -> list[str]:
    return [m["content"] for m in run.messages if m["role"] == "tool"]


def test_context_plan_implement(tmp_path):
    ctx = context(tmp_path)
    model = ScriptedChatModel([
        call("write", path="a.py", content="too early"),          # blocked in context
        call("read", path="a.py"),
        call("flow_stage_done", summary="x is 1 in a.py"),
        call("finish", summary="too early"),                       # blocked in plan
        call("plan_tasks", tasks=TASKS),
        call("flow_stage_done", summary="planned"),
        call("write", path="a.py", content="x = 2\n"),
        finish("done"),
    ])
    logger = RunLogger(tmp_path / "logs" / "run")
    cfg = config(task_flow_mode="context-plan-implement")
    run = run_agent(model, cfg, "t", ctx, logger=logger)
    assert run.reason == "finished" and run.flow_stage == "implement"
    texts = tool_texts(run)
    assert texts[0] == ("error: tool write is not available in stage context; allowed: ls, read, glob, grep, "
                        "search, flow_stage_done")
    assert texts[2].startswith("ok: stage context done; now in stage plan.")
    assert texts[3].startswith("error: tool finish is not available in stage plan; allowed: ")
    assert "plan_tasks" in texts[3]
    assert texts[4].startswith("ok: 2 task(s) recorded:\n1. [ ] set x to 2 (files: a.py) — edit the assignment")
    # the next stage shows the task list back, in the tool result and in the system prompt
    assert "now in stage implement" in texts[5] and "1. [ ] set x to 2" in texts[5]
    assert "{{" not in texts[5] and "call finish" in texts[5]
    implement_system = model.requests[6]["messages"][0]["content"]
    assert "Current stage: implement." in implement_system and "2. [ ] check b.py" in implement_system
    assert "Current stage: context." in model.requests[0]["messages"][0]["content"]
    assert (ctx.workspace / "a.py").read_text() == "x = 2\n"
    assert ctx.state.stage_summaries == {"context": "x is 1 in a.py", "plan": "planned"}
    assert run.tool_errors == {"write": 1, "finish": 1}
    assert run.malformed_responses == 0  # a blocked tool is not a format error
    # the tool list the model sees never changes between stages (prompt cache)
    assert len({str(r["tools"]) for r in model.requests}) == 1
    assert [e["to"] for e in events(tmp_path / "logs" / "run.jsonl") if e["kind"] == "flow_stage"] == ["plan", "implement"]
    assert_paired(run.messages)


def test_flow_tools_are_added_to_the_tool_list(tmp_path):
    model = ScriptedChatModel([finish()])
    run_agent(model, config(tools=["read", "write", "finish"], task_flow_mode="plan-implement"), "t", context(tmp_path))
    names = [t["function"]["name"] for t in model.requests[0]["tools"]]
    assert names == ["read", "write", "finish", "flow_stage_done", "plan_tasks"]


def test_custom_flow_with_blocked_tools(tmp_path):
    flow = [FlowStage(name="look", instructions="Only look.", blocked_tools=["write", "edit"]),
            FlowStage(name="fix", instructions="Fix it.")]
    model = ScriptedChatModel([call("edit", path="a.py", old="1", new="2"), call("flow_stage_done"),
                               call("edit", path="a.py", old="1", new="2"), call("flow_stage_done"), finish()])
    ctx = context(tmp_path)
    run = run_agent(model, config(flow=flow), "t", ctx)
    texts = tool_texts(run)
    assert texts[0].startswith("error: tool edit is not available in stage look; allowed: ls, read, glob")
    assert "write" not in texts[0].split("allowed:")[1]
    assert texts[2].startswith("ok: ")
    assert texts[3].startswith("ok: stage fix is the last stage")
    assert (ctx.workspace / "a.py").read_text() == "x = 2\n"
    assert "Only look." in model.requests[0]["messages"][0]["content"]


def test_flow_stage_persists_when_the_run_continues(tmp_path):
    ctx = context(tmp_path)
    cfg = config(task_flow_mode="plan-implement")
    run1 = run_agent(ScriptedChatModel([call("flow_stage_done", summary="s"), "stopping here"]), cfg, "t", ctx)
    assert run1.flow_stage == "implement"
    model = ScriptedChatModel([call("write", path="a.py", content="x = 5\n"), finish()])
    run2 = run_agent(model, cfg, "go on", ctx, history=run1.messages)
    assert run2.reason == "finished" and (ctx.workspace / "a.py").read_text() == "x = 5\n"


def test_unknown_preset_and_duplicate_stages(tmp_path):
    with pytest.raises(ConfigError, match="unknown task_flow_mode 'zigzag'"):
        run_agent(ScriptedChatModel([finish()]), config(task_flow_mode="zigzag"), "t", context(tmp_path / "a"))
    twice = [FlowStage(name="a"), FlowStage(name="a")]
    with pytest.raises(ConfigError, match="unique"):
        run_agent(ScriptedChatModel([finish()]), config(flow=twice), "t", context(tmp_path / "b"))


def test_presets_are_well_formed():
    from localcode.agent.tools.registry import all_tools

    for name in PRESETS:
        stages = preset(name)
        assert stages[-1].allowed_tools is None  # the last stage can finish
        for s in stages:
            assert s.instructions
            for t in s.allowed_tools or []:
                assert t in all_tools(), (name, s.name, t)


def test_flow_stage_done_without_a_flow(tmp_path):
    run = run_agent(ScriptedChatModel([call("flow_stage_done"), finish()]),
                    config(tools=["flow_stage_done", "finish"]), "t", context(tmp_path))
    assert tool_texts(run)[0] == "ok: no staged flow is active; continue with the task"
    assert isinstance(run.final_answer, str)


def test_state_round_trip():
    s = AgentState(flow_index=2, plan="p", phase="plan")
    s.stage_summaries["a"] = "b"
    assert AgentState.from_dict(s.to_dict()).to_dict() == s.to_dict()
