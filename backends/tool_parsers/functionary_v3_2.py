"""Functionary v3.2: messages addressed by recipient after ``>>>``::

    >>>all\\nplain answer>>>read_file\\n{"path": "a.py"}>>>run_tests\\n{"cmd": "pytest"}

The generation prompt ends with ``>>>``, so the output starts with the first recipient.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from localcode.backends.base import MalformedToolCall, ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, StreamParser, ToolCallParser


def block_functionary_v3_2(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """Every ``>>>recipient\\nbody`` message of the turn: ``all`` is content, others are calls."""
    out = Parsed()
    content: list[str] = []
    for message in text.split(">>>")[1:]:
        recipient, _, body = message.partition("\n")
        recipient = recipient.strip()
        if recipient == "all" or not recipient:
            content.append(body)
            continue
        try:
            args = json.loads(body.strip() or "{}", strict=False)
            if not isinstance(args, dict):
                raise ValueError("arguments are not a JSON object")
        except ValueError as e:
            out.malformed.append(MalformedToolCall(raw=">>>" + message, error=f"arguments of {recipient}: {e}"))
            continue
        out.calls.append(ToolCall(name=recipient, arguments=args_json(args)))
    out.content = "".join(content).strip()
    return out


class FunctionaryV32Parser(ToolCallParser):
    """The turn is one ``>>>`` block: the prompt's trailing ``>>>`` is fed first."""

    def stream(self, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None) -> StreamParser:
        s = super().stream(starts_in_reasoning=starts_in_reasoning, tools=tools)
        s.feed(">>>")
        return s


FUNCTIONARY_V3_2 = FunctionaryV32Parser(ParserSpec(
    "functionary_v3_2", (),
    (BlockSpec(">>>", None, block_functionary_v3_2, keep_markers=True, eos_closes=True),),
    drop=("<|eot_id|>", "<|eom_id|>"), stop_sequences=("<|eot_id|>", "<|eom_id|>"), json_text="tools"))
