"""The llama-cpp-python backend with the real demo GGUF (Gemma 3 270M base, Q4_K_M).

A base model writes nonsense; these tests check mechanics: load parameters, streaming,
usage/timings arithmetic, prompt-cache reuse, context overflow, grammar-forced tool calls,
stop strings, seeds and cancellation. Token budgets are small (decode is slow on CI CPUs).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcode.backends.base import ChatOptions, ChatResult, StreamEvent
from localcode.backends.llama_cpp import LlamaCppChatModel, _find_stop, _partial_stop_len, physical_cores
from localcode.config import AgentConfig, ServerConfig
from localcode.errors import ConfigError, ContextWindowExceeded

TOOLS = [
    {"type": "function", "function": {
        "name": "read", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "finish", "description": "Say you are done.",
        "parameters": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}}},
]
SYSTEM = {"role": "system", "content": "You are a coding agent. Use the tools."}
USER = {"role": "user", "content": "Read main.py and tell me what it does."}
CTX = 2048


def agent(demo_gguf: Path, **over: object) -> AgentConfig:
    sc = {"model_path": str(demo_gguf), "context_window": CTX,
          "extra_args": ["--chat-template-file", "gemma-3-270m.jinja", "--jinja", "--port", "1235"]}
    sc.update(over.pop("server_config", {}))  # type: ignore[arg-type]
    return AgentConfig(name="demo", temperature=0.0, seed=1, max_tokens=16, server_config=ServerConfig(**sc), **over)


@pytest.fixture(scope="module")
def model(demo_gguf: Path) -> Iterator[LlamaCppChatModel]:
    m = LlamaCppChatModel(agent(demo_gguf))
    yield m
    m.close()


# ---------------------------------------------------------------- pure helpers

def test_stop_helpers() -> None:
    assert _find_stop("abc END x", ["END", "x"], 0) == (4, "END")
    assert _find_stop("abc", ["END"], 0) is None
    assert _partial_stop_len("hello EN", ["END"]) == 2
    assert _partial_stop_len("hello", ["END"]) == 0
    assert physical_cores() >= 1


# ---------------------------------------------------------------- with the real model



@pytest.mark.gguf
def test_load_uses_the_configured_context_and_records_info(model: LlamaCppChatModel) -> None:
    assert model._llm.n_ctx() == CTX  # never llama-cpp-python's 512 default
    info = model.info
    assert info.backend == "llama_cpp" and info.context_window == CTX
    assert info.threads == physical_cores()
    assert info.quantization == "Q4_K_M"
    assert info.size_bytes == Path(info.path or "").stat().st_size
    assert info.details["family"] == "hermes"
    assert info.details["chat_template"].endswith("gemma-3-270m.jinja")
    assert info.details["not_applicable_flags"] == ["--port 1235"]
    assert info.load_seconds > 0


@pytest.mark.gguf
def test_no_template_is_a_config_error(demo_gguf: Path) -> None:
    cfg = agent(demo_gguf, server_config={"extra_args": []})
    with pytest.raises(ConfigError, match="no chat template"):
        LlamaCppChatModel(cfg)


def _check_accounting(r: ChatResult) -> None:
    assert r.usage.completion_tokens == r.timings.predicted_n > 0
    assert r.usage.cached_tokens == r.timings.cache_n
    assert r.timings.prompt_n + r.timings.cache_n == r.usage.prompt_tokens
    assert r.timings.prompt_n >= 1 and r.timings.prompt_ms > 0 and r.timings.predicted_ms > 0


@pytest.mark.gguf
def test_chat_usage_and_timings(model: LlamaCppChatModel) -> None:
    model.reset_cache()
    msgs = [USER]
    r = model.chat(msgs, options=ChatOptions(max_tokens=8))
    _check_accounting(r)
    assert r.usage.cached_tokens == 0
    assert r.usage.prompt_tokens == model.count_tokens(model._render(msgs, None, ChatOptions(), True))
    assert r.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8


@pytest.mark.gguf
def test_stream_yields_deltas_then_done(model: LlamaCppChatModel) -> None:
    events = list(model.stream([USER], options=ChatOptions(max_tokens=12)))
    assert events[-1].kind == "done" and all(e.kind != "done" for e in events[:-1])
    result = events[-1].result
    assert result is not None
    text = "".join(e.text for e in events if e.kind == "content")
    assert text == result.content
    _check_accounting(result)


@pytest.mark.gguf
def test_seed_reproducibility(model: LlamaCppChatModel) -> None:
    opts = ChatOptions(max_tokens=10, temperature=1.0, top_k=40, seed=1234)
    model.reset_cache()
    a = model.chat([USER], options=opts)
    model.reset_cache()
    b = model.chat([USER], options=opts)
    assert a.raw == b.raw and a.raw


@pytest.mark.gguf
def test_stop_string_cuts_the_output(model: LlamaCppChatModel) -> None:
    model.reset_cache()
    free = model.chat([USER], options=ChatOptions(max_tokens=16))
    words = [w for w in free.raw.split() if len(w) >= 3]
    assert words, f"the model produced no word to stop at: {free.raw!r}"
    stop = words[min(1, len(words) - 1)]
    model.reset_cache()
    cut = model.chat([USER], options=ChatOptions(max_tokens=16, stop=[stop]))
    assert cut.finish_reason == "stop"
    assert cut.raw == free.raw[: free.raw.index(stop)]


@pytest.mark.gguf
def test_grammar_tool_calls_and_kv_reuse(model: LlamaCppChatModel) -> None:
    """Turn 1 is a grammar-forced tool call; turn 2 evaluates only what was added."""
    model.reset_cache()
    opts = ChatOptions(max_tokens=40, tool_choice="required", tool_call_grammar=True)
    msgs = [SYSTEM, USER]
    r1 = model.chat(msgs, TOOLS, opts)
    assert r1.finish_reason == "tool_calls", r1.raw
    assert len(r1.tool_calls) == 1 and r1.tool_calls[0].name in ("read", "finish")
    args = json.loads(r1.tool_calls[0].arguments)
    assert set(args) <= {"path", "summary"} and args
    held = r1.usage.prompt_tokens + r1.usage.completion_tokens

    msgs += [r1.to_message(), {"role": "tool", "tool_call_id": r1.tool_calls[0].id, "content": "print('hi')\n" * 20}]
    before = model._render(msgs[:2], TOOLS, opts, True)
    after = model._render(msgs, TOOLS, opts, True)
    added = model.count_tokens(after[len(before):])
    r2 = model.chat(msgs, TOOLS, ChatOptions(max_tokens=40, tool_choice={"type": "function", "function": {"name": "finish"}},
                                             tool_call_grammar=True))
    _check_accounting(r2)
    # everything the cache held stays (the last generated token was never evaluated)
    assert r2.usage.cached_tokens >= held - 1
    assert r2.timings.prompt_n <= added - r1.usage.completion_tokens + 16
    assert [c.name for c in r2.tool_calls] == ["finish"]  # a named tool_choice restricts the grammar

    # a diverging history falls back to the common prefix and still accounts correctly
    edited = [SYSTEM, {"role": "user", "content": "Something else entirely."}]
    r3 = model.chat(edited, options=ChatOptions(max_tokens=4))
    _check_accounting(r3)
    assert 0 < r3.usage.cached_tokens < r2.usage.prompt_tokens


@pytest.mark.gguf
def test_context_overflow_raises_before_generation(model: LlamaCppChatModel) -> None:
    model.chat([USER], options=ChatOptions(max_tokens=2))
    kv_before = model.kv_tokens
    huge = {"role": "user", "content": "word " * (CTX + 100)}
    with pytest.raises(ContextWindowExceeded) as e:
        model.chat([huge], options=ChatOptions(max_tokens=4))
    assert e.value.context_window == CTX and e.value.prompt_tokens > CTX
    assert model.kv_tokens == kv_before  # nothing was evaluated


@pytest.mark.gguf
def test_closing_the_stream_cancels_and_releases(model: LlamaCppChatModel) -> None:
    it = model.stream([USER], options=ChatOptions(max_tokens=64))
    first: StreamEvent | None = None
    for ev in it:
        first = ev
        break
    it.close()  # type: ignore[attr-defined]
    assert first is not None and first.kind != "done"
    assert model.kv_tokens  # the cache still holds the evaluated tokens
    r = model.chat([USER], options=ChatOptions(max_tokens=2))  # the lock was released
    assert r.usage.cached_tokens > 0


@pytest.mark.gguf
def test_request_timeout_ends_generation_early(demo_gguf: Path, model: LlamaCppChatModel) -> None:
    model.cfg = model.cfg.model_copy(update={"request_timeout": 1e-6})
    try:
        r = model.chat([USER], options=ChatOptions(max_tokens=32))
    finally:
        model.cfg = model.cfg.model_copy(update={"request_timeout": None})
    assert r.finish_reason == "length" and r.usage.completion_tokens == 1


@pytest.mark.gguf
def test_training_context_is_read_without_loading_weights(demo_gguf: Path) -> None:
    import llama_cpp

    from localcode.backends.llama_cpp import _training_context

    assert _training_context(llama_cpp, demo_gguf) == 32768  # gemma3.context_length of the demo GGUF


def test_stream_text_continues_raw_text_and_reuses_the_prefix(model: LlamaCppChatModel) -> None:
    opts = ChatOptions(max_tokens=8, temperature=0)
    prompt = "def fibonacci(n):\n    "
    events = list(model.stream_text(prompt, opts))
    assert events[-1].kind == "done" and all(e.kind == "content" for e in events[:-1])
    first = events[-1].result
    assert "".join(e.text for e in events[:-1]) == first.content
    assert first.usage.completion_tokens == first.timings.predicted_n <= 8
    again = list(model.stream_text(prompt, opts))[-1].result
    assert again.content == first.content  # greedy
    # the same prompt again: all but the last prompt token come from the KV cache
    assert again.usage.cached_tokens == again.usage.prompt_tokens - 1 and again.timings.prompt_n == 1
    with pytest.raises(ContextWindowExceeded):
        list(model.stream_text("cat " * (model.info.context_window + 10), opts))


@pytest.mark.gguf
def test_repetition_guard_stops_a_looping_generation(model: LlamaCppChatModel) -> None:
    # a base model asked to go on with a list of one repeated line repeats it; the guard cuts
    # the answer soon after 800 repeated characters instead of at max_tokens
    user = {"role": "user", "content": "Continue the list.\n\n" + "- the same line again\n" * 12}
    opts = ChatOptions(max_tokens=600, temperature=0, repetition_guard=True)
    result = model.chat([user], None, opts)
    assert result.finish_reason == "repetition"
    assert result.usage.completion_tokens < 450 and len(result.raw) >= 800
    off = model.chat([user], None, opts.model_copy(update={"max_tokens": 450, "repetition_guard": False}))
    assert off.finish_reason == "length" and off.usage.completion_tokens == 450  # the same loop, unguarded
