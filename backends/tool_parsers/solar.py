"""Solar Open: ``<|tool_call:begin|>ID<|tool_call:name|>NAME<|tool_call:args|>{...}<|tool_call:end|>``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


def block_solar(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """Solar Open: ``ID<|tool_call:name|>NAME<|tool_call:args|>{...}``."""
    call_id, _, rest = text.partition("<|tool_call:name|>")
    name, sep, args = rest.partition("<|tool_call:args|>")
    if not sep or not name.strip():
        raise ValueError("tool call without <|tool_call:name|> and <|tool_call:args|>")
    try:
        parsed = json.loads(args.strip() or "{}")
    except ValueError as e:
        raise ValueError(f"arguments of {name.strip()} are not valid JSON: {e}") from None
    call_id = call_id.strip()
    if call_id:
        return [ToolCall(id=call_id, name=name.strip(), arguments=args_json(parsed))]
    return [ToolCall(name=name.strip(), arguments=args_json(parsed))]


SOLAR = ToolCallParser(ParserSpec(
    "solar", (("<think>", "</think>"),), (BlockSpec("<|tool_call:begin|>", "<|tool_call:end|>", block_solar),),
    drop=("<|tool_calls|>", "<|calls|>", "<|end|>"), stop_sequences=("<|calls|>",)))
