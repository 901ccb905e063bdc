"""The agent loop: model → tool calls → results, until the model finishes or a limit hits.

::

    run = run_agent(model, config, "Fix the failing test in foo.py", ctx)
    run.reason, run.final_answer, run.usage.completion_tokens
    run2 = run_agent(model, config, "The tests still fail: ...", ctx, history=run.messages)

Every turn calls the model once, runs its tool calls in order (at most
``max_batch_tool_calls``) and appends exactly one tool message per call — calls that are
not run (over the batch limit, after ``finish``, after the deadline) are answered
``error: skipped: ...``. The run ends when the model calls ``finish``, gives an accepted
plain answer, or a limit is reached; ``AgentRun.reason`` names which (see ``EndReason``).

Repeated calls: small models often repeat a call that failed (the same no-op ``edit``), or
one that changes nothing (the same content written again), until ``max_turns``. The second
identical call (same tool, same arguments) that failed again, or wrote and got the very same
answer, gets a stronger message appended (``prompts/hint_repeated_call.md``); the third ends the run
with reason ``stuck``. Under ``tool_choice: required`` the ``finish``
tool is always offered, so a model that cannot answer in plain text can still end the run
(its summary is the final answer).
Control flow inside the loop uses the ``RunEnded`` exceptions below; none escapes
``run_agent``. Errors the caller must handle: ``ConfigError`` for a config the loop cannot
run (unknown tool, unknown flow preset), and ``KeyboardInterrupt`` (re-raised after the
logs are closed, carrying the partial run as ``.agent_run``). Anything else is a bug.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

from localcode.agent import history as hist
from localcode.agent import prompts
from localcode.agent.flow import FLOW_TOOLS, FlowTracker, flow_stages
from localcode.agent.logs import RunLogger, clip
from localcode.agent.phase import PhaseTracker, phase_log_mode
from localcode.agent.recovery import format_error, hint, recover_calls, tool_names
from localcode.agent.state import AgentRun, AgentState, EndReason, UsageTotals
from localcode.agent.tools.base import ToolContext
from localcode.agent.tools.registry import ToolOutcome, ToolRegistry, find_tool
from localcode.backends.base import ChatModel, ChatOptions, ChatResult, Message, ToolCall, new_call_id
from localcode.config import AgentConfig
from localcode.errors import ContextWindowExceeded, ModelError

FORMAT_KINDS = ("unknown_tool", "bad_arguments")
"""Tool-call errors that mean the call itself was malformed."""


class RunEnded(Exception):
    """Control flow: the run is over."""

    def __init__(self, reason: EndReason, detail: str = "", answer: str = "") -> None:
        super().__init__(reason)
        self.reason: EndReason = reason
        self.detail = detail
        self.answer = answer


class Submitted(RunEnded):
    """The model called finish or gave an accepted plain answer."""


class LimitReached(RunEnded):
    """max_turns, the time limit, the token budget, or a cancel request."""


class FormatErrorsExhausted(RunEnded):
    """More consecutive malformed responses than ``max_format_retries``."""


class ModelFailed(RunEnded):
    """The backend failed, or the prompt no longer fits the context window."""


class Stuck(RunEnded):
    """The model made the same call a third time without progress."""


STUCK_REPEATS = 3
"""Identical calls without progress that end a run (the one before the last gets a stronger message)."""


def run_agent(
    model: ChatModel,
    config: AgentConfig,
    task: str,
    ctx: ToolContext,
    history: list[Message] | None = None,
    *,
    logger: RunLogger | None = None,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
) -> AgentRun:
    """Run the agent on ``task`` until it finishes or a limit is reached.

    ``history``: a previous run's ``messages`` to continue that conversation (the task is
    appended as a new user message; the list passed in is not changed). ``ctx.state`` is
    created when None and kept otherwise, so a continued run keeps its plan and flow stage.
    ``deadline``: a ``time.monotonic()`` value; the run stops at it or at
    ``config.max_wall_seconds``, whichever is first (a generation in progress is cancelled).
    ``cancel``: set it from another thread to stop the run (reason ``cancelled``).
    """
    return _Agent(model, config, ctx, logger, deadline, cancel).run(task, history)


def chat_options(config: AgentConfig) -> ChatOptions:
    """The request options of an agent config."""
    return ChatOptions(
        temperature=config.temperature, top_p=config.top_p, top_k=config.top_k, min_p=config.min_p,
        presence_penalty=config.presence_penalty, frequency_penalty=config.frequency_penalty,
        repeat_penalty=config.repeat_penalty, seed=config.seed, max_tokens=config.max_tokens,
        tool_choice=config.tool_choice, think=config.think, think_level=config.think_level,
        tool_call_grammar=config.tool_call_grammar, repetition_guard=config.repetition_guard,
        extra=dict(config.request_overrides),
    )


class _Agent:
    """One run. ``run`` is the loop; the other methods are its steps."""

    def __init__(self, model: ChatModel, config: AgentConfig, ctx: ToolContext, logger: RunLogger | None,
                 deadline: float | None, cancel: threading.Event | None) -> None:
        self.model, self.config, self.ctx, self.cancel = model, config, ctx, cancel
        self.logger = logger or RunLogger()
        self.logger.phase_log = phase_log_mode(config.phase_log)
        self.logger.thinking_visibility = config.thinking_visibility
        self.started = time.monotonic()
        limits = [d for d in (deadline, self.started + config.max_wall_seconds if config.max_wall_seconds else None)
                  if d is not None]
        self.deadline = min(limits) if limits else None
        self.state = ctx.state if isinstance(ctx.state, AgentState) else AgentState()
        ctx.state, ctx.model = self.state, model
        self.state.config, self.state.logger, self.state.deadline = config, self.logger, self.deadline
        self.state.finish_status, self.state.finish_summary = None, ""
        self.state.side_usage, self.state.side_calls = UsageTotals(), {}
        stages = flow_stages(config)
        tools = list(config.tools)
        if config.tool_choice == "required" and not any((find_tool(t).name if find_tool(t) else t) == "finish"
                                                        for t in tools):
            tools.append("finish")  # under required, a run could otherwise never end by itself
        if stages:
            configured = {(find_tool(t).name if find_tool(t) else t) for t in tools}
            tools += [t for t in FLOW_TOOLS if t not in configured]
        self.registry = ToolRegistry(tools, config.tool_aliases, config.tool_name_style)
        self.names = tool_names(self.registry)
        self.flow = FlowTracker(stages, self.state) if stages else None
        self.state.flow = self.flow
        self.phase = PhaseTracker(config.phase_control, self.state)
        self.options = chat_options(config)
        self.schemas = self.registry.schemas()
        self.result = AgentRun(log_paths=self.logger.paths)
        self.messages: list[Message] = []
        self.pinned: list[Message] = []
        self.seen_ids: set[str] = set()
        self.steps: list[str] = []
        self.consecutive_failures = 0
        self.failed_calls: dict[str, tuple[int, str | None]] = {}
        """Per (tool, arguments): how often it was made without progress, and its last answer."""
        self.stuck_call: str | None = None
        self.last_prompt_tokens, self.last_chars = 0, 0

    # -- the loop ---------------------------------------------------------------------------

    def run(self, task: str, history: list[Message] | None) -> AgentRun:
        self.start(task, history)
        try:
            while True:
                self.check_limits()
                self.step()
        except RunEnded as end:
            self.end(end)
        except KeyboardInterrupt as interrupt:
            self.end(LimitReached("cancelled", "interrupted (Ctrl-C)"))
            interrupt.agent_run = self.result  # type: ignore[attr-defined]
            raise
        return self.result

    def step(self) -> None:
        self.phase.start_turn()
        result = self.query()
        calls, problems, recovered = self.read_calls(result)
        self.messages.append(self.assistant_message(result, calls))
        outcomes = [self.run_call(i, call) for i, call in enumerate(calls)]
        self.account(result, calls, outcomes, problems, recovered)
        if self.state.finished:
            raise Submitted("finished", answer=self.state.finish_summary)
        if self.stuck_call is not None:
            raise Stuck("stuck", f"the same call {STUCK_REPEATS} times without progress: {clip(self.stuck_call, 200)}")
        if self.phase.wants_probe(bool(calls)):
            self.phase.probe(self.model, self.steps, self.result.turns)
        self.refresh_system_prompt()

    # -- steps --------------------------------------------------------------------------------

    def start(self, task: str, history: list[Message] | None) -> None:
        self.messages = list(history or [])
        system = {"role": "system", "content": self.system_text()}
        if self.messages and self.messages[0].get("role") == "system":
            if self.messages[0].get("content") != system["content"]:
                self.messages[0] = system
        else:
            self.messages.insert(0, system)
        for m in self.messages:
            self.seen_ids.update(str(c.get("id")) for c in m.get("tool_calls") or [])
        self.seal("the previous run ended before this call ran")
        task_msg = {"role": "user", "content": task}
        self.messages.append(task_msg)
        self.pinned = [task_msg]
        self.state.task = self.state.task or task
        self.logger.event("session_start", agent=self.config.name, model=self.model.info.model,
                          backend=self.model.info.backend, continued=bool(history), depth=self.state.depth,
                          tools=self.registry.names(), flow=[s.name for s in self.flow.stages] if self.flow else None,
                          phase=self.state.phase, task=clip(task))
        self.logger.progress(f"agent {self.config.name or '?'}: {len(self.registry.names())} tools, "
                             f"max {self.config.max_turns} turns")

    def check_limits(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise LimitReached("cancelled", "cancel requested")
        if self.result.turns >= self.config.max_turns:
            raise LimitReached("max_turns", f"{self.config.max_turns} turns")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise LimitReached("time_limit", f"deadline passed after {time.monotonic() - self.started:.1f}s")
        budget = self.config.max_total_tokens
        used = self.result.usage.total_tokens + self.state.side_usage.total_tokens
        if budget is not None and used >= budget:
            raise LimitReached("token_budget", f"{used} of {budget} tokens used")

    def query(self) -> ChatResult:
        self.compact(force=False)
        try:
            return self.call_model()
        except ContextWindowExceeded as first:
            self.logger.event("context_exceeded", error=str(first), retry=True)
            if self.compact(force=True):
                try:
                    return self.call_model()
                except ContextWindowExceeded as again:
                    first = again
            self.result.context_exceeded = True
            raise ModelFailed("context_exceeded", str(first)) from None
        except ModelError as e:
            raise ModelFailed("model_error", str(e)) from None

    def call_model(self) -> ChatResult:
        turn = self.result.turns + 1
        chars = hist.char_count(self.messages)
        self.logger.event("request", turn=turn, messages=len(self.messages), tools=len(self.schemas), chars=chars)
        request_deadline = time.monotonic() + self.config.request_timeout if self.config.request_timeout else None
        result: ChatResult | None = None
        stream = self.model.stream(self.messages, self.schemas, self.options)
        try:
            for event in stream:
                if event.kind == "done":
                    result = event.result
                    break
                now = time.monotonic()
                if self.cancel is not None and self.cancel.is_set():
                    raise LimitReached("cancelled", "cancel requested during generation")
                if self.deadline is not None and now >= self.deadline:
                    raise LimitReached("time_limit", "deadline passed during generation")
                if request_deadline is not None and now >= request_deadline:
                    raise ModelFailed("request_timeout", f"generation exceeded request_timeout "
                                                     f"({self.config.request_timeout}s)")
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if result is None:
            raise ModelFailed("model_error", "the model's stream ended without a result")
        self.result.turns = turn
        self.result.usage.add_result(result)
        self.last_prompt_tokens, self.last_chars = result.usage.prompt_tokens, chars
        show = self.config.thinking_visibility != "hide"
        self.logger.event(
            "response", turn=turn, finish_reason=result.finish_reason, content=clip(result.content),
            reasoning=clip(result.reasoning) if show else f"({len(result.reasoning)} characters hidden)",
            tool_calls=[{"id": c.id, "name": clip(c.name, 200), "arguments": clip(c.arguments)} for c in result.tool_calls],
            malformed=[{"raw": clip(m.raw), "error": m.error} for m in result.malformed_tool_calls],
            usage=result.usage.model_dump(), timings=result.timings.model_dump(),
        )
        if self.config.thinking_visibility == "show" and result.reasoning:
            self.logger.progress(f"[thinking] {clip(result.reasoning, 2000)}")
        return result

    def read_calls(self, result: ChatResult) -> tuple[list[ToolCall], list[str], bool]:
        """The calls to run, the format problems to report, and whether calls were recovered from text."""
        calls = [self.unique(c) for c in result.tool_calls]
        self.result.text_calls += sum(c.repaired for c in result.tool_calls)
        problems = [f"a tool call could not be parsed ({m.error}): {clip(m.raw, 300)}"
                    for m in result.malformed_tool_calls]
        if result.finish_reason == "repetition":
            self.result.repetition_stops += 1
            self.logger.event("repetition", turn=self.result.turns, tail=clip(result.raw[-400:], 400))
            problems.insert(0, "your answer was stopped because it kept repeating the same text "
                               f"(it ended with: {clip(result.raw[-120:], 120)!r}); write each piece of code once")
        recovered = False
        if not calls and self.config.auto_tool_call_on_failure and (problems or self.refusal(result)):
            calls = [self.unique(c) for c in recover_calls(result.content or result.raw, self.registry)]
            if calls:
                recovered = True
                self.result.auto_recovered += len(calls)
                self.logger.event("auto_tool_call", turn=self.result.turns,
                                  calls=[{"name": c.name, "arguments": clip(c.arguments, 500)} for c in calls])
        return calls, problems, recovered

    def unique(self, call: ToolCall) -> ToolCall:
        """The call with an id not used before in this conversation (templates pair results by id)."""
        if not call.id or call.id in self.seen_ids:
            call = call.model_copy(update={"id": new_call_id()})
        self.seen_ids.add(call.id)
        return call

    def assistant_message(self, result: ChatResult, calls: list[ToolCall]) -> Message:
        content = result.content
        if not content and not calls and result.malformed_tool_calls:
            content = "\n".join(m.raw for m in result.malformed_tool_calls)
        msg: Message = {"role": "assistant", "content": content}
        if self.config.native_thinking and result.reasoning:
            msg["reasoning_content"] = result.reasoning
        if calls:
            msg["tool_calls"] = [c.to_openai() for c in calls]
        return msg

    def run_call(self, index: int, call: ToolCall) -> ToolOutcome | None:
        """Run (or skip) one call and append its tool message. None when skipped."""
        skip = None
        if self.state.finished:
            skip = "the run finished before this call"
        elif index >= self.config.max_batch_tool_calls:
            skip = f"at most {self.config.max_batch_tool_calls} tool calls run per turn; repeat this call in your next turn"
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            skip = "the time limit was reached"
        elif self.cancel is not None and self.cancel.is_set():
            skip = "the run was cancelled"
        outcome = None
        if skip is not None:
            text = f"error: skipped: {skip}"
            self.result.skipped_calls += 1
        else:
            outcome = self.execute(call)
            text = outcome.text
        self.messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": text})
        self.logger.event("tool_result", turn=self.result.turns, id=call.id, ok=bool(outcome and outcome.ok),
                          skipped=skip is not None, error_kind=outcome.error_kind if outcome else None,
                          text=clip(text))
        return outcome

    def execute(self, call: ToolCall) -> ToolOutcome:
        tool = self.registry.resolve(call.name)
        self.logger.event("tool_call", turn=self.result.turns, id=call.id, name=clip(call.name, 200),
                          tool=tool.name if tool else None, arguments=clip(call.arguments))
        if tool is not None and self.flow is not None and not self.flow.allows(tool.name):
            exposed = {t.name: self.names[t.name] for t in self.registry.tools}
            outcome = ToolOutcome(tool=tool.name, ok=False, error_kind="not_allowed",
                                  text=self.flow.blocked_message(tool.name, self.names[tool.name], exposed))
        else:
            outcome = self.registry.execute(call.name, call.arguments, self.ctx)
        key = outcome.tool if tool is not None else clip(outcome.tool, 60)
        r = self.result
        r.tool_calls[key] = r.tool_calls.get(key, 0) + 1
        if not outcome.ok:
            r.tool_errors[key] = r.tool_errors.get(key, 0) + 1
        outcome = self.note_repeat(key, call, outcome, writes=bool(tool and tool.writes_files))
        if outcome.repaired:
            r.repairs += 1
        first_line = outcome.text.split("\n", 1)[0]
        self.steps.append(f"{key}: {clip(first_line, 160)}")
        self.logger.progress(f"turn {r.turns}: {key} -> {clip(first_line, 120)}")
        self.phase.after_tool(outcome.tool, outcome.ok, bool(tool and tool.writes_files),
                              len(self.ctx.files_read), r.turns)
        return outcome

    def note_repeat(self, key: str, call: ToolCall, outcome: ToolOutcome, writes: bool) -> ToolOutcome:
        """Count a call that repeats an earlier one without progress: it failed again, or it is a writing
        call that got the very same answer (the same content written to the same file again).
        The second such call gets a stronger message, the third ends the run."""
        signature = f"{key} {_canonical_arguments(call.arguments)}"
        count, answer = self.failed_calls.get(signature, (0, None))
        if outcome.ok and (not writes or answer != outcome.text):
            self.failed_calls[signature] = (1, outcome.text)
            return outcome
        n = count + 1
        self.failed_calls[signature] = (n, outcome.text)
        if n >= STUCK_REPEATS:
            self.stuck_call = signature
            self.logger.event("stuck", turn=self.result.turns, call=clip(signature, 500), repeats=n)
        elif n == STUCK_REPEATS - 1:
            self.result.nudges += 1
            warning = hint("repeated_call", self.registry, advice=self.repeat_advice(key))
            self.logger.event("repeated_call", turn=self.result.turns, call=clip(signature, 500), repeats=n)
            outcome = dataclasses.replace(outcome, text=f"{outcome.text}\n\n{warning}")
        return outcome

    def repeat_advice(self, tool: str) -> str:
        """What to do instead of repeating a failing ``tool`` call, from the tools the agent has."""
        has = {t.name for t in self.registry.tools}
        if tool == "edit" and "write" in has:
            return (f"read the file again with `{self.names.get('read', 'read')}`, or replace the whole file with "
                    f"`{self.names['write']}` and its complete new content")
        if tool == "edit":
            return f"read the file again with `{self.names.get('read', 'read')}` and copy the exact lines into old"
        if tool == "write":
            return ("write the complete code the task needs (not the same content again), or call "
                    f"`{self.names.get('finish', 'finish')}` if the task is done")
        return "change the arguments, use another tool, or call " \
               f"`{self.names.get('finish', 'finish')}` if the task is done"

    def refusal(self, result: ChatResult) -> str | None:
        """Why a plain answer (no tool call) cannot end the run now, or None."""
        if not (result.content or "").strip():
            cut = " (cut off at max_tokens)" if result.finish_reason == "length" else ""
            return f"the answer was empty{cut}; call a tool"
        if self.config.tool_choice == "none":
            return None  # the model was told not to call tools: any answer ends the run
        if self.config.tool_choice == "required":
            return "required"
        if self.result.total_tool_calls < self.config.min_tool_calls:
            return "min_tool_calls"
        if self.config.require_code_change and not self.ctx.changed_files:
            return "require_code_change"
        return None

    def account(self, result: ChatResult, calls: list[ToolCall], outcomes: list[ToolOutcome | None],
                problems: list[str], recovered: bool) -> None:
        """Count format failures, send FORMAT ERROR / nudges, end on a plain answer."""
        r = self.result
        if not calls and not problems:
            refusal = self.refusal(result)
            if refusal is None:
                raise Submitted("answered", answer=result.content)
            if refusal in ("min_tool_calls", "require_code_change"):
                r.nudges += 1
                values = {"done": r.total_tool_calls, "required": self.config.min_tool_calls}
                text = hint(refusal, self.registry, **values)
                self.messages.append({"role": "user", "content": text})
                self.logger.event("nudge", turn=r.turns, why=refusal, text=text)
                self.logger.progress(f"turn {r.turns}: plain answer refused ({refusal})")
                return
            problems = [hint("tool_required", self.registry) if refusal == "required" else refusal]
        format_outcomes = [o for o in outcomes if o is not None and o.error_kind in FORMAT_KINDS]
        reached = any(o is not None and o.error_kind not in FORMAT_KINDS for o in outcomes)
        if not problems and not format_outcomes:
            self.consecutive_failures = 0
            return
        r.malformed_responses += 1
        self.consecutive_failures = 0 if reached else self.consecutive_failures + 1
        self.logger.event("format_error", turn=r.turns, problems=[clip(p, 500) for p in problems],
                          bad_calls=[clip(o.text, 300) for o in format_outcomes],
                          consecutive=self.consecutive_failures, recovered=recovered)
        self.logger.progress(f"turn {r.turns}: malformed response ({self.consecutive_failures} in a row)")
        if self.consecutive_failures > self.config.max_format_retries:
            raise FormatErrorsExhausted("format_errors", f"{self.consecutive_failures} malformed responses in a row")
        if problems and not recovered:
            r.format_retries += 1
            self.messages.append({"role": "user", "content": format_error("; ".join(problems), self.registry)})

    def compact(self, force: bool) -> bool:
        """Keep the history within history_max_messages and the context window. True if it changed."""
        before = list(self.messages)
        if self.config.history_max_messages and len(self.messages) > self.config.history_max_messages:
            self.messages, dropped = hist.drop_oldest_groups(self.messages, self.config.history_max_messages,
                                                             self.pinned)
            self.note_compaction("history_max_messages", 0, dropped)
        window = self.model.info.context_window
        if window and (force or self.estimate(self.messages) > 0.9 * self.budget(window)):
            limit = (0.8 if force else 0.9) * self.budget(window)
            shortened = 0
            # Shorten older results first; the newest group's results the model has not seen yet.
            for keep in ((1,) if force else (2, 1)):
                self.messages, n = hist.shorten_tool_results(self.messages, keep_recent_groups=keep)
                shortened += n
                if self.estimate(self.messages) <= limit:
                    break
            self.messages, dropped = hist.drop_oldest_groups(
                self.messages, None, self.pinned, fits=lambda m: self.estimate(m) <= limit)
            self.note_compaction("context window", shortened, dropped)
        return self.messages != before

    def budget(self, window: int) -> float:
        """Prompt tokens that fit: the window minus room for the answer."""
        return window - min(self.config.max_tokens or 2048, window // 4)

    def estimate(self, messages: list[Message]) -> float:
        """Prompt tokens of ``messages``, scaled from the last request's measured tokens per character."""
        chars = hist.char_count(messages)
        ratio = self.last_prompt_tokens / self.last_chars if self.last_chars and self.last_prompt_tokens else 1 / 3.5
        return chars * ratio

    def note_compaction(self, why: str, shortened: int, dropped: int) -> None:
        if shortened or dropped:
            self.result.shortened_results += shortened
            self.result.dropped_messages += dropped
            self.logger.event("history", why=why, shortened=shortened, dropped=dropped, messages=len(self.messages))
            self.logger.progress(f"history: {shortened} old tool result(s) shortened, {dropped} message(s) dropped ({why})")

    def system_text(self) -> str:
        sections = [self.phase.hint(), self.flow.instructions() if self.flow else ""]
        return prompts.system_prompt(self.config.prompt, self.config.prompt_overlays, self.names,
                                     self.registry.names(), sections)

    def refresh_system_prompt(self) -> None:
        """Re-render the system prompt after a phase or stage change (the only edit of old messages)."""
        text = self.system_text()
        if self.messages and self.messages[0].get("role") == "system" and self.messages[0].get("content") != text:
            self.messages[0] = {"role": "system", "content": text}
            self.logger.event("system_prompt", turn=self.result.turns, phase=self.state.phase,
                              stage=self.flow.stage.name if self.flow else None)

    def seal(self, why: str) -> None:
        """Answer every call of the last assistant message that has no result yet."""
        spans = hist.groups(self.messages)
        if not spans:
            return
        start, end = spans[-1]
        calls = self.messages[start].get("tool_calls") or []
        answered = {self.messages[i].get("tool_call_id") for i in range(start + 1, end)}
        for c in calls:
            if c.get("id") not in answered:
                name = (c.get("function") or {}).get("name", "")
                self.messages.append({"role": "tool", "tool_call_id": c.get("id"), "name": name,
                                      "content": f"error: skipped: {why}"})
                self.result.skipped_calls += 1

    def end(self, end: RunEnded) -> None:
        self.seal("the run ended before this call ran")
        r, s = self.result, self.state
        r.reason, r.detail, r.final_answer = end.reason, end.detail, end.answer
        r.finish_status = s.finish_status
        r.side_usage = s.side_usage.model_copy()
        r.side_calls = dict(s.side_calls)
        r.usage.add(s.side_usage)
        r.messages = self.messages
        r.changed_files = sorted(self.ctx.changed_files)
        r.files_read = sorted(self.ctx.files_read)
        r.phase, r.phase_events = s.phase, list(self.phase.events)
        r.flow_stage = self.flow.stage.name if self.flow else None
        r.seconds = round(time.monotonic() - self.started, 3)
        summary = r.summary()
        self.logger.event("end", **{k: summary[k] for k in (
            "reason", "detail", "final_answer", "finish_status", "turns", "malformed_responses", "format_retries",
            "repairs", "auto_recovered", "nudges", "skipped_calls", "tool_calls", "tool_errors", "usage",
            "side_calls", "context_exceeded", "shortened_results", "dropped_messages", "changed_files", "seconds")})
        self.logger.close(self.messages, summary)
        self.logger.progress(f"ended: {r.reason}{' (' + r.detail + ')' if r.detail else ''} after {r.turns} turns, "
                             f"{r.total_tool_calls} tool calls")


def _canonical_arguments(arguments: str) -> str:
    """Call arguments as sorted JSON, so the same call written twice compares equal."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, ensure_ascii=False)
    except (ValueError, TypeError):
        return arguments.strip()
