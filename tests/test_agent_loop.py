"""The agent loop with the scripted backend: endings, limits, batches, continuation, options."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from agent_support import assert_paired, call, calls, config, context, events, finish, user_texts
from localcode.agent.logs import RunLogger
from localcode.agent.loop import run_agent
from localcode.backends.base import ChatResult, StreamEvent, Usage
from localcode.backends.scripted import ScriptedChatModel
from localcode.errors import ConfigError, ContextWindowExceeded


def test_finish_ends_the_run_with_its_summary(tmp_path):
    ctx = context(tmp_path)
    model = ScriptedChatModel([call("read", path="a.py"), call("write", path="a.py", content="x = 2\n"),
                               finish("set x to 2", "done")])
    run = run_agent(model, config(), "set x to 2", ctx)
    assert run.reason == "finished"
    assert run.final_answer == "set x to 2"
    assert run.finish_status == "done"
    assert run.turns == 3
    assert run.tool_calls == {"read": 1, "write": 1, "finish": 1}
    assert run.tool_errors == {}
    assert run.changed_files == ["a.py"]
    assert (ctx.workspace / "a.py").read_text() == "x = 2\n"
    assert [m["role"] for m in run.messages[:2]] == ["system", "user"]
    assert run.messages[1]["content"] == "set x to 2"
    assert_paired(run.messages)


def test_plain_answer_ends_the_run_as_answered(tmp_path):
    run = run_agent(ScriptedChatModel(["The answer is 42."]), config(), "question", context(tmp_path))
    assert run.reason == "answered"
    assert run.final_answer == "The answer is 42."
    assert run.messages[-1] == {"role": "assistant", "content": "The answer is 42."}


def test_max_turns_stops_after_that_many_model_calls(tmp_path):
    model = ScriptedChatModel([call("ls", path=".") for _ in range(10)])
    run = run_agent(model, config(max_turns=3), "look around", context(tmp_path))
    assert run.reason == "max_turns"
    assert run.turns == 3
    assert len(model.requests) == 3
    assert_paired(run.messages)


def test_deadline_in_the_past_makes_no_model_call(tmp_path):
    model = ScriptedChatModel([finish()])
    run = run_agent(model, config(), "t", context(tmp_path), deadline=time.monotonic() - 1)
    assert run.reason == "time_limit"
    assert model.requests == []


def test_max_wall_seconds(tmp_path):
    def slow(messages, tools):
        time.sleep(0.3)
        return call("ls", path=".")

    model = ScriptedChatModel([slow, slow, slow, finish()])
    run = run_agent(model, config(max_wall_seconds=0.5), "t", context(tmp_path))
    assert run.reason == "time_limit"
    assert run.turns == 1  # the second generation ran past the limit and was dropped
    assert len(model.requests) == 2
    assert_paired(run.messages)


class SlowStreamModel(ScriptedChatModel):
    """Streams each content character with a pause, and notes whether the stream was closed early."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.closed_early = False

    def stream(self, messages, tools=None, options=None) -> Iterator[StreamEvent]:
        result = self.chat(messages, tools, options)
        try:
            for ch in result.content:
                time.sleep(0.05)
                yield StreamEvent(kind="content", text=ch)
        except GeneratorExit:
            self.closed_early = True
            raise
        yield StreamEvent(kind="done", result=result)


def test_deadline_cancels_a_generation_in_progress(tmp_path):
    model = SlowStreamModel(["x" * 200])
    start = time.monotonic()
    run = run_agent(model, config(), "t", context(tmp_path), deadline=time.monotonic() + 0.3)
    assert run.reason == "time_limit"
    assert "during generation" in run.detail
    assert model.closed_early
    assert time.monotonic() - start < 5


def test_request_timeout_ends_a_generation_as_its_own_ending(tmp_path):
    # the model's doing (a failed case in a benchmark), not a model error
    model = SlowStreamModel(["x" * 200])
    run = run_agent(model, config(request_timeout=0.2), "t", context(tmp_path))
    assert run.reason == "request_timeout"
    assert "request_timeout" in run.detail


def test_token_budget(tmp_path):
    big = ChatResult(content="", tool_calls=[], usage=Usage(prompt_tokens=900, completion_tokens=200))
    model = ScriptedChatModel([_with_calls(big, "ls", {"path": "."}), finish()])
    run = run_agent(model, config(max_total_tokens=1000), "t", context(tmp_path))
    assert run.reason == "token_budget"
    assert run.usage.total_tokens == 1100
    assert "1100 of 1000" in run.detail
    assert len(model.requests) == 1


def _with_calls(result: ChatResult, name: str, args: dict) -> ChatResult:
    from localcode.backends.scripted import to_result

    calls_ = to_result({"tool_calls": [{"name": name, "arguments": args}]}).tool_calls
    return result.model_copy(update={"tool_calls": calls_, "finish_reason": "tool_calls"})


