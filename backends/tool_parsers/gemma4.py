"""Gemma 4: ``<|tool_call>call:NAME{key:<|"|>text<|"|>,n:20}<tool_call|>``.

Arguments are a JSON-like object with bare keys and strings quoted by ``<|"|>`` tokens.
Reasoning is ``<|channel>thought ... <channel|>``; the turn ends with ``<turn|>``, or with
``<|tool_response>`` where the tool results follow the calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, salvage
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser

Q = '<|"|>'
_CALL = re.compile(r"call:([\w.:-]+)\s*(\{.*\})\s*$", re.S)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class _Reader:
    """A recursive reader of Gemma 4's argument syntax (also accepts plain JSON)."""

    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def value(self) -> Any:
        self.ws()
        s, i = self.s, self.i
        if s.startswith(Q, i):
            end = s.find(Q, i + len(Q))
            if end < 0:
                raise ValueError("unterminated <|\"|> string")
            self.i = end + len(Q)
            return s[i + len(Q): end]
        if s.startswith('"', i):
            value, self.i = json.JSONDecoder(strict=False).raw_decode(s, i)
            return value
        if s.startswith("{", i):
            self.i += 1
            out: dict[str, Any] = {}
            self.ws()
            if s.startswith("}", self.i):
                self.i += 1
                return out
            while True:
                self.ws()
                key = self.key()
                out[key] = self.value()
                self.ws()
                if s.startswith(",", self.i):
                    self.i += 1
                    continue
                if s.startswith("}", self.i):
                    self.i += 1
                    return out
                raise ValueError(f"expected , or }} at {self.i}")
        if s.startswith("[", i):
            self.i += 1
            items: list[Any] = []
            self.ws()
            if s.startswith("]", self.i):
                self.i += 1
                return items
            while True:
                items.append(self.value())
                self.ws()
                if s.startswith(",", self.i):
                    self.i += 1
                    continue
                if s.startswith("]", self.i):
                    self.i += 1
                    return items
                raise ValueError(f"expected , or ] at {self.i}")
        for word, val in (("true", True), ("false", False), ("null", None), ("None", None)):
            if s.startswith(word, i):
                self.i += len(word)
                return val
        m = _NUMBER.match(s, i)
        if m:
            self.i = m.end()
            return json.loads(m.group(0))
        raise ValueError(f"unexpected {s[i:i + 10]!r} in arguments")

    def key(self) -> str:
        s = self.s
        if s.startswith(Q, self.i) or s.startswith('"', self.i):
            key = self.value()
        else:
            end = s.find(":", self.i)
            if end < 0:
                raise ValueError("key without ':'")
            key, self.i = s[self.i:end].strip(), end
        self.ws()
        if not s.startswith(":", self.i):
            raise ValueError("key without ':'")
        self.i += 1
        return str(key)


def parse_arguments(text: str) -> dict[str, Any]:
    """Gemma 4's ``{key:value,...}`` as a dict. Raises ValueError."""
    r = _Reader(text)
    value = r.value()
    r.ws()
    if r.i != len(text) or not isinstance(value, dict):
        raise ValueError("arguments are not one object")
    return value


def _call(text: str) -> ToolCall:
    m = _CALL.match(text.strip())
    if m is None:
        raise ValueError("expected call:NAME{arguments}")
    return ToolCall(name=m.group(1), arguments=args_json(parse_arguments(m.group(2))))


def block_gemma4(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """One ``<|tool_call>...<tool_call|>`` call."""
    return salvage([("<|tool_call>" + text + "<tool_call|>", text)], _call, "empty tool call")


GEMMA4 = ToolCallParser(ParserSpec(
    "gemma4", (("<|channel>thought", "<channel|>"),),
    (BlockSpec("<|tool_call>", "<tool_call|>", block_gemma4, eos_parse=True),),
    drop=("<turn|>", "<|tool_response>"), stop_sequences=("<turn|>", "<|tool_response>"), object_arguments=True))
