"""``localcode agents``: list the agent configs, and name the broken ones."""

from __future__ import annotations

import json
from typing import Any

import click

from localcode.errors import ConfigError


@click.command("agents")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also list, per agent, the settings that have no effect here (server-only flags, "
                   "fields of the original format that localcode does not use).")
@click.option("--strict", is_flag=True, help="Exit with status 1 when any config is broken.")
def command(as_json: bool, verbose: bool, strict: bool) -> None:
    """List the agent configs localcode can find.

    Built-in configs ship in agents/<kind>/<name>.json; your own go in
    $LOCALCODE_HOME/agents/<kind>/<name>.json and shadow built-ins of the same name.
    Configs in the original localcode layout work as they are: copy its agents/ and
    prompts/ folders into $LOCALCODE_HOME. The agents 'oracle' and 'none' need no model.

    A broken config does not hide the others: each gets one line on stderr naming its file
    and the field at fault (and an "error" entry with --json); the exit status stays 0
    unless --strict is given.
    """
    from localcode.config import BUILTIN_AGENTS, list_agents, load_agent_file

    rows: list[dict[str, Any]] = []
    broken: list[dict[str, Any]] = []
    for name, path in list_agents():
        try:
            cfg = load_agent_file(path)
            not_applicable = cfg.not_applicable()
        except ConfigError as e:
            broken.append({"agent": name, "path": str(path), "error": str(e)})
            continue
        sc = cfg.server_config
        rows.append({
            "agent": name,
            "backend": cfg.backend,
            "model": sc.model_path or sc.hf_model or cfg.model or cfg.url or "",
            "context_window": sc.context_window,
            "description": cfg.description,
            "path": str(path),
            "not_applicable": not_applicable,
        })
    for b in BUILTIN_AGENTS:
        rows.append({"agent": b, "backend": "none", "model": "", "context_window": None,
                     "description": "built-in, needs no model", "path": "", "not_applicable": []})
    for b in broken:
        click.echo(f"error: {b['error']}", err=True)
    if as_json:
        click.echo(json.dumps(rows + broken, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("agent", "backend", "context", "model")
        for r in rows:
            table.add_row(r["agent"], r["backend"], str(r["context_window"] or ""), r["model"])
        Console().print(table)
        if verbose:
            for r in rows:
                if r["not_applicable"]:
                    click.echo(f"{r['agent']}: not applicable here:")
                    for item in r["not_applicable"]:
                        click.echo(f"  {item}")
    if broken:
        click.echo(f"{len(broken)} broken config(s) listed above"
                   + ("" if strict else "; --strict makes this exit with status 1"), err=True)
        if strict:
            raise click.exceptions.Exit(1)
