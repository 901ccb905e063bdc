"""Workspace file tools: ls, read, batch_read, write, edit.

All paths go through ``localcode.agent.tools.paths`` (inside the workspace, no special
files, size limits, protected files); writes are atomic.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pydantic import field_validator

from localcode.agent.tools.base import Tool, ToolContext, ToolError, ToolParams, cap_text
from localcode.agent.tools.paths import (
    atomic_write,
    check_writable,
    read_text,
    relative,
    resolve_path,
    walk,
)

DEFAULT_READ_LINES = 500
MAX_LINE_CHARS = 2000
MAX_LS_ENTRIES = 300
MAX_BATCH_FILES = 20


def _human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


class Ls(Tool):
    name = "ls"
    aliases = ("list_dir", "list_directory", "list_files")
    description = "List a folder of the workspace: sub-folders end with '/', files show their size. Honours .gitignore."

    class Params(ToolParams):
        path: str = "."
        """Folder to list, relative to the workspace root."""
        depth: int = 1
        """How many levels to descend (1 = only this folder, at most 5)."""
        all: bool = False
        """Also list files that .gitignore ignores."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        folder = resolve_path(ctx, params.path, default=".")
        rel = relative(ctx, folder)
        if not folder.exists():
            raise ToolError(f"'{rel}' does not exist; use ls on its parent folder or glob to find it")
        if not folder.is_dir():
            raise ToolError(f"'{rel}' is a file, not a folder; use read to see it")
        depth = min(max(params.depth, 1), 5)
        lines: list[str] = []
        n_dirs = n_files = 0
        more = 0
        for entry in walk(ctx, folder, gitignore=not params.all, max_depth=depth, limit=20_000):
            if entry.kind == "dir":
                n_dirs += 1
            else:
                n_files += 1
            if len(lines) >= MAX_LS_ENTRIES:
                more += 1
                continue
            shown = entry.rel
            if entry.kind == "dir":
                lines.append(f"{shown}/")
            elif entry.kind == "file":
                lines.append(f"{shown}  {_human_size(entry.size)}")
            elif entry.kind == "link":
                lines.append(f"{shown}@  (symlink)")
            else:
                lines.append(f"{shown}  (special file)")
        head = (f"ok: {rel if rel == '.' else rel + '/'} — {n_dirs} folder{'' if n_dirs == 1 else 's'}, "
                f"{n_files} file{'' if n_files == 1 else 's'}")
        if not lines:
            return f"ok: {rel} is empty"
        body = "\n".join(lines)
        if more:
            body += f"\n[... {more} more entries; ls a sub-folder to see them]"
        return cap_text(f"{head}\n{body}", ctx.max_output_chars, "ls a sub-folder to see the rest")


def _numbered(ctx: ToolContext, path: Path, offset: int, limit: int, budget: int) -> tuple[str, str]:
    """(header, numbered lines) for a window of a text file; records the read."""
    text = read_text(ctx, path)
    rel = relative(ctx, path)
    ctx.files_read.add(rel)
    lines = text.splitlines()
    total = len(lines)
    if total == 0:
        return f"{rel} is empty (0 lines)", ""
    start = max(offset, 1)
    if start > total:
        raise ToolError(f"offset {start} is past the end of '{rel}' ({total} lines)")
    limit = limit if limit > 0 else DEFAULT_READ_LINES
    end = min(total, start - 1 + limit)
    out: list[str] = []
    used = 0
    for i in range(start - 1, end):
        line = lines[i]
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f" [... {len(line) - MAX_LINE_CHARS} more characters]"
        row = f"{i + 1:6}\t{line}"
        if used + len(row) + 1 > budget and out:
            end = i
            break
        out.append(row)
        used += len(row) + 1
    header = f"{rel} lines {start}-{end} of {total}"
    body = "\n".join(out)
    if end < total:
        body += f"\n[{total - end} more lines; read with offset={end + 1}]"
    return header, body


