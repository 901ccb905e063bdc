"""muse-glimmer: Harmony-like messages with XML calls::

    <|start|>assistant to=self<|message|>reasoning<|eom|>
    <|start|>assistant to=NAME<|message|><atem:function_calls><atem:invoke name="NAME">
    <atem:parameter name="k">v</atem:parameter></atem:invoke></atem:function_calls><|eom|>
    <|start|>assistant to=user<|message|>answer<|eot|>
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, salvage, tool_properties, trim_one_newline
from localcode.backends.tool_parsers.core import BlockSpec, NotACall, Parsed, ParserSpec, ToolCallParser

_INVOKE = re.compile(r"<atem:invoke\s+name=\"([^\"]*)\"\s*>(.*?)(?:</atem:invoke>|(?=<atem:invoke)|\Z)", re.S)
_PARAM = re.compile(r"<atem:parameter\s+name=\"([^\"]*)\"\s*>(.*?)</atem:parameter>", re.S)


def _invoke(m: re.Match[str], tools: Sequence[ToolSchema] | None) -> ToolCall:
    if not m.group(0).endswith("</atem:invoke>"):
        raise ValueError(f'unclosed <atem:invoke name="{m.group(1)}">')
    name = m.group(1).strip()
    props = tool_properties(tools, name)
    args: dict[str, Any] = {}
    for pm in _PARAM.finditer(m.group(2)):
        key = pm.group(1).strip()
        args[key] = coerce_value(trim_one_newline(pm.group(2)), props.get(key))
    if "<atem:parameter" in _PARAM.sub("", m.group(2)):
        raise ValueError(f"unclosed <atem:parameter> in call of {name}")
    return ToolCall(name=name, arguments=args_json(args))


def block_muse(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """The invokes of one ``<atem:function_calls>`` block, each on its own."""
    return salvage(((m.group(0), m) for m in _INVOKE.finditer(text)), lambda m: _invoke(m, tools),
                   'no <atem:invoke name="..."> in tool call')


def _header(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """`` to=RECIPIENT<|message|>``: a message header, not text of the answer."""
    if re.fullmatch(r"[\w.:-]+", text.strip()) is None:
        raise NotACall()
    return Parsed()


MUSE = ToolCallParser(ParserSpec(
    "muse", ((" to=self<|message|>", "<|eom|>"),),
    (BlockSpec("<atem:function_calls>", "</atem:function_calls>", block_muse, eos_parse=True),
     BlockSpec(" to=", "<|message|>", _header, maybe_content=True)),
    drop=("<|start|>assistant", " to=user<|message|>", "<|message|>", "<|eom|>", "<|eot|>"),
    stop_sequences=("<|eot|>",)))
