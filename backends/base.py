"""The chat-model interface every backend implements.

Messages and tool schemas are OpenAI-shaped dicts (``{"role": ..., "content": ...}``,
``{"type": "function", "function": {"name", "description", "parameters"}}``), so the agent,
the benchmark and ``localcode serve`` speak one format. Results are pydantic models.

Errors a backend raises (all from ``localcode.errors``):
``ModelNotFound`` / ``ModelError`` on load, ``ContextWindowExceeded`` before generation
when the prompt does not fit, ``ModelError`` when generation itself fails.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

Message = dict[str, Any]
"""An OpenAI-style chat message: role, content, and for assistants tool_calls / reasoning_content."""

ToolSchema = dict[str, Any]
"""An OpenAI-style tool: ``{"type": "function", "function": {"name", "description", "parameters"}}``."""

FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "repetition"]
"""``repetition``: stopped by ``RepetitionGuard`` (``ChatOptions.repetition_guard``)."""
ToolChoice = Literal["auto", "required", "none"] | dict[str, Any]


def new_call_id() -> str:
    """A fresh tool-call id in OpenAI's style."""
    return "call_" + uuid.uuid4().hex[:24]


class ToolCall(BaseModel):
    """One parsed tool call. ``arguments`` is the JSON text, as in OpenAI's API."""

    id: str = Field(default_factory=new_call_id)
    name: str
    arguments: str = "{}"
    repaired: bool = False
    """Recovered from JSON text (a fenced or bare object naming an offered tool), not the
    family's own call format; counted apart in statistics."""

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class MalformedToolCall(BaseModel):
    """Text that looked like a tool call but could not be parsed. Never dropped silently."""

    raw: str
    error: str