def test_batch_limit_answers_every_call(tmp_path):
    many = calls(*[("read", {"path": "a.py"}) for _ in range(7)])
    run = run_agent(ScriptedChatModel([many, finish()]), config(max_batch_tool_calls=5), "t", context(tmp_path))
    tool_msgs = [m for m in run.messages if m["role"] == "tool"]
    assert sum(m["content"].startswith("error: skipped: at most 5") for m in tool_msgs) == 2
    assert run.skipped_calls == 2
    assert run.tool_calls["read"] == 5
    assert_paired(run.messages)


def test_finish_in_the_middle_of_a_batch_skips_the_rest(tmp_path):
    batch = calls(("read", {"path": "a.py"}), ("finish", {"summary": "ok"}), ("write", {"path": "a.py", "content": "boom"}))
    ctx = context(tmp_path)
    run = run_agent(ScriptedChatModel([batch]), config(), "t", ctx)
    assert run.reason == "finished"
    assert run.messages[-1]["content"] == "error: skipped: the run finished before this call"
    assert (ctx.workspace / "a.py").read_text() == "x = 1\n"
    assert_paired(run.messages)


def test_model_error_is_an_ending_not_an_exception(tmp_path):
    run = run_agent(ScriptedChatModel([call("ls", path=".")]), config(), "t", context(tmp_path))
    assert run.reason == "model_error"
    assert "no more responses" in run.detail
    assert_paired(run.messages)


def test_context_exceeded_after_shortening_fails(tmp_path):
    model = ScriptedChatModel([ContextWindowExceeded(9000, 8192), ContextWindowExceeded(9000, 8192)])
    run = run_agent(model, config(), "t", context(tmp_path))
    assert run.reason == "context_exceeded"
    assert run.context_exceeded is True


def test_context_exceeded_is_retried_once_with_old_results_shortened(tmp_path):
    ctx = context(tmp_path)
    (ctx.workspace / "big.txt").write_text("line of text\n" * 400)
    model = ScriptedChatModel([call("read", path="big.txt"), call("ls", path="."), call("ls", path="."),
                               ContextWindowExceeded(9000, 8192), finish()])
    run = run_agent(model, config(), "t", ctx)
    assert run.reason == "finished"
    assert run.shortened_results >= 1
    assert not run.context_exceeded
    retried = model.requests[-1]["messages"]
    read_result = [m for m in retried if m.get("role") == "tool"][0]
    assert read_result["content"].startswith("[shortened:")
    assert retried[1]["content"] == "t"
    assert_paired(retried)


def test_continue_appends_to_the_same_conversation(tmp_path):
    ctx = context(tmp_path)
    model = ScriptedChatModel([call("read", path="a.py"), finish("first"), call("ls", path="."), finish("second")])
    cfg = config()
    run1 = run_agent(model, cfg, "try 1", ctx)
    run2 = run_agent(model, cfg, "try 2: the tests failed", ctx, history=run1.messages)
    assert run2.reason == "finished" and run2.final_answer == "second"
    assert run2.messages[: len(run1.messages)] == run1.messages
    assert user_texts(run2.messages) == ["try 1", "try 2: the tests failed"]
    assert sum(m["role"] == "system" for m in run2.messages) == 1
    assert run2.turns == 2 and run2.tool_calls == {"ls": 1, "finish": 1}
    # the model saw the whole first try on its first call of try 2
    assert len(model.requests[2]["messages"]) == len(run1.messages) + 1
    assert_paired(run2.messages)


def test_continue_answers_calls_left_open_by_a_crashed_run(tmp_path):
    ctx = context(tmp_path)
    first = run_agent(ScriptedChatModel([call("ls", path=".")]), config(), "t", ctx)
    broken = first.messages[:-1]  # drop the tool result, as a crash would
    run = run_agent(ScriptedChatModel([finish()]), config(), "again", ctx, history=broken)
    assert_paired(run.messages)


def test_options_come_from_the_config(tmp_path):
    cfg = config(temperature=0.3, top_p=0.9, top_k=20, min_p=0.05, max_tokens=777, tool_choice="auto", think=False,
                 think_level="low", tool_call_grammar=True, seed=7, request_overrides={"mirostat": 2})
    model = ScriptedChatModel([finish()])
    run_agent(model, cfg, "t", context(tmp_path))
    opts = model.requests[0]["options"]
    assert (opts.temperature, opts.top_p, opts.top_k, opts.min_p, opts.max_tokens) == (0.3, 0.9, 20, 0.05, 777)
    assert (opts.think, opts.think_level, opts.tool_call_grammar, opts.seed) == (False, "low", True, 7)
    assert opts.extra == {"mirostat": 2}
    names = [t["function"]["name"] for t in model.requests[0]["tools"]]
    assert names == ["ls", "read", "write", "edit", "glob", "grep", "search", "apply_patch", "finish"]


