"""Finding things in the workspace: glob (file names), grep (regex), search (literal text).

All three honour the workspace's ``.gitignore`` files, skip ``.git``, never follow
symlinks and never open special files. grep and search use ripgrep (the ``rg`` binary
of the ``ripgrep`` package) when it is present and Python's ``re`` otherwise; both give
the same ``path:line:text`` lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pathspec

from localcode.agent.tools.base import Tool, ToolContext, ToolError, ToolParams, cap_text
from localcode.agent.tools.paths import is_binary, read_bytes, relative, resolve_path, walk

MAX_GLOB_RESULTS = 200
MAX_MATCHES = 100
MAX_MATCH_LINE = 300
RG_TIMEOUT_S = 30.0


def _wildmatch(pattern: str) -> pathspec.GitIgnoreSpec:
    pattern = pattern.strip()
    if pattern.startswith("./"):
        pattern = pattern[2:]
    try:
        return pathspec.GitIgnoreSpec.from_lines([pattern])
    except (ValueError, TypeError) as e:
        raise ToolError(f"bad pattern {pattern!r}: {e}") from None


class Glob(Tool):
    name = "glob"
    aliases = ("find_files", "find", "glob_files")
    description = (
        "Find files by name pattern (gitignore-style: '*.py' matches at any depth, "
        "'src/**/*.ts' under src). Honours .gitignore."
    )

    class Params(ToolParams):
        pattern: str
        """Pattern such as '*.py', 'test_*', 'src/**/*.go'."""
        path: str = "."
        """Folder to search in, relative to the workspace root."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        folder = resolve_path(ctx, params.path, default=".")
        if not folder.is_dir():
            raise ToolError(f"'{relative(ctx, folder)}' is not a folder")
        if "\x00" in params.pattern or not params.pattern.strip():
            raise ToolError("pattern is empty; give a pattern such as '*.py'")
        spec = _wildmatch(params.pattern)
        base = relative(ctx, folder)
        found: list[str] = []
        for entry in walk(ctx, folder):
            if entry.kind not in ("file", "link"):
                continue
            sub = entry.rel if base == "." else entry.rel[len(base) + 1:]
            if spec.match_file(sub):
                found.append(entry.rel)
        found.sort()
        where = "the workspace" if base == "." else f"'{base}'"
        if not found:
            return f"ok: no files match {params.pattern!r} in {where}"
        shown = found[:MAX_GLOB_RESULTS]
        body = "\n".join(shown)
        if len(found) > len(shown):
            body += f"\n[... {len(found) - len(shown)} more; use a narrower pattern or path]"
        head = f"ok: {len(found)} file{'s' if len(found) != 1 else ''} match {params.pattern!r} in {where}"
        return cap_text(f"{head}\n{body}", ctx.max_output_chars, "use a narrower pattern or path")


@cache
def ripgrep() -> str | None:
    """The ``rg`` binary: the one installed next to this Python (the ripgrep package), else on PATH."""
    beside = Path(sys.executable).parent / "rg"
    if beside.is_file():
        return str(beside)
    return shutil.which("rg")


def _grep_rg(ctx: ToolContext, rg: str, start: Path, pattern: str, literal: bool,
             ignore_case: bool, include: str | None) -> list[str]:
    rel = relative(ctx, start)
    argv = [
        rg, "--line-number", "--no-heading", "--with-filename", "--color=never",
        "--no-require-git", "--no-ignore-parent", "--no-ignore-global", "--no-ignore-dot",
        "--no-ignore-exclude", "--hidden", "--glob", "!.git", "--no-messages",
        "--max-columns", str(MAX_MATCH_LINE), "--max-columns-preview",
        "--max-filesize", str(ctx.max_read_bytes), "--max-count", "1000",
    ]
    if ignore_case:
        argv.append("--ignore-case")
    if literal:
        argv.append("--fixed-strings")
    if include:
        argv += ["--glob", include]
    argv += ["--regexp", pattern, "--", "./" if rel == "." else rel]
    try:
        proc = subprocess.run(
            argv, cwd=ctx.workspace, capture_output=True, timeout=RG_TIMEOUT_S, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"the search took longer than {RG_TIMEOUT_S:.0f}s; narrow it with path or include") from None
    if proc.returncode == 2 and not proc.stdout:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = " ".join(m.strip() for m in msg[:6] if m.strip())
        raise ToolError(f"bad regex or include pattern {pattern[:100]!r}: {detail[:300]}")
    out = proc.stdout.decode("utf-8", "replace").splitlines()
    return [ln[2:] if ln.startswith("./") else ln for ln in out]


