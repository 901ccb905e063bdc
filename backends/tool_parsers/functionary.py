"""Functionary v3.1 (Llama 3.1 based): ``<function=NAME>{...}</function>`` or ``<|python_tag|>``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json
from localcode.backends.tool_parsers.llama3 import PYTHON_TAG
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


def block_functionary(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    m = re.fullmatch(r"<function=([^>]+)>(.*)</function>", text.strip(), re.S)
    if not m:
        raise ValueError("bad <function=NAME>{...}</function> call")
    name = m.group(1).strip()
    try:
        args = json.loads(m.group(2).strip() or "{}")
    except ValueError as e:
        raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
    return [ToolCall(name=name, arguments=args_json(args))]


FUNCTIONARY_V3_1 = ToolCallParser(ParserSpec(
    "functionary_v3_1", (),
    (PYTHON_TAG, BlockSpec("<function=", "</function>", block_functionary, keep_markers=True)),
    drop=("<|eot_id|>", "<|eom_id|>"), stop_sequences=("<|eot_id|>", "<|eom_id|>")))
