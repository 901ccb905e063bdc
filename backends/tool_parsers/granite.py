"""Granite 3.x: ``<|tool_call|>[{"name": ..., "arguments": {...}}]`` to the end of the turn."""

from __future__ import annotations

from localcode.backends.tool_parsers.hermes import block_hermes
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


GRANITE = ToolCallParser(ParserSpec(
    "granite", (("<think>", "</think>"),), (BlockSpec("<|tool_call|>", None, block_hermes, eos_closes=True),),
    drop=("<|end_of_text|>",), stop_sequences=("<|end_of_text|>",)))
