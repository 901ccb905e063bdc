"""``localcode serve`` over the real demo GGUF (Gemma 3 270M base, through llama-cpp-python),
asked with the official ``openai`` client. The base model writes nonsense: these tests check
shapes, finish reasons, usage, grammar-forced tool calls and errors, not skill."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from serve_util import running_server

from localcode.backends.base import ChatModel, ChatOptions, Message, StreamEvent, ToolSchema
from localcode.server import create_app

pytestmark = pytest.mark.gguf

AGENT = "gguf/gemma-3-270m"
TOOLS = [{
    "type": "function",
    "function": {"name": "read", "description": "Read a file.",
                 "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
}, {
    "type": "function",
    "function": {"name": "finish", "description": "Say you are done.", "parameters": {"type": "object", "properties": {}}},
}]
USER = [{"role": "user", "content": "Read the file main.py and tell me what it does."}]


class Recording:
    """Wraps a real model; records how each stream ended (for cancellation checks)."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.info = inner.info
        self.ended: list[tuple[int, bool]] = []
        """(events seen, reached done) per stream."""
        self.closed = threading.Event()

    def chat(self, messages: list[Message], tools: list[ToolSchema] | None = None,
             options: ChatOptions | None = None) -> Any:
        return self.inner.chat(messages, tools, options)

    def stream(self, messages: list[Message], tools: list[ToolSchema] | None = None,
               options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        n, done = 0, False
        try:
            for ev in self.inner.stream(messages, tools, options):
                n += 1
                done = ev.kind == "done"
                yield ev
        finally:
            self.ended.append((n, done))
            if not done:
                self.closed.set()

    def stream_text(self, prompt: str, options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        yield from self.inner.stream_text(prompt, options)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def model() -> Iterator[Recording]:
    from localcode.backends.loader import load_model
    from localcode.config import resolve_agent

    m = load_model(resolve_agent(AGENT))
    yield Recording(m)
    m.close()


@pytest.fixture(scope="module")
def url(model: Recording) -> Iterator[str]:
    from localcode.commands.serve import model_aliases
    from localcode.config import resolve_agent

    aliases = model_aliases(AGENT, resolve_agent(AGENT), model.info)
    with running_server(create_app(model, "gemma-3-270m", aliases=aliases)) as base:  # type: ignore[arg-type]
        yield base


@pytest.fixture
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_plain_and_streamed_agree(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Tell me a story."}],
                          "max_tokens": 12, "temperature": 0, "seed": 3}
    plain = client.chat.completions.create(**kw)
    choice = plain.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert plain.usage is not None and 0 < plain.usage.completion_tokens <= 12
    assert plain.usage.prompt_tokens > 5
    timings = plain.model_extra["timings"]
    assert timings["predicted_n"] == plain.usage.completion_tokens
    assert timings["prompt_n"] + timings["cache_n"] == plain.usage.prompt_tokens
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == (choice.message.content or ""), "greedy decoding gives the same text streamed"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [choice.finish_reason]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens
    # the same prompt again: its tokens come from the KV cache
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens > 0
    assert "timings" in chunks[-1].model_extra


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "finish"}}])
def test_forced_tool_calls(client: openai.OpenAI, choice: Any) -> None:
    resp = client.chat.completions.create(model="gemma-3-270m", messages=USER, tools=TOOLS, tool_choice=choice,
                                          max_tokens=48, temperature=0)
    c = resp.choices[0]
    assert c.finish_reason == "tool_calls", c
    assert c.message.tool_calls, c.message
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.id
    assert call.function.name in ("read", "finish")
    if isinstance(choice, dict):
        assert call.function.name == "finish"
    assert isinstance(json.loads(call.function.arguments), dict)


def test_forced_tool_call_streamed(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="gemma-3-270m", messages=USER, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "finish"}},
        max_tokens=48, temperature=0, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas, "tool-call deltas were streamed"
    assert deltas[0].index == 0 and deltas[0].id and deltas[0].type == "function"
    assert deltas[0].function is not None and deltas[0].function.name == "finish"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert isinstance(json.loads(arguments), dict)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("choice", ["auto", "none"])
def test_auto_and_none_shapes(client: openai.OpenAI, choice: str) -> None:
    resp = client.chat.completions.create(model="gemma-3-270m", messages=USER, tools=TOOLS, tool_choice=choice,
                                          max_tokens=16, temperature=0)
    c = resp.choices[0]
    assert c.finish_reason in ("stop", "length", "tool_calls")
    if choice == "none":
        assert not c.message.tool_calls and c.finish_reason != "tool_calls"
    if c.finish_reason == "tool_calls":
        assert c.message.tool_calls


