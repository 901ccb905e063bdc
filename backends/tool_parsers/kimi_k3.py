"""Kimi-K3: tagged messages with ``<|open|>``/``<|close|>``::

    <|open|>think<|sep|>reasoning<|close|>think<|sep|><|open|>response<|sep|>answer<|close|>response<|sep|>
    <|open|>tools<|sep|><|open|>call tool="NAME" index="1"<|sep|>
      <|open|>argument key="path" type="string"<|sep|>a.py<|close|>argument<|sep|>
      (or <|open|>json type="object"<|sep|>{...}<|close|>json<|sep|>)
    <|close|>call<|sep|><|close|>tools<|sep|><|close|>message<|sep|><|end_of_msg|>
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, salvage, tool_properties
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser

_CALL = re.compile(r'<\|open\|>call tool="([^"]*)"[^<]*?<\|sep\|>(.*?)(?:<\|close\|>call<\|sep\|>|(?=<\|open\|>call )|\Z)',
                   re.S)
_ARG = re.compile(r'<\|open\|>argument key="([^"]*)"(?:\s+type="([a-z]+)")?[^<]*?<\|sep\|>(.*?)<\|close\|>argument<\|sep\|>',
                  re.S)
_JSON = re.compile(r"<\|open\|>json[^<]*?<\|sep\|>(.*?)<\|close\|>json<\|sep\|>", re.S)


def _call(m: re.Match[str], tools: Sequence[ToolSchema] | None) -> ToolCall:
    name = m.group(1).strip()
    if not m.group(0).endswith("<|close|>call<|sep|>"):
        raise ValueError(f'unclosed <|open|>call tool="{name}">')
    if not name:
        raise ValueError("tool call has no name")
    body = m.group(2)
    js = _JSON.search(body)
    if js is not None:
        try:
            args = json.loads(js.group(1), strict=False)
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
        if not isinstance(args, dict):
            raise ValueError(f"arguments of {name} are not a JSON object")
        return ToolCall(name=name, arguments=args_json(args))
    props = tool_properties(tools, name)
    out: dict[str, Any] = {}
    for am in _ARG.finditer(body):
        key, typ, raw = am.group(1), am.group(2), am.group(3)
        if typ == "string":
            out[key] = raw
        elif typ is not None:
            try:
                out[key] = json.loads(raw)
            except ValueError as e:
                raise ValueError(f"argument {key} of {name} is not valid JSON: {e}") from None
        else:
            out[key] = coerce_value(raw, props.get(key))
    if _ARG.sub("", body).strip():
        raise ValueError(f"unparsable arguments in call of {name}")
    return ToolCall(name=name, arguments=args_json(out))


def block_kimi_k3(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """The calls of one ``tools`` element, each on its own."""
    return salvage(((m.group(0), m) for m in _CALL.finditer(text)), lambda m: _call(m, tools),
                   'no <|open|>call tool="..."> in tools')


KIMI_K3 = ToolCallParser(ParserSpec(
    "kimi_k3", (("<|open|>think<|sep|>", "<|close|>think<|sep|>"),),
    (BlockSpec("<|open|>tools<|sep|>", "<|close|>tools<|sep|>", block_kimi_k3, eos_parse=True),
     BlockSpec('<|open|>call tool="', "<|close|>call<|sep|>", block_kimi_k3, keep_markers=True)),
    drop=("<|open|>response<|sep|>", "<|close|>response<|sep|>", "<|close|>message<|sep|>", "<|end_of_msg|>",
          "<|close|>tools<|sep|>"),
    stop_sequences=("<|end_of_msg|>",), object_arguments=True))
