"""``localcode serve``: the loaded model as an OpenAI-compatible API."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from localcode import interrupt
from localcode.errors import ConfigError, LocalcodeError, MissingDependency

if TYPE_CHECKING:  # pydantic models: imported when serve runs, not for --help
    from localcode.backends.base import ModelInfo
    from localcode.config import AgentConfig


def model_aliases(agent_spec: str, cfg: AgentConfig, info: ModelInfo | None = None) -> list[str]:
    """Names a request may use for the served model: the agent spec and name, the config's
    ``model`` (what localcode's HTTP backend sends), and the model file's name and stem."""
    names = [agent_spec, cfg.name, cfg.model or ""]
    paths = [cfg.server_config.model_path or "", info.path or "" if info else ""]
    for p in paths:
        if p and not p.startswith(("pypi:", "hf:")):
            names += [Path(p).expanduser().name, Path(p).stem]
    if info is not None:
        names.append(info.model)
    return [n for n in dict.fromkeys(names) if n]


@click.command("serve")
@click.option("--agent", "agent_spec", required=True, metavar="KIND/NAME",
              help="Agent config whose model to serve, e.g. gguf/gemma-3-270m (or a .json path).")
@click.option("--model", "model_path", type=click.Path(dir_okay=True, path_type=Path), default=None,
              help="Model file (GGUF) or folder (MLX) instead of the config's server_config.model_path.")
@click.option("--agent-args", default="", metavar="'k=v ...'",
              help="Override config fields, e.g. 'server_config.context_window=8192'.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind. The default answers only this machine.")
@click.option("--port", default=1235, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--api-key", envvar="LOCALCODE_API_KEY", default=None, metavar="KEY",
              help="Require 'Authorization: Bearer KEY' on every route but /health [env: LOCALCODE_API_KEY].")
@click.option("--queue-size", default=16, show_default=True, type=click.IntRange(0, 10_000),
              help="Requests that may wait while one generates; beyond that: 503 with Retry-After.")
@click.option("--name", "served_name", default=None,
              help="Model id shown by /v1/models (default: the agent's name).")
@click.option("--strict-model", is_flag=True,
              help="Refuse requests that name another model (404 model_not_found), as OpenAI does. "
                   "Default: any name is answered by the loaded model, as llama-server does.")
def command(agent_spec: str, model_path: Path | None, agent_args: str, host: str, port: int,
            api_key: str | None, queue_size: int, served_name: str | None, strict_model: bool) -> None:
    """Serve the agent's model as an OpenAI-compatible API.

    The model is loaded once, in this process, and answers one request at a time; others
    wait in a bounded queue. Routes: POST /v1/chat/completions (streaming, tools,
    reasoning_content, usage with cached tokens, llama-server timings), POST /v1/completions,
    GET /v1/models, GET /health (503 while the model loads, then 200).

    Requests may name any model (clients set up for llama-server or LM Studio send their own
    names): the loaded model answers and the response carries its id. With --strict-model
    only its id, the agent spec, the config's model name or the model file's stem is accepted.
    Sampling fields a request leaves out (temperature, top_p, max_tokens, ...) take the agent
    config's values, then llama-server's defaults.

    \b
    Examples:
      localcode serve --agent gguf/gemma-3-270m
      localcode bench --agent gguf/gemma-3-270m --url http://127.0.0.1:1235/v1 -k python/two-fer
    """
    try:
        import uvicorn

        from localcode.server import create_app
    except ImportError as e:
        raise MissingDependency(e.name or "fastapi", "serve", "localcode serve") from None
    from localcode.config import merge_overrides, parse_agent_args, resolve_agent

    cfg = resolve_agent(agent_spec)
    overrides: dict[str, Any] = parse_agent_args(agent_args) if agent_args else {}
    if model_path is not None:
        overrides["server_config.model_path"] = str(model_path.expanduser())
    if overrides:
        cfg = merge_overrides(cfg, overrides)
    if cfg.backend == "http":
        raise ConfigError(f"agent '{agent_spec}' talks to a server at {cfg.url}: serve an agent whose model "
                          "loads in-process (gguf/... or mlx/...)")
    name = served_name or cfg.name

    class Server(uvicorn.Server):
        """uvicorn's server with localcode's Ctrl-C: the first stops the generation in progress
        (a prompt evaluation included) and shuts down, a second exits at once."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            if sig != signal.SIGINT:
                super().handle_exit(sig, frame)
                return
            if interrupt.requested():
                click.echo("\ninterrupted again: exiting now", err=True)
                os._exit(interrupt.EXIT_CODE)
            interrupt.request()
            self.should_exit = True

    app = create_app(None, name, api_key=api_key, queue_size=queue_size, aliases=model_aliases(agent_spec, cfg),
                     strict_model=strict_model)
    state = app.state.localcode
    server = Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=5))
    failure: list[BaseException] = []

    def load() -> None:
        from localcode.backends.loader import load_model

        try:
            model = load_model(cfg)
        except BaseException as e:  # reported by the main thread after the server stops
            failure.append(e)
            state.set_load_error(str(e))
            server.should_exit = True
            return
        for alias in model_aliases(agent_spec, cfg, model.info):
            if alias not in state.names:
                state.names.append(alias)
        state.set_model(model)
        click.echo(f"serving {name} ({model.info.backend}, context {model.info.context_window}, "
                   f"loaded in {model.info.load_seconds:.1f} s) at http://{host}:{port}/v1", err=True)

    click.echo(f"loading {agent_spec} ...  (GET http://{host}:{port}/health answers 503 until loaded)", err=True)
    loader = threading.Thread(target=load, name="localcode-load", daemon=True)
    loader.start()
    try:
        server.run()  # uvicorn logs a port already in use and exits 1
    finally:
        # A load still running (Ctrl-C while loading) is not waited for: the thread is a daemon.
        if not loader.is_alive() and state.model is not None:
            state.model.close()
    if interrupt.requested():
        raise KeyboardInterrupt
    if failure:
        err = failure[0]
        if isinstance(err, LocalcodeError):
            raise err
        raise LocalcodeError(f"loading the model failed: {type(err).__name__}: {err}") from err
