"""The shared machinery: the result type, block specs, and the incremental state machine.

A family is described by a ``ParserSpec``: its reasoning tags, the blocks that hold tool
calls (opening marker, closing marker, a function that parses the text in between), and the
end-of-turn tokens to drop. ``StreamParser`` runs one spec over generated text; one-shot
parsing feeds the whole text to the same machine, so both paths give the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from localcode.backends.base import MalformedToolCall, StreamEvent, ToolCall, ToolSchema

class ParsedOutput(BaseModel):
    """Generated text split into what the user sees, the reasoning and the tool calls."""

    content: str = ""
    """The visible answer, with tool-call blocks and reasoning removed (stripped)."""
    reasoning: str = ""
    """Text from ``<think>`` blocks, Harmony analysis channels and the like (stripped)."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Well-formed calls; ``arguments`` is JSON text."""
    malformed: list[MalformedToolCall] = Field(default_factory=list)
    """Text that was meant as a tool call but could not be parsed, with the reason."""


class NotACall(Exception):
    """The block turned out not to be a tool call after all: keep its text as content."""


BlockFn = Callable[[str, Sequence[ToolSchema] | None], list[ToolCall]]
"""Parses the text inside one block into calls; raises ValueError (malformed) or NotACall."""


@dataclass(frozen=True)
class BlockSpec:
    """A tool-call block: text from ``open`` to ``close`` is parsed by ``parse``.

    ``close=None`` runs to the end of the output. ``eos_closes`` accepts a block cut off by
    the end of generation (its closing marker is a stop sequence llama.cpp removes).
    ``keep_markers`` passes the markers to ``parse`` too (formats that need them).
    """

    open: str
    close: str | None
    parse: BlockFn
    eos_closes: bool = False
    keep_markers: bool = False
    maybe_content: bool = False
    """The block may turn out not to be a call (``NotACall``): then its text is content."""


@dataclass(frozen=True)
class ParserSpec:
    """Markers and block parsers of one family."""

    family: str
    reasoning: tuple[tuple[str, str], ...] = (("<think>", "</think>"),)
    blocks: tuple[BlockSpec, ...] = ()
    leading: BlockFn | None = None
    """Parses an answer that starts with JSON as calls (Llama 3.x, generic); ``NotACall`` keeps it content."""
    drop: tuple[str, ...] = ()
    """End-of-turn tokens removed if the backend passes them through."""
    stop_sequences: tuple[str, ...] = ()



def partial_start(buf: str, markers: Sequence[str]) -> int:
    """Earliest index from which ``buf``'s tail is a proper prefix of some marker."""
    best = len(buf)
    for m in markers:
        for k in range(min(len(m) - 1, len(buf)), 0, -1):
            if buf.endswith(m[:k]):
                best = min(best, len(buf) - k)
                break
    return best


def find_marker(buf: str, markers: Sequence[str]) -> tuple[int, str] | None:
    """Earliest complete marker in ``buf`` (the longest one at that position)."""
    found: tuple[int, str] | None = None
    for m in markers:
        i = buf.find(m)
        if i >= 0 and (found is None or i < found[0] or (i == found[0] and len(m) > len(found[1]))):
            found = (i, m)
    return found


class StreamBase:
    """What every streaming parser shares: ``flush`` / ``finish`` over the parts it collected.

    Subclasses fill ``_content``, ``_reasoning``, ``_calls`` and ``_malformed`` from ``_run``.
    """

    _content: list[str]
    _reasoning: list[str]
    _calls: list[ToolCall]
    _malformed: list[MalformedToolCall]
    _finished: ParsedOutput | None
    _buf: str
    """Generated text not yet turned into events."""

    def _run(self, events: list[StreamEvent], final: bool = False) -> None:
        raise NotImplementedError

    def feed(self, delta: str) -> list[StreamEvent]:
        """Add generated text; returns the events that became certain."""
        if self._finished is not None:
            raise RuntimeError("feed() after flush()/finish()")
        self._buf += delta
        events: list[StreamEvent] = []
        self._run(events, final=False)
        return events

    def flush(self) -> list[StreamEvent]:
        """End of generation: the events for what was held back (call once, then ``finish``)."""
        if self._finished is not None:
            return []
        events: list[StreamEvent] = []
        self._run(events, final=True)
        self._finished = self._result()
        return events

    def finish(self) -> ParsedOutput:
        """The complete result (flushes first if ``flush`` was not called)."""
        if self._finished is None:
            self.flush()
        assert self._finished is not None
        return self._finished

    def _result(self) -> ParsedOutput:
        return ParsedOutput(
            content="".join(self._content).strip(),
            reasoning="".join(self._reasoning).strip(),
            tool_calls=list(self._calls),
            malformed=list(self._malformed),
        )


