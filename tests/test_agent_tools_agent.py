"""The agent-level tools: think, plan_solution/get_plan, ask_questions, ask_agent, finish."""

from __future__ import annotations

from agent_support import assert_paired, call, config, context, events, finish
from localcode.agent.agent_tools import MAX_AGENT_DEPTH
from localcode.agent.logs import RunLogger
from localcode.agent.loop import run_agent
from localcode.agent.state import AgentState
from localcode.agent.tools.registry import ToolRegistry
from localcode.backends.base import ChatResult, Usage
from localcode.backends.scripted import ScriptedChatModel

ALL = ["ls", "read", "write", "think", "ask_agent", "ask_questions", "plan_solution", "plan_tasks", "finish"]


def tool_texts(run) -> list[str]:
    return [m["content"] for m in run.messages if m["role"] == "tool"]


def test_think_records_a_step(tmp_path):
    ctx = context(tmp_path)
    run = run_agent(ScriptedChatModel([call("reasoning", thought="x must become 2"), finish()]),
                    config(tools=ALL), "t", ctx)
    assert tool_texts(run)[0] == "ok: noted"
    assert ctx.state.thoughts == ["x must become 2"]
    assert run.tool_calls["think"] == 1


def test_plan_solution_and_get_plan(tmp_path):
    ctx = context(tmp_path)
    model = ScriptedChatModel([call("get_plan"), call("plan_solution", plan="1. edit a.py\n2. finish"),
                               call("get_plan"), finish()])
    run = run_agent(model, config(tools=ALL), "t", ctx)
    texts = tool_texts(run)
    assert texts[0].startswith("ok: no plan recorded yet")
    assert texts[1] == "ok: plan recorded (2 lines); now implement it"
    assert texts[2] == "ok: recorded plan:\n1. edit a.py\n2. finish"
    assert ctx.state.plan == "1. edit a.py\n2. finish"


def test_ask_questions_is_a_side_call(tmp_path):
    answer = ChatResult(content="1. yes\n2. a.py", usage=Usage(prompt_tokens=50, completion_tokens=7))
    model = ScriptedChatModel([call("ask_questions", questions=["Is x global?", "Which file?"]), answer, finish()])
    run = run_agent(model, config(tools=ALL), "make x 2", context(tmp_path))
    assert tool_texts(run)[0] == "ok: answers:\n1. yes\n2. a.py"
    side = model.requests[1]
    assert side["tools"] is None and len(side["messages"]) == 1
    assert "make x 2" in side["messages"][0]["content"] and "2. Which file?" in side["messages"][0]["content"]
    assert run.side_calls == {"ask_questions": 1}
    assert run.side_usage.prompt_tokens == 50 and run.usage.prompt_tokens >= 50
    assert run.usage.model_calls == 3 and run.turns == 2
    assert all(m.get("content") != side["messages"][0]["content"] for m in run.messages)


def test_ask_agent_runs_a_sub_agent_with_read_only_tools(tmp_path):
    ctx = context(tmp_path)
    logger = RunLogger(tmp_path / "logs" / "run")
    model = ScriptedChatModel([
        call("ask_agent", task="What does pkg/b.py return?"),
        call("read", path="pkg/b.py"),                      # the sub-agent
        call("finish", summary="f returns 1"),              # the sub-agent ends
        finish("learned it"),
    ])
    run = run_agent(model, config(tools=ALL), "t", ctx, logger=logger)
    assert run.reason == "finished"
    assert tool_texts(run)[0] == "ok: sub-agent ended (finished, 2 turns): f returns 1"
    sub_request = model.requests[1]
    assert sub_request["messages"][1]["content"] == "What does pkg/b.py return?"
    sub_tools = [t["function"]["name"] for t in sub_request["tools"]]
    assert sub_tools == ["ls", "read", "think", "finish"]
    assert run.side_calls == {"ask_agent": 1}
    assert run.side_usage.model_calls == 2 and run.usage.model_calls == 4
    assert run.turns == 2
    sub_events = [e for e in events(tmp_path / "logs" / "run.jsonl") if e.get("agent") == "sub1"]
    assert {e["kind"] for e in sub_events} >= {"request", "response", "tool_call", "end"}
    assert_paired(run.messages)


def test_ask_agent_with_a_tool_subset_and_its_edits_count(tmp_path):
    ctx = context(tmp_path)
    model = ScriptedChatModel([
        call("ask_agent", task="set x to 3", tools=["read", "write"]),
        call("write", path="a.py", content="x = 3\n"),
        call("finish", summary="wrote it"),
        finish("delegated"),
    ])
    run = run_agent(model, config(tools=ALL, require_code_change=True), "t", ctx)
    assert [t["function"]["name"] for t in model.requests[1]["tools"]] == ["read", "write", "finish"]
    assert run.reason == "finished" and run.changed_files == ["a.py"]


def test_ask_agent_depth_is_limited(tmp_path):
    ctx = context(tmp_path)
    ctx.state = AgentState(depth=MAX_AGENT_DEPTH)
    run = run_agent(ScriptedChatModel([call("ask_agent", task="x"), finish()]), config(tools=ALL), "t", ctx)
    assert tool_texts(run)[0].startswith("error: sub-agents can be nested")


def test_ask_agent_named_config_that_does_not_exist(tmp_path):
    run = run_agent(ScriptedChatModel([call("ask_agent", task="x", agent="gguf/does-not-exist"), finish()]),
                    config(tools=ALL), "t", context(tmp_path))
    assert tool_texts(run)[0].startswith("error: unknown agent 'gguf/does-not-exist'")


def test_finish_status_and_summary_aliases(tmp_path):
    run = run_agent(ScriptedChatModel([call("finish", message="could not do it", status="failed")]),
                    config(), "t", context(tmp_path))
    assert run.finish_status == "failed" and run.final_answer == "could not do it"


def test_agent_tool_schemas_are_plain():
    reg = ToolRegistry(ALL)
    for schema in reg.schemas():
        fn = schema["function"]
        assert fn["description"] and fn["parameters"]["type"] == "object"
