"""The model-driven solver of ``localcode bench``: the tool-calling agent on an in-process model.

One ``ModelSolver`` per run loads the model once; each task gets a ``ModelSession`` whose
conversation spans every try (try 2 continues try 1's conversation, as in Aider's
protocol). The session holds the conversation itself, so it is never looked up by
"the newest session file".

How an agent run maps onto the benchmark's records:

- ``time_limit`` (the per-try ``--agent-timeout`` or the config's ``max_wall_seconds``):
  not an error — the tests still run on what was written;
- ``model_error`` (the backend failed: the model could not run): an infrastructure error
  with its reason, never a test failure;
- every other ending is the model's doing and the tests decide, as in Aider: ``finished``,
  ``answered``, ``max_turns``, ``format_errors``, ``stuck``, ``context_exceeded`` (the
  conversation no longer fits the context window; also counted in
  ``exhausted_context_windows``), ``request_timeout`` (one generation ran too long), ...

Try 2 keeps its KV state: tries of different tasks interleave on the one model (generation
is serial, tests run meanwhile), so after each try the session asks a model that can
(``save_conversation``, the in-process GGUF backend) to keep its conversation's KV state,
and restores it before the next try, which then evaluates only the new message.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from localcode.agent.logs import RunLogger
from localcode.agent.loop import chat_options, run_agent
from localcode.agent.state import AgentRun
from localcode.agent.tools.base import ToolContext
from localcode.backends.base import ChatModel, ConversationStates, Message
from localcode.config import AgentConfig
from localcode.harness.bench import AttemptReport
from localcode.harness.dataset import Exercise
from localcode.harness.results import AgentUsage
from localcode.harness.workspace import protected_paths, redirect_target, write_refusal

INFRASTRUCTURE_ENDINGS = {"model_error": "model error"}
"""Agent endings that are recorded as infrastructure errors (never as test failures)."""


def usage_of(run: AgentRun) -> AgentUsage:
    """The benchmark's per-try usage record of one agent run."""
    u = run.usage
    return AgentUsage(
        model_calls=u.model_calls,
        prompt_tokens=u.prompt_tokens,
        cached_tokens=u.cached_tokens,
        completion_tokens=u.completion_tokens,
        prompt_ms=u.prompt_ms,
        decode_ms=u.predicted_ms,
        prompt_eval_tokens=u.prompt_n,
        decode_tokens=u.predicted_n,
        malformed_responses=run.malformed_responses,
        repairs=run.repairs,
        text_calls=run.text_calls,
        repetition_stops=run.repetition_stops,
        exhausted_context_windows=int(run.context_exceeded),
        tool_calls=dict(run.tool_calls),
        tool_errors=dict(run.tool_errors),
    )


def report_of(run: AgentRun) -> AttemptReport:
    """An agent run as the harness records it (see the module docstring)."""
    error = None
    if run.reason in INFRASTRUCTURE_ENDINGS:
        error = INFRASTRUCTURE_ENDINGS[run.reason] + (f": {run.detail}" if run.detail else "")
    return AttemptReport(error=error, stop_reason=run.reason, timed_out=run.reason == "time_limit",
                         usage=usage_of(run))


def files_message(workspace: Path, files: list[str], max_bytes: int = 20_000) -> str:
    """The files' current content as Aider's chat shows it: the path, then a fenced block.

    A file over ``max_bytes`` is named but not shown (the model can read it).
    """
    parts = ["\n\nThe files as they are now:"]
    for rel in files:
        path = workspace / rel
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if len(data) > max_bytes:
            parts.append(f"\n{rel} ({len(data)} bytes: too long to show here; read it)")
            continue
        text = data.decode("utf-8", errors="replace")
        fence = "````" if "```" in text else "```"
        parts.append(f"\n{rel}\n{fence}\n{text}{'' if text.endswith(chr(10)) or not text else chr(10)}{fence}")
    return "\n".join(parts) if len(parts) > 1 else ""


