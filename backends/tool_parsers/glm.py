"""GLM 4.5 / 4.6 / 4.7: ``<tool_call>NAME<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, tool_properties
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


_GLM_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.S)


def block_glm(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    head, sep, rest = text.partition("<arg_key>")
    name = head.strip()
    if not name or "<" in name or "\n" in name:
        raise ValueError("tool call has no function name before its arguments")
    props = tool_properties(tools, name)
    args: dict[str, Any] = {}
    body = sep + rest
    leftover = _GLM_PAIR.sub("", body).strip()
    if leftover:
        raise ValueError(f"unparsable arguments in call of {name}: {leftover[:80]!r}")
    for m in _GLM_PAIR.finditer(body):
        key = m.group(1).strip()
        args[key] = coerce_value(m.group(2), props.get(key))
    return [ToolCall(name=name, arguments=args_json(args))]


GLM45 = ToolCallParser(ParserSpec(
    "glm45", (("<think>", "</think>"),), (BlockSpec("<tool_call>", "</tool_call>", block_glm),),
    drop=("<|user|>", "<|observation|>", "<|endoftext|>"), stop_sequences=("<|user|>", "<|observation|>")))
