"""Mistral: ``[TOOL_CALLS][{...}]`` (v3 / Nemo) or ``[TOOL_CALLS]NAME[CALL_ID]id[ARGS]{...}`` (v11+)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, call_from_obj
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


def block_mistral(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """``[{"name", "arguments"}, ...]`` (v3 / Nemo) or ``name[CALL_ID]id[ARGS]{...}`` repeated."""
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if text.startswith("[TOOL_CALLS]", pos):
            pos += len("[TOOL_CALLS]")
            continue
        if pos >= n:
            break
        if text[pos] in "[{":
            try:
                obj, end = decoder.raw_decode(text, pos)
            except ValueError as e:
                raise ValueError(f"invalid JSON in [TOOL_CALLS]: {e}") from None
            for item in obj if isinstance(obj, list) else [obj]:
                calls.append(call_from_obj(item))
            pos = end
            continue
        args_at = text.find("[ARGS]", pos)
        if args_at < 0:
            raise ValueError("[TOOL_CALLS] without [ARGS]")
        head = text[pos:args_at]
        name, _, call_id = head.partition("[CALL_ID]")
        name = name.strip()
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"bad tool name {name!r} after [TOOL_CALLS]")
        start = args_at + len("[ARGS]")
        while start < n and text[start].isspace():
            start += 1
        try:
            args, end = decoder.raw_decode(text, start)
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
        if not isinstance(args, dict):
            raise ValueError(f"arguments of {name} are not a JSON object")
        call_id = call_id.strip()
        calls.append(
            ToolCall(id=call_id, name=name, arguments=args_json(args))
            if call_id
            else ToolCall(name=name, arguments=args_json(args))
        )
        pos = end
    if not calls:
        raise ValueError("empty [TOOL_CALLS]")
    return calls


MISTRAL = ToolCallParser(ParserSpec(
    "mistral", (("[THINK]", "[/THINK]"),), (BlockSpec("[TOOL_CALLS]", None, block_mistral, eos_closes=True),),
    drop=("</s>",), stop_sequences=("</s>",)))
