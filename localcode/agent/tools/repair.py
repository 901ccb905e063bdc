"""Recovery of sloppy tool arguments: almost-JSON repair and argument-name aliases.

Local models often send arguments that are almost JSON (single quotes, trailing
commas, Python's ``True``/``None``, raw newlines inside strings, a missing closing
brace, the object wrapped in a code fence or in a JSON string) and call arguments by
other names (``file_path`` for ``path``, ``old_str`` for ``old``). ``parse_arguments``
and ``normalize_arguments`` turn those into a dict for the tool's parameter model and
name every repair they made, so the agent can count them instead of hiding them.

Repair kinds (the strings in ``ParsedArguments.repairs``):

=================  ==========================================================
``code_fence``     the object was wrapped in a fenced block or other text
``nested_json``    the arguments were a JSON string holding the JSON object
``single_quotes``  strings in single (or triple) quotes
``unquoted_key``   object keys without quotes
``python_literal`` ``True`` / ``False`` / ``None``
``trailing_comma`` a comma before ``}`` or ``]``
``missing_comma``  two members without a comma between them
``raw_control``    unescaped newlines / tabs inside a string
``bad_escape``     a backslash before a character JSON does not escape (kept as is)
``unclosed``       a string, array or object not closed at the end of the text
``trailing_text``  text after the object
``bare_value``     a bare value instead of an object, given to the only required field
``arg_alias``      an argument called by another name
=================  ==========================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ArgumentError(ValueError):
    """The arguments could not be read even leniently; the message says where."""


@dataclass
class ParsedArguments:
    """Arguments read from a tool call, with the repairs that were needed."""

    value: Any
    """Usually a dict; the registry handles bare values and reports other types."""
    repairs: list[str] = field(default_factory=list)
    """Repair kinds applied, in order, without duplicates."""

    def note(self, kind: str) -> None:
        if kind not in self.repairs:
            self.repairs.append(kind)


_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)


def parse_arguments(raw: str | Mapping[str, Any] | None) -> ParsedArguments:
    """Read a tool call's arguments: JSON text, almost-JSON text or a dict.

    Raises ``ArgumentError`` when nothing sensible can be read.
    """
    if raw is None:
        return ParsedArguments({})
    if isinstance(raw, Mapping):
        return ParsedArguments(dict(raw))
    if not isinstance(raw, str):
        return ParsedArguments(raw)
    text = raw.strip()
    if not text:
        return ParsedArguments({})
    out = ParsedArguments(None)
    try:
        out.value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        out.value = _lenient(text, out)
    # A JSON string holding the JSON object (double-encoded arguments); recursion
    # unwraps deeper encodings one level at a time.
    if isinstance(out.value, str) and out.value.strip()[:1] in ("{", "`"):
        try:
            inner = parse_arguments(out.value)
        except ArgumentError:
            return out
        if isinstance(inner.value, dict):
            out.note("nested_json")
            for kind in inner.repairs:
                out.note(kind)
            out.value = inner.value
    return out


def _lenient(text: str, out: ParsedArguments) -> Any:
    """Parse almost-JSON, recording repairs in ``out``."""
    body = text
    fenced = _FENCE.search(text)
    if fenced and "{" in fenced.group(1):
        body = fenced.group(1).strip()
        out.note("code_fence")
    if body[:1] not in "{[\"'" and "{" in body:
        body = body[body.index("{"):]
        out.note("code_fence")
    if body and body[0] in "{[":
        try:
            value, end = json.JSONDecoder().raw_decode(body)
        except (json.JSONDecodeError, RecursionError):
            pass
        else:
            if body[end:].strip():
                out.note("trailing_text")
            return value
    parser = _LenientParser(body, out)
    try:
        value = parser.parse_value()
    except RecursionError:
        raise ArgumentError("arguments are nested too deeply") from None
    except ArgumentError:
        if body[:1] in "{[":
            raise
        # Plain text instead of JSON (``src/main.py``): the registry gives it to the
        # tool's only required field, or refuses it.
        out.note("bare_value")
        return text
    parser.skip_ws()
    if parser.pos < len(body):
        if isinstance(value, (dict, list)):
            out.note("trailing_text")
        else:
            raise ArgumentError(_where("could not read the arguments as JSON", body, parser.pos))
    return value


def _where(msg: str, text: str, pos: int) -> str:
    snippet = text[max(0, pos - 20): pos + 20].replace("\n", "\\n")
    return f"{msg} near character {pos}: {snippet!r}"


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "'": "'"}
_LITERALS = {"true": True, "false": False, "null": None}
_PY_LITERALS = {"True": True, "False": False, "None": None}
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_BAREWORD = re.compile(r"[A-Za-z_$][\w$.-]*")


class _LenientParser:
    """A forgiving recursive-descent JSON reader (see the repair kinds above)."""

    def __init__(self, text: str, out: ParsedArguments) -> None:
        self.text = text
        self.pos = 0
        self.out = out

    def skip_ws(self) -> None:
        n = len(self.text)
        while self.pos < n:
            ch = self.text[self.pos]
            if ch in " \t\r\n\ufeff":
                self.pos += 1
            elif self.text.startswith("//", self.pos) or ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            else:
                break

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse_value(self) -> Any:
        self.skip_ws()
        ch = self.peek()
        if not ch:
            self.out.note("unclosed")
            return None
        if ch == "{":
            return self.parse_object()
        if ch == "[":
            return self.parse_array()
        if ch in "\"'":
            return self.parse_string()
        m = _NUMBER.match(self.text, self.pos)
        if m and m.group(0) not in ("-", "."):
            self.pos = m.end()
            num = m.group(0)
            try:
                return int(num)
            except ValueError:
                return float(num)
        m = _BAREWORD.match(self.text, self.pos)
        if m:
            word = m.group(0)
            self.pos = m.end()
            if word in _LITERALS:
                return _LITERALS[word]
            if word in _PY_LITERALS:
                self.out.note("python_literal")
                return _PY_LITERALS[word]
            raise ArgumentError(_where(f"unexpected word {word!r}", self.text, m.start()))
        raise ArgumentError(_where(f"unexpected character {ch!r}", self.text, self.pos))

    def parse_object(self) -> dict[str, Any]:
        self.pos += 1  # {
        obj: dict[str, Any] = {}
        expect_member = True
        while True:
            self.skip_ws()
            ch = self.peek()
            if not ch:
                self.out.note("unclosed")
                return obj
            if ch == "}":
                self.pos += 1
                return obj
            if ch == ",":
                if expect_member:
                    # ",," or "{," — tolerate as a stray comma.
                    self.out.note("trailing_comma")
                self.pos += 1
                expect_member = True
                self.skip_ws()
                if self.peek() == "}":
                    self.out.note("trailing_comma")
                continue
            if not expect_member:
                self.out.note("missing_comma")
            key = self.parse_key()
            self.skip_ws()
            if self.peek() in (":", "="):
                self.pos += 1
            elif not self.peek():
                self.out.note("unclosed")
                obj[key] = None
                return obj
            else:
                raise ArgumentError(_where(f"expected ':' after key {key!r}", self.text, self.pos))
            obj[key] = self.parse_value()
            expect_member = False

    def parse_key(self) -> str:
        ch = self.peek()
        if ch in "\"'":
            return self.parse_string()
        m = _BAREWORD.match(self.text, self.pos) or re.compile(r"\d+").match(self.text, self.pos)
        if not m:
            raise ArgumentError(_where(f"unexpected character {ch!r} where a key belongs", self.text, self.pos))
        self.pos = m.end()
        self.out.note("unquoted_key")
        return m.group(0)

    def parse_array(self) -> list[Any]:
        self.pos += 1  # [
        arr: list[Any] = []
        expect_item = True
        while True:
            self.skip_ws()
            ch = self.peek()
            if not ch:
                self.out.note("unclosed")
                return arr
            if ch == "]":
                self.pos += 1
                return arr
            if ch == ",":
                self.pos += 1
                if expect_item:
                    self.out.note("trailing_comma")
                expect_item = True
                self.skip_ws()
                if self.peek() == "]":
                    self.out.note("trailing_comma")
                continue
            if not expect_item:
                self.out.note("missing_comma")
            arr.append(self.parse_value())
            expect_item = False

    def parse_string(self) -> str:
        quote = self.text[self.pos]
        if self.text.startswith(quote * 3, self.pos):
            delim = quote * 3
            self.out.note("single_quotes")
        else:
            delim = quote
            if quote == "'":
                self.out.note("single_quotes")
        self.pos += len(delim)
        parts: list[str] = []
        n = len(self.text)
        while True:
            if self.pos >= n:
                self.out.note("unclosed")
                return "".join(parts)
            if self.text.startswith(delim, self.pos):
                self.pos += len(delim)
                return "".join(parts)
            ch = self.text[self.pos]
            if ch == "\\":
                self.pos += 1
                esc = self.text[self.pos] if self.pos < n else ""
                if esc in _ESCAPES:
                    parts.append(_ESCAPES[esc])
                    self.pos += 1
                elif esc == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.text[self.pos + 1: self.pos + 5]):
                    parts.append(chr(int(self.text[self.pos + 1: self.pos + 5], 16)))
                    self.pos += 5
                else:
                    # "\d" in a regex: keep the backslash, as the model meant it.
                    self.out.note("bad_escape")
                    parts.append("\\")
                continue
            if ch in "\n\r\t" and delim == '"':
                self.out.note("raw_control")
            parts.append(ch)
            self.pos += 1


# ---------------------------------------------------------------------------
# Argument-name aliases

ARG_ALIASES: dict[str, tuple[str, ...]] = {
    "path": ("file_path", "filepath", "filename", "file", "file_name", "fname", "target_file",
             "relative_path", "dir", "directory", "dir_path", "folder", "dirname", "target", "location"),
    "paths": ("files", "file_paths", "filepaths", "filenames", "file_names", "path_list", "path"),
    "old": ("old_str", "old_string", "old_text", "oldtext", "search", "find", "original", "before",
            "from", "old_content", "search_text", "target_text"),
    "new": ("new_str", "new_string", "new_text", "newtext", "replace", "replacement", "after",
            "to", "new_content", "replace_text", "updated"),
    "content": ("contents", "text", "data", "body", "file_content", "file_contents", "code",
                "new_content", "source"),
    "all": ("replace_all", "all_occurrences", "global", "every", "multiple"),
    "offset": ("start_line", "line_start", "from_line", "start", "begin", "line", "first_line",
               "line_number", "startline"),
    "limit": ("max_lines", "num_lines", "lines", "count", "n", "line_count", "length"),
    "pattern": ("regex", "query", "glob", "expression", "regexp", "search", "term", "q", "pattern_str"),
    "query": ("text", "search", "pattern", "q", "term", "string", "needle", "literal", "keyword"),
    "include": ("glob", "file_pattern", "files", "file_glob", "include_pattern", "filter", "file_filter"),
    "ignore_case": ("case_insensitive", "ignorecase", "nocase", "i", "insensitive"),
    "command": ("cmd", "script", "shell", "bash", "commands", "command_line", "cmdline", "run"),
    "timeout": ("timeout_s", "timeout_seconds", "timeout_sec", "time_limit", "seconds"),
    "patch": ("input", "diff", "patch_text", "patch_content", "content", "text", "changes", "patches"),
}
"""Shared argument-name aliases: field → other names models use for it.

