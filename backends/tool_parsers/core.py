"""The shared machinery: the result type, block specs, and the incremental state machine.

A family is described by a ``ParserSpec``: its reasoning tags, the blocks that hold tool
calls (opening marker, closing marker, a function that parses the text in between), and the
end-of-turn tokens to drop. ``StreamParser`` runs one spec over generated text; one-shot
parsing feeds the whole text to the same machine, so both paths give the same result.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from localcode.backends.base import MalformedToolCall, StreamEvent, ToolCall, ToolSchema
from localcode.backends.tool_parsers import json_text

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


@dataclass
class Parsed:
    """What a block parser found: calls, broken calls beside them, and text that is content."""

    calls: list[ToolCall] = field(default_factory=list)
    malformed: list[MalformedToolCall] = field(default_factory=list)
    content: str = ""
    """Text inside the block that is not a call (e.g. prose after Mistral's ``[TOOL_CALLS]``)."""


BlockFn = Callable[[str, Sequence[ToolSchema] | None], "list[ToolCall] | Parsed"]
"""Parses the text inside one block into calls (or a ``Parsed`` that keeps good calls beside
broken ones); raises ValueError (the whole block is malformed) or NotACall."""


@dataclass(frozen=True)
class BlockSpec:
    """A tool-call block: text from ``open`` to ``close`` is parsed by ``parse``.

    ``close=None`` runs to the end of the output. ``eos_closes`` accepts a block cut off by
    the end of generation (its closing marker is a stop sequence llama.cpp removes).
    ``eos_parse`` parses a block cut off by the end anyway and keeps the calls that are
    complete on their own (JSON objects, calls with their own end marker).
    ``keep_markers`` passes the markers to ``parse`` too (formats that need them).
    """

    open: str
    close: str | None
    parse: BlockFn
    eos_closes: bool = False
    eos_parse: bool = False
    keep_markers: bool = False
    maybe_content: bool = False
    """The block may turn out not to be a call (``NotACall``): then its text is content."""


@dataclass(frozen=True)
class ParserSpec:
    """Markers and block parsers of one family."""

    family: str
    reasoning: tuple[tuple[str, str], ...] = (("<think>", "</think>"),)
    blocks: tuple[BlockSpec, ...] = ()
    json_text: Literal["tools", "any", "native"] = "tools"
    """Fenced or bare JSON calls in the answer: ``tools``: calls when they name one of the
    request's tools (counted as repaired); ``any``: whatever the name (repaired; the generic
    family); ``native``: the family's own format (Llama 3.x), any name, not repaired."""
    drop: tuple[str, ...] = ()
    """End-of-turn tokens (and stray closing markers) removed if the backend passes them through."""
    stop_sequences: tuple[str, ...] = ()
    object_arguments: bool = False
    """Past calls must reach the chat template with arguments as a mapping (it renders them
    in the model's own syntax then, e.g. Gemma 4, Kimi-K3), even if it also accepts JSON text."""
    render: Callable[[Sequence[tuple[str, dict[str, Any]]]], str] | None = None
    """Writes past calls as text in this format, for templates that cannot show calls
    themselves (granite-3.3, LFM2.5-Instruct): the history then looks like what the model writes."""


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


def _canonical_arguments(arguments: str) -> str:
    """``arguments`` with key order and spacing normalised (the text itself when not JSON)."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, ensure_ascii=False)
    except ValueError:
        return arguments


class StreamBase:
    """What every streaming parser shares: ``flush`` / ``finish`` over the parts it collected.

    Subclasses fill ``_content``, ``_reasoning``, ``_calls`` and ``_malformed`` from ``_run``.
    """

    def __init__(self, tools: Sequence[ToolSchema] | None = None) -> None:
        self._tools = tools
        self._buf = ""
        """Generated text not yet turned into events."""
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[ToolCall] = []
        self._malformed: list[MalformedToolCall] = []
        self._reasoning_calls: list[tuple[str, str]] = []
        """(name, arguments) of calls made inside reasoning and not yet repeated after it."""
        self._started = {"content": False, "reasoning": False}
        """Whether content / reasoning has begun (leading whitespace is dropped until then)."""
        self._finished: ParsedOutput | None = None

    def _emit(self, kind: str, text: str, events: list[StreamEvent]) -> None:
        """Add content or reasoning text (merged into the last event of the same kind)."""
        if not text:
            return
        if not self._started[kind]:
            text = text.lstrip()
            if not text:
                return
            self._started[kind] = True
        (self._content if kind == "content" else self._reasoning).append(text)
        if events and events[-1].kind == kind:
            events[-1] = StreamEvent(kind=kind, text=events[-1].text + text)  # type: ignore[arg-type]
        else:
            events.append(StreamEvent(kind=kind, text=text))  # type: ignore[arg-type]

    def _add_calls(self, calls: Sequence[ToolCall], events: list[StreamEvent], in_reasoning: bool = False) -> None:
        """Add complete calls, one ``tool_call`` event each.

        A call made inside reasoning and then written again after it is one call: the
        repeat (same name, same arguments) is dropped.
        """
        for call in calls:
            key = (call.name, _canonical_arguments(call.arguments))
            if in_reasoning:
                self._reasoning_calls.append(key)
            elif key in self._reasoning_calls:
                self._reasoning_calls.remove(key)
                continue
            events.append(
                StreamEvent(kind="tool_call", index=len(self._calls), id=call.id, name=call.name,
                            arguments=call.arguments)
            )
            self._calls.append(call)

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
    """Incremental parser: ``feed`` deltas, then ``finish`` for the complete result.

    Salvage rules (a model's output is never lost): a block with one broken call keeps its
    good calls; a call block opened inside reasoning (before ``</think>``, or in reasoning the
    output never closes) yields its calls while the rest stays reasoning; a fenced or bare
    JSON call in the answer becomes a call (see ``ParserSpec.json_text``).
    """

    def __init__(
        self, spec: ParserSpec, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None
    ) -> None:
        super().__init__(tools)
        self._spec = spec
        self._block: BlockSpec | None = None
        self._json = False  # the buffer starts with a possible JSON call
        self._code_fence = False  # inside a fenced code block that is not JSON
        self._reasoning_close: str | None = None
        if starts_in_reasoning and spec.reasoning:
            self._reasoning_close = spec.reasoning[0][1]
        names = {_tool_name(t) for t in tools or ()} - {""}
        self._accept: Callable[[str], bool] | None = None
        if spec.json_text in ("any", "native"):
            self._accept = bool
        elif names:
            self._accept = names.__contains__

    def _emit_block(self, block: BlockSpec, raw: str, closed: bool, events: list[StreamEvent],
                    in_reasoning: bool = False) -> None:
        full = block.open + raw + (block.close or "" if closed else "")
        body = full if block.keep_markers else raw
        text_kind = "reasoning" if in_reasoning else "content"
        unclosed = not closed and not block.eos_closes and block.close is not None
        if unclosed and not block.eos_parse:
            if block.maybe_content or in_reasoning:
                self._emit(text_kind, full, events)
                return
            self._malformed.append(
                MalformedToolCall(raw=full, error=f"unclosed {block.open}: output ended before {block.close}")
            )
            return
        try:
            found = block.parse(body, self._tools)
        except NotACall:
            self._emit(text_kind, full, events)
            return
        except Exception as e:  # noqa: BLE001 - a parser bug must not lose the model's output
            if in_reasoning:
                self._emit(text_kind, full, events)  # thinking about a call, not making one
            elif unclosed:
                self._malformed.append(MalformedToolCall(
                    raw=full, error=f"unclosed {block.open}: output ended before {block.close} ({e})"))
            else:
                self._malformed.append(MalformedToolCall(raw=full, error=str(e) or type(e).__name__))
            return
        parsed = found if isinstance(found, Parsed) else Parsed(calls=list(found))
        if in_reasoning and not parsed.calls:
            self._emit(text_kind, full, events)
            return
        if unclosed and not parsed.calls:
            self._malformed.append(
                MalformedToolCall(raw=full, error=f"unclosed {block.open}: output ended before {block.close}"))
            return
        self._add_calls(parsed.calls, events, in_reasoning=in_reasoning)
        self._malformed.extend(parsed.malformed)
        self._emit(text_kind, parsed.content, events)

    def _emit_json(self, scanned: json_text.Scan, text: str, events: list[StreamEvent]) -> None:
        if scanned.malformed is not None:
            self._malformed.append(scanned.malformed)
        elif scanned.calls:
            native = self._spec.json_text == "native"
            self._add_calls([c if native else c.model_copy(update={"repaired": True}) for c in scanned.calls],
                            events)
        else:
            self._emit("content", text, events)

    # -- the machine
    def _run(self, events: list[StreamEvent], final: bool) -> None:
        spec = self._spec
        while True:
            buf = self._buf
            if self._block is not None:
                if not self._run_block(self._block, events, final):
                    return
                continue
            if self._json:
                assert self._accept is not None
                scanned = json_text.scan(buf, final, self._accept)
                if scanned is None:
                    return
                end = scanned.length
                if not scanned.is_content:
                    while end < len(buf) and buf[end] in " \t;":
                        end += 1
                self._buf, self._json = buf[end:], False
                self._emit_json(scanned, buf[: scanned.length], events)
                continue
            if self._reasoning_close is not None:
                markers: list[str] = [self._reasoning_close, *spec.drop, *(b.open for b in spec.blocks)]
                kind = "reasoning"
            else:
                # A stray reasoning close (history turns of GLM-4.7 start with a bare "</think>") is dropped.
                markers = [o for o, _ in spec.reasoning] + [b.open for b in spec.blocks] + list(spec.drop) + [
                    c for _, c in spec.reasoning]
                if self._accept is not None:
                    markers += ["```"] if self._code_fence else ["```", "{", "["]
                kind = "content"
            hold = len(buf) if final else partial_start(buf, markers)
            hit = find_marker(buf, markers)
            if hit is None or hit[0] >= hold:
                self._emit(kind, buf[:hold], events)
                self._buf = buf[hold:]
                return
            i, marker = hit
            self._emit(kind, buf[:i], events)
            if marker in ("```", "{", "[") and kind == "content" and self._accept is not None:
                rest = buf[i:]
                if self._code_fence:  # the closing fence of a code block
                    self._code_fence = False
                    self._emit("content", marker, events)
                    self._buf = rest[3:]
                    continue
                starts = json_text.could_start(rest, final)
                if starts is None:
                    self._buf = rest
                    return
                if starts:
                    self._buf, self._json = rest, True
                    continue
                if marker == "```":
                    self._code_fence = True
                    nl = rest.find("\n")
                    head = rest if nl < 0 else rest[: nl + 1]
                    self._emit("content", head, events)
                    self._buf = rest[len(head):]
                    continue
                self._emit("content", marker, events)
                self._buf = rest[1:]
                continue
            self._buf = buf[i + len(marker):]
            if kind == "reasoning" and marker == self._reasoning_close:
                self._reasoning_close = None
                continue
            if marker in spec.drop or (kind == "content" and any(marker == c for _, c in spec.reasoning)):
                continue
            for open_, close in spec.reasoning:
                if marker == open_:
                    self._reasoning_close = close
                    break
            else:
                self._block = next(b for b in spec.blocks if b.open == marker)

    def _run_block(self, block: BlockSpec, events: list[StreamEvent], final: bool) -> bool:
        """Advance inside a call block; False when more text is needed."""
        buf = self._buf
        in_reasoning = self._reasoning_close is not None
        ends = list(self._spec.drop) if block.close is None else [block.close]
        if in_reasoning:
            # Reasoning that closes before the block does: the block was only mentioned.
            ends.append(self._reasoning_close)  # type: ignore[arg-type]
        end = find_marker(buf, ends)
        if end is not None and in_reasoning and end[1] == self._reasoning_close and end[1] != block.close:
            self._buf, self._block = buf[end[0]:], None
            if block.close is None:
                self._emit_block(block, buf[: end[0]], closed=True, events=events, in_reasoning=True)
            else:
                self._emit("reasoning", block.open + buf[: end[0]], events)
            return True
        if end is None:
            if not final:
                return False
            self._buf, self._block = "", None
            self._emit_block(block, buf, closed=block.close is None, events=events, in_reasoning=in_reasoning)
            return True
        self._buf, self._block = buf[end[0] + len(end[1]):], None
        self._emit_block(block, buf[: end[0]], closed=True, events=events, in_reasoning=in_reasoning)
        return True


def _tool_name(tool: Any) -> str:
    fn = tool.get("function", tool) if isinstance(tool, dict) else {}
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) else ""


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

    @property
    def object_arguments(self) -> bool:
        """Whether past calls go to the template with arguments as a mapping."""
        return self.spec.object_arguments

    def render_calls(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> str | None:
        """Past calls as text in this family's format; None when the family has no text form."""
        return self.spec.render(calls) if self.spec.render is not None else None

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