class Read(Tool):
    name = "read"
    aliases = ("read_file", "view", "cat", "open_file")
    description = "Read a text file with line numbers. Long files come in parts: use offset and limit."

    class Params(ToolParams):
        path: str
        """File to read, relative to the workspace root."""
        offset: int = 1
        """First line to show (1-based)."""
        limit: int = DEFAULT_READ_LINES
        """How many lines to show."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        path = resolve_path(ctx, params.path)
        header, body = _numbered(ctx, path, params.offset, params.limit, ctx.max_output_chars)
        return f"ok: {header}\n{body}" if body else f"ok: {header}"


class BatchRead(Tool):
    name = "batch_read"
    aliases = ("read_files", "read_multiple", "read_multiple_files")
    description = f"Read several text files in one call (at most {MAX_BATCH_FILES}), with line numbers."

    class Params(ToolParams):
        paths: list[str]
        """Files to read, relative to the workspace root."""
        limit: int = DEFAULT_READ_LINES
        """Lines to show per file."""

        @field_validator("paths", mode="before")
        @classmethod
        def _one_or_many(cls, v: object) -> object:
            if isinstance(v, str):
                parts = [p.strip() for p in v.replace("\n", ",").split(",")]
                return [p for p in parts if p]
            return v

    def run(self, params: Params, ctx: ToolContext) -> str:
        if not params.paths:
            raise ToolError("paths is empty; give a list of files to read")
        if len(params.paths) > MAX_BATCH_FILES:
            raise ToolError(f"{len(params.paths)} files asked for; read at most {MAX_BATCH_FILES} per call")
        budget = max(ctx.max_output_chars // len(params.paths), 500)
        sections: list[str] = []
        failures = 0
        for raw in params.paths:
            try:
                path = resolve_path(ctx, raw)
                header, body = _numbered(ctx, path, 1, params.limit, budget)
            except ToolError as e:
                failures += 1
                sections.append(f"=== {raw}: error: {e}")
                continue
            sections.append(f"=== {header}\n{body}" if body else f"=== {header}")
        if failures == len(params.paths):
            raise ToolError("no file could be read:\n" + "\n".join(sections))
        read = len(params.paths) - failures
        head = f"ok: read {read} of {len(params.paths)} files"
        return cap_text(head + "\n" + "\n".join(sections), ctx.max_output_chars, "read the files one by one")


class Write(Tool):
    name = "write"
    aliases = ("write_file", "create_file", "save_file")
    description = "Create a file or replace its whole content. Missing folders are created."
    writes_files = True

    class Params(ToolParams):
        path: str
        """File to write, relative to the workspace root."""
        content: str
        """The complete new content of the file."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        path = resolve_path(ctx, params.path)
        size = len(params.content.encode("utf-8", errors="surrogatepass"))
        note = ""
        try:
            rel = check_writable(ctx, path, size=size)
        except ToolError:
            asked = relative(ctx, path)
            target = ctx.redirect_write(asked) if ctx.redirect_write is not None else None
            if target is None:
                raise
            path = resolve_path(ctx, target)
            rel = check_writable(ctx, path, size=size)
            note = f"; not {asked}, which the test run would not use"
        created = atomic_write(ctx, path, params.content)
        n_lines = len(params.content.splitlines())
        verb = "created" if created else "wrote"
        return f"ok: {verb} {rel} ({n_lines} lines, {size} bytes{note})"


# --- edit -------------------------------------------------------------------

_PUNCT = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2009": " ", "\u202f": " ",
})
"""Curly quotes, dashes and odd spaces → ASCII, one character for one (positions stay valid)."""


def normalize_punctuation(text: str) -> str:
    """Curly quotes, unicode dashes and non-breaking spaces as their ASCII forms."""
    return text.translate(_PUNCT)


Span = tuple[int, int]


def _find_all(haystack: str, needle: str) -> list[Span]:
    spans: list[Span] = []
    start = 0
    while True:
        i = haystack.find(needle, start)
        if i < 0:
            return spans
        spans.append((i, i + len(needle)))
        start = i + len(needle)


_LINE_KEYS = (
    ("ignoring trailing whitespace", lambda s: normalize_punctuation(s).rstrip()),
    ("ignoring indentation", lambda s: normalize_punctuation(s).strip()),
    ("ignoring whitespace", lambda s: " ".join(normalize_punctuation(s).split())),
)


def _line_matches(text: str, old: str, key) -> list[Span]:
    """Spans of whole-line windows of ``text`` whose lines equal ``old``'s under ``key``."""
    old_lines = old.split("\n")
    while old_lines and not old_lines[0].strip():
        old_lines.pop(0)
    while old_lines and not old_lines[-1].strip():
        old_lines.pop()
    if not old_lines:
        return []
    lines = text.split("\n")
    starts = [0]
    for ln in lines:
        starts.append(starts[-1] + len(ln) + 1)
    want = [key(ln) for ln in old_lines]
    have = [key(ln) for ln in lines]
    n = len(want)
    spans: list[Span] = []
    i = 0
    while i + n <= len(lines):
        if have[i: i + n] == want:
            spans.append((starts[i], starts[i + n - 1] + len(lines[i + n - 1])))
            i += n
        else:
            i += 1
    return spans


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _reindent(new: str, old: str, matched: str) -> str:
    """Shift ``new`` by the indentation difference between ``old`` and the matched text."""
    old_first = next((ln for ln in old.split("\n") if ln.strip()), "")
    file_first = next((ln for ln in matched.split("\n") if ln.strip()), "")
    oi, fi = _indent(old_first), _indent(file_first)
    if oi == fi:
        return new
    out = []
    for ln in new.split("\n"):
        if not ln.strip():
            out.append(ln)
        elif ln.startswith(oi):
            out.append(fi + ln[len(oi):])
        else:
            out.append(ln)
    return "\n".join(out)


