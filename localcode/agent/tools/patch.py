"""apply_patch: the ``*** Begin Patch`` format (as in OpenAI's codex) and unified diffs.

A patch is applied to all its files or to none: every hunk of every file is located and
every path checked (inside the workspace, not protected, size limit) before the first
write; if a write still fails, the files already written are restored.

Hunks are located with growing tolerance, as codex does: exact lines, then ignoring
trailing whitespace, then ignoring indentation, then ignoring quote/dash style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from localcode.agent.tools.base import Tool, ToolContext, ToolError, ToolParams
from localcode.agent.tools.files import normalize_punctuation
from localcode.agent.tools.paths import (
    atomic_write,
    check_writable,
    delete_file,
    read_text,
    resolve_path,
)


class PatchError(ToolError):
    """The patch cannot be parsed or does not apply; nothing was changed."""


@dataclass
class Hunk:
    """One change: ``old`` lines (context and removals) become ``new`` lines."""

    old: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    header: str = ""
    """Codex ``@@ <line>``: a line to find first, narrowing where the hunk applies."""
    at_line: int | None = None
    """Unified diff ``@@ -N``: 1-based line where ``old`` starts, a hint."""
    eof: bool = False
    """The hunk applies at the end of the file."""
    trailing_blank: int = 0
    """Parsing bookkeeping: how many empty (prefix-less) lines end the hunk so far."""


@dataclass
class FileOp:
    """What a patch does to one file."""

    kind: str
    """``add``, ``delete`` or ``update``."""
    path: str
    move_to: str | None = None
    content: str = ""
    """The new file's content (``add``)."""
    hunks: list[Hunk] = field(default_factory=list)


_FENCE = re.compile(r"^```[\w+-]*\s*\n(.*?)\n?```\s*$", re.S)
_CODEX_FILE = re.compile(r"^\*\*\* (Add|Delete|Update) File:\s*(.+?)\s*$")
_UNIFIED_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")


def parse_patch(text: str) -> list[FileOp]:
    """Parse either format; raises ``PatchError`` saying what is wrong."""
    text = text.replace("\r\n", "\n").strip("\n")
    fenced = _FENCE.match(text.strip())
    if fenced:
        text = fenced.group(1)
    if not text.strip():
        raise PatchError("the patch is empty")
    if "*** Begin Patch" in text or re.search(r"^\*\*\* (Add|Delete|Update) File:", text, re.M):
        return _parse_codex(text)
    if re.search(r"^--- ", text, re.M) and re.search(r"^\+\+\+ ", text, re.M):
        return _parse_unified(text)
    raise PatchError(
        "not a patch: start with '*** Begin Patch' then '*** Update File: <path>' and @@ hunks "
        "(or send a unified diff with ---/+++ and @@ lines)"
    )


def _trim_hunk(h: Hunk) -> None:
    """Drop trailing blank context lines a model added at the end of a hunk."""
    while h.old and h.new and h.old[-1] == "" and h.new[-1] == "" and h.trailing_blank > 0:
        h.old.pop()
        h.new.pop()
        h.trailing_blank -= 1


def _parse_codex(text: str) -> list[FileOp]:
    lines = text.split("\n")
    start = next((i + 1 for i, ln in enumerate(lines) if ln.strip() == "*** Begin Patch"), 0)
    ops: list[FileOp] = []
    op: FileOp | None = None
    hunk: Hunk | None = None
    i = start
    while i < len(lines):
        ln = lines[i]
        i += 1
        if ln.strip() == "*** End Patch":
            break
        m = _CODEX_FILE.match(ln.strip())
        if m:
            kind, path = m.group(1).lower(), m.group(2)
            op = FileOp(kind=kind, path=path)
            ops.append(op)
            hunk = None
            continue
        if op is None:
            if ln.strip():
                raise PatchError(f"patch line {i}: expected '*** Add File:', '*** Update File:' or '*** Delete File:', got {ln[:80]!r}")
            continue
        if op.kind == "add":
            if ln.startswith("+"):
                op.content += ln[1:] + "\n"
            elif ln.strip():
                raise PatchError(f"patch line {i}: every line of an added file starts with '+', got {ln[:80]!r}")
            continue
        if op.kind == "delete":
            if ln.strip():
                raise PatchError(f"patch line {i}: '*** Delete File:' takes no lines, got {ln[:80]!r}")
            continue
        if ln.startswith("*** Move to:"):
            op.move_to = ln[len("*** Move to:"):].strip()
            continue
        if ln.strip() == "*** End of File":
            if hunk is not None:
                hunk.eof = True
            continue
        if ln.startswith("@@"):
            hunk = Hunk(header=ln[2:].strip().removesuffix("@@").strip())
            op.hunks.append(hunk)
            continue
        if hunk is None:
            # A hunk without an @@ line: codex allows the first one to start directly.
            hunk = Hunk()
            op.hunks.append(hunk)
        _hunk_line(hunk, ln, i)
    for op in ops:
        for h in op.hunks:
            _trim_hunk(h)
        if op.kind == "update" and not any(h.old or h.new for h in op.hunks) and not op.move_to:
            raise PatchError(f"'*** Update File: {op.path}' has no changes")
    if not ops:
        raise PatchError("the patch names no file: add '*** Update File: <path>' (or Add/Delete File)")
    return ops


