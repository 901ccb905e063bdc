"""Workspace path safety: every path a tool touches resolves inside the workspace.

The rules, each refused with a ``ToolError`` the model sees:

- a NUL byte, an empty path, or a name too long for the file system;
- ``..`` or an absolute path that leads outside the workspace (absolute paths inside
  it are fine);
- a symlink whose target lies outside (resolved before any check, so nothing is ever
  read or written through it);
- devices, FIFOs and sockets (never opened: reading a FIFO would block forever);
- files larger than ``ToolContext.max_read_bytes`` and content larger than
  ``max_write_bytes``;
- writes to protected paths (a benchmark's test files), and writes the context's
  ``write_policy`` refuses (in a benchmark: files the test run would not use).

Writes are atomic: a temp file in the target's (resolved) folder, then ``os.replace``.

``walk`` lists a tree honouring ``.gitignore`` files (pathspec), never following
symlinks and never entering ``.git``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

from localcode.agent.tools.base import ToolContext, ToolError


def _display(raw: str, limit: int = 80) -> str:
    text = raw.replace("\x00", "\\0").replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_path(ctx: ToolContext, raw: object, *, default: str | None = None) -> Path:
    """The real (symlink-free) absolute path for ``raw``, checked to lie inside the workspace.

    ``default`` is used when ``raw`` is empty (e.g. ``"."`` for listing tools).
    The path need not exist. Raises ``ToolError`` for every rule in the module docstring
    except sizes and protection (see ``check_writable`` and ``read_text``).
    """
    if not isinstance(raw, str):
        raise ToolError(f"path must be a string, not {type(raw).__name__}")
    if "\x00" in raw:
        raise ToolError(f"path '{_display(raw)}' contains a NUL byte")
    text = raw.strip()
    if not text:
        if default is None:
            raise ToolError("path is empty; give a file path relative to the workspace")
        text = default
    ws = ctx.workspace
    candidate = Path(text) if os.path.isabs(text) else ws / text
    try:
        real = Path(os.path.realpath(candidate))
    except (OSError, ValueError) as e:
        raise ToolError(f"path '{_display(raw)}' cannot be resolved: {e}") from None
    if real != ws and ws not in real.parents:
        lexical = Path(os.path.normpath(candidate))
        if lexical == ws or ws in lexical.parents:
            raise ToolError(
                f"path '{_display(raw)}' goes through a symlink that leads outside the workspace; it cannot be used"
            )
        raise ToolError(
            f"path '{_display(raw)}' is outside the workspace; use a path relative to the workspace root"
        )
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return real
    except NotADirectoryError:
        raise ToolError(f"path '{_display(raw)}' goes through a file as if it were a folder") from None
    except OSError as e:
        if e.errno == 36:  # ENAMETOOLONG
            raise ToolError(f"path '{_display(raw)}' is too long") from None
        raise ToolError(f"path '{_display(raw)}' cannot be accessed: {e.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise ToolError(f"'{_display(raw)}' is not a regular file or folder (a device, FIFO or socket); it cannot be used")
    return real


def relative(ctx: ToolContext, path: Path) -> str:
    """The workspace-relative POSIX form of a resolved path (``.`` for the root)."""
    rel = path.relative_to(ctx.workspace).as_posix()
    return rel or "."


def is_protected(ctx: ToolContext, rel: str) -> bool:
    """Whether a workspace-relative path is protected (itself or under a protected folder)."""
    return any(rel == p or rel.startswith(p + "/") for p in ctx.protected if p)


def check_writable(ctx: ToolContext, path: Path, *, size: int | None = None) -> str:
    """Refuse a write to ``path`` (already resolved) that breaks a rule; return its relative path."""
    rel = relative(ctx, path)
    if rel == ".":
        raise ToolError("cannot write the workspace root; give a file path")
    if is_protected(ctx, rel):
        raise ToolError(f"'{rel}' is a protected file (a test file) and cannot be changed; change the solution instead")
    if ctx.write_policy is not None:
        refusal = ctx.write_policy(rel)
        if refusal:
            raise ToolError(refusal)
    if path.is_dir():
        raise ToolError(f"'{rel}' is a folder; give a file path")
    if size is not None and size > ctx.max_write_bytes:
        raise ToolError(f"content for '{rel}' is {size} bytes, over the {ctx.max_write_bytes}-byte write limit")
    return rel


def read_bytes(ctx: ToolContext, path: Path) -> bytes:
    """Read a resolved regular file, refusing special files and files over the read limit."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    rel = relative(ctx, path)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ToolError(f"'{rel}' does not exist; use ls or glob to find files") from None
    except IsADirectoryError:
        raise ToolError(f"'{rel}' is a folder; use ls to list it") from None
    except OSError as e:
        raise ToolError(f"'{rel}' cannot be opened: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ToolError(f"'{rel}' is a folder; use ls to list it")
        raise ToolError(f"'{rel}' is not a regular file; it cannot be read")
    if st.st_size > ctx.max_read_bytes:
        os.close(fd)
        raise ToolError(
            f"'{rel}' is {st.st_size} bytes, over the {ctx.max_read_bytes}-byte read limit; use grep to find the lines you need"
        )
    with os.fdopen(fd, "rb") as f:
        data = f.read(ctx.max_read_bytes + 1)
    if len(data) > ctx.max_read_bytes:
        raise ToolError(f"'{rel}' is over the {ctx.max_read_bytes}-byte read limit; use grep to find the lines you need")
    return data


def is_binary(data: bytes) -> bool:
    """A NUL byte in the first 8 KiB marks a binary file (git's rule)."""
    return b"\x00" in data[:8192]


def read_text(ctx: ToolContext, path: Path) -> str:
    """Read a resolved text file (UTF-8, undecodable bytes replaced); refuse binary files."""
    data = read_bytes(ctx, path)
    if is_binary(data):
        raise ToolError(f"'{relative(ctx, path)}' is a binary file; it cannot be shown as text")
    return data.decode("utf-8", errors="replace")


def atomic_write(ctx: ToolContext, path: Path, text: str) -> bool:
    """Write ``text`` to the resolved ``path`` atomically; True when the file was created.

    Checks protection and the size limit, creates missing folders (inside the
    workspace only) and keeps an existing file's permissions. Records the change in
    ``ctx.changed_files``.
    """
    data = text.encode("utf-8", errors="surrogatepass")
    rel = check_writable(ctx, path, size=len(data))
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ToolError(f"cannot create '{rel}': a file stands where a folder is needed") from None
    except NotADirectoryError:
        raise ToolError(f"cannot create '{rel}': a file stands where a folder is needed") from None
    # The folder may have been swapped for a symlink since resolve_path; check again.
    real_parent = Path(os.path.realpath(parent))
    if real_parent != ctx.workspace and ctx.workspace not in real_parent.parents:
        raise ToolError(f"'{rel}' is outside the workspace")
    created = True
    mode = 0o644
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        created = False
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"'{rel}' is not a regular file; it cannot be written")
        mode = stat.S_IMODE(st.st_mode)
    fd, tmp = tempfile.mkstemp(dir=real_parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, real_parent / path.name)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    ctx.changed_files.add(rel)
    return created


