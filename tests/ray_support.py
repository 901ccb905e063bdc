"""Helpers for the Ray tests that run inside Ray workers (not a test module).

The test cluster's nodes are started with this folder on ``PYTHONPATH``, so a
``functools.partial(scripted_solver, ...)`` pickled in the test unpickles on every node.

``scripted_solver`` gives every task its own scripted model: the reference solution is
written through the agent's real ``write`` tool on the planned try (or never). A task
named in ``stall_on`` stalls in that try when the file ``<control>/stall-<task>`` exists:
the first worker to get there claims the file (an atomic rename, so only once), writes its
process id to ``<control>/stalled-<task>`` and sleeps, so the test can kill that worker
mid-task; the rerun elsewhere finds no file and goes through.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from localcode.backends.scripted import ScriptedChatModel
from localcode.config import parse_agent
from localcode.harness.agent_solver import ModelSolver
from localcode.harness.oracle import reference_files


def _finish(summary: str) -> dict:
    return {"tool_calls": [{"name": "finish", "arguments": {"status": "done", "summary": summary}}]}


def _stall(control: Path, task_id: str) -> None:
    flag = control / f"stall-{task_id.replace('/', '--')}"
    claimed = flag.with_name(flag.name + ".claimed")
    try:
        os.rename(flag, claimed)
    except FileNotFoundError:
        return
    (control / f"stalled-{task_id.replace('/', '--')}").write_text(str(os.getpid()))
    time.sleep(300)  # the test kills this process long before


def script_for(exercise: Any, solve_on: int | None, tries: int, stall: tuple[Path, int] | None = None) -> list:
    """The model's responses over all tries: write the reference files on ``solve_on``, else give up.
    ``stall=(control, k)`` makes try k's first response stall once (see the module docstring)."""
    per_try: list[list[Any]] = []
    for t in range(1, tries + 1):
        if t == solve_on:
            writes = [{"name": "write", "arguments": {"path": dest, "content": src.read_text()}}
                      for dest, src in reference_files(exercise).items()]
            per_try.append([{"tool_calls": writes}, _finish("wrote the solution")])
            break
        per_try.append([_finish("no idea")])
    if stall is not None and stall[1] <= len(per_try):
        control, k = stall
        first = per_try[k - 1][0]

        def stalled(messages: Any, tools: Any) -> Any:
            _stall(control, exercise.id)
            return first

        per_try[k - 1][0] = stalled
    return [item for items in per_try for item in items]


class PlannedScripts(ModelSolver):
    """A model solver whose every task gets its own scripted model, following ``plan``."""

    def __init__(self, plan: dict[str, int | None], tries: int, control: Path | None = None,
                 stall_on: dict[str, int] | None = None) -> None:
        config = parse_agent({"tools": ["read", "write", "finish"], "max_turns": 4}, "scripted-test")
        super().__init__("scripted", config, ScriptedChatModel([]))
        self.plan = plan
        self.tries = tries
        self.control = control
        self.stall_on = stall_on or {}

    def start(self, exercise: Any, workspace: Path) -> Any:
        session = super().start(exercise, workspace)
        stall = (self.control, self.stall_on[exercise.id]) if self.control and exercise.id in self.stall_on else None
        session.model = ScriptedChatModel(script_for(exercise, self.plan[exercise.id], self.tries, stall))
        return session

    def info(self) -> dict[str, Any]:
        return {"kind": "scripted", "plan": self.plan}


def scripted_solver(plan: dict[str, int | None], tries: int, control: str | None = None,
                    stall_on: dict[str, int] | None = None) -> PlannedScripts:
    """The solver factory a ``WorkerSpec`` carries (and the one-process run uses)."""
    return PlannedScripts(plan, tries, Path(control) if control else None, stall_on)
