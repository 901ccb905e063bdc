"""Helpers for the ``localcode serve`` tests: a real uvicorn server on a free port, and a
slow fake model whose cancellation can be observed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from localcode.backends.base import (
    ChatOptions,
    ChatResult,
    Message,
    ModelInfo,
    StreamEvent,
    Timings,
    ToolSchema,
    Usage,
)


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port; yields ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


class SlowModel:
    """A fake ``ChatModel`` that streams ``tokens`` pieces ``delay`` seconds apart.

    It records how many generations started, finished, and were closed early (cancelled),
    and never runs two generations at once (``overlaps`` counts violations).
    """

    def __init__(self, tokens: int = 20, delay: float = 0.05, name: str = "slow") -> None:
        self.tokens = tokens
        self.delay = delay
        self.info = ModelInfo(backend="fake", model=name, context_window=4096)
        self.started = 0
        self.finished = 0
        self.cancelled = 0
        self.overlaps = 0
        self.prompts: list[str] = []
        self._active = 0
        self._guard = threading.Lock()
        self.cancel_seen = threading.Event()

    def chat(self, messages: list[Message], tools: list[ToolSchema] | None = None,
             options: ChatOptions | None = None) -> ChatResult:
        for ev in self.stream(messages, tools, options):
            if ev.kind == "done" and ev.result is not None:
                return ev.result
        raise AssertionError("unreachable")

    def stream(self, messages: list[Message], tools: list[ToolSchema] | None = None,
               options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        return self._generate(str(messages[-1].get("content", "")))

    def stream_text(self, prompt: str, options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        """Raw-text completion, so ``/v1/completions`` can be tested."""
        return self._generate(prompt)

    def _generate(self, prompt: str) -> Iterator[StreamEvent]:
        with self._guard:
            self._active += 1
            if self._active > 1:
                self.overlaps += 1
            self.started += 1
            self.prompts.append(prompt)
        done = False
        try:
            text = ""
            for i in range(self.tokens):
                time.sleep(self.delay)
                piece = f"t{i} "
                text += piece
                yield StreamEvent(kind="content", text=piece)
            done = True
            self.finished += 1
            yield StreamEvent(kind="done", result=ChatResult(
                content=text, finish_reason="length", raw=text,
                usage=Usage(prompt_tokens=3, completion_tokens=self.tokens),
                timings=Timings(prompt_n=3, predicted_n=self.tokens, prompt_ms=1.0,
                                predicted_ms=self.delay * 1000 * self.tokens)))
        finally:
            if not done:
                self.cancelled += 1
                self.cancel_seen.set()
            with self._guard:
                self._active -= 1

    def close(self) -> None:
        pass
