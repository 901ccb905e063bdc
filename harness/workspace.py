"""The agent's workspace: a fresh folder per task holding only what the agent may see.

A workspace starts with ``Exercise.workspace_files`` (solution stubs, build files, non-test
editor files). It never holds ``.meta/`` (the reference solution), ``.docs/`` or
``.approaches/``. By default (Aider's protocol) it holds no test files either; with
``visible_tests`` they are copied in read-only.

The tests never run in the workspace: each test run gets a pristine copy of the exercise
from the dataset onto which only the files the language carries (``carried_files``, from
``Language.carry`` in ``localcode.harness.languages``) are copied. ``write_refusal`` is the
same rule as the file tools see it: a write that the test run would not use is refused
with a message saying why. ``workspace_changes`` lists what the agent created, changed and
deleted against the exercise's starting files.

Workspaces live under the sandbox root (``<run_dir>/workspaces/<lang>/<name>``) so one
bind mount serves a whole run.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

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


def is_carried(exercise: Exercise, rel: str) -> bool:
    """True when the workspace file ``rel`` is carried into the test run.

    A file is carried when the language's table (``Language.carry``) says so, or when the
    exercise lists it as a solution file and it has the form of a source file of the
    language (so Rust's listed ``Cargo.toml`` is not carried).
    """
    from localcode.harness.languages import LANGUAGES, _glob

    language = LANGUAGES.get(exercise.language)
    if language is None:
        return False
    rel = PurePosixPath(os.path.normpath(PurePosixPath(rel).as_posix())).as_posix()
    if rel in exercise.hidden_files:
        return False
    if language.carries(rel):
        return True
    return rel in exercise.solution_files and any(_glob(p).fullmatch(rel) for p in language.carry)


def write_refusal(exercise: Exercise, rel: str) -> str | None:
    """Why the agent may not write the workspace path ``rel`` (None: it may).

    Test files are refused as protected; every other path the test run would not use
    (build and test configuration, files outside the solution's source folders) is refused
    with the language's rule, so the model learns it before it relies on such a file.
    """
    from localcode.harness.languages import LANGUAGES

    norm = PurePosixPath(os.path.normpath(PurePosixPath(rel).as_posix())).as_posix()
    if norm in protected_paths(exercise):
        return f"'{norm}' is a protected file (a test file) and cannot be changed; change the solution instead"
    if is_carried(exercise, norm):
        return None
    language = LANGUAGES.get(exercise.language)
    rule = language.carry_rule if language else "the solution files"
    files = ", ".join(f for f in exercise.solution_files if is_carried(exercise, f))
    return (f"'{norm}' would not be used by the test run, which takes only {rule}; "
            f"the tests run with the exercise's own configuration. Write the solution in {files}")


def redirect_target(exercise: Exercise, rel: str) -> str | None:
    """The solution file a misplaced write of ``rel`` means: the one carried solution file
    with ``rel``'s file name (``src/react.js`` → ``react.js``), or None (no such file, or
    more than one, or ``rel`` is fine as it is)."""
    norm = PurePosixPath(os.path.normpath(PurePosixPath(rel).as_posix()))
    if is_carried(exercise, norm.as_posix()):
        return None
    same = [f for f in exercise.solution_files if PurePosixPath(f).name == norm.name and is_carried(exercise, f)]
    return same[0] if len(same) == 1 else None


class WorkspaceChanges(BaseModel):
    """What the agent did to its workspace, against the exercise's starting files."""

    created: list[str] = Field(default_factory=list)
    """Files the workspace did not start with."""
    changed: list[str] = Field(default_factory=list)
    """Starting files with other content now."""
    deleted: list[str] = Field(default_factory=list)
    """Starting files that are gone."""
    carried: list[str] = Field(default_factory=list)
    """Workspace files copied into the test run (changed or not)."""
    not_carried: list[str] = Field(default_factory=list)
    """Created or changed files that the test run does not use."""


def workspace_changes(exercise: Exercise, workspace: Path) -> WorkspaceChanges:
    """Compare ``workspace`` with the exercise's starting files and apply the carry rule."""
    workspace = Path(workspace)
    start = set(exercise.workspace_files)
    tests = set(exercise.hidden_files)
    now = [rel for rel in listing(workspace) if rel not in tests]
    out = WorkspaceChanges()
    for rel in now:
        if rel not in start:
            out.created.append(rel)
        elif (workspace / rel).read_bytes() != (exercise.path / rel).read_bytes():
            out.changed.append(rel)
        if is_carried(exercise, rel) and not (workspace / rel).is_symlink():
            out.carried.append(rel)
    present = set(now)
    out.deleted = sorted(rel for rel in start if rel not in present)
    carried = set(out.carried)
    out.not_carried = [rel for rel in [*out.created, *out.changed] if rel not in carried]
    return out


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
