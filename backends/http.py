"""An OpenAI-compatible HTTP endpoint behind the ``ChatModel`` interface.

For models already served by llama-server, LM Studio, Ollama or a remote API: the agent's
``url`` (``http://host:port/v1``) and ``model``. Every request streams
(``/chat/completions`` with ``stream: true``) so content, reasoning and tool-call deltas
arrive as they are generated; ``chat`` collects the same stream.

Kept from the server: usage (``prompt_tokens_details.cached_tokens`` as cached tokens)
and llama-server's ``timings`` object. Sent: the sampling fields (``top_k``, ``min_p`` and
``repeat_penalty`` are llama-server extensions other servers ignore), ``tools`` and
``tool_choice``, ``think`` as ``chat_template_kwargs.enable_thinking``, ``think_level`` as
``reasoning_effort``, and ``ChatOptions.extra`` / the agent's ``request_overrides`` as they are.

Errors: connection failures (and 502/503/504 while a server loads its model) are retried
with tenacity, then raise ``ModelError``; a 4xx is not retried; llama-server's context
overflow (``exceed_context_size_error``) raises ``ContextWindowExceeded``; a request
longer than ``request_timeout`` raises ``ModelError``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from localcode.backends.base import (
    ChatOptions,
    ChatResult,
    MalformedToolCall,
    Message,
    ModelInfo,
    StreamEvent,
    Timings,
    ToolCall,
    ToolSchema,
    Usage,
)
from localcode.config import AgentConfig
from localcode.errors import ContextWindowExceeded, ModelError

SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                   "repeat_penalty", "max_tokens", "seed")
RETRY_STATUS = (502, 503, 504)


class _Retryable(Exception):
    """A failure worth another attempt (connection refused/reset, server still loading)."""


class HttpChatModel:
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None,
                 request_timeout: float | None = 600.0, *, defaults: AgentConfig | None = None,
                 retries: int = 4, transport: httpx.BaseTransport | None = None) -> None:
        """``defaults`` supplies sampling values a request leaves unset (an agent's fields).

        ``transport`` replaces the network (tests).
        """
        self.base_url = base_url.rstrip("/")
        self.model = model or "default"
        self.request_timeout = request_timeout
        self.defaults = defaults
        self.retries = max(1, retries)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(request_timeout, connect=min(10.0, request_timeout or 10.0))
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)
        self._lock = threading.Lock()
        self.info = ModelInfo(backend="http", model=self.model, details={"url": self.base_url})

    @classmethod
    def from_agent(cls, cfg: AgentConfig, **kwargs: Any) -> HttpChatModel:
        """The endpoint of an agent config (``url``, ``model``, ``request_timeout``)."""
        import os

        assert cfg.url
        api_key = kwargs.pop("api_key", None) or os.environ.get("LOCALCODE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        return cls(cfg.url, cfg.model, api_key=api_key, request_timeout=cfg.request_timeout or 600.0,
                   defaults=cfg, **kwargs)

    # ------------------------------------------------------------ public

    def chat(self, messages: list[Message], tools: list[ToolSchema] | None = None,
             options: ChatOptions | None = None) -> ChatResult:
        """One assistant turn (collected from the stream)."""
        result = None
        for ev in self.stream(messages, tools, options):
            if ev.kind == "done":
                result = ev.result
        assert result is not None
        return result

    def stream(self, messages: list[Message], tools: list[ToolSchema] | None = None,
               options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        """Deltas as the server sends them; the last event is ``done``. Closing the iterator closes the request."""
        body = self.request_body(messages, tools, options or ChatOptions())
        with self._lock:
            yield from self._stream(body)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def request_body(self, messages: list[Message], tools: list[ToolSchema] | None,
                     options: ChatOptions) -> dict[str, Any]:
        """The JSON body sent for one request."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True,
                                "stream_options": {"include_usage": True}}
        for name in SAMPLING_FIELDS:
            v = getattr(options, name, None)
            if v is None and self.defaults is not None:
                v = getattr(self.defaults, name, None)
            if v is not None:
                body[name] = v
        if options.stop:
            body["stop"] = options.stop
        if tools and options.tool_choice != "none":
            body["tools"] = tools
            body["tool_choice"] = options.tool_choice
        think = options.think if options.think is not None else (self.defaults.think if self.defaults else None)
        level = options.think_level or (self.defaults.think_level if self.defaults else None)
        if think is not None:
            body["chat_template_kwargs"] = {"enable_thinking": think}
        if level is not None:
            body["reasoning_effort"] = level
        if self.defaults is not None:
            body.update(self.defaults.request_overrides)
        body.update(options.extra)
        return body

    # ------------------------------------------------------------ transport

    def _open(self, body: dict[str, Any]) -> httpx.Response:
        @retry(retry=retry_if_exception_type(_Retryable), stop=stop_after_attempt(self.retries),
               wait=wait_exponential(multiplier=0.5, max=8), reraise=True)
        def attempt() -> httpx.Response:
            try:
                req = self._client.build_request("POST", "/chat/completions", json=body)
                resp = self._client.send(req, stream=True)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as e:
                raise _Retryable(f"{type(e).__name__}: {e}") from None
            if resp.status_code in RETRY_STATUS:
                resp.read()
                resp.close()
                raise _Retryable(f"HTTP {resp.status_code}: {resp.text[:200]}")
            return resp

        try:
            return attempt()
        except _Retryable as e:
            raise ModelError(f"cannot reach {self.base_url} after {self.retries} attempts ({e}): "
                             "start the server or fix the agent's url") from None
        except httpx.TimeoutException:
            raise ModelError(f"{self.base_url} did not answer within {self.request_timeout}s: "
                             "raise request_timeout or check the server") from None

    def _stream(self, body: dict[str, Any]) -> Iterator[StreamEvent]:
        t0 = time.perf_counter()
        resp = self._open(body)
        acc = _Accumulator()
        try:
            if resp.status_code >= 400:
                resp.read()
                raise _http_error(resp, self.base_url)
            try:
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except json.JSONDecodeError:
                        raise ModelError(f"{self.base_url} sent a stream chunk that is not JSON: {data[:120]}") from None
                    if "error" in chunk:
                        raise _error_from_json(chunk, 500, self.base_url)
                    yield from acc.add(chunk)
            except httpx.TimeoutException:
                raise ModelError(f"{self.base_url} stopped answering for {self.request_timeout}s: "
                                 "raise request_timeout or check the server") from None
            except (httpx.RemoteProtocolError, httpx.ReadError) as e:
                raise ModelError(f"{self.base_url} closed the stream early ({type(e).__name__}): check the server log") from None
        finally:
            resp.close()
        yield StreamEvent(kind="done", result=acc.result(time.perf_counter() - t0))


