"""gpt-oss Harmony output: messages with channels instead of tags.

The generation prompt ends with ``<|start|>assistant``; the model then writes messages like::

    <|channel|>analysis<|message|>reasoning...<|end|>
    <|start|>assistant<|channel|>commentary to=functions.read_file <|constrain|>json<|message|>{"path": "a"}<|call|>
    <|start|>assistant<|channel|>final<|message|>the answer<|return|>

``analysis`` becomes reasoning, ``final`` (and ``commentary`` without a recipient) content, a
message with a recipient ``to=functions.NAME`` a tool call. ``<|call|>`` and ``<|return|>``
are stop sequences, so a tool message cut off by the end of the output is complete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from localcode.backends.base import MalformedToolCall, StreamEvent, ToolCall, ToolSchema
from localcode.backends.tool_parsers.core import (
    ParsedOutput,
    ParserSpec,
    StreamBase,
    StreamParser,
    find_marker,
    partial_start,
)

_MESSAGE = "<|message|>"
_HEADER_STARTS = ("<|", "to=")
"""A message header starts with a special token (``<|channel|>``, ``<|start|>``) or a recipient."""
_BODY_END = ("<|end|>", "<|call|>", "<|return|>")
_NEXT_HEADER = ("<|start|>", "<|channel|>")
_RECIPIENT = re.compile(r"\bto=([^\s<]+)")
_CHANNEL = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")
_ANSWER_SPEC = ParserSpec("harmony", reasoning=())


class HarmonyStream(StreamBase):
    """Incremental Harmony parser (same contract as ``StreamParser``)."""

    def __init__(self, tools: Sequence[ToolSchema] | None = None) -> None:
        super().__init__(tools)
        self._header: str | None = ""  # None while inside a message body
        self._kind = "content"  # of the current body: content / reasoning / tool
        self._recipient = ""
        self._header_raw = ""
        # The answer's text goes through the shared machine too, for calls written as JSON text.
        self._answer = StreamParser(_ANSWER_SPEC, tools=tools)
        self._answer_calls = self._answer_malformed = 0

    def _text(self, kind: str, text: str, events: list[StreamEvent], end: bool) -> None:
        """Body text of ``kind``; ``end``: the body ends here (nothing may stay held back)."""
        if kind != "content":
            self._emit(kind, text, events)
            return
        answer = self._answer
        inner: list[StreamEvent] = []
        answer._buf += text
        answer._run(inner, final=end)
        for e in inner:
            if e.kind == "content":
                self._emit("content", e.text, events)
        self._add_calls(answer._calls[self._answer_calls:], events)
        self._malformed.extend(answer._malformed[self._answer_malformed:])
        self._answer_calls, self._answer_malformed = len(answer._calls), len(answer._malformed)

    def _open_body(self, header: str) -> None:
        m = _RECIPIENT.search(header)
        ch = _CHANNEL.search(header)
        channel = ch.group(1) if ch else "final"
        self._recipient = m.group(1) if m else ""
        if self._recipient and self._recipient != "assistant":
            self._kind = "tool"
        elif channel == "analysis":
            self._kind = "reasoning"
        else:
            self._kind = "content"

    def _tool(self, body: str, header_raw: str, events: list[StreamEvent]) -> None:
        name = self._recipient.removeprefix("functions.")
        raw = header_raw + body
        try:
            args = json.loads(body.strip() or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments are not a JSON object")
        except (ValueError, RecursionError) as e:
            self._malformed.append(MalformedToolCall(raw=raw, error=f"arguments of {name} are not valid JSON: {e}"))
            return
        self._add_calls([ToolCall(name=name, arguments=json.dumps(args, ensure_ascii=False))], events)

    def _run(self, events: list[StreamEvent], final: bool) -> None:
        while True:
            buf = self._buf
            if self._header is not None:
                stripped = buf.lstrip()
                if stripped and not any(
                    h.startswith(stripped[: len(h)]) or stripped.startswith(h) for h in _HEADER_STARTS
                ):
                    # No header at all: plain text is the final answer.
                    self._header_raw = ""
                    self._kind, self._recipient, self._header = "content", "", None
                    continue
                i = buf.find(_MESSAGE)
                if i >= 0:
                    self._header_raw = buf[: i + len(_MESSAGE)]
                    self._open_body(buf[:i])
                    self._header, self._buf = None, buf[i + len(_MESSAGE):]
                    continue
                if final:
                    self._buf = ""
                    rest = re.sub(r"<\|[a-z_]+\|>|\bassistant\b", "", buf).strip()
                    if _RECIPIENT.search(buf):
                        self._malformed.append(MalformedToolCall(raw=buf, error="tool call without <|message|>"))
                    elif rest:
                        self._text("content", rest, events, end=True)
                return
            # inside a body; a new header also ends it (models skip <|end|>, or write text before <|start|>)
            hit = find_marker(buf, _BODY_END + _NEXT_HEADER)
            if hit is not None and hit[1] in _NEXT_HEADER:
                hit_at = hit[0]
                if self._kind == "tool":
                    self._tool(buf[:hit_at], self._header_raw, events)
                else:
                    self._text(self._kind, buf[:hit_at], events, end=True)
                self._buf, self._header = buf[hit_at:], ""
                continue
            if self._kind == "tool":
                if hit is None:
                    if not final:
                        return
                    self._buf, self._header = "", ""
                    self._tool(buf, self._header_raw, events)
                    return
                self._buf, self._header = buf[hit[0] + len(hit[1]):], ""
                self._tool(buf[: hit[0]], self._header_raw, events)
                continue
            hold = len(buf) if final else partial_start(buf, _BODY_END + _NEXT_HEADER)
            if hit is None or hit[0] >= hold:
                self._text(self._kind, buf[:hold], events, end=final)
                self._buf = buf[hold:]
                return
            self._text(self._kind, buf[: hit[0]], events, end=True)
            self._buf, self._header = buf[hit[0] + len(hit[1]):], ""



class HarmonyParser:
    """Parser for gpt-oss (Harmony) output; same interface as ``ToolCallParser``."""

    family = "harmony"

    @property
    def stop_sequences(self) -> list[str]:
        """Strings at which generation must stop: a tool call or the final answer ends there."""
        return ["<|call|>", "<|return|>"]

    @property
    def reasoning_tags(self) -> list[tuple[str, str]]:
        """Harmony has channels, not reasoning tags."""
        return []

    object_arguments = False
    """Past calls reach the template with JSON-text arguments."""

    def render_calls(self, calls: Sequence[tuple[str, dict[str, object]]]) -> str | None:
        """Harmony calls are whole messages, written by the template itself."""
        return None

    def stream(self, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None) -> HarmonyStream:
        """An incremental parser for one generation (the prompt never opens a channel)."""
        return HarmonyStream(tools=tools)

    def parse(
        self, text: str, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None
    ) -> ParsedOutput:
        """Parse a complete generation. Never raises."""
        s = self.stream(starts_in_reasoning, tools)
        s.feed(text)
        return s.finish()


HARMONY = HarmonyParser()