def find_edit(text: str, old: str, replace_all: bool) -> tuple[list[Span], str, bool]:
    """Where ``old`` is in ``text``: (spans, how it matched, whether whole lines matched).

    Tries exact, then curly/straight-quote tolerant, then line by line ignoring trailing
    whitespace, indentation, and all whitespace differences. The first level with a
    match decides. Raises ``ToolError`` when ``old`` occurs more than once and not
    ``replace_all``.
    """
    levels: list[tuple[str, list[Span], bool]] = []
    levels.append(("exactly", _find_all(text, old), False))
    if not levels[0][1]:
        levels.append(("ignoring quote style", _find_all(normalize_punctuation(text), normalize_punctuation(old)), False))
    if not levels[-1][1]:
        for how, key in _LINE_KEYS:
            spans = _line_matches(text, old, key)
            levels.append((how, spans, True))
            if spans:
                break
    how, spans, by_lines = levels[-1]
    if len(spans) > 1 and not replace_all:
        line_nos = ", ".join(str(text.count("\n", 0, s) + 1) for s, _ in spans[:10])
        raise ToolError(
            f"old text occurs {len(spans)} times (lines {line_nos}); include more surrounding lines "
            "to make it unique, or set all=true to replace every occurrence"
        )
    return spans, how, by_lines


def _closest_hint(text: str, old: str) -> str:
    first = next((ln.strip() for ln in old.split("\n") if ln.strip()), "")
    if not first:
        return ""
    lines = text.split("\n")
    stripped = [ln.strip() for ln in lines]
    best = difflib.get_close_matches(first, stripped, n=1, cutoff=0.6)
    if not best:
        return ""
    no = stripped.index(best[0]) + 1
    return f"; the closest line is {no}: {best[0][:200]!r}"


class Edit(Tool):
    name = "edit"
    aliases = ("replace_in_file", "edit_file", "str_replace", "search_replace")
    description = (
        "Replace text in a file: 'old' must match one place in the file (copy it from read, "
        "with a few lines of context); set all=true to replace every occurrence. "
        "Small whitespace and quote differences are tolerated."
    )
    writes_files = True

    class Params(ToolParams):
        path: str
        """File to edit, relative to the workspace root."""
        old: str
        """The exact text to replace (a few whole lines work best)."""
        new: str
        """The text to put in its place."""
        all: bool = False
        """Replace every occurrence instead of exactly one."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        path = resolve_path(ctx, params.path)
        rel = check_writable(ctx, path)
        if not path.exists():
            if not params.old:
                created = atomic_write(ctx, path, params.new)
                return f"ok: {'created' if created else 'wrote'} {rel} ({len(params.new.splitlines())} lines)"
            raise ToolError(f"'{rel}' does not exist; use write to create it")
        text = read_text(ctx, path)
        if not params.old:
            if text:
                raise ToolError("old is empty; give the text to replace (or use write to replace the whole file)")
            atomic_write(ctx, path, params.new)
            return f"ok: wrote {rel} ({len(params.new.splitlines())} lines)"
        if params.old == params.new:
            raise ToolError("old and new are the same; nothing to change")
        spans, how, by_lines = find_edit(text, params.old, params.all)
        if not spans:
            raise ToolError(
                f"old text not found in '{rel}'{_closest_hint(text, params.old)}; read the file and copy the exact lines"
            )
        new_text = text
        new = params.new
        if by_lines:
            while new.endswith("\n"):
                new = new[:-1]
            while new.startswith("\n"):
                new = new[1:]
        for start, end in reversed(spans):
            replacement = _reindent(new, params.old, text[start:end]) if by_lines else new
            new_text = new_text[:start] + replacement + new_text[end:]
        atomic_write(ctx, path, new_text)
        first_line = text.count("\n", 0, spans[0][0]) + 1
        count = f"{len(spans)} replacements" if len(spans) > 1 else "1 replacement"
        matched = "" if how == "exactly" else f", matched {how}"
        return f"ok: edited {rel}: {count} at line {first_line}{matched}"


TOOLS: tuple[type[Tool], ...] = (Ls, Read, BatchRead, Write, Edit)
