"""The OpenAI-compatible HTTP backend: against a scripted local HTTP server (SSE streams,
errors, retries) and against a real ``python -m llama_cpp.server`` with the demo GGUF."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from localcode.backends.base import ChatOptions
from localcode.backends.http import HttpChatModel
from localcode.backends.loader import load_model
from localcode.config import AgentConfig
from localcode.errors import ContextWindowExceeded, ModelError


class Script:
    """What the fake server answers: a list of (status, body) per request; body is a list of SSE chunks or a dict."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any]] = []
        self.requests: list[dict[str, Any]] = []


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            status, answer = script.answers.pop(0)
            if isinstance(answer, list):
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in answer:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
            else:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

    return H


@pytest.fixture()
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    httpd.shutdown()
    httpd.server_close()


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


STREAM = [
    chunk({"role": "assistant", "reasoning_content": "Let me "}),
    chunk({"reasoning_content": "look."}),
    chunk({"content": "Reading "}),
    chunk({"content": "it."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                           "function": {"name": "read", "arguments": "{\"pa"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "th\": \"main.py\"}"}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "ls", "arguments": "{"}}]}),
    chunk({}, "tool_calls"),
    {"choices": [], "usage": {"prompt_tokens": 120, "completion_tokens": 30,
                              "prompt_tokens_details": {"cached_tokens": 100}},
     "timings": {"cache_n": 100, "prompt_n": 20, "prompt_ms": 50.0, "predicted_n": 30, "predicted_ms": 600.0}},
]