def test_context_overflow_is_400(client: openai.OpenAI, model: Recording) -> None:
    words = model.info.context_window + 500
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "cat " * words}],
                                       max_tokens=4)
    assert e.value.code == "context_length_exceeded"
    ok = client.chat.completions.create(model="gemma-3-270m", messages=USER, max_tokens=2)
    assert ok.choices[0].finish_reason in ("stop", "length")
    # localcode's HTTP backend reads the 400 back as ContextWindowExceeded
    from localcode.backends.loader import load_model
    from localcode.config import merge_overrides, resolve_agent
    from localcode.errors import ContextWindowExceeded

    http_model = load_model(merge_overrides(resolve_agent(AGENT), {"url": str(client.base_url).rstrip("/")}))
    with pytest.raises(ContextWindowExceeded) as exc:
        http_model.chat([{"role": "user", "content": "cat " * words}], None, ChatOptions(max_tokens=4))
    assert exc.value.context_window == model.info.context_window and exc.value.prompt_tokens >= words
    http_model.close()


def test_disconnect_cancels_real_generation(url: str, model: Recording) -> None:
    model.closed.clear()
    body = {"messages": [{"role": "user", "content": "Tell me a very long story."}], "max_tokens": 2000,
            "stream": True, "temperature": 0}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(8)]
        assert any('"content"' in ln for ln in got)
    assert model.closed.wait(30), "the generation was not cancelled"
    events, done = model.ended[-1]
    assert not done and events < 2000


def test_http_backend_against_serve(url: str) -> None:
    """localcode's own HTTP backend (what ``bench --url`` uses) talks to ``serve``."""
    from localcode.backends.loader import load_model
    from localcode.config import merge_overrides, resolve_agent

    http_model = load_model(merge_overrides(resolve_agent(AGENT), {"url": url + "/v1"}))
    assert http_model.info.backend == "http"
    try:
        result = http_model.chat(USER, TOOLS, ChatOptions(max_tokens=48, temperature=0, tool_choice="required"))
        assert result.finish_reason == "tool_calls" and result.tool_calls
        assert result.tool_calls[0].name in ("read", "finish")
        assert result.usage.completion_tokens > 0
        assert result.timings.predicted_n == result.usage.completion_tokens, "the server's timings are kept"
        events = list(http_model.stream([{"role": "user", "content": "Hello"}], None,
                                        ChatOptions(max_tokens=8, temperature=0)))
        assert events[-1].kind == "done" and events[-1].result is not None
        streamed = "".join(e.text for e in events if e.kind == "content")
        assert streamed == events[-1].result.content
    finally:
        http_model.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_command(tmp_path: Any) -> None:
    """``localcode serve`` loads the agent, answers health and chat, and exits on SIGTERM."""
    port = _free_port()
    env = {**os.environ, "LOCALCODE_API_KEY": "k3y"}
    proc = subprocess.Popen([sys.executable, "-m", "localcode", "serve", "--agent", AGENT, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        statuses = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                status = httpx.get(base + "/health", timeout=2).status_code
                statuses.add(status)
                if status == 200:
                    break
                assert status == 503
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert 200 in statuses
        assert httpx.get(base + "/v1/models").status_code == 401
        client = openai.OpenAI(base_url=base + "/v1", api_key="k3y", max_retries=0)
        ids = [m.id for m in client.models.list().data]
        assert ids[0] == "gemma-3-270m"
        resp = client.chat.completions.create(model=AGENT, messages=USER, max_tokens=4, temperature=0)
        assert resp.choices[0].finish_reason in ("stop", "length")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert b"serving gemma-3-270m" in err


def test_text_completions_plain_streamed_and_stop(client: openai.OpenAI) -> None:
    kw: dict[str, Any] = {"model": "gemma-3-270m", "prompt": "The capital of France is", "max_tokens": 12,
                          "temperature": 0, "seed": 3}
    plain = client.completions.create(**kw)
    assert plain.object == "text_completion" and plain.choices[0].finish_reason in ("length", "stop")
    assert plain.usage is not None and plain.usage.completion_tokens <= 12 and plain.usage.prompt_tokens > 3
    streamed = list(client.completions.create(stream=True, **kw))
    text = "".join(c.choices[0].text for c in streamed if c.choices)
    assert text == plain.choices[0].text  # greedy: the same continuation
    # a stop string cuts the text where it first appears, as llama-server does
    if len(plain.choices[0].text.strip()) > 2:
        stop = plain.choices[0].text.strip()[1:3]
        cut = client.completions.create(stop=[stop], **kw)
        assert stop not in cut.choices[0].text and cut.choices[0].finish_reason == "stop"


def test_text_completion_too_long_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="gemma-3-270m", prompt="cat " * 9000, max_tokens=4)
    assert err.value.status_code == 400
