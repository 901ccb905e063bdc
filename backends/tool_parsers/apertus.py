"""Apertus: ``<|tools_prefix|>[{"NAME": {...arguments}}, ...]<|tools_suffix|>``; reasoning in
``<|inner_prefix|>...<|inner_suffix|>``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import MalformedToolCall, ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser


def block_apertus(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """A JSON list of ``{name: arguments}`` objects; each one stands alone."""
    try:
        items = json.loads(text.strip(), strict=False)
    except ValueError as e:
        raise ValueError(f"invalid JSON in <|tools_prefix|>: {e}") from None
    out = Parsed()
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict) and len(item) == 1:
            name, args = next(iter(item.items()))
            if isinstance(args, dict) and name:
                out.calls.append(ToolCall(name=name, arguments=args_json(args)))
                continue
        out.malformed.append(MalformedToolCall(raw=json.dumps(item, ensure_ascii=False),
                                               error='expected {"NAME": {arguments}}'))
    if not out.calls and not out.malformed:
        raise ValueError("empty <|tools_prefix|> list")
    return out


def _render(calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
    return "<|tools_prefix|>" + json.dumps([{n: a} for n, a in calls], ensure_ascii=False) + "<|tools_suffix|>"


APERTUS = ToolCallParser(ParserSpec(
    "apertus", (("<|inner_prefix|>", "<|inner_suffix|>"),),
    (BlockSpec("<|tools_prefix|>", "<|tools_suffix|>", block_apertus, eos_closes=True),),
    drop=("<|assistant_end|>",), stop_sequences=("<|tools_suffix|>", "<|assistant_end|>"), render=_render))