class StreamParser(StreamBase):
    """Incremental parser: ``feed`` deltas, then ``finish`` for the complete result."""

    def __init__(
        self, spec: ParserSpec, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None
    ) -> None:
        self._spec = spec
        self._tools = tools
        self._buf = ""
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[ToolCall] = []
        self._malformed: list[MalformedToolCall] = []
        self._started = {"content": False, "reasoning": False}
        self._seen_text = False  # any non-whitespace content yet (for leading JSON)
        self._finished: ParsedOutput | None = None
        self._block: BlockSpec | None = None
        self._leading = False
        self._reasoning_close: str | None = None
        if starts_in_reasoning and spec.reasoning:
            self._reasoning_close = spec.reasoning[0][1]

    # -- emitting
    def _emit(self, kind: str, text: str, events: list[StreamEvent]) -> None:
        if not text:
            return
        if not self._started[kind]:
            text = text.lstrip()
            if not text:
                return
            self._started[kind] = True
        (self._content if kind == "content" else self._reasoning).append(text)
        if kind == "content":
            self._seen_text = True
        if events and events[-1].kind == kind:
            events[-1] = StreamEvent(kind=kind, text=events[-1].text + text)  # type: ignore[arg-type]
        else:
            events.append(StreamEvent(kind=kind, text=text))  # type: ignore[arg-type]

    def _emit_block(self, block: BlockSpec, raw: str, closed: bool, events: list[StreamEvent]) -> None:
        full = block.open + raw + (block.close or "" if closed else "")
        body = full if block.keep_markers else raw
        if not closed and not block.eos_closes and block.close is not None:
            if block.maybe_content:
                self._emit("content", full, events)
                return
            self._malformed.append(
                MalformedToolCall(raw=full, error=f"unclosed {block.open}: output ended before {block.close}")
            )
            return
        try:
            calls = block.parse(body, self._tools)
        except NotACall:
            self._emit("content", full, events)
            return
        except Exception as e:  # noqa: BLE001 - a parser bug must not lose the model's output
            self._malformed.append(MalformedToolCall(raw=full, error=str(e) or type(e).__name__))
            return
        for call in calls:
            events.append(
                StreamEvent(kind="tool_call", index=len(self._calls), id=call.id, name=call.name,
                            arguments=call.arguments)
            )
            self._calls.append(call)

    # -- the machine
    def _run(self, events: list[StreamEvent], final: bool) -> None:
        spec = self._spec
        while True:
            buf = self._buf
            if self._leading:
                end = find_marker(buf, spec.drop)
                if end is None:
                    if not final:
                        return
                    self._buf, self._leading = "", False
                    self._emit_leading(buf, events)
                    return
                self._buf, self._leading = buf[end[0] + len(end[1]):], False
                self._emit_leading(buf[: end[0]], events)
                continue
            if self._block is not None:
                block = self._block
                if block.close is None:
                    # Runs to the end of the turn: the end of the output or an end-of-turn token.
                    end = find_marker(buf, spec.drop)
                    if end is None:
                        if not final:
                            return
                        self._buf, self._block = "", None
                        self._emit_block(block, buf, closed=True, events=events)
                        return
                    self._buf, self._block = buf[end[0] + len(end[1]):], None
                    self._emit_block(block, buf[: end[0]], closed=True, events=events)
                    continue
                i = buf.find(block.close)
                if i < 0:
                    if not final:
                        return
                    self._buf, self._block = "", None
                    self._emit_block(block, buf, closed=False, events=events)
                    return
                self._buf, self._block = buf[i + len(block.close):], None
                self._emit_block(block, buf[:i], closed=True, events=events)
                continue
            if self._reasoning_close is not None:
                markers: list[str] = [self._reasoning_close, *spec.drop]
                kind = "reasoning"
            else:
                if spec.leading is not None and not self._seen_text and not self._calls:
                    stripped = buf.lstrip()
                    if not stripped:
                        if final:
                            self._buf = ""
                        return
                    if stripped[0] in "[{" or stripped.startswith("```"):
                        self._leading = True
                        continue
                # A stray reasoning close (history turns of GLM-4.7 start with a bare "</think>") is dropped.
                markers = [o for o, _ in spec.reasoning] + [b.open for b in spec.blocks] + list(spec.drop) + [
                    c for _, c in spec.reasoning]
                kind = "content"
            hold = len(buf) if final else partial_start(buf, markers)
            hit = find_marker(buf, markers)
            if hit is None or hit[0] >= hold:
                self._emit(kind, buf[:hold], events)
                self._buf = buf[hold:]
                return
            i, marker = hit
            self._emit(kind, buf[:i], events)
            self._buf = buf[i + len(marker):]
            if marker in spec.drop or (kind == "content" and any(marker == c for _, c in spec.reasoning)):
                continue
            if kind == "reasoning":
                self._reasoning_close = None
                continue
            for open_, close in spec.reasoning:
                if marker == open_:
                    self._reasoning_close = close
                    break
            else:
                self._block = next(b for b in spec.blocks if b.open == marker)

    def _emit_leading(self, text: str, events: list[StreamEvent]) -> None:
        try:
            assert self._spec.leading is not None
            calls = self._spec.leading(text, self._tools)
        except NotACall:
            # Not a call: the text is content (markers inside it still count).
            self._seen_text = True
            rest, self._buf = self._buf, text
            self._run(events, final=True)
            self._buf = rest
            return
        except Exception as e:  # noqa: BLE001
            self._malformed.append(MalformedToolCall(raw=text.strip(), error=str(e) or type(e).__name__))
            return
        for call in calls:
            events.append(StreamEvent(kind="tool_call", index=len(self._calls), id=call.id, name=call.name,
                                      arguments=call.arguments))
            self._calls.append(call)



class ToolCallParser:
    """Parses one family's generated text into content, reasoning and tool calls."""

    def __init__(self, spec: ParserSpec) -> None:
        self.spec = spec

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def stop_sequences(self) -> list[str]:
        """Strings at which generation must stop for this family."""
        return list(self.spec.stop_sequences)

    @property
    def reasoning_tags(self) -> list[tuple[str, str]]:
        """(open, close) markers of reasoning blocks."""
        return list(self.spec.reasoning)

    def stream(
        self, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None
    ) -> StreamParser:
        """An incremental parser for one generation."""
        return StreamParser(self.spec, starts_in_reasoning=starts_in_reasoning, tools=tools)

    def parse(
        self, text: str, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None
    ) -> ParsedOutput:
        """Parse a complete generation. Never raises."""
        s = self.stream(starts_in_reasoning=starts_in_reasoning, tools=tools)
        s.feed(text)
        return s.finish()

