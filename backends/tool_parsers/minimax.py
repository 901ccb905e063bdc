"""MiniMax-M2: ``<minimax:tool_call><invoke name="NAME"><parameter name="k">v</parameter></invoke></minimax:tool_call>``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, salvage, tool_properties, trim_one_newline
from localcode.backends.tool_parsers.core import BlockFn, BlockSpec, Parsed, ParserSpec, ToolCallParser


def invoke_block(ns: str = "") -> BlockFn:
    """A parser for ``<{ns}invoke name="N"><{ns}parameter name="k">v</{ns}parameter></{ns}invoke>`` calls
    (MiniMax-M2; muse-glimmer with ``ns="atem:"``), each invoke on its own."""
    invoke = re.compile(rf"<{ns}invoke\s+name=\"([^\"]*)\"\s*>(.*?)(?:</{ns}invoke>|(?=<{ns}invoke\s)|\Z)", re.S)
    param = re.compile(rf"<{ns}parameter\s+name=\"([^\"]*)\"\s*>(.*?)</{ns}parameter>", re.S)

    def one(im: re.Match[str], tools: Sequence[ToolSchema] | None) -> ToolCall:
        if not im.group(0).endswith(f"</{ns}invoke>"):
            raise ValueError(f'unclosed <{ns}invoke name="{im.group(1)}">')
        name = im.group(1).strip()
        props = tool_properties(tools, name)
        args: dict[str, Any] = {}
        for pm in param.finditer(im.group(2)):
            key = pm.group(1).strip()
            args[key] = coerce_value(trim_one_newline(pm.group(2)), props.get(key))
        if f"<{ns}parameter" in param.sub("", im.group(2)):
            raise ValueError(f"unclosed <{ns}parameter> in call of {name}")
        return ToolCall(name=name, arguments=args_json(args))

    def block(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
        return salvage(((m.group(0), m) for m in invoke.finditer(text)), lambda m: one(m, tools),
                       f'no <{ns}invoke name="..."> in tool call')

    return block


block_minimax = invoke_block()


MINIMAX_M2 = ToolCallParser(ParserSpec(
    "minimax_m2", (("<think>", "</think>"),),
    (BlockSpec("<minimax:tool_call>", "</minimax:tool_call>", block_minimax, eos_parse=True),),
    drop=("[e~[",), stop_sequences=("[e~[",)))
