"""A chat model that replays canned responses: the fake used across the test suite.

Each queued item is a ``ChatResult``, a string (plain content), a dict with any of
``content``, ``reasoning``, ``tool_calls`` (``[{"name", "arguments"}]``, arguments as a
dict or JSON text), ``malformed`` (``[raw text]``) and ``finish_reason``, or a callable
``(messages, tools) -> item`` for responses that depend on the conversation. An
exception instance in the queue is raised. The model records every request it got.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Union

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
from localcode.errors import ModelError

ScriptItem = Union[ChatResult, str, dict[str, Any], BaseException, Callable[[list[Message], list[ToolSchema] | None], Any]]


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def to_result(item: Any) -> ChatResult:
    """Turn one script item into a ``ChatResult``."""
    if isinstance(item, ChatResult):
        return item
    if isinstance(item, str):
        return ChatResult(content=item, raw=item)
    if isinstance(item, dict):
        calls = []
        for c in item.get("tool_calls", []):
            args = c.get("arguments", {})
            calls.append(ToolCall(name=c["name"], arguments=args if isinstance(args, str) else json.dumps(args),
                                  **({"id": c["id"]} if "id" in c else {})))
        malformed = [MalformedToolCall(raw=r, error="scripted malformed call") for r in item.get("malformed", [])]
        finish = item.get("finish_reason") or ("tool_calls" if calls else "stop")
        return ChatResult(content=item.get("content", ""), reasoning=item.get("reasoning", ""),
                          tool_calls=calls, malformed_tool_calls=malformed, finish_reason=finish,
                          raw=item.get("raw", item.get("content", "")))
    raise TypeError(f"cannot turn {type(item).__name__} into a ChatResult")


class ScriptedChatModel:
    """Replays a queue of responses; raises ``ModelError`` when the script runs out."""

    def __init__(self, script: Iterable[ScriptItem] = (), name: str = "scripted", context_window: int = 32768) -> None:
        self.script: deque[ScriptItem] = deque(script)
        self.requests: list[dict[str, Any]] = []
        self.info = ModelInfo(backend="scripted", model=name, context_window=context_window)
        self._lock = threading.Lock()

    def add(self, *items: ScriptItem) -> None:
        """Queue more responses."""
        self.script.extend(items)

    def chat(self, messages: list[Message], tools: list[ToolSchema] | None = None,
             options: ChatOptions | None = None) -> ChatResult:
        with self._lock:
            self.requests.append({"messages": json.loads(json.dumps(messages, default=str)),
                                  "tools": tools, "options": options})
            if not self.script:
                raise ModelError("scripted model: the script has no more responses")
            item = self.script.popleft()
            if isinstance(item, BaseException):
                raise item
            if callable(item) and not isinstance(item, (ChatResult, dict, str)):
                item = item(messages, tools)
            result = to_result(item).model_copy(deep=True)
            prompt_text = json.dumps(messages, default=str)
            completion = result.raw or result.content or json.dumps([c.to_openai() for c in result.tool_calls])
            if result.usage == Usage():
                result.usage = Usage(prompt_tokens=_estimate_tokens(prompt_text),
                                     completion_tokens=_estimate_tokens(completion))
            if result.timings == Timings():
                result.timings = Timings(prompt_n=result.usage.prompt_tokens,
                                         predicted_n=result.usage.completion_tokens,
                                         prompt_ms=0.01 * result.usage.prompt_tokens,
                                         predicted_ms=0.1 * result.usage.completion_tokens)
            return result

    def stream(self, messages: list[Message], tools: list[ToolSchema] | None = None,
               options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        result = self.chat(messages, tools, options)
        if result.reasoning:
            yield StreamEvent(kind="reasoning", text=result.reasoning)
        for piece in _chunks(result.content):
            yield StreamEvent(kind="content", text=piece)
        for i, call in enumerate(result.tool_calls):
            yield StreamEvent(kind="tool_call", index=i, id=call.id, name=call.name, arguments=call.arguments)
        yield StreamEvent(kind="done", result=result)

    def close(self) -> None:
        self.script.clear()


def _chunks(text: str, size: int = 8) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]
