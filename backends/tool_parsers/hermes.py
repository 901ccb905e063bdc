"""Hermes / Qwen 2.5 / Qwen 3: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

``generic`` is the fallback for templates without a known format: the Hermes block, a fenced
`````json`` call, or an answer that is a bare JSON call.
"""

from __future__ import annotations

from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import fenced_json, json_calls, leading_json
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


def block_hermes(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """One JSON call (or a list of them) inside a ``<tool_call>`` block."""
    return json_calls(text)


HERMES_BLOCK = BlockSpec("<tool_call>", "</tool_call>", block_hermes)
FENCE_BLOCK = BlockSpec("```json", "```", fenced_json, maybe_content=True, keep_markers=True)
THINK = (("<think>", "</think>"),)

HERMES = ToolCallParser(ParserSpec("hermes", THINK, (HERMES_BLOCK,), drop=("<|im_end|>", "<|endoftext|>"),
                                   stop_sequences=("<|im_end|>",)))
GENERIC = ToolCallParser(ParserSpec("generic", THINK, (HERMES_BLOCK, FENCE_BLOCK), leading=leading_json,
                                    drop=("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "</s>")))
