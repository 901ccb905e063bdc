"""MiniMax-M2: ``<minimax:tool_call><invoke name="NAME"><parameter name="k">v</parameter></invoke></minimax:tool_call>``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, salvage, tool_properties, trim_one_newline
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser


_XML_INVOKE = re.compile(r"<invoke\s+name=\"([^\"]*)\"\s*>(.*?)(?:</invoke>|\Z)", re.S)
_XML_PARAM = re.compile(r"<parameter\s+name=\"([^\"]*)\"\s*>(.*?)</parameter>", re.S)


def _invoke(im: re.Match[str], tools: Sequence[ToolSchema] | None) -> ToolCall:
    if not im.group(0).endswith("</invoke>"):
        raise ValueError(f'unclosed <invoke name="{im.group(1)}">')
    name = im.group(1).strip()
    props = tool_properties(tools, name)
    args: dict[str, Any] = {}
    for pm in _XML_PARAM.finditer(im.group(2)):
        key = pm.group(1).strip()
        args[key] = coerce_value(trim_one_newline(pm.group(2)), props.get(key))
    if "<parameter" in _XML_PARAM.sub("", im.group(2)):
        raise ValueError(f"unclosed <parameter> in call of {name}")
    return ToolCall(name=name, arguments=args_json(args))


def block_minimax(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """The invokes of one ``<minimax:tool_call>`` block, each on its own."""
    return salvage(((m.group(0), m) for m in _XML_INVOKE.finditer(text)), lambda m: _invoke(m, tools),
                   'no <invoke name="..."> in tool call')


MINIMAX_M2 = ToolCallParser(ParserSpec(
    "minimax_m2", (("<think>", "</think>"),),
    (BlockSpec("<minimax:tool_call>", "</minimax:tool_call>", block_minimax, eos_parse=True),),
    drop=("[e~[",), stop_sequences=("[e~[",)))
