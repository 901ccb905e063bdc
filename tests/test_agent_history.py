"""History limits: the task prompt stays, calls stay with their results."""

from __future__ import annotations

from agent_support import assert_paired, call, config, context, events, finish
from localcode.agent import history as hist
from localcode.agent.logs import RunLogger
from localcode.agent.loop import run_agent
from localcode.backends.base import ChatResult, Usage
from localcode.backends.scripted import ScriptedChatModel, to_result


def conversation(groups: int, result_chars: int = 1000) -> list[dict]:
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "the task"}]
    for i in range(groups):
        msgs.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{i}a", "type": "function", "function": {"name": "read", "arguments": "{}"}},
            {"id": f"c{i}b", "type": "function", "function": {"name": "read", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}a", "content": f"result {i}a " + "x" * result_chars})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}b", "content": f"result {i}b"})
    return msgs


def test_groups_keep_calls_with_their_results():
    msgs = conversation(3)
    assert hist.groups(msgs) == [(0, 1), (1, 2), (2, 5), (5, 8), (8, 11)]


def test_shorten_old_tool_results_leaves_recent_and_short_ones():
    msgs = conversation(4)
    out, n = hist.shorten_tool_results(msgs, keep_recent_groups=2)
    assert n == 2  # the long results of groups 0 and 1; groups 2 and 3 are recent
    assert out[3]["content"].startswith("[shortened: ") and "result 0a" in out[3]["content"]
    assert out[4]["content"] == "result 0b"
    assert out[-2] == msgs[-2]
    assert msgs[3]["content"].startswith("result 0a x")  # the input is not changed
    again, n2 = hist.shorten_tool_results(out, keep_recent_groups=2)
    assert n2 == 0 and again == out
    assert_paired(out)


def test_drop_oldest_groups_keeps_system_task_and_pairs():
    msgs = conversation(5)
    out, dropped = hist.drop_oldest_groups(msgs, max_messages=8)
    assert len(out) <= 8 and dropped == len(msgs) - len(out)
    assert out[:2] == msgs[:2]
    assert out[-3:] == msgs[-3:]
    assert_paired(out)


def test_drop_never_removes_pinned_or_the_newest_group():
    msgs = conversation(2)
    later_task = {"role": "user", "content": "try 2"}
    msgs.append(later_task)
    msgs += conversation(2)[2:]
    out, _ = hist.drop_oldest_groups(msgs, max_messages=3, pinned=[later_task])
    assert any(m is later_task for m in out)
    assert out[1]["content"] == "the task"
    assert out[-3:] == msgs[-3:]
    assert_paired(out)


def test_unanswered_calls_finds_missing_and_extra_results():
    msgs = conversation(1)
    assert hist.unanswered_calls(msgs) == []
    assert hist.unanswered_calls(msgs[:-1])  # c0b unanswered
    assert hist.unanswered_calls(msgs + [{"role": "tool", "tool_call_id": "zzz", "content": "?"}])


def test_history_max_messages_in_a_run(tmp_path):
    script = [call("read", path="a.py") for _ in range(12)] + [finish()]
    model = ScriptedChatModel(script)
    run = run_agent(model, config(history_max_messages=10, max_turns=20), "the task", context(tmp_path))
    assert run.reason == "finished"
    assert run.dropped_messages > 0
    for req in model.requests:
        sent = req["messages"]
        assert len(sent) <= 10 + 2  # trimmed before each call; the newest group may sit on top
        assert sent[0]["role"] == "system" and sent[1]["content"] == "the task"
        assert_paired(sent)


def test_near_the_context_limit_old_results_are_shortened_first(tmp_path):
    ctx = context(tmp_path)
    (ctx.workspace / "big.txt").write_text("some words here\n" * 450)

    def measured(item):
        # The backend reports prompt tokens as 1 per 3 characters of the conversation.
        def respond(messages, tools):
            import json
            result = to_result(item)
            result.usage = Usage(prompt_tokens=len(json.dumps(messages)) // 3, completion_tokens=10)
            return result
        return respond

    script = [measured(call("read", path="big.txt"))] + [measured(call("ls", path=".")) for _ in range(4)] + [finish()]
    model = ScriptedChatModel(script, context_window=4096)
    logger = RunLogger(tmp_path / "logs" / "run")
    run = run_agent(model, config(max_tokens=256), "the task", ctx, logger=logger)
    assert run.reason == "finished"
    assert run.shortened_results >= 1
    assert any(e["kind"] == "history" and e["shortened"] >= 1 for e in events(tmp_path / "logs" / "run.jsonl"))
    last = model.requests[-1]["messages"]
    assert last[1]["content"] == "the task"
    assert any(m.get("content", "").startswith("[shortened:") for m in last if m["role"] == "tool")
    assert_paired(last)


def test_results_are_not_shortened_when_there_is_room(tmp_path):
    ctx = context(tmp_path)
    (ctx.workspace / "big.txt").write_text("some words here\n" * 300)
    model = ScriptedChatModel([call("read", path="big.txt"), call("ls", path="."), call("ls", path="."), finish()])
    run = run_agent(model, config(), "t", ctx)
    assert run.shortened_results == 0 and run.dropped_messages == 0


def test_result_type_is_untouched():
    assert isinstance(to_result("x"), ChatResult)
