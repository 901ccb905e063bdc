"""Phase control: a side channel that tracks what the agent is doing.

The phase (``context`` → ``plan`` → ``implement`` → ``verify`` by default) is never
written into the conversation. It changes the system prompt's phase hint only, and every
change is an event in the run's log.

Modes (``phase_control.mode``):

- ``off``: no phase.
- ``rules``: tool results move the phase: enough files read → ``plan`` (when
  ``auto_plan_after_read``), plan_solution / plan_tasks → ``plan``, a file change →
  ``implement`` (when ``write_to_implement``), a shell command while implementing → ``verify``.
  A transition to a state that is not in ``states`` is skipped.
- ``llm``: after every turn with tool calls, a separate model call (the *probe*, with
  ``phase_control.llm`` temperature and max_tokens and the tiny prompt
  ``prompts/phase_probe.md``) names the phase. Its messages are not part of the
  conversation; its tokens count in the run's usage.
- ``hybrid``: the rules first; the probe only after turns in which the rules moved nothing.

``phase_log`` (env ``LOCALCODE_PHASE_LOG`` overrides it): ``off``, ``stdout`` (phase
events on the console — written to stderr, since stdout carries the answer), ``log``
(a PHASE EVENTS section in the readable ``.log``), ``both``.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from localcode.agent import prompts
from localcode.backends.base import ChatModel, ChatOptions
from localcode.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from localcode.agent.state import AgentState
    from localcode.config import PhaseControl

PHASE_LOG_MODES = ("off", "stdout", "log", "both")


def phase_log_mode(configured: str) -> str:
    """The effective phase_log: ``LOCALCODE_PHASE_LOG`` when set, else the config's."""
    env = os.environ.get("LOCALCODE_PHASE_LOG", "").strip().lower()
    if env:
        if env not in PHASE_LOG_MODES:
            raise ConfigError(f"LOCALCODE_PHASE_LOG={env!r}: use one of {', '.join(PHASE_LOG_MODES)}")
        return env
    return configured


class PhaseTracker:
    """The phase of one run and the rules and probe that move it."""

    def __init__(self, control: PhaseControl, state: AgentState) -> None:
        if control.mode != "off" and control.default not in control.states:
            raise ConfigError(
                f"phase_control.default '{control.default}' is not in phase_control.states {control.states}"
            )
        self.control = control
        self.state = state
        self.events: list[dict[str, Any]] = []
        if control.mode == "off":
            state.phase = None
        elif state.phase not in control.states:
            state.phase = control.default
        self.moved_this_turn = False

    @property
    def enabled(self) -> bool:
        return self.control.mode != "off"

    @property
    def phase(self) -> str | None:
        return self.state.phase

    def hint(self) -> str:
        """The system-prompt hint for the current phase (config ``hints``, else ``prompts/phase_<name>.md``)."""
        phase = self.state.phase
        if phase is None:
            return ""
        if phase in self.control.hints:
            return self.control.hints[phase]
        if prompts.prompt_file(f"phase_{phase}") is not None:
            return prompts.load_prompt(f"phase_{phase}")
        return ""

    def start_turn(self) -> None:
        self.moved_this_turn = False

    def move(self, to: str, by: str, reason: str, turn: int) -> dict[str, Any] | None:
        """Change the phase; returns the event, or None when nothing changed."""
        if to == self.state.phase or to not in self.control.states:
            return None
        event = {"from": self.state.phase, "to": to, "by": by, "reason": reason, "turn": turn}
        self.state.phase = to
        self.events.append(event)
        self.moved_this_turn = True
        self.state.event("phase", **event)
        if self.state.logger is not None:
            self.state.logger.phase(event)
        return event

    def after_tool(self, tool: str, ok: bool, writes_files: bool, files_read: int, turn: int) -> None:
        """Apply the rules to one tool result (modes ``rules`` and ``hybrid``)."""
        if self.control.mode not in ("rules", "hybrid") or not ok:
            return
        rules = self.control.rules
        phase = self.state.phase
        if writes_files and rules.write_to_implement:
            self.move("implement", "rules", f"{tool} changed a file", turn)
        elif tool in ("plan_solution", "plan_tasks"):
            self.move("plan", "rules", f"{tool} recorded a plan", turn)
        elif tool == "shell" and phase == "implement":
            self.move("verify", "rules", "a command ran after a change", turn)
        elif (phase == "context" and rules.auto_plan_after_read
              and files_read >= rules.min_files_read_for_plan):
            self.move("plan", "rules", f"{files_read} file(s) read", turn)

    def wants_probe(self, had_tool_calls: bool) -> bool:
        """Whether the LLM probe should run after this turn."""
        if not had_tool_calls:
            return False
        if self.control.mode == "llm":
            return True
        return self.control.mode == "hybrid" and not self.moved_this_turn

    def probe(self, model: ChatModel, steps: list[str], turn: int) -> None:
        """Ask the model which phase the agent is in, outside the conversation."""
        text = prompts.render_file(
            "phase_probe",
            states=", ".join(self.control.states),
            current=self.state.phase or "",
            steps="\n".join(f"- {s}" for s in steps[-8:]) or "- (none yet)",
        )
        options = ChatOptions(
            temperature=self.control.llm.temperature,
            max_tokens=self.control.llm.max_tokens,
            tool_choice="none",
            think=False,
        )
        try:
            result = model.chat([{"role": "user", "content": text}], None, options)
        except ModelError as e:
            self.state.event("phase_probe", ok=False, error=str(e), turn=turn)
            return
        self.state.record_side_call("phase_probe", result)
        answer = (result.content or result.reasoning or "").strip()
        found = classify(answer, self.control.states)
        self.state.event("phase_probe", ok=found is not None, answer=answer[:200], phase=found, turn=turn,
                         prompt_tokens=result.usage.prompt_tokens, completion_tokens=result.usage.completion_tokens)
        if found is not None:
            self.move(found, "llm", f"probe answered {answer[:40]!r}", turn)


def classify(answer: str, states: list[str]) -> str | None:
    """The first state named in ``answer`` (whole word, case-insensitive), or None."""
    best: tuple[int, str] | None = None
    for s in states:
        m = re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", answer, re.I)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), s)
    return best[1] if best else None
