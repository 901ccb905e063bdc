"""DeepSeek V3 / V3.1 / R1 (``<｜tool▁calls▁begin｜>`` sections) and V3.2 DSML (``<｜DSML｜invoke>``)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, strip_fence, tool_properties
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


_DSML = "｜DSML｜"
_DSML_INVOKE = re.compile(r"<｜DSML｜invoke\s+name=\"([^\"]*)\"\s*>(.*?)(?:</｜DSML｜invoke>|\Z)", re.S)
_DSML_PARAM = re.compile(
    r"<｜DSML｜parameter\s+name=\"([^\"]*)\"(?:\s+string=\"(true|false)\")?\s*>(.*?)</｜DSML｜parameter>", re.S
)


def block_dsml(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for im in _DSML_INVOKE.finditer(text):
        if not im.group(0).endswith("</｜DSML｜invoke>"):
            raise ValueError(f'unclosed <｜DSML｜invoke name="{im.group(1)}">')
        name = im.group(1).strip()
        props = tool_properties(tools, name)
        args: dict[str, Any] = {}
        for pm in _DSML_PARAM.finditer(im.group(2)):
            key, is_string, raw = pm.group(1).strip(), pm.group(2), pm.group(3)
            if is_string == "true":
                args[key] = raw
            elif is_string == "false":
                try:
                    args[key] = json.loads(raw)
                except ValueError as e:
                    raise ValueError(f"parameter {key} of {name} is not valid JSON: {e}") from None
            else:
                args[key] = coerce_value(raw, props.get(key))
        calls.append(ToolCall(name=name, arguments=args_json(args)))
    if not calls:
        raise ValueError(f'no <{_DSML}invoke name="..."> in tool call')
    return calls


_DS_CALL = re.compile(r"<｜tool▁call▁begin｜>(.*?)<｜tool▁sep｜>(.*?)(?:<｜tool▁call▁end｜>|\Z)", re.S)


def block_deepseek(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for m in _DS_CALL.finditer(text):
        if not m.group(0).endswith("<｜tool▁call▁end｜>"):
            raise ValueError("unclosed <｜tool▁call▁begin｜>")
        name, args = m.group(1).strip(), m.group(2).strip()
        if name == "function" and "\n" in args:
            # DeepSeek R1 / V3-0324: function<｜tool▁sep｜>NAME\n```json\n{...}\n```
            name, _, args = args.partition("\n")
            name = name.strip()
        if not name:
            raise ValueError("tool call has no name")
        body = strip_fence(args) or "{}"
        try:
            parsed = json.loads(body)
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"arguments of {name} are not a JSON object")
        calls.append(ToolCall(name=name, arguments=args_json(parsed)))
    if not calls:
        raise ValueError("no <｜tool▁call▁begin｜> in tool-call section")
    return calls


_THINK = (("<think>", "</think>"),)
_EOS = ("<｜end▁of▁sentence｜>",)
_SECTION = BlockSpec("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", block_deepseek)
DEEPSEEK_V3 = ToolCallParser(ParserSpec("deepseek_v3", _THINK, (_SECTION,), drop=_EOS, stop_sequences=_EOS))
DEEPSEEK_R1 = ToolCallParser(ParserSpec("deepseek_r1", _THINK, (_SECTION,), drop=_EOS, stop_sequences=_EOS))
DEEPSEEK_DSML = ToolCallParser(ParserSpec(
    "deepseek_dsml", _THINK,
    (BlockSpec(f"<{_DSML}function_calls>", f"</{_DSML}function_calls>", block_dsml),
     BlockSpec(f"<{_DSML}tool_calls>", f"</{_DSML}tool_calls>", block_dsml)),
    drop=_EOS, stop_sequences=_EOS))