def _hunk_line(hunk: Hunk, ln: str, lineno: int) -> None:
    if ln.startswith("+"):
        hunk.new.append(ln[1:])
        hunk.trailing_blank = 0
    elif ln.startswith("-"):
        hunk.old.append(ln[1:])
        hunk.trailing_blank = 0
    elif ln.startswith(" "):
        hunk.old.append(ln[1:])
        hunk.new.append(ln[1:])
        hunk.trailing_blank = 0
    elif ln == "":
        hunk.old.append("")
        hunk.new.append("")
        hunk.trailing_blank += 1
    elif ln.startswith("\\"):
        pass  # "\ No newline at end of file"
    else:
        raise PatchError(
            f"patch line {lineno}: a hunk line starts with ' ' (context), '-' (remove) or '+' (add), got {ln[:80]!r}"
        )


def _unified_path(raw: str, prefix: str) -> str | None:
    path = raw.split("\t")[0].strip()
    if path == "/dev/null":
        return None
    if path.startswith(prefix):
        path = path[len(prefix):]
    return path


def _parse_unified(text: str) -> list[FileOp]:
    lines = text.split("\n")
    ops: list[FileOp] = []
    op: FileOp | None = None
    hunk: Hunk | None = None
    i = 0
    while i < len(lines):
        ln = lines[i]
        i += 1
        if ln.startswith("--- ") and i < len(lines) and lines[i].startswith("+++ "):
            old_raw, new_raw = ln[4:], lines[i][4:]
            i += 1
            both_git = old_raw.startswith(("a/", "/dev/null")) and new_raw.startswith(("b/", "/dev/null"))
            old_path = _unified_path(old_raw, "a/" if both_git else "\0")
            new_path = _unified_path(new_raw, "b/" if both_git else "\0")
            if old_path is None and new_path is None:
                raise PatchError(f"patch line {i}: both sides are /dev/null")
            if old_path is None:
                op = FileOp(kind="add", path=new_path or "")
            elif new_path is None:
                op = FileOp(kind="delete", path=old_path)
            else:
                op = FileOp(kind="update", path=old_path, move_to=new_path if new_path != old_path else None)
            ops.append(op)
            hunk = None
            continue
        m = _UNIFIED_HUNK.match(ln)
        if m:
            if op is None:
                raise PatchError(f"patch line {i}: a hunk before any '--- a/<path>' / '+++ b/<path>' header")
            hunk = Hunk(at_line=int(m.group(1)), header="")
            op.hunks.append(hunk)
            continue
        if hunk is None:
            continue  # "diff --git", "index ..." and other preamble lines
        if ln.startswith(("diff ", "index ")):
            hunk = None
            continue
        _hunk_line(hunk, ln, i)
    if not ops:
        raise PatchError("the diff names no file: it needs '--- a/<path>' and '+++ b/<path>' lines")
    for op in ops:
        for h in op.hunks:
            _trim_hunk(h)
        if op.kind == "add":
            if any(h.old for h in op.hunks):
                raise PatchError(f"a new file ({op.path}) cannot have context or removed lines")
            op.content = "".join(ln + "\n" for h in op.hunks for ln in h.new)
        elif op.kind == "update" and not op.hunks and not op.move_to:
            raise PatchError(f"the diff for {op.path} has no @@ hunks")
    return ops


_SEEK_KEYS = (
    lambda s: s,
    lambda s: s.rstrip(),
    lambda s: s.strip(),
    lambda s: normalize_punctuation(s).strip(),
)


def _seek(lines: list[str], pattern: list[str], start: int, eof: bool, near: int | None = None) -> int | None:
    """Index where ``pattern`` occurs in ``lines`` at or after ``start``, with growing tolerance.

    ``eof`` tries the end of the file first; ``near`` prefers the occurrence closest to
    that index (a unified diff's line number).
    """
    n = len(pattern)
    if n == 0:
        return start
    if n > len(lines):
        return None
    for key in _SEEK_KEYS:
        want = [key(p) for p in pattern]
        if eof:
            at = len(lines) - n
            if at >= start and [key(x) for x in lines[at:]] == want:
                return at
        have = [key(x) for x in lines]
        found = [i for i in range(start, len(lines) - n + 1) if have[i: i + n] == want]
        if found:
            if near is not None:
                return min(found, key=lambda i: abs(i - near))
            return found[0]
    return None


