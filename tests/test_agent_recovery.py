"""Recovery for local models: FORMAT ERROR retries, unknown tools, bad and repaired arguments,
min_tool_calls, require_code_change, auto_tool_call_on_failure, tool_choice."""

from __future__ import annotations

import json

from agent_support import assert_paired, call, config, context, finish, user_texts
from localcode.agent.recovery import recover_calls
from localcode.agent.tools.registry import ToolRegistry
from localcode.agent.loop import run_agent
from localcode.backends.scripted import ScriptedChatModel


def malformed(raw: str = '<tool_call>{"name": "read", "arguments": {"path": ') -> dict:
    return {"malformed": [raw]}


def format_errors(messages) -> list[str]:
    return [t for t in user_texts(messages) if t.startswith("FORMAT ERROR")]


def test_malformed_call_gets_a_format_error_and_the_model_recovers(tmp_path):
    model = ScriptedChatModel([malformed(), call("read", path="a.py"), finish()])
    run = run_agent(model, config(), "t", context(tmp_path))
    assert run.reason == "finished"
    assert run.malformed_responses == 1
    assert run.format_retries == 1
    [msg] = format_errors(run.messages)
    assert "could not be parsed" in msg
    assert '{"name": "read", "arguments": {"path": "src/main.py"}}' in msg  # shows the expected form
    assert "Available tools: ls, read," in msg
    # the model saw its broken attempt, then the error
    i = run.messages.index(next(m for m in run.messages if m.get("content") == msg))
    assert run.messages[i - 1]["role"] == "assistant" and "<tool_call>" in run.messages[i - 1]["content"]


def test_max_format_retries_exhausted_ends_the_run(tmp_path):
    model = ScriptedChatModel([malformed() for _ in range(10)])
    run = run_agent(model, config(max_format_retries=3), "t", context(tmp_path))
    assert run.reason == "format_errors"
    assert run.format_retries == 3
    assert run.malformed_responses == 4
    assert len(model.requests) == 4


def test_zero_format_retries_ends_at_the_first_malformed_response(tmp_path):
    model = ScriptedChatModel([malformed(), finish()])
    run = run_agent(model, config(max_format_retries=0), "t", context(tmp_path))
    assert run.reason == "format_errors"
    assert len(model.requests) == 1


def test_retry_counter_resets_after_a_good_call(tmp_path):
    script = [malformed(), malformed(), call("ls", path="."), malformed(), malformed(), finish()]
    run = run_agent(ScriptedChatModel(script), config(max_format_retries=2), "t", context(tmp_path))
    assert run.reason == "finished"
    assert run.malformed_responses == 4


def test_unknown_tool_is_answered_with_the_allowed_tools_and_counted(tmp_path):
    model = ScriptedChatModel([call("run_tests"), finish()])
    run = run_agent(model, config(), "t", context(tmp_path))
    assert run.reason == "finished"
    result = run.messages[3]
    assert result["role"] == "tool"
    assert result["content"].startswith("error: unknown tool 'run_tests'; allowed tools: ls, read")
    assert run.malformed_responses == 1
    assert run.tool_errors == {"run_tests": 1}
    assert format_errors(run.messages) == []  # the tool message already says it
    assert_paired(run.messages)


def test_repeated_unknown_tools_end_the_run(tmp_path):
    model = ScriptedChatModel([call("bogus") for _ in range(5)])
    run = run_agent(model, config(max_format_retries=2), "t", context(tmp_path))
    assert run.reason == "format_errors"
    assert len(model.requests) == 3
    assert_paired(run.messages)


def test_bad_arguments(tmp_path):
    model = ScriptedChatModel([call("read", arguments="[1, 2]"), call("read"), finish()])
    run = run_agent(model, config(), "t", context(tmp_path))
    results = [m["content"] for m in run.messages if m["role"] == "tool"]
    assert results[0].startswith("error: bad arguments for read")
    assert results[1].startswith("error: bad arguments for read: missing 'path'")
    assert run.malformed_responses == 2
    assert run.tool_errors["read"] == 2


def test_repaired_arguments_are_counted(tmp_path):
    model = ScriptedChatModel([call("read", arguments="{'file_path': 'a.py',}"), finish()])
    run = run_agent(model, config(), "t", context(tmp_path))
    assert run.repairs == 1
    assert run.messages[3]["content"].startswith("ok: a.py")
    assert run.malformed_responses == 0


def test_valid_and_malformed_calls_in_one_response(tmp_path):
    mixed = {**call("ls", path="."), "malformed": ["<tool_call>{broken"]}
    run = run_agent(ScriptedChatModel([mixed, finish()]), config(max_format_retries=0), "t", context(tmp_path))
    # a call reached its tool, so this is not a failed response in a row, but it is counted
    assert run.reason == "finished"
    assert run.malformed_responses == 1
    assert len(format_errors(run.messages)) == 1
    assert_paired(run.messages)


