"""GigaChat 3: ``<|message_sep|>\\n\\nfunction call<|role_sep|>\\n{"name": ..., "arguments": {...}}``;
GigaChat 3.1: ``<|function_call|>{"name": ..., "arguments": {...}}``. One call per turn."""

from __future__ import annotations

from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser
from localcode.backends.tool_parsers.hermes import block_hermes

GIGACHAT3 = ToolCallParser(ParserSpec(
    "gigachat3", (),
    (BlockSpec("function call<|role_sep|>", None, block_hermes, eos_closes=True),
     BlockSpec("<|function_call|>", None, block_hermes, eos_closes=True)),
    drop=("<|message_sep|>",)))
