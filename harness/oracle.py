"""Reference solutions: the ``.meta`` example files mapped onto the workspace's solution paths.

The ``oracle`` agent writes these into the workspace through the same path a model's tools
use; if the harness is sound, every exercise then passes. The mapping per language:

- Java: ``.meta/src/reference/java/X.java`` -> ``src/main/java/X.java``, for the listed
  example files and every other reference class (helpers such as ``Frame.java``), except
  read-only editor files (e.g. exception classes), which the workspace already has and
  no agent may write.
- Rust: ``.meta/example.rs`` -> ``src/lib.rs``. A reference manifest
  (``.meta/Cargo-example.toml``) is not written: manifests never come from a workspace;
  the oracle's test runs take it from ``.meta`` (``Language.reference_build_files``).
- Everything else (C++, Go, JavaScript, Python): each example file goes onto the solution
  file with the same extension (``example.cpp`` -> ``x.cpp``, ``proof.ci.js`` -> ``x.js``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from localcode.errors import DatasetError
from localcode.harness.dataset import Exercise

JAVA_REFERENCE_DIR = ".meta/src/reference/java"
JAVA_MAIN_DIR = "src/main/java"


def _suffix(rel: str) -> str:
    name = PurePosixPath(rel).name
    # proof.ci.js -> .js, example.h -> .h
    return PurePosixPath(name).suffix


def reference_files(exercise: Exercise) -> dict[str, Path]:
    """Workspace-relative destination -> absolute source file of the reference solution.

    Raises DatasetError when an example file has no solution file to go onto.
    """
    base = exercise.path
    hidden = set(exercise.hidden_files)
    editor = set(exercise.editor_files)
    out: dict[str, Path] = {}

    if exercise.language == "java":
        sources = list(exercise.example_files)
        ref_dir = base / JAVA_REFERENCE_DIR
        if ref_dir.is_dir():
            for p in sorted(ref_dir.rglob("*.java")):
                rel = p.relative_to(base).as_posix()
                if rel not in sources:
                    sources.append(rel)
        for rel in sources:
            if not rel.startswith(JAVA_REFERENCE_DIR + "/"):
                raise DatasetError(f"{exercise.id}: example {rel} is not under {JAVA_REFERENCE_DIR}")
            dest = JAVA_MAIN_DIR + rel[len(JAVA_REFERENCE_DIR):]
            if dest in editor:
                continue  # read-only for the agent, and the workspace already has it
            out[dest] = base / rel
    else:
        for rel in exercise.example_files:
            suffix = _suffix(rel)
            candidates = [s for s in exercise.solution_files if _suffix(s) == suffix]
            if len(candidates) > 1:
                stem = PurePosixPath(rel).name.split(".")[0]
                named = [c for c in candidates if PurePosixPath(c).name.split(".")[0] == stem]
                candidates = named
            if len(candidates) != 1:
                raise DatasetError(
                    f"{exercise.id}: cannot map example {rel} onto one solution file "
                    f"(candidates: {', '.join(exercise.solution_files)})"
                )
            out[candidates[0]] = base / rel

    for dest in out:
        if dest in hidden or dest.startswith(".") or ".." in PurePosixPath(dest).parts:
            raise DatasetError(f"{exercise.id}: reference file would overwrite {dest}")
    return out