def _grep_python(ctx: ToolContext, start: Path, pattern: str, literal: bool,
                 ignore_case: bool, include: str | None) -> list[str]:
    flags = re.IGNORECASE if ignore_case else 0
    try:
        rx = re.compile(re.escape(pattern) if literal else pattern, flags)
    except (re.error, RecursionError, OverflowError) as e:
        raise ToolError(f"bad regex {pattern[:100]!r}: {e}") from None
    spec = _wildmatch(include) if include else None
    if start.is_file():
        files = [relative(ctx, start)]
    else:
        files = [e.rel for e in walk(ctx, start) if e.kind == "file"]
    out: list[str] = []
    for rel in files:
        if spec is not None and not spec.match_file(rel.rsplit("/", 1)[-1]) and not spec.match_file(rel):
            continue
        try:
            data = read_bytes(ctx, ctx.workspace / rel)
        except ToolError:
            continue
        if is_binary(data):
            continue
        text = data.decode("utf-8", errors="replace")
        hits = 0
        for no, line in enumerate(text.splitlines(), 1):
            if rx.search(line):
                if len(line) > MAX_MATCH_LINE:
                    line = line[:MAX_MATCH_LINE] + " [...]"
                out.append(f"{rel}:{no}:{line}")
                hits += 1
                if hits >= 1000:
                    break
    return out


def run_search(ctx: ToolContext, pattern: str, path: str, *, literal: bool, ignore_case: bool,
               include: str | None, use_rg: bool = True) -> str:
    """The shared body of grep and search: matches as ``path:line:text``, capped."""
    if not pattern:
        raise ToolError("the search pattern is empty")
    if "\x00" in pattern or (include and "\x00" in include):
        raise ToolError("the search pattern contains a NUL byte")
    if not _encodable(pattern) or (include and not _encodable(include)):
        raise ToolError("the search pattern is not valid UTF-8 text (a lone surrogate)")
    start = resolve_path(ctx, path, default=".")
    if not start.exists():
        raise ToolError(f"'{relative(ctx, start)}' does not exist")
    include = include.strip() if include else None
    rg = ripgrep() if use_rg else None
    if rg is not None:
        lines = _grep_rg(ctx, rg, start, pattern, literal, ignore_case, include)
    else:
        lines = _grep_python(ctx, start, pattern, literal, ignore_case, include)
    lines.sort(key=_sort_key)
    what = f"{'text' if literal else 'pattern'} {pattern[:100]!r}"
    if not lines:
        return f"ok: no matches for {what}"
    files = {ln.split(":", 1)[0] for ln in lines}
    shown = lines[:MAX_MATCHES]
    body = "\n".join(shown)
    if len(lines) > len(shown):
        body += f"\n[... {len(lines) - len(shown)} more matches; narrow the search with path or include]"
    head = f"ok: {len(lines)} match{'es' if len(lines) != 1 else ''} for {what} in {len(files)} file{'s' if len(files) != 1 else ''}"
    return cap_text(f"{head}\n{body}", ctx.max_output_chars, "narrow the search with path or include")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sort_key(line: str) -> tuple[str, int]:
    parts = line.split(":", 2)
    try:
        return parts[0], int(parts[1])
    except (IndexError, ValueError):
        return line, 0


class Grep(Tool):
    name = "grep"
    aliases = ("grep_search", "rg", "regex_search")
    description = "Search file contents with a regular expression; prints path:line:text. Honours .gitignore."
    arg_aliases = {"glob": "include", "files": "include", "file_pattern": "include"}

    class Params(ToolParams):
        pattern: str
        """Regular expression (ripgrep/Python syntax)."""
        path: str = "."
        """File or folder to search, relative to the workspace root."""
        include: str | None = None
        """Only files matching this pattern, e.g. '*.py'."""
        ignore_case: bool = False
        """Match upper and lower case alike."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        return run_search(ctx, params.pattern, params.path, literal=False,
                          ignore_case=params.ignore_case, include=params.include)


class Search(Tool):
    name = "search"
    aliases = ("search_text", "find_text", "search_files")
    description = "Search file contents for literal text (no regex); prints path:line:text. Honours .gitignore."
    arg_aliases = {"glob": "include", "files": "include", "file_pattern": "include"}

    class Params(ToolParams):
        query: str
        """The exact text to look for."""
        path: str = "."
        """File or folder to search, relative to the workspace root."""
        include: str | None = None
        """Only files matching this pattern, e.g. '*.py'."""
        ignore_case: bool = False
        """Match upper and lower case alike."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        return run_search(ctx, params.query, params.path, literal=True,
                          ignore_case=params.ignore_case, include=params.include)


TOOLS: tuple[type[Tool], ...] = (Glob, Grep, Search)