def test_system_prompt_placeholders_use_the_exposed_names(tmp_path):
    cfg = config(tools=["read", "write", "finish"], tool_name_style="alias",
                 prompt="Use {{TOOLS}}. Read with {{tool:read}}, end with {{tool:finish}}.",
                 prompt_overlays=["Overlay: be brief."])
    model = ScriptedChatModel([finish()])
    run = run_agent(model, cfg, "t", context(tmp_path))
    system = run.messages[0]["content"]
    assert system.startswith("Use read_file, write_file, finish. Read with read_file, end with finish.")
    assert system.endswith("Overlay: be brief.")
    assert [t["function"]["name"] for t in model.requests[0]["tools"]] == ["read_file", "write_file", "finish"]


def test_default_system_prompt_is_rendered(tmp_path):
    run = run_agent(ScriptedChatModel([finish()]), config(tools=["read", "finish"]), "t", context(tmp_path))
    system = run.messages[0]["content"]
    assert "Tools: read, finish" in system
    assert "{{" not in system


def test_unknown_prompt_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.md"):
        run_agent(ScriptedChatModel([finish()]), config(prompt="nope.md"), "t", context(tmp_path))


def test_native_thinking_keeps_reasoning_in_history(tmp_path):
    script = [{"reasoning": "let me look", **call("ls", path=".")}, {"reasoning": "done now", **finish()}]
    kept = run_agent(ScriptedChatModel(list(script)), config(native_thinking=True), "t", context(tmp_path / "a"))
    dropped = run_agent(ScriptedChatModel(list(script)), config(native_thinking=False), "t", context(tmp_path / "b"))
    assert [m.get("reasoning_content") for m in kept.messages if m["role"] == "assistant"] == ["let me look", "done now"]
    assert all("reasoning_content" not in m for m in dropped.messages)


def test_thinking_visibility(tmp_path):
    import io

    for mode, on_console, in_log in (("show", True, True), ("log", False, True), ("hide", False, False)):
        console = io.StringIO()
        logger = RunLogger(tmp_path / mode / "run", console=console)
        model = ScriptedChatModel([{"reasoning": "secret thoughts", **finish()}])
        run_agent(model, config(thinking_visibility=mode), "t", context(tmp_path / mode), logger=logger)
        assert ("secret thoughts" in console.getvalue()) is on_console, mode
        jsonl = (tmp_path / mode / "run.jsonl").read_text()
        assert ("secret thoughts" in jsonl) is in_log, mode


def test_cancel_event(tmp_path):
    cancel = threading.Event()

    def cancel_now(messages, tools):
        cancel.set()
        return call("ls", path=".")

    model = ScriptedChatModel([cancel_now, finish()])
    run = run_agent(model, config(), "t", context(tmp_path), cancel=cancel)
    assert run.reason == "cancelled"
    assert len(model.requests) == 1  # the generation in progress was dropped, no further call
    assert_paired(run.messages)


def test_keyboard_interrupt_is_reraised_with_the_partial_run(tmp_path):
    logger = RunLogger(tmp_path / "logs" / "run")
    model = ScriptedChatModel([call("ls", path="."), KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt) as info:
        run_agent(model, config(), "t", context(tmp_path), logger=logger)
    partial = info.value.agent_run
    assert partial.reason == "cancelled"
    assert partial.turns == 1
    assert_paired(partial.messages)
    assert events(tmp_path / "logs" / "run.jsonl")[-1]["kind"] == "end"


def test_duplicate_call_ids_are_made_unique(tmp_path):
    same = {"tool_calls": [{"id": "call_1", "name": "ls", "arguments": {}}, {"id": "call_1", "name": "ls", "arguments": {}}]}
    again = {"tool_calls": [{"id": "call_1", "name": "finish", "arguments": {}}]}
    run = run_agent(ScriptedChatModel([same, again]), config(), "t", context(tmp_path))
    assert run.reason == "finished"
    assert_paired(run.messages)


def test_unknown_tool_in_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="frobnicate"):
        run_agent(ScriptedChatModel([finish()]), config(tools=["read", "frobnicate"]), "t", context(tmp_path))


def test_usage_and_timings_are_summed(tmp_path):
    r1 = ChatResult(content="", usage=Usage(prompt_tokens=100, cached_tokens=0, completion_tokens=10))
    r2 = ChatResult(content="all good", usage=Usage(prompt_tokens=150, cached_tokens=90, completion_tokens=5))
    model = ScriptedChatModel([_with_calls(r1, "ls", {"path": "."}), r2])
    run = run_agent(model, config(), "t", context(tmp_path))
    assert (run.usage.prompt_tokens, run.usage.cached_tokens, run.usage.completion_tokens) == (250, 90, 15)
    assert run.usage.model_calls == 2
    assert run.usage.predicted_ms == pytest.approx(0.1 * 15)
