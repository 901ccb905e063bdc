"""Mistral: ``[TOOL_CALLS][{...}]`` (v3 / Nemo) or ``[TOOL_CALLS]NAME[CALL_ID]id[ARGS]{...}`` (v11+)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from localcode.backends.base import MalformedToolCall, ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, call_from_obj
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser


_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def block_mistral(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """``[{"name", "arguments"}, ...]`` (v3 / Nemo) or ``name[CALL_ID]id[ARGS]{...}`` repeated.

    Each call stands alone: a broken one goes to ``malformed`` and parsing resumes at the
    next ``[TOOL_CALLS]``; prose after the calls is content.
    """
    out = Parsed()
    content: list[str] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if text.startswith("[TOOL_CALLS]", pos):
            pos += len("[TOOL_CALLS]")
            continue
        if pos >= n:
            break
        nxt = text.find("[TOOL_CALLS]", pos)
        seg_end = n if nxt < 0 else nxt
        try:
            pos = _one(text, pos, seg_end, out)
        except _Prose:
            content.append(text[pos:seg_end])
            pos = seg_end
        except ValueError as e:
            out.malformed.append(MalformedToolCall(raw="[TOOL_CALLS]" + text[pos:seg_end].strip(), error=str(e)))
            pos = seg_end
    out.content = "\n".join(c.strip() for c in content if c.strip())
    if not out.calls and not out.malformed:
        if out.content:
            raise ValueError(f"[TOOL_CALLS] not followed by a call: {out.content[:80]!r}")
        raise ValueError("empty [TOOL_CALLS]")
    return out


class _Prose(Exception):
    """The text at this point is not a call."""


def _one(text: str, pos: int, seg_end: int, out: Parsed) -> int:
    """Parse the call(s) at ``pos``; returns where they end. Raises ``_Prose`` or ``ValueError``."""
    if text[pos] in "[{":
        try:
            obj, end = _DECODER.raw_decode(text, pos)
        except ValueError as e:
            raise ValueError(f"invalid JSON in [TOOL_CALLS]: {e}") from None
        for item in obj if isinstance(obj, list) else [obj]:
            out.calls.append(call_from_obj(item))
        return end
    args_at = text.find("[ARGS]", pos, seg_end)
    m = _NAME.match(text, pos)
    if args_at < 0 or m is None or text[m.end():args_at].strip() and not text.startswith("[CALL_ID]", m.end()):
        if out.calls or out.malformed:
            raise _Prose()
        raise ValueError("[TOOL_CALLS] without [ARGS]")
    name, _, call_id = text[pos:args_at].partition("[CALL_ID]")
    name = name.strip()
    start = args_at + len("[ARGS]")
    while start < seg_end and text[start].isspace():
        start += 1
    try:
        args, end = _DECODER.raw_decode(text, start)
    except ValueError as e:
        raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
    if not isinstance(args, dict):
        raise ValueError(f"arguments of {name} are not a JSON object")
    call_id = call_id.strip()
    out.calls.append(ToolCall(id=call_id, name=name, arguments=args_json(args)) if call_id
                     else ToolCall(name=name, arguments=args_json(args)))
    return end


_DECODER = json.JSONDecoder(strict=False)


MISTRAL = ToolCallParser(ParserSpec(
    "mistral", (("[THINK]", "[/THINK]"),), (BlockSpec("[TOOL_CALLS]", None, block_mistral, eos_closes=True),),
    drop=("</s>",), stop_sequences=("</s>",)))