def test_stream_content_reasoning_tool_calls_usage_timings(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers.append((200, STREAM))
    m = HttpChatModel(url, "my-model", api_key="sekrit")
    events = list(m.stream([{"role": "user", "content": "hi"}], [{"type": "function", "function": {"name": "read"}}],
                           ChatOptions(temperature=0.1, top_k=20, max_tokens=64, think=False, think_level="low",
                                       stop=["END"], extra={"cache_prompt": True})))
    kinds = [e.kind for e in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    assert "".join(e.text for e in events if e.kind == "reasoning") == "Let me look."
    assert "".join(e.text for e in events if e.kind == "content") == "Reading it."
    first_call = [e for e in events if e.kind == "tool_call" and e.index == 0]
    assert first_call[0].id == "call_1" and first_call[0].name == "read" and first_call[1].name is None
    r = events[-1].result
    assert r is not None
    assert r.content == "Reading it." and r.reasoning == "Let me look."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in r.tool_calls] == [("call_1", "read", {"path": "main.py"})]
    assert len(r.malformed_tool_calls) == 1 and "not valid JSON" in r.malformed_tool_calls[0].error
    assert r.finish_reason == "tool_calls"
    assert (r.usage.prompt_tokens, r.usage.cached_tokens, r.usage.completion_tokens) == (120, 100, 30)
    assert (r.timings.prompt_n, r.timings.cache_n, r.timings.predicted_ms) == (20, 100, 600.0)
    req = script.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sekrit"
    body = req["body"]
    assert body["model"] == "my-model" and body["stream"] is True
    assert (body["temperature"], body["top_k"], body["max_tokens"], body["stop"]) == (0.1, 20, 64, ["END"])
    assert body["tool_choice"] == "auto" and body["tools"][0]["function"]["name"] == "read"
    assert body["chat_template_kwargs"] == {"enable_thinking": False} and body["reasoning_effort"] == "low"
    assert body["cache_prompt"] is True


def test_agent_defaults_and_tool_choice_none(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers.append((200, [chunk({"content": "ok"}, "stop")]))
    cfg = AgentConfig(name="remote", url=url, model="m", temperature=0.3, top_p=0.9, request_timeout=30,
                      request_overrides={"n_probs": 0})
    m = load_model(cfg)
    assert isinstance(m, HttpChatModel)
    r = m.chat([{"role": "user", "content": "hi"}], [{"type": "function", "function": {"name": "x"}}],
               ChatOptions(tool_choice="none"))
    assert r.content == "ok" and r.finish_reason == "stop"
    body = script.requests[0]["body"]
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["n_probs"] == 0
    assert "tools" not in body and "tool_choice" not in body
    # a server without usage: zeros, and timings derived from the wall clock
    assert r.usage.prompt_tokens == 0 and r.timings.predicted_ms > 0


def test_context_overflow_maps_to_context_window_exceeded(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers.append((400, {"error": {"code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": 5000,
                                           "n_ctx": 4096, "message": "the request exceeds the available context size"}}))
    script.answers.append((400, {"error": {"message": "This model's maximum context length is 8192 tokens"}}))
    m = HttpChatModel(url, "m")
    with pytest.raises(ContextWindowExceeded) as e:
        m.chat([{"role": "user", "content": "x"}])
    assert (e.value.prompt_tokens, e.value.context_window) == (5000, 4096)
    with pytest.raises(ContextWindowExceeded):
        m.chat([{"role": "user", "content": "x"}])


def test_client_errors_are_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers.append((401, {"error": {"message": "bad key"}}))
    with pytest.raises(ModelError, match="HTTP 401: bad key"):
        HttpChatModel(url, "m").chat([{"role": "user", "content": "x"}])
    assert len(script.requests) == 1


def test_loading_server_is_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.answers += [(503, {"error": {"message": "Loading model"}}), (200, [chunk({"content": "ready"}, "stop")])]
    r = HttpChatModel(url, "m").chat([{"role": "user", "content": "x"}])
    assert r.content == "ready" and len(script.requests) == 2


def test_connection_refused_is_retried_then_model_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = HttpChatModel(f"http://127.0.0.1:{port}/v1", "m", retries=2)
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match="after 2 attempts"):
        m.chat([{"role": "user", "content": "x"}])
    assert time.perf_counter() - t0 >= 0.4  # waited between the attempts


def test_timeout_is_model_error() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    m = HttpChatModel("http://example.invalid/v1", "m", request_timeout=0.5, transport=httpx.MockTransport(slow))
    with pytest.raises(ModelError, match="request_timeout"):
        m.chat([{"role": "user", "content": "x"}])


# ------------------------------------------------------------ a real llama_cpp.server

# ggml's AMX matmul crashes on some AMX CPUs (see backends/llama_cpp.py): the server is
# started with llama.cpp's extra buffer types off, as LlamaCppChatModel loads models there.
_LAUNCH = """
import runpy, sys
import llama_cpp.llama_cpp as C
orig = C.llama_model_default_params
def params():
    p = orig(); p.use_extra_bufts = False; return p
C.llama_model_default_params = params
sys.argv = ["llama_cpp.server"] + sys.argv[1:]
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


@pytest.fixture(scope="module")
def llama_server(demo_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("w") as log_file:  # a file, not a pipe: the server logs a lot and would block on a full pipe
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, "--model", str(demo_gguf), "--port", str(port), "--n_ctx", "1024",
             "--chat_format", "gemma", "--n_threads", str(os.cpu_count() or 1)],
            stdout=log_file, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"python -m llama_cpp.server exited: {log.read_text()[-800:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"python -m llama_cpp.server did not start within 180 s: {log.read_text()[-800:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.gguf
def test_real_llama_cpp_server_streams(llama_server: str) -> None:
    m = HttpChatModel(llama_server, "demo")
    events = list(m.stream([{"role": "user", "content": "Say hello."}], options=ChatOptions(max_tokens=8, temperature=0)))
    r = events[-1].result
    assert r is not None and events[-1].kind == "done"
    assert "".join(e.text for e in events if e.kind == "content") == r.content
    assert r.finish_reason in ("stop", "length")
    assert r.content
    # llama_cpp.server sends no usage in a stream: zeros, never invented numbers
    assert r.usage.completion_tokens == 0 or r.usage.completion_tokens <= 8
    assert r.timings.predicted_ms > 0
    again = m.chat([{"role": "user", "content": "Say hello."}], options=ChatOptions(max_tokens=8, temperature=0))
    assert again.content == r.content  # greedy decoding of the same prompt is deterministic