def apply_hunks(text: str, hunks: list[Hunk], path: str) -> str:
    """The text after applying every hunk in order; raises ``PatchError`` naming the hunk."""
    had_newline = text.endswith("\n") or text == ""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    if text == "":
        lines = []
    cursor = 0
    for number, h in enumerate(hunks, 1):
        start = cursor
        if h.header:
            at = _seek(lines, [h.header], cursor, False)
            if at is None:
                raise PatchError(f"{path}: hunk {number}: the @@ line {h.header[:80]!r} is not in the file")
            start = at
        if not h.old:
            if h.header:
                insert_at = start + 1
            elif h.at_line is not None:
                insert_at = min(max(h.at_line, 0), len(lines))
            else:
                insert_at = len(lines)
            lines[insert_at:insert_at] = h.new
            cursor = insert_at + len(h.new)
            continue
        near = h.at_line - 1 if h.at_line is not None else None
        at = _seek(lines, h.old, start, h.eof, near)
        if at is None and start > 0:
            at = _seek(lines, h.old, 0, h.eof, near)
        if at is None:
            shown = "\n".join(f"  {x}" for x in h.old[:6])
            more = f"\n  ... ({len(h.old) - 6} more lines)" if len(h.old) > 6 else ""
            raise PatchError(
                f"{path}: hunk {number} does not match the file; these lines were not found:\n{shown}{more}\n"
                "read the file and copy the context lines exactly"
            )
        lines[at: at + len(h.old)] = h.new
        cursor = at + len(h.new)
    out = "\n".join(lines)
    if lines and had_newline:
        out += "\n"
    return out


class ApplyPatch(Tool):
    name = "apply_patch"
    aliases = ("patch_files", "patch", "apply_diff")
    description = (
        "Change files with a patch: '*** Begin Patch', then '*** Update File: <path>' with @@ hunks "
        "(' ' context, '-' remove, '+' add lines), '*** Add File: <path>' with '+' lines, or "
        "'*** Delete File: <path>', then '*** End Patch'. Unified diffs work too. All files change or none."
    )
    writes_files = True

    class Params(ToolParams):
        patch: str
        """The patch text."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        try:
            return self._apply(params.patch, ctx)
        except PatchError as e:
            raise ToolError(f"patch not applied (no file changed): {e}") from None

    def _apply(self, patch: str, ctx: ToolContext) -> str:
        ops = parse_patch(patch)
        # Plan every change in memory first: path → new text (None: delete).
        planned: dict[Path, str | None] = {}
        originals: dict[Path, str | None] = {}
        summary: list[str] = []

        def current(path: Path) -> str | None:
            if path in planned:
                return planned[path]
            if not path.exists():
                originals.setdefault(path, None)
                return None
            text = read_text(ctx, path)
            originals.setdefault(path, text)
            return text

        for op in ops:
            path = resolve_path(ctx, op.path)
            rel = check_writable(ctx, path)
            before = current(path)
            if op.kind == "add":
                planned[path] = op.content
                summary.append(f"{'replaced' if before is not None else 'added'} {rel}")
            elif op.kind == "delete":
                if before is None:
                    raise PatchError(f"cannot delete {rel}: it does not exist")
                planned[path] = None
                summary.append(f"deleted {rel}")
            else:
                if before is None:
                    raise PatchError(f"cannot update {rel}: it does not exist (use '*** Add File: {op.path}')")
                after = apply_hunks(before, op.hunks, rel)
                if op.move_to:
                    target = resolve_path(ctx, op.move_to)
                    target_rel = check_writable(ctx, target)
                    current(target)
                    planned[path] = None
                    planned[target] = after
                    summary.append(f"moved {rel} to {target_rel}")
                else:
                    planned[path] = after
                    n = len(op.hunks)
                    summary.append(f"updated {rel} ({n} hunk{'s' if n != 1 else ''})")
            for p, text in planned.items():
                if text is not None:
                    check_writable(ctx, p, size=len(text.encode("utf-8", errors="surrogatepass")))
        done: list[Path] = []
        try:
            for p, text in planned.items():
                if text is None:
                    if p.exists():
                        delete_file(ctx, p)
                else:
                    atomic_write(ctx, p, text)
                done.append(p)
        except (OSError, ToolError) as e:
            for p in done:
                orig = originals.get(p)
                if orig is None:
                    p.unlink(missing_ok=True)
                else:
                    atomic_write(ctx, p, orig)
            raise ToolError(f"patch not applied (files restored): {e}") from None
        return "ok: applied patch: " + ", ".join(summary)


TOOLS: tuple[type[Tool], ...] = (ApplyPatch,)


