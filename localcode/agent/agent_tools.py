"""The agent-level tools: think, ask_agent, ask_questions, plan_solution, plan_tasks,
flow_stage_done and finish.

They work on the run's ``AgentState`` (``ctx.state``) rather than on files. The ones that
call the model (ask_questions, ask_agent) do it outside the conversation, and their
tokens are added to the run's usage through ``AgentState.record_side_call``.
"""

from __future__ import annotations

import dataclasses

from pydantic import Field

from localcode.agent import prompts
from localcode.agent.state import AgentState, PlannedTask
from localcode.agent.tools.base import Tool, ToolContext, ToolError, ToolParams, cap_text
from localcode.backends.base import ChatOptions
from localcode.errors import ConfigError, ModelError

MAX_AGENT_DEPTH = 2
"""Sub-agents may start sub-agents down to this depth (the main agent is depth 0)."""

SUB_AGENT_TOOLS = ("ls", "read", "batch_read", "glob", "grep", "search", "think", "finish")
"""The default tools of a sub-agent: look, think, answer."""

SUB_AGENT_MAX_TURNS = 12


def _state(ctx: ToolContext) -> AgentState:
    if not isinstance(ctx.state, AgentState):
        raise ToolError("this tool only works inside an agent run")
    return ctx.state


def _render(text: str, ctx: ToolContext) -> str:
    from localcode.agent.recovery import tool_names

    if ctx.registry is None:
        return prompts.render(text)
    return prompts.render(text, tool_names(ctx.registry), ctx.registry.names())


class Think(Tool):
    name = "think"
    aliases = ("reasoning",)
    description = "Write down a reasoning step (nothing else happens). Use it to think before acting."
    arg_aliases = {"reasoning": "thought", "thoughts": "thought", "text": "thought", "content": "thought",
                   "message": "thought", "note": "thought"}

    class Params(ToolParams):
        thought: str
        """Your reasoning."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        state = _state(ctx)
        state.thoughts.append(params.thought)
        return "ok: noted"


class AskAgent(Tool):
    name = "ask_agent"
    description = ("Delegate a sub-task to a sub-agent working in the same directory; "
                   "returns its final answer. Good for investigations that need many reads.")
    # The sub-agent runs on the model already loaded (one model per process); a named
    # config contributes everything but its model settings.

    class Params(ToolParams):
        task: str
        """What the sub-agent should do or find out; it sees only this text."""
        agent: str | None = None
        """An agent config (e.g. gguf/NAME) whose prompt, sampling, tools and limits the sub-agent uses;
        default: this agent with read-only tools."""
        tools: list[str] | None = None
        """Tools to give the sub-agent (a subset of yours)."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        from localcode.agent.loop import run_agent
        from localcode.config import resolve_agent

        state = _state(ctx)
        if state.depth >= MAX_AGENT_DEPTH:
            raise ToolError(f"sub-agents can be nested {MAX_AGENT_DEPTH} deep at most; do this yourself")
        if ctx.model is None or state.config is None:
            raise ToolError("no model available for a sub-agent")
        parent = state.config
        if params.agent:
            try:
                base = resolve_agent(params.agent)
            except ConfigError as e:
                raise ToolError(str(e)) from None
        else:
            base = parent
        parent_tools = {t.name for t in ctx.registry.tools} if ctx.registry else set(SUB_AGENT_TOOLS)
        if params.tools:
            wanted = [t for t in params.tools if ctx.registry is None or ctx.registry.resolve(t) is not None]
            tools = [ctx.registry.resolve(t).name if ctx.registry else t for t in wanted]  # type: ignore[union-attr]
        elif params.agent:
            tools = list(base.tools)
        else:
            tools = [t for t in SUB_AGENT_TOOLS if t in parent_tools or t == "finish"]
        if state.depth + 1 >= MAX_AGENT_DEPTH:
            tools = [t for t in tools if t != "ask_agent"]
        if "finish" not in tools:
            tools.append("finish")
        sub_cfg = base.model_copy(update={
            "tools": tools, "flow": None, "task_flow_mode": None, "min_tool_calls": 0,
            "require_code_change": False, "max_turns": min(base.max_turns, SUB_AGENT_MAX_TURNS),
            "history_max_messages": base.history_max_messages,
        })
        sub_cfg.phase_control = sub_cfg.phase_control.model_copy(update={"mode": "off"})
        sub_state = AgentState(depth=state.depth + 1)
        sub_ctx = dataclasses.replace(ctx, state=sub_state, registry=None)
        # Share the sets: a sub-agent's edits count as the run's changes.
        sub_ctx.changed_files = ctx.changed_files
        sub_ctx.files_read = ctx.files_read
        logger = state.logger.child(f"sub{state.depth + 1}") if state.logger else None
        state.event("sub_agent", task=params.task[:500], tools=tools, agent=params.agent or parent.name)
        run = run_agent(ctx.model, sub_cfg, params.task, sub_ctx, logger=logger, deadline=state.deadline)
        state.record_side_call("ask_agent", run.usage)
        for purpose, n in run.side_calls.items():
            state.side_calls[purpose] = state.side_calls.get(purpose, 0) + n
        answer = run.final_answer or "(no answer)"
        return cap_text(f"ok: sub-agent ended ({run.reason}, {run.turns} turns): {answer}", ctx.max_output_chars)


