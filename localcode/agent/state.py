"""What one agent run carries besides the conversation: its state, its usage and its result.

``AgentState`` lives in ``ToolContext.state`` so the agent-level tools (finish, plan_tasks,
flow_stage_done, ask_agent, ...) can read and change it. It outlives one ``run_agent``
call when the caller keeps the context: a continued run keeps its plan, flow stage and phase.

``AgentRun`` is what ``run_agent`` returns: the conversation, why it ended, and every
figure the benchmark records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from localcode.backends.base import ChatResult, Message

if TYPE_CHECKING:
    from localcode.agent.logs import RunLogger
    from localcode.config import AgentConfig

EndReason = Literal[
    "finished",          # the model called finish
    "answered",          # the model gave a plain answer (no tool call) that was accepted
    "max_turns",         # config.max_turns model calls were made
    "time_limit",        # config.max_wall_seconds or the caller's deadline passed
    "token_budget",      # config.max_total_tokens were used
    "context_exceeded",  # the prompt no longer fits the context window, even shortened
    "format_errors",     # more than max_format_retries malformed responses in a row
    "model_error",       # the backend failed (ModelError): the model could not run
    "request_timeout",   # one generation exceeded config.request_timeout (the model's doing)
    "cancelled",         # the caller's cancel event was set, or Ctrl-C
    "stuck",             # the model repeated the same failing call (loop.STUCK_REPEATS times)
]
"""Why a run ended. ``finished`` and ``answered`` are the model's own endings."""


class UsageTotals(BaseModel):
    """Sums over model calls: tokens and the backend's own timings."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens reused from the KV cache (part of ``prompt_tokens``)."""
    completion_tokens: int = 0
    prompt_ms: float = 0.0
    """Prefill time reported by the backend."""
    predicted_ms: float = 0.0
    """Decode time reported by the backend."""
    prompt_n: int = 0
    """Prompt tokens actually evaluated (not cached), as the backend's timings report them."""
    predicted_n: int = 0
    model_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_result(self, result: ChatResult) -> None:
        """Count one model call."""
        self.prompt_tokens += result.usage.prompt_tokens
        self.cached_tokens += result.usage.cached_tokens
        self.completion_tokens += result.usage.completion_tokens
        self.prompt_ms += result.timings.prompt_ms
        self.predicted_ms += result.timings.predicted_ms
        self.prompt_n += result.timings.prompt_n
        self.predicted_n += result.timings.predicted_n
        self.model_calls += 1

    def add(self, other: UsageTotals) -> None:
        """Add another total (a sub-agent's, a side call's)."""
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class PlannedTask:
    """One entry of ``plan_tasks``."""

    title: str
    details: str = ""
    files: list[str] = field(default_factory=list)
    done: bool = False


