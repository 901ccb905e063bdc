"""``localcode agents``: list the agent configs."""

from __future__ import annotations

import json

import click

from localcode.config import BUILTIN_AGENTS, list_agents, load_agent_file


@click.command("agents")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def command(as_json: bool) -> None:
    """List the agent configs localcode can find.

    Built-in configs ship in agents/<kind>/<name>.json; your own go in
    $LOCALCODE_HOME/agents/<kind>/<name>.json and shadow built-ins of the same name.
    The agents 'oracle' and 'none' need no model (they prove the harness).
    """
    rows = []
    for name, path in list_agents():
        cfg = load_agent_file(path)
        sc = cfg.server_config
        rows.append({
            "agent": name,
            "backend": cfg.backend,
            "model": sc.model_path or sc.hf_model or cfg.model or cfg.url or "",
            "context_window": sc.context_window,
            "description": cfg.description,
            "path": str(path),
        })
    for b in BUILTIN_AGENTS:
        rows.append({"agent": b, "backend": "none", "model": "", "context_window": None,
                     "description": "built-in, needs no model", "path": ""})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("agent", "backend", "context", "model")
    for r in rows:
        table.add_row(r["agent"], r["backend"], str(r["context_window"] or ""), r["model"])
    Console().print(table)
