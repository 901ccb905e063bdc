"""Helpers the family parsers share: JSON calls, schema-typed values, and bare-JSON answers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from localcode.backends.base import MalformedToolCall, ToolCall, ToolSchema
from localcode.backends.tool_parsers.core import NotACall, Parsed
from localcode.backends.tool_parsers.json_text import args_json, call_from_obj

__all__ = ["args_json", "block_json_seq", "call_from_obj", "coerce_value", "json_calls", "leading_json",
           "salvage", "schema_types", "strip_fence", "tool_properties", "trim_one_newline"]

T = TypeVar("T")


def tool_properties(tools: Sequence[ToolSchema] | None, name: str) -> dict[str, Any]:
    for tool in tools or ():
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(fn, dict) and fn.get("name") == name:
            params = fn.get("parameters") or {}
            props = params.get("properties") if isinstance(params, dict) else None
            return props if isinstance(props, dict) else {}
    return {}


def schema_types(prop: Any) -> set[str]:
    if not isinstance(prop, dict):
        return set()
    t = prop.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    types: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for sub in prop.get(key) or ():
            types |= schema_types(sub)
    return types


def coerce_value(text: str, prop: Any) -> Any:
    """A parameter value written as plain text, converted with the schema's type when known."""
    types = schema_types(prop)
    if types == {"string"} or (not types and prop and isinstance(prop, dict) and "enum" in prop):
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if not types:
        # Without a schema, only structured values and literals are taken as JSON.
        return value
    if "string" in types and not isinstance(value, (dict, list)) and not (
        ({"integer", "number"} & types and isinstance(value, (int, float)) and not isinstance(value, bool))
        or ("boolean" in types and isinstance(value, bool))
        or ("null" in types and value is None)
    ):
        return text
    return value


def strip_fence(text: str) -> str:
    t = text.strip()
    m = re.fullmatch(r"```(?:json|JSON)?\s*\n?(.*?)\n?```", t, re.S)
    return m.group(1).strip() if m else t


def json_calls(text: str) -> list[ToolCall]:
    """One JSON object or a list of them, each a call."""
    body = strip_fence(text)
    if not body:
        raise ValueError("empty tool call")
    try:
        obj = json.loads(body)
    except ValueError as e:
        raise ValueError(f"invalid JSON in tool call: {e}") from None
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        raise ValueError("empty list of tool calls")
    return [call_from_obj(o) for o in items]


def trim_one_newline(value: str) -> str:
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def leading_json(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """Text that is all JSON calls (``;``/newline separated); ``NotACall`` if it is other JSON or text."""
    body = strip_fence(text)
    looks_like_call = re.match(r'\s*[\[{]\s*\{?\s*"(name|function)"\s*:', body) is not None
    decoder = json.JSONDecoder()
    objs: list[Any] = []
    pos, n = 0, len(body)
    try:
        while True:
            while pos < n and (body[pos].isspace() or body[pos] == ";"):
                pos += 1
            if pos >= n:
                break
            obj, pos = decoder.raw_decode(body, pos)
            objs.extend(obj if isinstance(obj, list) else [obj])
    except ValueError as e:
        if looks_like_call:
            raise ValueError(f"invalid JSON in tool call: {e}") from None
        raise NotACall() from None
    if not objs or not all(
        isinstance(o, dict)
        and isinstance(o.get("name") or o.get("tool_name") or (o.get("function") or {}).get("name"), str)
        and ({"arguments", "parameters", "function"} & o.keys())
        for o in objs
    ):
        if looks_like_call:
            raise ValueError("JSON tool call needs name and arguments")
        raise NotACall()
    return [call_from_obj(o) for o in objs]


def block_json_seq(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """A JSON list of calls or one call per line (Apriel, MiniMax-M1, Command R)."""
    try:
        return leading_json(text, tools)
    except NotACall:
        raise ValueError("tool-call block holds no JSON call") from None



def salvage(pieces: Iterable[tuple[str, T]], parse_one: Callable[[T], ToolCall], nothing: str) -> Parsed:
    """Each piece (raw text, match) parsed on its own: good calls are kept beside broken ones.

    ``parse_one`` raises ``ValueError`` for a broken call; ``nothing`` is the error when there
    is no piece at all.
    """
    out = Parsed()
    for raw, piece in pieces:
        try:
            out.calls.append(parse_one(piece))
        except ValueError as e:
            out.malformed.append(MalformedToolCall(raw=raw, error=str(e)))
    if not out.calls and not out.malformed:
        raise ValueError(nothing)
    return out
