"""Kimi-K2: ``<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0<|tool_call_argument_begin|>{...}<|tool_call_end|>...``.

Each call is parsed on its own (a broken one does not drop its neighbours); a section cut
off by the end of the output keeps the calls that closed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, salvage
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser

_CALL = re.compile(r"<\|tool_call_begin\|>(.*?)(?:<\|tool_call_argument_begin\|>(.*?))?(?:<\|tool_call_end\|>|(?=<\|tool_call_begin\|>)|\Z)",
                   re.S)


def _call(m: re.Match[str]) -> ToolCall:
    if not m.group(0).endswith("<|tool_call_end|>"):
        raise ValueError("unclosed <|tool_call_begin|>")
    if m.group(2) is None:
        raise ValueError("<|tool_call_begin|> without <|tool_call_argument_begin|>")
    call_id = m.group(1).strip()
    name = re.sub(r":\d+$", "", call_id.removeprefix("functions."))
    if not name:
        raise ValueError("tool call has no name")
    try:
        parsed = json.loads(m.group(2).strip() or "{}", strict=False)
    except ValueError as e:
        raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"arguments of {name} are not a JSON object")
    return ToolCall(id=call_id, name=name, arguments=args_json(parsed))


def block_kimi(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """The calls of one tool-call section."""
    return salvage(((m.group(0), m) for m in _CALL.finditer(text)), _call,
                   "no <|tool_call_begin|> in tool-call section")


KIMI_K2 = ToolCallParser(ParserSpec(
    "kimi_k2", (("<think>", "</think>"),),
    (BlockSpec("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", block_kimi, eos_parse=True),
     BlockSpec("<|tool_call_begin|>", "<|tool_call_end|>", block_kimi, keep_markers=True, eos_parse=True)),
    drop=("<|im_end|>", "<|tool_calls_section_end|>"), stop_sequences=("<|im_end|>",)))
