"""The benchmark dataset: Exercism exercises in the polyglot-benchmark layout.

``<root>/<lang>/exercises/practice/<name>/.meta/config.json`` names the solution, test,
example (reference solution) and invalidator files of each exercise.

Every file of an exercise folder outside its dot-folders (``.meta/``, ``.docs/``,
``.approaches/``, ...) falls in one of two sets, decided here once:

- ``hidden_files``: the tests and what only the tests need (the files listed under
  ``test``, test-only ``editor`` files such as Go's ``cases_test.go``, and per-language
  test support such as C++'s ``test/catch.hpp`` or extra ``*_test.go`` files). The agent
  does not see them under Aider's protocol; they are copied in fresh before every test run.
- ``workspace_files``: solution stubs and build files (``Cargo.toml``, ``go.mod``,
  ``CMakeLists.txt``, ``package.json``, ``build.gradle``, ...) and non-test editor files
  (e.g. Java exception classes): what the agent's workspace starts with.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from localcode.errors import DatasetError


TEST_SUPPORT_PATTERNS: dict[str, tuple[str, ...]] = {
    "cpp": ("test/*", "*_test.cpp"),
    "go": ("*_test.go",),
    "java": ("src/test/*",),
    "javascript": ("*.spec.js", "*.test.js"),
    "python": ("*_test.py", "test_*.py"),
    "rust": ("tests/*",),
}
"""Files (relative paths, fnmatch; ``*`` crosses ``/``) that belong to the tests even when
``.meta/config.json`` does not list them."""


class Exercise(BaseModel):
    """One exercise. Paths in the file lists are relative to ``path``."""

    language: str
    name: str
    path: Path
    instructions: str
    """``.docs/introduction.md`` + ``instructions.md`` + ``instructions.append.md``, joined."""
    solution_files: list[str]
    test_files: list[str]
    example_files: list[str] = Field(default_factory=list)
    """Reference solution(s) under ``.meta/``; never shown to an agent."""
    invalidator_files: list[str] = Field(default_factory=list)
    editor_files: list[str] = Field(default_factory=list)
    """Read-only files the tests need (e.g. Go's ``cases_test.go``)."""
    hidden_files: list[str] = Field(default_factory=list)
    """Test files and test-only support files: hidden from the agent by default, copied in
    fresh before every test run. Includes every file of ``test_files``."""
    workspace_files: list[str] = Field(default_factory=list)
    """Files a fresh workspace starts with: solution stubs, build files, non-test editor files."""

    @property
    def id(self) -> str:
        return f"{self.language}/{self.name}"


class DatasetProblem(BaseModel):
    """An exercise folder that could not be loaded."""

    path: Path
    """The exercise folder."""
    reason: str
    """What is wrong with it."""


@dataclass
class DatasetLoad:
    """The result of reading a dataset: the good exercises and the skipped ones."""

    root: Path
    exercises: list[Exercise] = field(default_factory=list)
    problems: list[DatasetProblem] = field(default_factory=list)

    def by_id(self) -> dict[str, Exercise]:
        return {e.id: e for e in self.exercises}


def resolve_dataset_dir(option: str | Path | None = None) -> Path:
    """The dataset folder: ``--dataset``, else ``$LOCALCODE_DATASET``, else the setup default.

    Raises DatasetError when the folder does not exist.
    """
    from localcode import paths

    raw = option or os.environ.get("LOCALCODE_DATASET") or paths.default_dataset_dir()
    root = Path(raw).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset not found at {root}: run 'localcode setup' or pass --dataset")
    return root.resolve()


def _is_test_support(language: str, rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, p) for p in TEST_SUPPORT_PATTERNS.get(language, ()))