def test_min_tool_calls_nudges_instead_of_ending(tmp_path):
    model = ScriptedChatModel(["I think it is fine.", call("read", path="a.py"), call("ls", path="."), "Done."])
    run = run_agent(model, config(min_tool_calls=2), "t", context(tmp_path))
    assert run.reason == "answered" and run.final_answer == "Done."
    assert run.nudges == 1
    nudge = user_texts(run.messages)[1]
    assert "0 of at least 2 tool calls" in nudge
    assert run.malformed_responses == 0


def test_require_code_change_refuses_finish_and_plain_answers(tmp_path):
    ctx = context(tmp_path)
    model = ScriptedChatModel([finish("nothing to do"), "All done.", call("write", path="a.py", content="x = 3\n"),
                               finish("changed")])
    run = run_agent(model, config(require_code_change=True), "t", ctx)
    assert run.reason == "finished" and run.final_answer == "changed"
    refused = run.messages[3]
    assert refused["role"] == "tool" and refused["content"].startswith("error: No file has been changed yet")
    assert run.nudges == 1
    assert run.tool_errors == {"finish": 1}


def test_auto_tool_call_recovers_a_fenced_block_naming_a_file(tmp_path):
    ctx = context(tmp_path)
    text = "Here is the fix.\n\n`a.py`:\n```python\nx = 42\n```\n"
    model = ScriptedChatModel([{"content": text, "malformed": ["<tool_call>oops"]}, finish()])
    run = run_agent(model, config(auto_tool_call_on_failure=True), "t", ctx)
    assert (ctx.workspace / "a.py").read_text() == "x = 42\n"
    assert run.auto_recovered == 1
    assert run.malformed_responses == 1
    assert run.messages[2]["tool_calls"][0]["function"]["name"] == "write"
    assert format_errors(run.messages) == []
    assert_paired(run.messages)


def test_auto_tool_call_recovers_a_json_call_from_a_refused_plain_answer(tmp_path):
    text = 'I will read it: {"name": "read", "arguments": {"path": "a.py"}}'
    model = ScriptedChatModel([text, finish()])
    run = run_agent(model, config(auto_tool_call_on_failure=True, min_tool_calls=1), "t", context(tmp_path))
    assert run.tool_calls == {"read": 1, "finish": 1}
    assert run.auto_recovered == 1
    assert run.nudges == 0


def test_without_auto_tool_call_nothing_is_recovered(tmp_path):
    ctx = context(tmp_path)
    text = "`a.py`:\n```python\nx = 42\n```\n"
    run = run_agent(ScriptedChatModel([{"content": text, "malformed": ["x"]}, finish()]), config(), "t", ctx)
    assert (ctx.workspace / "a.py").read_text() == "x = 1\n"
    assert run.auto_recovered == 0


def test_tool_choice_required_treats_a_plain_answer_as_a_format_error(tmp_path):
    model = ScriptedChatModel(["Sure, done.", finish()])
    run = run_agent(model, config(tool_choice="required"), "t", context(tmp_path))
    assert model.requests[0]["options"].tool_choice == "required"
    assert run.reason == "finished"
    assert run.malformed_responses == 1
    [msg] = format_errors(run.messages)
    assert "every answer must call a tool" in msg and "`finish`" in msg


def test_empty_answer_is_a_format_error(tmp_path):
    model = ScriptedChatModel([{"content": "", "finish_reason": "length"}, finish()])
    run = run_agent(model, config(), "t", context(tmp_path))
    assert run.reason == "finished"
    [msg] = format_errors(run.messages)
    assert "cut off at max_tokens" in msg


def test_recover_calls_unit(tmp_path):
    reg = ToolRegistry(["read", "write", "finish"])
    [c] = recover_calls('```json\n{"tool": "read_file", "args": {"path": "x.py"}}\n```', reg)
    assert c.name == "read" and json.loads(c.arguments) == {"path": "x.py"}
    [c] = recover_calls('{"function": {"name": "finish", "arguments": "{\\"summary\\": \\"s\\"}"}}', reg)
    assert c.name == "finish" and json.loads(c.arguments) == {"summary": "s"}
    two = recover_calls("```python a.py\nA\n```\nand\n```js\n// file: src/b.js\nB\n```", reg)
    assert [json.loads(c.arguments) for c in two] == [{"path": "a.py", "content": "A\n"},
                                                       {"path": "src/b.js", "content": "B\n"}]
    assert recover_calls("```python\nno file named\n```", reg) == []
    assert recover_calls('{"name": "not_a_tool", "arguments": {}}', reg) == []
    assert recover_calls("{" * 5000, reg) == []