class Usage(BaseModel):
    """Token counts of one request. ``cached_tokens`` were reused from the KV cache."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Timings(BaseModel):
    """Timings named like llama-server's ``timings`` object.

    ``prompt_n`` tokens were evaluated (prefill) in ``prompt_ms``; ``cache_n`` were reused;
    ``predicted_n`` tokens were generated in ``predicted_ms``.
    """

    prompt_n: int = 0
    cache_n: int = 0
    prompt_ms: float = 0.0
    predicted_n: int = 0
    predicted_ms: float = 0.0

    @property
    def prompt_per_second(self) -> float:
        return self.prompt_n * 1000.0 / self.prompt_ms if self.prompt_ms > 0 else 0.0

    @property
    def predicted_per_second(self) -> float:
        return self.predicted_n * 1000.0 / self.predicted_ms if self.predicted_ms > 0 else 0.0

    def to_llama_server(self) -> dict[str, float | int]:
        """The ``timings`` object as llama-server returns it."""
        return {
            "cache_n": self.cache_n,
            "prompt_n": self.prompt_n,
            "prompt_ms": self.prompt_ms,
            "prompt_per_token_ms": self.prompt_ms / self.prompt_n if self.prompt_n else 0.0,
            "prompt_per_second": self.prompt_per_second,
            "predicted_n": self.predicted_n,
            "predicted_ms": self.predicted_ms,
            "predicted_per_token_ms": self.predicted_ms / self.predicted_n if self.predicted_n else 0.0,
            "predicted_per_second": self.predicted_per_second,
        }


class ChatResult(BaseModel):
    """The assistant's answer to one ``chat`` call."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    malformed_tool_calls: list[MalformedToolCall] = Field(default_factory=list)
    finish_reason: FinishReason = "stop"
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)
    raw: str = ""
    """The generated text before parsing (empty for backends that never see it)."""

    def to_message(self) -> Message:
        """The assistant message to append to the history."""
        msg: Message = {"role": "assistant", "content": self.content}
        if self.reasoning:
            msg["reasoning_content"] = self.reasoning
        if self.tool_calls:
            msg["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        return msg


class ChatOptions(BaseModel):
    """Sampling and request options. ``None`` means the backend's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    think: bool | None = None
    """Switch the template's thinking mode on/off (``enable_thinking`` and friends)."""
    think_level: str | None = None
    """low / medium / high for templates that take a reasoning effort."""
    tool_call_grammar: bool = False
    """Constrain tool calls with a grammar built from the tools' JSON schemas."""
    repetition_guard: bool = False
    """Stop a generation that has fallen into a loop (``RepetitionGuard``), finish reason ``repetition``."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Backend-specific request fields (the agent's ``request_overrides``)."""


class RepetitionGuard:
    """Spots a generation that has fallen into a loop: its tail is one piece of at most
    ``max_period`` characters repeated over at least ``span`` characters and ``repeats``
    times (a line written over and over until max_tokens, or a block of seven ``elif``
    lines, as small models do). Legitimate code rarely repeats one piece that long; a loop
    caught early saves most of a max_tokens-long answer.

    ``check(text)`` takes everything generated so far and returns the loop's period, or None.
    It looks again only after ``every`` more characters, so calling it per token is cheap.
    """

    def __init__(self, span: int = 800, max_period: int = 1000, repeats: int = 3, every: int = 32) -> None:
        self.span, self.max_period, self.repeats, self.every = span, max_period, repeats, every
        self._checked = 0

    def check(self, text: str) -> int | None:
        n = len(text)
        if n - self._checked < self.every or n <= self.span:
            return None
        self._checked = n
        last = text[-1]
        for period in range(1, min(self.max_period, n // self.repeats) + 1):
            need = max(self.span, self.repeats * period) - period  # the tail that must equal the text before it
            if n < need + period or text[-1 - period] != last:
                continue
            if text[n - need:] == text[n - need - period:n - period]:
                log.warning("generation stopped: its last %d characters repeat one %d-character piece",
                            need + period, period)
                return period
        return None


class StreamEvent(BaseModel):
    """One streamed piece of an answer.

    ``kind`` is ``content`` / ``reasoning`` (``text`` holds the delta), ``tool_call``
    (``index``, and ``id``/``name`` on the first delta of a call, ``arguments`` delta) or
    ``done`` (``result`` holds the complete ``ChatResult``; always the last event).
    """

    kind: Literal["content", "reasoning", "tool_call", "done"]
    text: str = ""
    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    result: ChatResult | None = None


class ModelInfo(BaseModel):
    """What was loaded, for ``run.json`` and ``/v1/models``."""

    backend: str
    model: str
    """A short model name (file stem or repo id)."""
    path: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    quantization: str | None = None
    context_window: int = 0
    threads: int | None = None
    gpu_layers: int | None = None
    load_seconds: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class ChatModel(Protocol):
    """A loaded model that answers OpenAI-shaped chat requests, one at a time."""

    info: ModelInfo

    def chat(
        self,
        messages: list[Message],
        tools: list[ToolSchema] | None = None,
        options: ChatOptions | None = None,
    ) -> ChatResult:
        """Generate one assistant turn. Raises ``ContextWindowExceeded`` before generating."""
        ...

    def stream(
        self,
        messages: list[Message],
        tools: list[ToolSchema] | None = None,
        options: ChatOptions | None = None,
    ) -> Iterator[StreamEvent]:
        """Like ``chat``, yielding deltas; the last event is ``done`` with the full result.

        Closing the iterator early cancels the generation.
        """
        ...

    def close(self) -> None:
        """Free the model. Further calls are errors."""
        ...


@runtime_checkable
class ConversationStates(Protocol):
    """A model that can keep several conversations' KV states while they take turns (optional).

    ``bench`` saves a task's state after each try and restores it before the next, so a
    continued conversation evaluates only its new tokens even when other tasks used the
    model in between.
    """

    def save_conversation(self, key: str) -> int:
        """Keep the state the last request left under ``key``; returns its bytes (0: not kept)."""
        ...

    def restore_conversation(self, key: str) -> bool:
        """Make ``key``'s saved state current; False when none is kept."""
        ...

    def drop_conversation(self, key: str) -> None:
        """Forget ``key``'s state."""
        ...


S = TypeVar("S")

DEFAULT_STATE_BUDGET = 2 << 30
"""Bytes of saved conversation states a backend keeps by default (2 GiB)."""


class StateStore(Generic[S]):
    """Saved conversation states under a byte budget, least recently used dropped first.

    The backends keep one per model for ``ConversationStates``; what a state is (a llama.cpp
    sequence copy, an mlx cache copy) is theirs. ``stats`` counts saves, restores and
    evictions and the peak bytes held (``run.json`` reports them).
    """

    def __init__(self, budget_bytes: int = DEFAULT_STATE_BUDGET) -> None:
        self.budget_bytes = budget_bytes
        self.stats: dict[str, Any] = {"saved": 0, "restored": 0, "evicted": 0, "peak_bytes": 0}
        self._items: OrderedDict[str, tuple[S, int]] = OrderedDict()

    def admits(self, key: str, size: int) -> bool:
        """Forget ``key``'s earlier state; False (logged) when ``size`` alone exceeds the budget."""
        self._items.pop(key, None)
        if size > self.budget_bytes:
            log.info("conversation state %s (%d MiB) exceeds the state budget (%d MiB): not kept",
                     key, size >> 20, self.budget_bytes >> 20)
            return False
        return True

    def put(self, key: str, state: S, size: int) -> None:
        """Keep ``state`` (``size`` bytes) under ``key``, dropping the oldest to stay in budget."""
        if not self.stats["saved"]:
            log.info("keeping conversation KV states within %d MiB (state_budget_bytes)", self.budget_bytes >> 20)
        self._items.pop(key, None)
        self._items[key] = (state, size)
        self.stats["saved"] += 1
        while self.held_bytes() > self.budget_bytes:
            old, (_, dropped) = self._items.popitem(last=False)
            self.stats["evicted"] += 1
            log.info("conversation state %s (%d MiB) dropped: state budget %d MiB", old, dropped >> 20,
                     self.budget_bytes >> 20)
        self.stats["peak_bytes"] = max(self.stats["peak_bytes"], self.held_bytes())

    def get(self, key: str) -> S | None:
        """``key``'s state (now the most recently used), or None."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def pop(self, key: str) -> None:
        """Forget ``key``'s state, if any."""
        self._items.pop(key, None)

    def clear(self) -> None:
        """Forget every state."""
        self._items.clear()

    def held_bytes(self) -> int:
        """Bytes of the states held now."""
        return sum(size for _, size in self._items.values())
