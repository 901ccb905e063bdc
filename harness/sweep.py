"""A sweep: several agents over the same selection, one run folder per agent.

``localcode bench --agent A --agent B ...`` or ``--sweep FILE``. The file is YAML (or JSON,
which is YAML) holding a list of agents, either bare or under ``agents:``; each entry is an
agent spec or a mapping with ``agent`` and optional ``agent_args`` (added after the
command line's ``--agent-args``, so the entry's values win)::

    agents:
      - oracle
      - gguf/gemma-3-270m
      - agent: gguf/gemma-3-270m
        agent_args: "temperature=0.7 top_p=0.9"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from localcode.errors import ConfigError


class SweepEntry(BaseModel):
    """One agent of a sweep."""

    model_config = ConfigDict(extra="forbid")

    agent: str
    """Agent spec, as ``--agent`` takes it."""
    agent_args: str | None = None
    """``--agent-args`` for this agent only (after the command line's)."""


def load_sweep(path: Path) -> list[SweepEntry]:
    """The entries of a sweep file. Raises ``ConfigError`` naming the file and what is wrong."""
    import yaml

    try:
        data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read the sweep file {path}: {' '.join(str(e).split())[:300]}") from None
    if isinstance(data, dict) and set(data) == {"agents"}:
        data = data["agents"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"sweep file {path}: expected a list of agents (or 'agents:' with one), e.g. "
                          "'agents: [oracle, gguf/gemma-3-270m]'")
    entries = []
    for i, item in enumerate(data, 1):
        try:
            entries.append(SweepEntry(agent=item) if isinstance(item, str) else SweepEntry.model_validate(item))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"sweep file {path}, entry {i}: {where or 'entry'}: {first['msg']} "
                              "(an entry is an agent spec or {agent: ..., agent_args: ...})") from None
    return entries


def sweep_entries(agents: tuple[str, ...], sweep: Path | None) -> list[SweepEntry]:
    """The agents of one ``bench`` command: every ``--agent``, then the sweep file's.

    Raises ``ConfigError`` when there is none, or one agent is listed twice with the same args.
    """
    entries = [SweepEntry(agent=a) for a in agents] + (load_sweep(sweep) if sweep else [])
    if not entries:
        raise ConfigError("no agent: pass --agent NAME (several for a sweep) or --sweep FILE")
    seen = set()
    for e in entries:
        key = (e.agent, e.agent_args or "")
        if key in seen:
            raise ConfigError(f"agent {e.agent} is listed twice with the same agent_args: drop one")
        seen.add(key)
    return entries

