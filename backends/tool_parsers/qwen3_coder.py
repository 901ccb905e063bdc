"""Qwen3-Coder XML: ``<tool_call><function=NAME><parameter=KEY>value</parameter></function></tool_call>``.

Seed-OSS writes the same inside ``<seed:tool_call>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, tool_properties, trim_one_newline
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


_QC_FUNC = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|\Z)", re.S)
_QC_PARAM = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.S)


def block_qwen3_coder(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for fm in _QC_FUNC.finditer(text):
        if not fm.group(0).endswith("</function>"):
            raise ValueError(f"unclosed <function={fm.group(1)}>")
        name = fm.group(1).strip()
        props = tool_properties(tools, name)
        args: dict[str, Any] = {}
        for pm in _QC_PARAM.finditer(fm.group(2)):
            if not pm.group(0).endswith("</parameter>"):
                raise ValueError(f"unclosed <parameter={pm.group(1)}> in call of {name}")
            key = pm.group(1).strip()
            args[key] = coerce_value(trim_one_newline(pm.group(2)), props.get(key))
        calls.append(ToolCall(name=name, arguments=args_json(args)))
    if not calls:
        raise ValueError("no <function=NAME> in tool call")
    return calls



QWEN3_CODER = ToolCallParser(ParserSpec(
    "qwen3_coder", (("<think>", "</think>"),), (BlockSpec("<tool_call>", "</tool_call>", block_qwen3_coder),),
    drop=("<|im_end|>", "<|endoftext|>"), stop_sequences=("<|im_end|>",)))
SEED_OSS = ToolCallParser(ParserSpec(
    "seed_oss", (("<seed:think>", "</seed:think>"),),
    (BlockSpec("<seed:tool_call>", "</seed:tool_call>", block_qwen3_coder),),
    drop=("<seed:eos>",), stop_sequences=("<seed:eos>",)))