class ModelSession:
    """One task's conversation, across all its tries."""

    def __init__(self, solver: ModelSolver, exercise: Exercise, workspace: Path) -> None:
        self.solver = solver
        self.model = solver.model
        self.exercise = exercise
        sandbox = solver.sandbox
        self.ctx = ToolContext(
            workspace=workspace,
            protected=frozenset(protected_paths(exercise)),
            write_policy=lambda rel: write_refusal(exercise, rel),
            redirect_write=(lambda rel: redirect_target(exercise, rel))
            if solver.config.redirect_misplaced_writes else None,
            sandbox=sandbox,
            shell_cwd=workspace if sandbox is not None else None,
            shell_enabled=sandbox is not None,
            model=self.model,
        )
        self.history: list[Message] | None = None

    def attempt(self, prompt: str, try_index: int, deadline: float | None) -> AttemptReport:
        logger = RunLogger(self.solver.log_base(self.exercise, try_index), console=self.solver.console,
                           prefix=f"{self.exercise.id} try {try_index}: ")
        if try_index == 1 and self.solver.config.files_in_prompt:
            prompt = prompt + files_message(self.ctx.workspace, self.exercise.solution_files)
        states = self._states()
        if states is not None and self.history is not None:
            restored = states.restore_conversation(self.exercise.id)
            stats = getattr(states, "state_stats", {})
            logger.event("kv_state", action="restore", restored=restored, **stats.get("last_restore", {}))
        run = run_agent(self.model, self.solver.config, prompt, self.ctx, self.history,
                        logger=logger, deadline=deadline)
        self.history = run.messages
        if states is not None:
            states.save_conversation(self.exercise.id)
        return report_of(run)

    def _states(self) -> ConversationStates | None:
        """The model's conversation-state store, when it has one."""
        return self.model if isinstance(self.model, ConversationStates) else None

    def close(self) -> None:
        self.history = None
        states = self._states()
        if states is not None:
            states.drop_conversation(self.exercise.id)


class ModelSolver:
    """Solves tasks with the tool-calling agent on a model loaded once for the run."""

    def __init__(self, name: str, config: AgentConfig, model: ChatModel, *, verbose: bool = False) -> None:
        self.name = name
        self.config = config
        self.model = model
        self.sandbox: Any = None
        """Where the agent's ``shell`` tool runs (the run's test container); set by ``bind``."""
        self.run_dir: Path | None = None
        self.console = sys.stderr if verbose else None

    @classmethod
    def load(cls, name: str, config: AgentConfig, *, verbose: bool = False) -> ModelSolver:
        """Load ``config``'s model (once per run) and wrap it."""
        from localcode.backends.loader import load_model

        return cls(name, config, load_model(config), verbose=verbose)

    def bind(self, sandbox: Any, run_dir: Path) -> None:
        """Attach the run's sandbox (for ``shell``) and run folder (for the agent logs)."""
        self.sandbox = sandbox
        self.run_dir = run_dir

    def log_base(self, exercise: Exercise, try_index: int) -> Path | None:
        """``<run>/<lang>/<name>/try-N`` (+ .jsonl/.log/.raw.json), beside the task's result."""
        if self.run_dir is None:
            return None
        return self.run_dir / exercise.language / exercise.name / f"try-{try_index}"

    def start(self, exercise: Exercise, workspace: Path) -> ModelSession:
        """A fresh session for ``exercise``; logs of an earlier, interrupted start of it are removed
        (a task always starts over at try 1, and its logs must not mix two runs)."""
        base = self.log_base(exercise, 1)
        if base is not None and base.parent.is_dir():
            for stale in base.parent.glob("try-*"):
                if stale.is_file():
                    stale.unlink()
        return ModelSession(self, exercise, workspace)

    def info(self) -> dict[str, Any]:
        """Model file (sha256, size, quantization), effective config, sampler and seed, context size."""
        info = self.model.info
        compute = getattr(self.model, "compute_sha256", None)
        if callable(compute) and not info.sha256:
            t0 = time.perf_counter()
            compute()
            info.details.setdefault("sha256_seconds", round(time.perf_counter() - t0, 2))
        return {
            "kind": "model",
            "config_source": self.config.source,
            "effective_config": self.config.model_dump(mode="json"),
            "sampler": chat_options(self.config).model_dump(mode="json"),
            "seed": self.config.seed,
            "context_window": info.context_window,
            "model": info.model_dump(mode="json"),
        }

    def close(self) -> None:
        self.model.close()
