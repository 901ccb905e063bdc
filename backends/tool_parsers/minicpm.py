"""MiniCPM 5: ``<function name="NAME"><param name="k">v</param></function>``."""

from __future__ import annotations

import re
from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, tool_properties
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


_CPM_FUNC = re.compile(r'<function name="([^"]+)">(.*)</function>', re.S)
_CPM_PARAM = re.compile(r'<param name="([^"]+)">(.*?)</param>', re.S)


def block_minicpm(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    m = _CPM_FUNC.fullmatch(text.strip())
    if not m:
        raise ValueError('bad <function name="...">...</function> call')
    name = m.group(1)
    props = tool_properties(tools, name)
    args = {k: coerce_value(v, props.get(k)) for k, v in _CPM_PARAM.findall(m.group(2))}
    if "<param" in _CPM_PARAM.sub("", m.group(2)):
        raise ValueError(f"unclosed <param> in call of {name}")
    return [ToolCall(name=name, arguments=args_json(args))]


MINICPM5 = ToolCallParser(ParserSpec(
    "minicpm5", (("<think>", "</think>"),), (BlockSpec('<function name="', "</function>", block_minicpm, keep_markers=True),),
    drop=("<|im_end|>",), stop_sequences=("<|im_end|>",)))