def _exercise_files(folder: Path) -> list[str]:
    """Relative paths of all files outside top-level dot-folders, sorted."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if here == folder:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        dirnames.sort()
        for fn in filenames:
            out.append((here / fn).relative_to(folder).as_posix())
    return sorted(out)


def load_exercise(language: str, folder: Path) -> Exercise:
    """Read one exercise folder. Raises DatasetError with the reason when it is malformed."""
    config_path = folder / ".meta" / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{config_path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{config_path}: not valid JSON ({e})") from None
    files = config.get("files") if isinstance(config, dict) else None
    if not isinstance(files, dict):
        raise DatasetError(f"{config_path}: no 'files' object")
    lists: dict[str, list[str]] = {}
    for key in ("solution", "test", "example", "invalidator", "editor"):
        value = files.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DatasetError(f"{config_path}: files.{key} is not a list of paths")
        lists[key] = value
    for key in ("solution", "test"):
        if not lists[key]:
            raise DatasetError(f"{config_path}: files.{key} is missing or empty")
    for key, rels in lists.items():
        for rel in rels:
            p = folder / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise DatasetError(f"{config_path}: files.{key} path {rel!r} leaves the exercise")
            if not p.is_file():
                raise DatasetError(f"{folder}: files.{key} lists {rel}, which does not exist")
    docs = folder / ".docs"
    if not (docs / "instructions.md").is_file():
        raise DatasetError(f"{docs / 'instructions.md'}: missing")
    # Plain concatenation, exactly as Aider's benchmark builds the first prompt.
    instructions = "".join(
        (docs / n).read_text(encoding="utf-8")
        for n in ("introduction.md", "instructions.md", "instructions.append.md")
        if (docs / n).is_file()
    )
    tests = set(lists["test"])
    solution = set(lists["solution"])
    hidden: list[str] = []
    visible: list[str] = []
    for rel in _exercise_files(folder):
        if rel in solution:
            visible.append(rel)
        elif rel in tests or _is_test_support(language, rel):
            hidden.append(rel)
        else:
            visible.append(rel)
    return Exercise(
        language=language,
        name=folder.name,
        path=folder.resolve(),
        instructions=instructions,
        solution_files=lists["solution"],
        test_files=lists["test"],
        example_files=lists["example"],
        invalidator_files=lists["invalidator"],
        editor_files=lists["editor"],
        hidden_files=hidden,
        workspace_files=visible,
    )


def load_dataset(root: Path, warn: bool = True) -> DatasetLoad:
    """Every exercise under ``root/<lang>/exercises/practice/``, sorted by id.

    A malformed exercise is skipped and listed in ``problems`` (and, with ``warn``, reported
    on stderr with its path). Raises DatasetError when ``root`` holds no exercise at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset not found at {root}: run 'localcode setup' or pass --dataset")
    load = DatasetLoad(root=root.resolve())
    for lang_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        practice = lang_dir / "exercises" / "practice"
        if not practice.is_dir():
            continue
        for folder in sorted(p for p in practice.iterdir() if p.is_dir()):
            try:
                load.exercises.append(load_exercise(lang_dir.name, folder))
            except DatasetError as e:
                load.problems.append(DatasetProblem(path=folder, reason=str(e)))
                if warn:
                    print(f"warning: skipping malformed exercise {folder}: {e}", file=sys.stderr)
    if not load.exercises:
        raise DatasetError(
            f"no exercises found under {root} (expected <lang>/exercises/practice/<name>/.meta/config.json): "
            "run 'localcode setup' or pass --dataset"
        )
    return load


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder`` when it is the top of a git work tree, else None."""
    if not (folder / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def content_hash(root: Path) -> str:
    """sha256 over the sorted relative paths and bytes of every file under ``root``.

    The result is cached in ``<cache_dir>/dataset-hashes.json``, keyed by the path and a
    fingerprint of every file's size and mtime, so repeated runs only stat the files.
    """
    from localcode import paths

    root = Path(root).resolve()
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for fn in filenames:
            p = Path(dirpath) / fn
            files.append((p.relative_to(root).as_posix(), p))
    files.sort()
    fp = hashlib.sha256()
    for rel, p in files:
        st = p.stat()
        fp.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    fingerprint = fp.hexdigest()
    cache_file = paths.cache_dir() / "dataset-hashes.json"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(str(root))
    if isinstance(entry, dict) and entry.get("fingerprint") == fingerprint:
        return str(entry["sha256"])
    h = hashlib.sha256()
    for rel, p in files:
        h.update(rel.encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    digest = h.hexdigest()
    cache[str(root)] = {"fingerprint": fingerprint, "sha256": digest}
    try:
        from localcode.harness.results import atomic_write_text

        atomic_write_text(cache_file, json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only cache only costs time
    return digest


def dataset_identity(root: Path) -> tuple[str | None, str | None]:
    """``(git commit, content hash)``: the commit when ``root`` is a git checkout, else the hash."""
    commit = git_commit(Path(root))
    if commit:
        return commit, None
    return None, content_hash(Path(root))
