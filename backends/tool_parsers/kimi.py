"""Kimi-K2: ``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0<|tool_call_argument_begin|>{...}<|tool_call_end|>...``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


_KIMI_CALL = re.compile(
    r"<\|tool_call_begin\|>(.*?)<\|tool_call_argument_begin\|>(.*?)(?:<\|tool_call_end\|>|\Z)", re.S
)


def block_kimi(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for m in _KIMI_CALL.finditer(text):
        if not m.group(0).endswith("<|tool_call_end|>"):
            raise ValueError("unclosed <|tool_call_begin|>")
        call_id = m.group(1).strip()
        name = call_id
        if name.startswith("functions."):
            name = name[len("functions."):]
        name = re.sub(r":\d+$", "", name)
        if not name:
            raise ValueError("tool call has no name")
        try:
            parsed = json.loads(m.group(2).strip() or "{}")
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"arguments of {name} are not a JSON object")
        calls.append(ToolCall(id=call_id, name=name, arguments=args_json(parsed)))
    if not calls:
        raise ValueError("no <|tool_call_begin|> in tool-call section")
    return calls


KIMI_K2 = ToolCallParser(ParserSpec(
    "kimi_k2", (("<think>", "</think>"),),
    (BlockSpec("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", block_kimi),),
    drop=("<|im_end|>",), stop_sequences=("<|im_end|>",)))