@dataclass
class AgentState:
    """The mutable state of an agent run that is not the conversation.

    Created by ``run_agent`` when ``ctx.state`` is None; reused when the caller passes a
    context whose state is already an ``AgentState`` (a continued run).
    """

    depth: int = 0
    """0 for the main agent, 1 for a sub-agent started by ask_agent, ..."""
    task: str = ""
    """The first task prompt (side calls such as ask_questions quote it)."""
    phase: str | None = None
    """The current phase (phase_control), or None when phase control is off."""
    flow_index: int = 0
    """Index of the current flow stage."""
    plan: str = ""
    """The plan recorded by plan_solution."""
    tasks: list[PlannedTask] = field(default_factory=list)
    """The structured plan recorded by plan_tasks."""
    thoughts: list[str] = field(default_factory=list)
    """Reasoning steps recorded by think."""
    stage_summaries: dict[str, str] = field(default_factory=dict)
    """What flow_stage_done said for each finished stage."""
    finish_status: str | None = None
    """Set by finish: the run ends after the current tool call."""
    finish_summary: str = ""

    # Per-run plumbing, set by the loop; not saved with a session.
    config: AgentConfig | None = field(default=None, repr=False)
    logger: RunLogger | None = field(default=None, repr=False)
    deadline: float | None = field(default=None, repr=False)
    """``time.monotonic()`` deadline of the run (sub-agents inherit it)."""
    flow: Any = field(default=None, repr=False)
    """The run's ``FlowTracker`` (None without a flow)."""
    side_usage: UsageTotals = field(default_factory=UsageTotals, repr=False)
    """Usage of model calls made outside the main conversation (probes, ask_questions, sub-agents)
    since the loop last collected it."""
    side_calls: dict[str, int] = field(default_factory=dict, repr=False)
    """Side model calls by purpose (``phase_probe``, ``ask_questions``, ``ask_agent``)."""

    @property
    def finished(self) -> bool:
        return self.finish_status is not None

    def record_side_call(self, purpose: str, usage: UsageTotals | ChatResult) -> None:
        """Count a model call made outside the conversation, so the run's totals stay true."""
        if isinstance(usage, ChatResult):
            self.side_usage.add_result(usage)
        else:
            self.side_usage.add(usage)
        self.side_calls[purpose] = self.side_calls.get(purpose, 0) + 1

    def event(self, kind: str, **data: Any) -> None:
        """Record an event in the run's log (no-op without a logger)."""
        if self.logger is not None:
            self.logger.event(kind, **data)

    def to_dict(self) -> dict[str, Any]:
        """The part worth saving with a session."""
        return {
            "phase": self.phase,
            "flow_index": self.flow_index,
            "plan": self.plan,
            "tasks": [asdict(t) for t in self.tasks],
            "thoughts": list(self.thoughts),
            "stage_summaries": dict(self.stage_summaries),
            "task": self.task,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentState:
        """Rebuild a saved state (unknown keys are ignored)."""
        return cls(
            phase=data.get("phase"),
            flow_index=int(data.get("flow_index", 0)),
            plan=str(data.get("plan", "")),
            tasks=[PlannedTask(**t) for t in data.get("tasks", []) if isinstance(t, dict)],
            thoughts=list(data.get("thoughts", [])),
            stage_summaries=dict(data.get("stage_summaries", {})),
            task=str(data.get("task", "")),
        )


class AgentRun(BaseModel):
    """The result of one ``run_agent`` call: the conversation and everything to record.

    Counters cover this call only; a continued run (benchmark try 2) reports its own.
    ``usage`` sums every model call of the run, including side calls (phase probe,
    ask_questions, sub-agents), whose share is also in ``side_usage``.
    """

    messages: list[Message] = Field(default_factory=list)
    """The whole conversation after the run (pass it as ``history`` to continue)."""
    reason: EndReason = "answered"
    detail: str = ""
    """More about the ending: the model error, the limit's value."""
    final_answer: str = ""
    """finish's summary, or the plain answer."""
    finish_status: str | None = None
    """finish's status (``done``, ``failed``, ...) when the model called finish."""
    turns: int = 0
    """Model calls in the main conversation."""
    malformed_responses: int = 0
    """Responses with a malformed call, an unknown tool, unreadable arguments, or no call where one was required."""
    format_retries: int = 0
    """FORMAT ERROR messages sent."""
    repairs: int = 0
    """Calls whose arguments needed repair or renaming."""
    auto_recovered: int = 0
    """Calls recovered from plain text (auto_tool_call_on_failure)."""
    text_calls: int = 0
    """Calls the model wrote as JSON text instead of its family's format (repaired by the parser)."""
    repetition_stops: int = 0
    """Responses the repetition guard cut off because they had fallen into a loop (``repetition_guard``)."""
    nudges: int = 0
    """Plain answers refused (min_tool_calls, require_code_change)."""
    skipped_calls: int = 0
    """Calls answered "skipped" (batch limit, finish, time limit)."""
    tool_calls: dict[str, int] = Field(default_factory=dict)
    """Calls per tool (canonical name; unknown tools under the name as called)."""
    tool_errors: dict[str, int] = Field(default_factory=dict)
    """Calls per tool that answered ``error:``."""
    usage: UsageTotals = Field(default_factory=UsageTotals)
    side_usage: UsageTotals = Field(default_factory=UsageTotals)
    side_calls: dict[str, int] = Field(default_factory=dict)
    context_exceeded: bool = False
    """The context window was exhausted (the run ended ``context_exceeded``)."""
    shortened_results: int = 0
    """Old tool results shortened to keep the history in the context window / history_max_messages."""
    dropped_messages: int = 0
    """Messages dropped from the history for the same reasons."""
    changed_files: list[str] = Field(default_factory=list)
    files_read: list[str] = Field(default_factory=list)
    phase: str | None = None
    phase_events: list[dict[str, Any]] = Field(default_factory=list)
    flow_stage: str | None = None
    seconds: float = 0.0
    """Wall-clock seconds of the run."""
    log_paths: dict[str, str] = Field(default_factory=dict)

    @property
    def total_tool_calls(self) -> int:
        return sum(self.tool_calls.values())

    def summary(self) -> dict[str, Any]:
        """Everything but the conversation, JSON-ready (for result files)."""
        return self.model_dump(exclude={"messages"})