def delete_file(ctx: ToolContext, path: Path) -> None:
    """Delete a resolved regular file after the protection check; records the change."""
    rel = check_writable(ctx, path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ToolError(f"'{rel}' does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise ToolError(f"'{rel}' is not a regular file; it cannot be deleted")
    os.unlink(path)
    ctx.changed_files.add(rel)


@dataclass(frozen=True)
class Entry:
    """One entry found by ``walk``."""

    rel: str
    """Workspace-relative POSIX path."""
    kind: str
    """``file``, ``dir``, ``link`` or ``other``."""
    size: int


class GitIgnore:
    """The ``.gitignore`` rules of a workspace, read lazily folder by folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, folder: str) -> pathspec.GitIgnoreSpec | None:
        if folder not in self._specs:
            file = self.root / folder / ".gitignore"
            spec = None
            try:
                st = os.lstat(file)
                if stat.S_ISREG(st.st_mode) and st.st_size < 1_000_000:
                    spec = pathspec.GitIgnoreSpec.from_lines(file.read_text("utf-8", errors="replace").splitlines())
            except OSError:
                pass
            self._specs[folder] = spec
        return self._specs[folder]

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """Whether git would ignore ``rel``; the deepest ``.gitignore`` with an opinion wins."""
        parts = rel.split("/")
        verdict: bool | None = None
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth]) or "."
            spec = self._spec(folder)
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            result = spec.check_file(sub)
            if result.include is not None:
                verdict = result.include
        return bool(verdict)


def walk(
    ctx: ToolContext,
    start: Path,
    *,
    gitignore: bool = True,
    max_depth: int | None = None,
    limit: int = 50_000,
) -> Iterator[Entry]:
    """Entries under the resolved folder ``start``, depth first in name order.

    Never follows symlinks, never enters ``.git``, skips what ``.gitignore`` ignores
    (when ``gitignore``) and stops after ``limit`` entries.
    """
    rules = GitIgnore(ctx.workspace) if gitignore else None
    count = 0
    stack: list[tuple[Path, int]] = [(start, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[Path] = []
        for e in entries:
            if e.name == ".git":
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                kind = "link"
            elif stat.S_ISDIR(st.st_mode):
                kind = "dir"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            else:
                kind = "other"
            rel = Path(e.path).relative_to(ctx.workspace).as_posix()
            if rules is not None and rules.ignored(rel, kind == "dir"):
                continue
            yield Entry(rel, kind, st.st_size if kind == "file" else 0)
            count += 1
            if count >= limit:
                return
            if kind == "dir" and (max_depth is None or depth + 1 < max_depth):
                subdirs.append(Path(e.path))
        stack.extend((d, depth + 1) for d in reversed(subdirs))
