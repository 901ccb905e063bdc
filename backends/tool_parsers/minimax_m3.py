"""MiniMax-M3: XML with a namespace token before every tag::

    ]<]minimax[>[<tool_call>]<]minimax[>[<invoke name="NAME">]<]minimax[>[<path>a.py]<]minimax[>[</path>
    ]<]minimax[>[</invoke>]<]minimax[>[</tool_call>

A value is text (string parameters), nested elements (objects), ``<item>`` elements
(arrays), or JSON. Reasoning is ``<mm:think>...</mm:think>``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, salvage, tool_properties
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser

NS = "]<]minimax[>["
_INVOKE = re.compile(r"<invoke\s+name=\"([^\"]*)\"\s*>(.*?)(?:</invoke>|(?=<invoke\s)|\Z)", re.S)
_ELEMENT = re.compile(r"\s*<([A-Za-z_][\w.-]*)>")


def _elements(text: str) -> list[tuple[str, str]] | None:
    """``<k>v</k>`` children in order, or None when ``text`` is not made of such elements."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _ELEMENT.match(text, pos)
        if m is None:
            return None
        tag = m.group(1)
        close, depth, i = f"</{tag}>", 1, m.end()
        while depth:
            nxt_open = text.find(f"<{tag}>", i)
            nxt_close = text.find(close, i)
            if nxt_close < 0:
                return None
            if 0 <= nxt_open < nxt_close:
                depth, i = depth + 1, nxt_open + len(tag) + 2
            else:
                depth, i = depth - 1, nxt_close + len(close)
        out.append((tag, text[m.end(): i - len(close)]))
        pos = i
    return out


def _value(raw: str, prop: Any) -> Any:
    kids = _elements(raw) if "<" in raw else None
    types = set()
    if isinstance(prop, dict):
        t = prop.get("type")
        types = {t} if isinstance(t, str) else set(t or [])
    if kids and "string" not in types:
        if all(tag == "item" for tag, _ in kids):
            items = prop.get("items") if isinstance(prop, dict) else None
            return [_value(v, items) for _, v in kids]
        sub = prop.get("properties", {}) if isinstance(prop, dict) else {}
        return {tag: _value(v, sub.get(tag)) for tag, v in kids}
    return coerce_value(raw, prop)


def _call(m: re.Match[str], tools: Sequence[ToolSchema] | None) -> ToolCall:
    name = m.group(1).strip()
    if not m.group(0).endswith("</invoke>"):
        raise ValueError(f'unclosed <invoke name="{name}">')
    kids = _elements(m.group(2))
    if kids is None:
        raise ValueError(f"unparsable arguments in call of {name}")
    props = tool_properties(tools, name)
    return ToolCall(name=name, arguments=args_json({k: _value(v, props.get(k)) for k, v in kids}))


def block_minimax_m3(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """The invokes of one ``<tool_call>`` block (namespace tokens removed), each on its own."""
    plain = text.replace(NS, "")
    return salvage(((m.group(0), m) for m in _INVOKE.finditer(plain)), lambda m: _call(m, tools),
                   'no <invoke name="..."> in tool call')


MINIMAX_M3 = ToolCallParser(ParserSpec(
    "minimax_m3", (("<mm:think>", "</mm:think>"),),
    (BlockSpec(f"{NS}<tool_call>", f"{NS}</tool_call>", block_minimax_m3, eos_parse=True),),
    drop=("[e~[",), stop_sequences=("[e~[",)))
