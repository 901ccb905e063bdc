"""DeepSeek V3 / V3.1 / R1 (``<｜tool▁calls▁begin｜>`` sections) and V3.2 DSML (``<｜DSML｜invoke>``)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, coerce_value, salvage, strip_fence, tool_properties
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser


_DSML = "｜DSML｜"
_DSML_INVOKE = re.compile(r"<｜DSML｜invoke\s+name=\"([^\"]*)\"\s*>(.*?)(?:</｜DSML｜invoke>|\Z)", re.S)
_DSML_PARAM = re.compile(
    r"<｜DSML｜parameter\s+name=\"([^\"]*)\"(?:\s+string=\"(true|false)\")?\s*>(.*?)</｜DSML｜parameter>", re.S
)


def _dsml_call(im: re.Match[str], tools: Sequence[ToolSchema] | None) -> ToolCall:
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
    return ToolCall(name=name, arguments=args_json(args))


def block_dsml(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """The invokes of one DSML block, each on its own."""
    return salvage(((m.group(0), m) for m in _DSML_INVOKE.finditer(text)), lambda m: _dsml_call(m, tools),
                   f'no <{_DSML}invoke name="..."> in tool call')


_DS_CALL = re.compile(
    r"<｜tool▁call▁begin｜>(.*?)(?:<｜tool▁sep｜>(.*?))?(?:<｜tool▁call▁end｜>|(?=<｜tool▁call▁begin｜>)|\Z)", re.S)


def _ds_call(m: re.Match[str]) -> ToolCall:
    if not m.group(0).endswith("<｜tool▁call▁end｜>"):
        raise ValueError("unclosed <｜tool▁call▁begin｜>")
    if m.group(2) is None:
        raise ValueError("<｜tool▁call▁begin｜> without <｜tool▁sep｜>")
    name, args = m.group(1).strip(), m.group(2).strip()
    if name == "function" and "\n" in args:
        # DeepSeek R1 / V3-0324: function<｜tool▁sep｜>NAME\n```json\n{...}\n```
        name, _, args = args.partition("\n")
        name = name.strip()
    if not name:
        raise ValueError("tool call has no name")
    body = strip_fence(args) or "{}"
    try:
        parsed = json.loads(body, strict=False)
    except ValueError as e:
        raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"arguments of {name} are not a JSON object")
    return ToolCall(name=name, arguments=args_json(parsed))


def block_deepseek(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """The calls of one section (or one call written without the section markers), each on its own."""
    return salvage(((m.group(0), m) for m in _DS_CALL.finditer(text)), _ds_call,
                   "no <｜tool▁call▁begin｜> in tool-call section")


_THINK = (("<think>", "</think>"),)
_EOS = ("<｜end▁of▁sentence｜>",)
_BLOCKS = (
    BlockSpec("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", block_deepseek, eos_parse=True),
    # V3.1 sometimes leaves out the section markers around its calls.
    BlockSpec("<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", block_deepseek, keep_markers=True, eos_parse=True),
)
_DROP = (*_EOS, "<｜tool▁calls▁end｜>", "<｜Assistant｜>")
DEEPSEEK_V3 = ToolCallParser(ParserSpec("deepseek_v3", _THINK, _BLOCKS, drop=_DROP, stop_sequences=_EOS))
DEEPSEEK_R1 = ToolCallParser(ParserSpec("deepseek_r1", _THINK, _BLOCKS, drop=_DROP, stop_sequences=_EOS))
DEEPSEEK_DSML = ToolCallParser(ParserSpec(
    "deepseek_dsml", _THINK,
    (BlockSpec(f"<{_DSML}function_calls>", f"</{_DSML}function_calls>", block_dsml, eos_parse=True),
     BlockSpec(f"<{_DSML}tool_calls>", f"</{_DSML}tool_calls>", block_dsml, eos_parse=True)),
    drop=_EOS, stop_sequences=_EOS))
