"""A call written as JSON text (Qwen2.5-Coder under tool_choice auto) runs as a call and is
counted apart, as a repaired call, from the parser through the agent to the task's usage."""

from __future__ import annotations

from agent_support import config, context, finish
from localcode.agent.loop import run_agent
from localcode.agent.tools.registry import ToolRegistry
from localcode.backends.base import ChatResult
from localcode.backends.scripted import ScriptedChatModel, to_result
from localcode.backends.tool_parsers import get_parser
from localcode.harness.agent_solver import usage_of

ANSWER = ('I will create the file.\n```json\n{"name": "write", "arguments": {"path": "calc.py", '
          '"content": "def add(a, b):\\n    return a + b\\n"}}\n```')


def test_json_text_call_writes_the_file_and_is_counted(tmp_path):
    cfg = config()
    tools = ToolRegistry.from_config(cfg).schemas()
    parsed = get_parser("hermes").parse(ANSWER, tools=tools)
    assert [c.name for c in parsed.tool_calls] == ["write"] and parsed.tool_calls[0].repaired
    first = ChatResult(content=parsed.content, tool_calls=parsed.tool_calls, finish_reason="tool_calls", raw=ANSWER)
    ctx = context(tmp_path)
    run = run_agent(ScriptedChatModel([first, to_result(finish())]), cfg, "write calc.py", ctx)
    assert (ctx.workspace / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert run.reason == "finished"
    assert (run.text_calls, run.malformed_responses) == (1, 0)
    assert usage_of(run).text_calls == 1
