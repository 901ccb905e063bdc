"""Staged flows: the run moves through named stages, each with its own tools.

A flow is a list of ``FlowStage`` (name, instructions, allowed_tools, blocked_tools),
either a preset named by ``task_flow_mode`` or the config's own ``flow``. The model moves
to the next stage by calling ``flow_stage_done``. A call to a tool the stage does not
allow is answered ``error: tool X is not available in stage Y; allowed: ...``; the tool
list the model sees stays the same in every stage, so the prompt prefix (and the KV
cache) survives a stage change. ``flow_stage_done`` and ``think`` are allowed in every stage.

The current stage's instructions, and the task list recorded by ``plan_tasks``, are
part of the system prompt; ``flow_stage_done``'s result repeats them for the new stage.
See docs/TASK_FLOW.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from localcode.agent.state import AgentState, PlannedTask
from localcode.config import AgentConfig, FlowStage
from localcode.errors import ConfigError

ALWAYS_ALLOWED = ("flow_stage_done", "think")
"""Tools no stage can block: without them a stage could not end."""

FLOW_TOOLS = ("flow_stage_done", "plan_tasks")
"""Tools added to the agent's tool list when a flow is active."""

_READ_ONLY = ["ls", "read", "batch_read", "glob", "grep", "search", "think", "ask_questions"]


def preset(name: str) -> list[FlowStage]:
    """The stages of the preset ``name``; ``ConfigError`` for an unknown name."""
    if name == "context-plan-implement":
        return [
            FlowStage(
                name="context",
                instructions=(
                    "Stage 1 of 3, context: read the files the task is about and find what must change. "
                    "Do not change files yet. When you know enough, call {{tool:flow_stage_done}} "
                    "with a short summary of what you found."
                ),
                allowed_tools=list(_READ_ONLY),
            ),
            FlowStage(
                name="plan",
                instructions=(
                    "Stage 2 of 3, plan: record the changes to make with {{tool:plan_tasks}} "
                    "(one task per change, naming its files), then call {{tool:flow_stage_done}}."
                ),
                allowed_tools=[*_READ_ONLY, "plan_tasks", "plan_solution"],
            ),
            FlowStage(
                name="implement",
                instructions=(
                    "Stage 3 of 3, implement: carry out the planned tasks one by one with the editing tools, "
                    "check the result, then call {{tool:finish}}."
                ),
            ),
        ]
    if name == "plan-implement":
        return [
            FlowStage(
                name="plan",
                instructions=(
                    "Stage 1 of 2, plan: read what you need, record the changes to make with "
                    "{{tool:plan_tasks}}, then call {{tool:flow_stage_done}}. Do not change files yet."
                ),
                allowed_tools=[*_READ_ONLY, "plan_tasks", "plan_solution"],
            ),
            FlowStage(
                name="implement",
                instructions=(
                    "Stage 2 of 2, implement: carry out the planned tasks with the editing tools, "
                    "then call {{tool:finish}}."
                ),
            ),
        ]
    raise ConfigError(f"unknown task_flow_mode '{name}': use one of {', '.join(PRESETS)} or give a custom flow")


PRESETS = ("context-plan-implement", "plan-implement")
"""Names ``task_flow_mode`` accepts."""


def flow_stages(config: AgentConfig) -> list[FlowStage] | None:
    """The config's flow: its own ``flow``, else the ``task_flow_mode`` preset, else None."""
    if config.flow:
        names = [s.name for s in config.flow]
        if len(set(names)) != len(names):
            raise ConfigError(f"flow: stage names must be unique, got {names}")
        return list(config.flow)
    if config.task_flow_mode and config.task_flow_mode not in ("none", "off"):
        return preset(config.task_flow_mode)
    return None


def format_tasks(tasks: Sequence[PlannedTask]) -> str:
    """The task list as the model sees it."""
    lines = []
    for i, t in enumerate(tasks, 1):
        line = f"{i}. [{'x' if t.done else ' '}] {t.title}"
        if t.files:
            line += f" (files: {', '.join(t.files)})"
        if t.details:
            line += f" — {t.details}"
        lines.append(line)
    return "\n".join(lines)


class FlowTracker:
    """The current stage of a run's flow (its index lives in ``AgentState.flow_index``)."""

    def __init__(self, stages: list[FlowStage], state: AgentState) -> None:
        if not stages:
            raise ConfigError("flow: a flow needs at least one stage")
        self.stages = stages
        self.state = state
        state.flow_index = min(max(state.flow_index, 0), len(stages) - 1)

    @property
    def stage(self) -> FlowStage:
        return self.stages[self.state.flow_index]

    @property
    def is_last(self) -> bool:
        return self.state.flow_index >= len(self.stages) - 1

    def allows(self, tool: str) -> bool:
        """Whether the tool (canonical name) may run in the current stage."""
        if tool in ALWAYS_ALLOWED:
            return True
        stage = self.stage
        if tool in stage.blocked_tools:
            return False
        return stage.allowed_tools is None or tool in stage.allowed_tools

    def blocked_message(self, tool: str, exposed_name: str, exposed: dict[str, str]) -> str:
        """The error for a call to a tool this stage does not allow.

        ``exposed`` maps canonical names of the configured tools to the names the model sees.
        """
        allowed = [name for canon, name in exposed.items() if self.allows(canon)]
        return (f"error: tool {exposed_name} is not available in stage {self.stage.name}; "
                f"allowed: {', '.join(allowed)}")

    def instructions(self) -> str:
        """The system-prompt section for the current stage (with the task list, if any)."""
        stage = self.stage
        text = f"Current stage: {stage.name}."
        if stage.instructions:
            text += f"\n{stage.instructions}"
        if self.state.tasks:
            text += f"\nPlanned tasks:\n{format_tasks(self.state.tasks)}"
        return text

    def advance(self, summary: str) -> str:
        """End the current stage; returns the text for flow_stage_done's result."""
        done = self.stage.name
        self.state.stage_summaries[done] = summary
        if self.is_last:
            return f"ok: stage {done} is the last stage; finish the task and call {{{{tool:finish}}}} when done"
        self.state.flow_index += 1
        self.state.event("flow_stage", done=done, to=self.stage.name, summary=summary[:500])
        return f"ok: stage {done} done; now in stage {self.stage.name}.\n{self.instructions()}"
