"""The agent's workspace: a fresh folder per task holding only what the agent may see.

A workspace starts with ``Exercise.workspace_files`` (solution stubs, build files, non-test
editor files). It never holds ``.meta/`` (the reference solution), ``.docs/`` or
``.approaches/``. By default (Aider's protocol) it holds no test files either; with
``visible_tests`` they are copied in read-only.

Before every test run ``restore_tests`` copies every test file in fresh from the dataset,
so an agent's edits to tests cannot help. After the run, when tests are hidden,
``strip_tests`` removes them and the build outputs again, so the next try sees only the
solution and build files.

Workspaces live under the sandbox root (``<run_dir>/workspaces/<lang>/<name>``) so one
bind mount serves a whole run.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path, PurePosixPath

from localcode.harness.dataset import Exercise

_DIR_MODE = 0o755
_FILE_MODE = 0o644
_EXEC_MODE = 0o755
_READONLY_MODE = 0o444


def workspace_dir(root: Path, exercise: Exercise) -> Path:
    """Where the workspace of ``exercise`` lives under the sandbox root."""
    return Path(root) / exercise.language / exercise.name


def protected_paths(exercise: Exercise) -> set[str]:
    """Workspace-relative paths the agent's tools must never write or delete.

    The tests and their support files (whether hidden or visible), the read-only editor
    files and the invalidators (``go.mod``, ``build.gradle``): the test runner copies all
    of them fresh before every run, so a write would be lost; refusing it tells the model.
    """
    return set(exercise.hidden_files) | set(exercise.editor_files) | set(exercise.invalidator_files)


def is_protected(exercise: Exercise, rel: str | Path) -> bool:
    """True when the workspace-relative path ``rel`` is protected (see ``protected_paths``)."""
    norm = PurePosixPath(os.path.normpath(PurePosixPath(rel).as_posix())).as_posix()
    return norm in protected_paths(exercise)


def _copy(src: Path, dest: Path, mode: int | None = None) -> None:
    """Copy ``src`` over ``dest`` (even a read-only ``dest``), with a mode the sandbox can use."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _make_dirs_shared(dest.parent)
    if dest.is_symlink() or dest.exists():
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        else:
            dest.unlink()
    shutil.copyfile(src, dest)
    if mode is None:
        executable = src.stat().st_mode & stat.S_IXUSR
        mode = _EXEC_MODE if executable else _FILE_MODE
    os.chmod(dest, mode)


def _make_dirs_shared(folder: Path) -> None:
    # The sandbox runs tests as another (non-root) user that must be able to read them.
    try:
        os.chmod(folder, _DIR_MODE)
    except OSError:
        pass


def create_workspace(exercise: Exercise, dest: Path, visible_tests: bool = False) -> Path:
    """Make a fresh workspace for ``exercise`` at ``dest`` (anything there is removed).

    Returns ``dest``. Raises OSError when the dataset cannot be read or ``dest`` written.
    """
    dest = Path(dest)
    if dest.exists():
        remove_tree(dest)
    dest.mkdir(parents=True)
    _make_dirs_shared(dest)
    for rel in exercise.workspace_files:
        _copy(exercise.path / rel, dest / rel)
    if visible_tests:
        for rel in exercise.hidden_files:
            _copy(exercise.path / rel, dest / rel, _READONLY_MODE)
    return dest


def restore_tests(exercise: Exercise, workspace: Path, read_only: bool = True) -> None:
    """Copy every test file of ``exercise`` fresh from the dataset into ``workspace``."""
    for rel in exercise.hidden_files:
        _copy(exercise.path / rel, Path(workspace) / rel, _READONLY_MODE if read_only else _FILE_MODE)


def strip_tests(exercise: Exercise, workspace: Path) -> None:
    """Remove the test files and the build outputs from ``workspace``.

    Folders left empty by removing test files (e.g. C++'s ``test/``) go too.
    """
    workspace = Path(workspace)
    for rel in exercise.hidden_files:
        p = workspace / rel
        if p.is_symlink() or p.is_file():
            p.unlink()
        parent = p.parent
        while parent != workspace and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    clean_build_outputs(exercise, workspace)


def clean_build_outputs(exercise: Exercise, workspace: Path) -> None:
    """Remove what test runs create in ``workspace`` (build folders, caches, lock files)."""
    workspace = Path(workspace)
    from localcode.harness.languages import LANGUAGES

    language = LANGUAGES.get(exercise.language)
    for name in language.artifact_paths if language else ():
        p = workspace / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            remove_tree(p)
    if exercise.language == "python":
        for cache in workspace.rglob("__pycache__"):
            remove_tree(cache)


def remove_tree(path: Path) -> None:
    """``shutil.rmtree`` that also removes read-only files and folders."""

    def onerror(func, p, _exc):  # type: ignore[no-untyped-def]
        os.chmod(p, stat.S_IRWXU)
        parent = os.path.dirname(p)
        if parent:
            os.chmod(parent, stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
        func(p)

    if not (Path(path).exists() or Path(path).is_symlink()):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=onerror)
    else:
        shutil.rmtree(path, onerror=onerror)


def listing(workspace: Path) -> list[str]:
    """Sorted workspace-relative paths of every file in ``workspace``."""
    workspace = Path(workspace)
    return sorted(p.relative_to(workspace).as_posix() for p in workspace.rglob("*") if p.is_file())
