"""Hermes / Qwen 2.5 / Qwen 3: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

``generic`` is the fallback for templates without a known format: the Hermes block, a fenced
`````json`` call, or an answer that is a bare JSON call.
"""

from __future__ import annotations

from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import json_calls
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


def block_hermes(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """One JSON call (or a list of them) inside a ``<tool_call>`` block."""
    return json_calls(text)


# A call whose "</tool_call>" was cut by a stop sequence is complete when its JSON is.
HERMES_BLOCK = BlockSpec("<tool_call>", "</tool_call>", block_hermes, eos_parse=True)
THINK = (("<think>", "</think>"),)

HERMES = ToolCallParser(ParserSpec("hermes", THINK, (HERMES_BLOCK,), drop=("<|im_end|>", "<|endoftext|>"),
                                   stop_sequences=("<|im_end|>",)))
GENERIC = ToolCallParser(ParserSpec("generic", THINK, (HERMES_BLOCK,), json_text="any",
                                    drop=("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "</s>")))