An alias applies only to tools that have the field and were not given it already; a
tool's own ``arg_aliases`` win over this table.
"""

_END_ALIASES = ("end_line", "line_end", "to_line", "end", "last_line", "endline")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def normalize_key(key: str) -> str:
    """``filePath`` / ``File-Path`` / `` path `` → ``file_path`` / ``path``."""
    key = _CAMEL.sub(r"_\1", key.strip())
    return key.replace("-", "_").replace(" ", "_").lower()


def alias_map(fields: Iterable[str], tool_aliases: Mapping[str, str] | None = None) -> dict[str, str]:
    """alias → field for a tool with these fields (its own aliases first)."""
    fields = list(fields)
    mapping: dict[str, str] = {}
    for alias, target in (tool_aliases or {}).items():
        if target in fields:
            mapping[normalize_key(alias)] = target
    for f in fields:
        for alias in ARG_ALIASES.get(f, ()):
            if alias not in fields:
                mapping.setdefault(alias, f)
    return mapping


def normalize_arguments(
    args: Mapping[str, Any],
    fields: Iterable[str],
    tool_aliases: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Rename aliased arguments to the tool's field names.

    Returns ``(arguments, renamed, unknown)``: ``renamed`` holds ``"alias→field"`` for
    each rename, ``unknown`` the argument names that match no field (they are dropped).
    A field given under its own name wins over an alias of it.
    """
    fields = list(fields)
    mapping = alias_map(fields, tool_aliases)
    out: dict[str, Any] = {}
    renamed: list[str] = []
    unknown: list[str] = []
    pending: list[tuple[str, str, Any]] = []
    for raw_key, value in args.items():
        key = normalize_key(str(raw_key))
        if key in fields:
            if key != raw_key:
                renamed.append(f"{raw_key}→{key}")
            out[key] = value
        elif key in mapping:
            pending.append((str(raw_key), mapping[key], value))
        elif key in _END_ALIASES and "limit" in fields:
            pending.append((str(raw_key), "_end", value))
        else:
            unknown.append(str(raw_key))
    end_value = None
    for raw_key, target, value in pending:
        if target == "_end":
            end_value = (raw_key, value)
            continue
        if target in out:
            unknown.append(raw_key)
            continue
        out[target] = value
        renamed.append(f"{raw_key}→{target}")
    if end_value is not None and "limit" not in out:
        raw_key, value = end_value
        try:
            end = int(value)
            start = int(out.get("offset", 1) or 1)
        except (TypeError, ValueError, OverflowError):
            unknown.append(raw_key)
        else:
            out["limit"] = max(1, end - start + 1)
            renamed.append(f"{raw_key}→limit")
    elif end_value is not None:
        unknown.append(end_value[0])
    order = {str(k): i for i, k in enumerate(args)}
    unknown.sort(key=lambda k: order.get(k, 0))
    return out, renamed, unknown
