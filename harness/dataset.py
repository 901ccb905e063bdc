"""The benchmark dataset: Exercism exercises in the polyglot-benchmark layout.

``<root>/<lang>/exercises/practice/<name>/.meta/config.json`` names the solution, test,
example (reference solution) and invalidator files of each exercise.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


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

    @property
    def id(self) -> str:
        return f"{self.language}/{self.name}"
