"""JSON calls in a tagged block: ``<tool_calls>[...]</tool_calls>`` (Apriel, MiniMax-M1) and Command R actions."""

from __future__ import annotations

from localcode.backends.tool_parsers.common import block_json_seq
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


TOOL_CALLS_JSON = ToolCallParser(ParserSpec(
    "tool_calls_json", (("<think>", "</think>"),), (BlockSpec("<tool_calls>", "</tool_calls>", block_json_seq),),
    drop=("<|end|>", "<end_of_sentence>", "</s>")))
COMMAND_R = ToolCallParser(ParserSpec(
    "command_r", (("<|START_THINKING|>", "<|END_THINKING|>"),),
    (BlockSpec("<|START_ACTION|>", "<|END_ACTION|>", block_json_seq),),
    drop=("<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_TEXT|>", "<|END_TEXT|>", "<|END_OF_TURN_TOKEN|>"),
    stop_sequences=("<|END_OF_TURN_TOKEN|>",)))
