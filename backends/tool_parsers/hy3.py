"""Tencent Hunyuan 3: GLM-style calls with ``:opensource`` tags::

    <tool_calls:opensource><tool_call:opensource>NAME<tool_sep:opensource>
    <arg_key:opensource>k</arg_key:opensource><arg_value:opensource>v</arg_value:opensource>
    </tool_call:opensource></tool_calls:opensource>
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, salvage, tool_properties
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser

_CALL = re.compile(r"<tool_call:opensource>(.*?)(?:</tool_call:opensource>|(?=<tool_call:opensource>)|\Z)", re.S)
_PAIR = re.compile(r"<arg_key:opensource>(.*?)</arg_key:opensource>\s*<arg_value:opensource>(.*?)"
                   r"</arg_value:opensource>", re.S)


def _call(m: re.Match[str], tools: Sequence[ToolSchema] | None) -> ToolCall:
    if not m.group(0).endswith("</tool_call:opensource>"):
        raise ValueError("unclosed <tool_call:opensource>")
    name, sep, body = m.group(1).partition("<tool_sep:opensource>")
    name = name.strip()
    if not sep or not name or "<" in name:
        raise ValueError("tool call without NAME<tool_sep:opensource>")
    props = tool_properties(tools, name)
    args: dict[str, Any] = {}
    for pm in _PAIR.finditer(body):
        key = pm.group(1).strip()
        args[key] = coerce_value(pm.group(2), props.get(key))
    if _PAIR.sub("", body).strip():
        raise ValueError(f"unparsable arguments in call of {name}")
    return ToolCall(name=name, arguments=args_json(args))


def block_hy3(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """The calls of one ``<tool_calls:opensource>`` section, each on its own."""
    return salvage(((m.group(0), m) for m in _CALL.finditer(text)), lambda m: _call(m, tools),
                   "no <tool_call:opensource> in tool-call section")


HY3 = ToolCallParser(ParserSpec(
    "hy3", (("<think:opensource>", "</think:opensource>"),),
    (BlockSpec("<tool_calls:opensource>", "</tool_calls:opensource>", block_hy3, eos_parse=True),
     BlockSpec("<tool_call:opensource>", "</tool_call:opensource>", block_hy3, keep_markers=True)),
    drop=("<｜hy_eos:opensource｜>", "</tool_calls:opensource>"), stop_sequences=("<｜hy_eos:opensource｜>",)))
