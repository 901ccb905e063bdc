"""Hermes / Qwen 2.5 / Qwen 3: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

``generic`` is the fallback for templates without a known format: the Hermes block, a fenced
`````json`` call, or an answer that is a bare JSON call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import json_calls
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


def block_hermes(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """One JSON call (or a list of them) inside a ``<tool_call>`` block."""
    return json_calls(text)


# A call whose "</tool_call>" was cut by a stop sequence is complete when its JSON is.
HERMES_BLOCK = BlockSpec("<tool_call>", "</tool_call>", block_hermes, eos_parse=True)
THINK = (("<think>", "</think>"),)

def render_hermes(calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Past calls as ``<tool_call>`` JSON (the form the polyfilled tool prompt asks for)."""
    return "\n".join("<tool_call>" + json.dumps({"name": n, "arguments": a}, ensure_ascii=False) + "</tool_call>"
                     for n, a in calls)


HERMES = ToolCallParser(ParserSpec("hermes", THINK, (HERMES_BLOCK,), drop=("<|im_end|>", "<|endoftext|>"),
                                   stop_sequences=("<|im_end|>",)))
GENERIC = ToolCallParser(ParserSpec("generic", THINK, (HERMES_BLOCK,), json_text="any",
                                    drop=("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "</s>"), render=render_hermes))
