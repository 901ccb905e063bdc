"""Tool calls written as JSON text in the answer: a fenced or bare object (or a list of them).

Small models under ``tool_choice: auto`` often answer ```` ```json {"name": "write", "arguments":
{...}} ``` ```` instead of their family's call format. ``scan`` decides, for text that starts
where such a call could start (``{``, ``[`` or a code fence), whether it is one, how far it
reaches, or that more text is needed first. Only objects whose ``name`` is accepted (one of the
request's tools, unless the family takes any name) and whose arguments are an object become
calls; any other JSON stays content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localcode.backends.base import MalformedToolCall, ToolCall

_DECODER = json.JSONDecoder(strict=False)
"""Raw newlines inside strings are accepted: small models write multi-line file contents so."""

FENCE_LANGS = frozenset({"", "json", "json5", "jsonc", "tool_call", "tool_code", "javascript"})
"""Code-fence languages whose body may be a JSON call (others are code, never calls)."""

_NAME_IN_TEXT = re.compile(r'^\s*(?:```[^\n]*\n)?\s*\[?\s*\{\s*"(?:name|tool_name|function)"\s*:\s*(?:\{\s*"name"\s*:\s*)?"([^"\\]*)"')


def args_json(args: Any) -> str:
    """Arguments as JSON text (non-ASCII kept)."""
    return json.dumps(args, ensure_ascii=False)


def call_from_obj(obj: Any) -> ToolCall:
    """A call from ``{"name", "arguments"|"parameters"}`` (or OpenAI's ``{"function": {...}}``).

    Raises ``ValueError`` when ``obj`` is not such an object.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object with name and arguments, got {type(obj).__name__}")
    if isinstance(obj.get("function"), dict):
        obj = {**obj["function"], **({"id": obj["id"]} if "id" in obj else {})}
    name = obj.get("name", obj.get("tool_name"))
    if not isinstance(name, str) or not name:
        raise ValueError("tool call has no name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            json.loads(args)
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
        arguments = args
    else:
        if args is None:
            args = {}
        arguments = args_json(args)
    call_id = obj.get("id")
    if isinstance(call_id, str) and call_id:
        return ToolCall(id=call_id, name=name, arguments=arguments)
    return ToolCall(name=name, arguments=arguments)


def _as_call(obj: Any, accept: Callable[[str], bool]) -> ToolCall | None:
    """``obj`` as a call when it names an accepted tool and its arguments are an object."""
    if not isinstance(obj, dict):
        return None
    fn = obj.get("function") if isinstance(obj.get("function"), dict) else obj
    name = fn.get("name", fn.get("tool_name"))
    if not isinstance(name, str) or not accept(name):
        return None
    args = fn.get("arguments", fn.get("parameters"))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    call_id = obj.get("id")
    if isinstance(call_id, str) and call_id:
        return ToolCall(id=call_id, name=name, arguments=args_json(args))
    return ToolCall(name=name, arguments=args_json(args))


def balanced_end(text: str, start: int = 0) -> int:
    """Index just after the JSON value (object or list) opening at ``start``; -1 if the text ends first.

    Counts brackets outside strings only; it does not validate the JSON.
    """
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _decode_all(body: str) -> list[Any] | None:
    """The JSON values in ``body`` one after another (``;``/whitespace between), or None if any is invalid."""
    values: list[Any] = []
    pos, n = 0, len(body)
    while True:
        while pos < n and (body[pos].isspace() or body[pos] == ";"):
            pos += 1
        if pos >= n:
            return values
        try:
            value, pos = _DECODER.raw_decode(body, pos)
        except (ValueError, RecursionError):
            return None
        values.append(value)


@dataclass
class Scan:
    """What ``scan`` found at the start of the text: ``length`` characters of calls, a malformed call, or content."""

    length: int
    calls: list[ToolCall] = field(default_factory=list)
    malformed: MalformedToolCall | None = None

    @property
    def is_content(self) -> bool:
        return not self.calls and self.malformed is None


_FIRST_KEY = re.compile(r'(?:\[\s*)?\{\s*"([^"\\]*)(")?')
_CALL_KEYS = frozenset({"name", "function", "tool_name", "type", "id", "arguments", "parameters"})
"""First keys of an object that may be a call (any other first key: the object is content)."""


def could_start(text: str, final: bool) -> bool | None:
    """Whether a JSON call may start at ``text[0]`` (``{``/``[``/fence); None: too little text to tell."""
    if text.startswith("```"):
        nl = text.find("\n")
        if nl < 0:
            return (text[3:].strip().lower() in FENCE_LANGS) if final else None
        return text[3:nl].strip().lower() in FENCE_LANGS
    m = _FIRST_KEY.match(text)
    if m is None:
        compact = "".join(text[:64].split())
        grows = len(compact) < 3 and ('[{"'.startswith(compact) or '{"'.startswith(compact))
        return None if grows and not final else False
    if m.group(2) is None:
        return False if final else None
    return m.group(1) in _CALL_KEYS


def scan(text: str, final: bool, accept: Callable[[str], bool]) -> Scan | None:
    """Classify a possible JSON call at the start of ``text`` (which ``could_start`` approved).

    Returns None when more text is needed (never when ``final``).
    """
    if text.startswith("```"):
        nl = text.find("\n")
        nl = len(text) if nl < 0 else nl + 1
        close = text.find("```", nl)
        if close < 0:
            if not final:
                return None
            body, end = text[nl:], len(text)
        else:
            body, end = text[nl:close], close + 3
    else:
        end = balanced_end(text)
        if end < 0:
            if not final:
                return None
            end = len(text)
        body = text[:end]
    values = _decode_all(body)
    if values:
        items = [v for value in values for v in (value if isinstance(value, list) else [value])]
        calls = [_as_call(v, accept) for v in items]
        if items and all(c is not None for c in calls):
            return Scan(end, calls=[c for c in calls if c is not None])
    m = _NAME_IN_TEXT.match(text[:end])
    if values is None and m and accept(m.group(1)):
        return Scan(end, malformed=MalformedToolCall(raw=text[:end].strip(),
                                                     error=f"invalid JSON in a call of {m.group(1)} written as text"))
    return Scan(end)