class AskQuestions(Tool):
    name = "ask_questions"
    description = "Ask yourself a batch of questions about the task; they are answered in one separate model call."

    class Params(ToolParams):
        questions: list[str] = Field(min_length=1, max_length=20)
        """The questions, one per item."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        state = _state(ctx)
        if ctx.model is None:
            raise ToolError("no model available to answer questions")
        cfg = state.config
        text = prompts.render_file(
            "ask_questions", task=state.task or "(no task text)",
            questions="\n".join(f"{i}. {q}" for i, q in enumerate(params.questions, 1)),
        )
        options = ChatOptions(
            temperature=cfg.temperature if cfg else None,
            top_p=cfg.top_p if cfg else None,
            max_tokens=min(cfg.max_tokens or 2048, 2048) if cfg else 1024,
            tool_choice="none",
        )
        try:
            result = ctx.model.chat([{"role": "user", "content": text}], None, options)
        except ModelError as e:
            raise ToolError(f"the questions could not be answered: {e}") from None
        state.record_side_call("ask_questions", result)
        answer = result.content.strip() or "(no answer)"
        return cap_text(f"ok: answers:\n{answer}", ctx.max_output_chars)


class PlanSolution(Tool):
    name = "plan_solution"
    aliases = ("get_plan",)
    description = ("Record your plan before implementing (which files and functions change, and how). "
                   "Called with an empty plan it shows the recorded plan.")
    arg_aliases = {"steps": "plan", "solution": "plan", "text": "plan", "content": "plan", "approach": "plan"}

    class Params(ToolParams):
        plan: str = ""
        """The plan, as short numbered steps."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        state = _state(ctx)
        if not params.plan.strip():
            return f"ok: recorded plan:\n{state.plan}" if state.plan else "ok: no plan recorded yet; send one in 'plan'"
        state.plan = params.plan.strip()
        steps = sum(1 for line in state.plan.splitlines() if line.strip())
        return f"ok: plan recorded ({steps} lines); now implement it"


class TaskItem(ToolParams):
    title: str
    """What to do, in one line."""
    files: list[str] = Field(default_factory=list)
    """Files this task changes."""
    details: str = ""
    """How, briefly."""


class PlanTasks(Tool):
    name = "plan_tasks"
    description = "Record the plan as a structured task list (one task per change); shown again in the next stage."
    arg_aliases = {"task_list": "tasks", "items": "tasks", "steps": "tasks", "plan": "tasks", "todo": "tasks"}

    class Params(ToolParams):
        tasks: list[TaskItem | str] = Field(min_length=1, max_length=50)
        """The tasks, in order: objects with title, files, details (or plain strings)."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        state = _state(ctx)
        state.tasks = [
            PlannedTask(title=t, files=[], details="") if isinstance(t, str)
            else PlannedTask(title=t.title, files=list(t.files), details=t.details)
            for t in params.tasks
        ]
        from localcode.agent.flow import format_tasks

        return f"ok: {len(state.tasks)} task(s) recorded:\n{format_tasks(state.tasks)}"


class FlowStageDone(Tool):
    name = "flow_stage_done"
    description = "Mark the current stage of the flow as complete and move to the next stage."
    arg_aliases = {"message": "summary", "notes": "summary", "result": "summary", "text": "summary"}

    class Params(ToolParams):
        summary: str = ""
        """What this stage found or decided, briefly."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        state = _state(ctx)
        if state.flow is None:
            return "ok: no staged flow is active; continue with the task"
        return _render(state.flow.advance(params.summary), ctx)


class Finish(Tool):
    name = "finish"
    description = "End the task: call it once the work is complete, with a short summary of what changed."
    arg_aliases = {"message": "summary", "result": "summary", "answer": "summary", "text": "summary",
                   "final_answer": "summary", "explanation": "summary", "state": "status"}

    class Params(ToolParams):
        summary: str = ""
        """What you did (or why you could not)."""
        status: str = "done"
        """done, or failed when the task could not be completed."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        state = _state(ctx)
        cfg = state.config
        if cfg is not None and cfg.require_code_change and not ctx.changed_files:
            raise ToolError(_render(prompts.load_prompt("hint_require_code_change").strip(), ctx))
        state.finish_status = params.status.strip() or "done"
        state.finish_summary = params.summary
        return "ok: finished"


TOOLS: tuple[type[Tool], ...] = (Think, AskAgent, AskQuestions, PlanSolution, PlanTasks, FlowStageDone, Finish)

