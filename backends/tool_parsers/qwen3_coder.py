"""Qwen3-Coder XML: ``<tool_call><function=NAME><parameter=KEY>value</parameter></function></tool_call>``.

Lenient, as quantized models drift: a parameter without ``</parameter>`` ends at the next
``<parameter=`` or ``</function>``; a function the closed ``</tool_call>`` ends needs no
``</function>``; a ``<function=...>...</function>`` without the ``<tool_call>`` opener is a call.
Seed-OSS writes the same inside ``<seed:tool_call>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, salvage, tool_properties, trim_one_newline
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser

_FUNC = re.compile(r"<function=([^>\n]*)>(.*?)(?:</function>|(?=<function=)|\Z)", re.S)
_PARAM = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|(?=</function>)|\Z)", re.S)


def _call(fm: re.Match[str], tools: Sequence[ToolSchema] | None) -> ToolCall:
    name = fm.group(1).strip()
    if not name:
        raise ValueError("<function=> without a name")
    props = tool_properties(tools, name)
    args: dict[str, Any] = {}
    for pm in _PARAM.finditer(fm.group(2)):
        key = pm.group(1).strip()
        args[key] = coerce_value(trim_one_newline(pm.group(2)), props.get(key))
    return ToolCall(name=name, arguments=args_json(args))


def block_qwen3_coder(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """The calls in one ``<tool_call>`` block (each ``<function=...>`` on its own)."""
    return salvage(((m.group(0), m) for m in _FUNC.finditer(text)), lambda m: _call(m, tools),
                   "no <function=NAME> in tool call")


def block_bare_function(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """``<function=NAME>...</function>`` written without the ``<tool_call>`` opener."""
    return block_qwen3_coder(text, tools)


QWEN3_CODER = ToolCallParser(ParserSpec(
    "qwen3_coder", (("<think>", "</think>"),),
    (BlockSpec("<tool_call>", "</tool_call>", block_qwen3_coder),
     BlockSpec("<function=", "</function>", block_bare_function, keep_markers=True)),
    drop=("<|im_end|>", "<|endoftext|>", "</tool_call>"), stop_sequences=("<|im_end|>",)))
SEED_OSS = ToolCallParser(ParserSpec(
    "seed_oss", (("<seed:think>", "</seed:think>"),),
    (BlockSpec("<seed:tool_call>", "</seed:tool_call>", block_qwen3_coder),),
    drop=("<seed:eos>",), stop_sequences=("<seed:eos>",)))
