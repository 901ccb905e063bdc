"""Keeping local models on track: format-error messages, nudges, calls recovered from text.

Everything here produces text for the model or calls for the loop; the loop decides
when to use it and counts every use (nothing is repaired silently).
"""

from __future__ import annotations

import json
import re
from typing import Any

from localcode.agent import prompts
from localcode.agent.tools.registry import ToolRegistry
from localcode.agent.tools.repair import ArgumentError, parse_arguments
from localcode.backends.base import ToolCall

_MAX_SCAN = 200_000
"""Characters of a reply searched for recoverable calls (hostile replies can be huge)."""

_EXAMPLE_VALUES = {"path": "src/main.py", "paths": ["src/main.py"], "pattern": "TODO", "query": "TODO",
                   "command": "ls", "summary": "what was done", "thought": "...", "content": "..."}


def tool_names(registry: ToolRegistry) -> dict[str, str]:
    """Canonical names and aliases → the names the model sees, for ``prompts.render``."""
    out: dict[str, str] = {}
    for tool in registry.tools:
        exposed = registry.exposed_name(tool.name) or tool.name
        for n in (tool.name, *tool.aliases):
            out[n] = exposed
    return out


def example_call(registry: ToolRegistry) -> str:
    """One valid call in JSON form, from a tool the agent has (read, if it has it)."""
    tool = registry.resolve("read") or registry.resolve("ls") or (registry.tools[0] if registry.tools else None)
    if tool is None:
        return '{"name": "finish", "arguments": {"summary": "..."}}'
    schema = tool.parameters_schema()
    args = {f: _EXAMPLE_VALUES.get(f, "...") for f in schema.get("required", [])}
    return json.dumps({"name": registry.exposed_name(tool.name), "arguments": args})


def format_error(problem: str, registry: ToolRegistry) -> str:
    """The FORMAT ERROR message (``prompts/format_error.md``) for ``problem``."""
    return prompts.render_file("format_error", tool_names(registry), registry.names(),
                               problem=problem, example=example_call(registry))


def hint(name: str, registry: ToolRegistry, **values: object) -> str:
    """A hint message from ``prompts/hint_<name>.md``."""
    return prompts.render_file(f"hint_{name}", tool_names(registry), registry.names(), **values)


# ---------------------------------------------------------------------------
# Calls recovered from plain text (auto_tool_call_on_failure)

_NAME_KEYS = ("name", "tool", "tool_name", "function", "action")
_ARG_KEYS = ("arguments", "args", "parameters", "params", "input", "action_input")
_FILE = r"[\w][\w./-]*\.[A-Za-z0-9]{1,8}"
_FENCE = re.compile(r"```([^\n`]*)\n(.*?)```", re.S)
_NAMED_BEFORE = re.compile(
    rf"(?:^|\n)[ \t]*(?:#+\s*|\*\*|`|(?:file(?:name)?|path)\s*[:=]\s*`?)?({_FILE})`?(?:\*\*)?\s*:?[ \t]*\n?$", re.I)
_NAMED_INSIDE = re.compile(rf"^\s*(?:#|//|--|/\*)\s*(?:file(?:name)?\s*[:=]\s*)?({_FILE})\s*(?:\*/)?\s*$", re.I)


def recover_calls(text: str, registry: ToolRegistry) -> list[ToolCall]:
    """Tool calls recovered from a reply that had none: a JSON object naming a tool, or
    fenced code blocks that name their file (turned into ``write`` calls).

    Returns ``[]`` when nothing recognisable is found.
    """
    text = text[:_MAX_SCAN]
    call = _json_call(text, registry)
    if call is not None:
        return [call]
    return _fenced_writes(text, registry)


def _json_call(text: str, registry: ToolRegistry) -> ToolCall | None:
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"\{", text)][:200]
    for start in starts:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            try:
                obj = parse_arguments(text[start:start + 20_000]).value
            except (ArgumentError, RecursionError):
                continue
        call = _call_from_object(obj, registry)
        if call is not None:
            return call
    return None


def _call_from_object(obj: Any, registry: ToolRegistry) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is None or registry.resolve(name) is None:
        return None
    args: Any = next((obj[k] for k in _ARG_KEYS if k in obj), None)
    if args is None:
        args = {k: v for k, v in obj.items() if k not in _NAME_KEYS}
    if isinstance(args, str):
        try:
            args = parse_arguments(args).value
        except ArgumentError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(name=registry.exposed_name(name) or name, arguments=json.dumps(args))


def _fenced_writes(text: str, registry: ToolRegistry) -> list[ToolCall]:
    write = registry.resolve("write")
    if write is None:
        return []
    fields = list(write.Params.model_fields)
    path_field = "path" if "path" in fields else (fields[0] if fields else "path")
    content_field = "content" if "content" in fields else (fields[1] if len(fields) > 1 else "content")
    calls: dict[str, ToolCall] = {}
    for m in _FENCE.finditer(text):
        info, body = m.group(1).strip(), m.group(2)
        path = _path_in_info(info)
        if path is None:
            before = text[max(0, m.start() - 200): m.start()]
            found = _NAMED_BEFORE.search(before)
            path = found.group(1) if found else None
        if path is None:
            first, _, rest = body.partition("\n")
            found = _NAMED_INSIDE.match(first)
            if found:
                path, body = found.group(1), rest
        if path is None:
            continue
        args = {path_field: path, content_field: body}
        calls[path] = ToolCall(name=registry.exposed_name("write") or "write", arguments=json.dumps(args))
    return list(calls.values())


def _path_in_info(info: str) -> str | None:
    """``python solution.py`` / ``solution.py`` / ``python title="a.py"`` after the fence."""
    for token in re.split(r"[\s:=\"']+", info):
        if re.fullmatch(_FILE, token) and not re.fullmatch(r"\d+(\.\d+)+", token):
            return token
    return None