class _Accumulator:
    """Builds a ``ChatResult`` from OpenAI stream chunks and turns them into ``StreamEvent`` s."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}

    def add(self, chunk: dict[str, Any]) -> Iterator[StreamEvent]:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if chunk.get("timings"):
            self.timings = chunk["timings"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or choice.get("message") or {}
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                self.reasoning.append(reasoning)
                yield StreamEvent(kind="reasoning", text=reasoning)
            if delta.get("content"):
                self.content.append(delta["content"])
                yield StreamEvent(kind="content", text=delta["content"])
            for i, tc in enumerate(delta.get("tool_calls") or []):
                index = tc.get("index", i)
                fn = tc.get("function") or {}
                first = index not in self.calls
                call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                if tc.get("id"):
                    call["id"] = tc["id"]
                if fn.get("name") and not call["name"]:
                    call["name"] = fn["name"]
                args = fn.get("arguments") or ""
                if isinstance(args, dict):  # some servers send an object
                    args = json.dumps(args)
                call["arguments"] += args
                yield StreamEvent(kind="tool_call", index=index, id=tc.get("id") if first else None,
                                  name=fn.get("name") if first else None, arguments=args)

    def result(self, seconds: float) -> ChatResult:
        calls: list[ToolCall] = []
        malformed: list[MalformedToolCall] = []
        for index in sorted(self.calls):
            c = self.calls[index]
            args = c["arguments"] or "{}"
            try:
                json.loads(args)
            except json.JSONDecodeError as e:
                malformed.append(MalformedToolCall(raw=json.dumps({"name": c["name"], "arguments": args}),
                                                   error=f"arguments are not valid JSON: {e.msg}"))
                continue
            extra = {"id": c["id"]} if c["id"] else {}
            calls.append(ToolCall(name=c["name"], arguments=args, **extra))
        finish = self.finish or "stop"
        if finish not in ("stop", "length", "tool_calls"):
            finish = "tool_calls" if calls else "stop"
        if calls and finish == "stop":
            finish = "tool_calls"
        u = self.usage
        details = u.get("prompt_tokens_details") or {}
        t = self.timings
        cached = details.get("cached_tokens") or t.get("cache_n") or 0
        usage = Usage(prompt_tokens=u.get("prompt_tokens", 0) or 0, cached_tokens=int(cached or 0),
                      completion_tokens=u.get("completion_tokens", 0) or 0)
        if t:
            timings = Timings(prompt_n=int(t.get("prompt_n", 0)), cache_n=int(t.get("cache_n", 0)),
                              prompt_ms=float(t.get("prompt_ms", 0.0)), predicted_n=int(t.get("predicted_n", 0)),
                              predicted_ms=float(t.get("predicted_ms", 0.0)))
        else:
            timings = Timings(prompt_n=usage.prompt_tokens - usage.cached_tokens, cache_n=usage.cached_tokens,
                              predicted_n=usage.completion_tokens, predicted_ms=seconds * 1000.0)
        content = "".join(self.content)
        return ChatResult(content=content, reasoning="".join(self.reasoning), tool_calls=calls,
                          malformed_tool_calls=malformed, finish_reason=finish,  # type: ignore[arg-type]
                          usage=usage, timings=timings, raw=content)


def _http_error(resp: httpx.Response, url: str) -> Exception:
    try:
        data = resp.json()
    except (json.JSONDecodeError, ValueError):
        data = {"error": {"message": resp.text[:300]}}
    return _error_from_json(data if isinstance(data, dict) else {"error": {"message": str(data)}}, resp.status_code, url)


def _error_from_json(data: dict[str, Any], status: int, url: str) -> Exception:
    err = data.get("error", data)
    if isinstance(err, str):
        err = {"message": err}
    message = str(err.get("message", ""))
    kind = str(err.get("type", ""))
    lowered = message.lower()
    if kind == "exceed_context_size_error" or "context" in lowered and (
            "exceed" in lowered or "too long" in lowered or "context length" in lowered or "context size" in lowered):
        n_prompt = int(err.get("n_prompt_tokens") or 0)
        n_ctx = int(err.get("n_ctx") or 0)
        return ContextWindowExceeded(n_prompt, n_ctx)
    return ModelError(f"{url} answered HTTP {status}: {message or kind or 'error'}")
