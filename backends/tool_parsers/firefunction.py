"""FireFunction v2: `` functools[{"name": ..., "arguments": {...}}]`` to the end of the turn."""

from __future__ import annotations

from localcode.backends.tool_parsers.hermes import block_hermes
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


FIREFUNCTION_V2 = ToolCallParser(ParserSpec(
    "firefunction_v2", (), (BlockSpec(" functools", None, block_hermes, eos_closes=True),),
    drop=("<|eot_id|>",), stop_sequences=("<|eot_id|>",)))
