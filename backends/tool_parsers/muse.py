"""muse-glimmer: Harmony-like messages with XML calls::

    <|start|>assistant to=self<|message|>reasoning<|eom|>
    <|start|>assistant to=NAME<|message|><atem:function_calls><atem:invoke name="NAME">
    <atem:parameter name="k">v</atem:parameter></atem:invoke></atem:function_calls><|eom|>
    <|start|>assistant to=user<|message|>answer<|eot|>
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from localcode.backends.base import ToolSchema
from localcode.backends.tool_parsers.core import BlockSpec, NotACall, Parsed, ParserSpec, ToolCallParser
from localcode.backends.tool_parsers.minimax import invoke_block


def _header(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """`` to=RECIPIENT<|message|>``: a message header, not text of the answer."""
    if re.fullmatch(r"[\w.:-]+", text.strip()) is None:
        raise NotACall()
    return Parsed()


MUSE = ToolCallParser(ParserSpec(
    "muse", ((" to=self<|message|>", "<|eom|>"),),
    (BlockSpec("<atem:function_calls>", "</atem:function_calls>", invoke_block("atem:"), eos_parse=True),
     BlockSpec(" to=", "<|message|>", _header, maybe_content=True)),
    drop=("<|start|>assistant", " to=user<|message|>", "<|message|>", "<|eom|>", "<|eot|>"),
    stop_sequences=("<|eot|>",)))
