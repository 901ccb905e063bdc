"""Helpers for the agent tests (tests/test_agent_*.py, tests/test_solve.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localcode.agent.history import unanswered_calls
from localcode.agent.tools.base import ToolContext
from localcode.backends.base import Message
from localcode.config import AgentConfig


def config(**fields: Any) -> AgentConfig:
    """An agent config for tests (name 'test', the default tool set unless given)."""
    return AgentConfig(name="test", **fields)


def workspace(root: Path) -> Path:
    """A small project: a.py, pkg/b.py, README.md."""
    ws = root / "ws"
    (ws / "pkg").mkdir(parents=True)
    (ws / "a.py").write_text("x = 1\n")
    (ws / "pkg" / "b.py").write_text("def f():\n    return 1\n")
    (ws / "README.md").write_text("# demo\n")
    return ws


def context(root: Path, **fields: Any) -> ToolContext:
    return ToolContext(workspace=workspace(root), **fields)


def call(name: str, arguments: Any = None, **args: Any) -> dict[str, Any]:
    """A scripted response with one tool call (``arguments`` may be raw text)."""
    return {"tool_calls": [{"name": name, "arguments": arguments if arguments is not None else args}]}


def calls(*pairs: tuple[str, Any]) -> dict[str, Any]:
    """A scripted response with several tool calls: ``calls(("read", {...}), ("ls", {}))``."""
    return {"tool_calls": [{"name": n, "arguments": a} for n, a in pairs]}


def finish(summary: str = "done", status: str = "done") -> dict[str, Any]:
    return call("finish", summary=summary, status=status)


def assert_paired(messages: list[Message]) -> None:
    """Every tool call id has exactly one tool message, right after its assistant message."""
    problems = unanswered_calls(messages)
    assert problems == [], problems
    ids = [c["id"] for m in messages for c in m.get("tool_calls") or []]
    results = [m["tool_call_id"] for m in messages if m.get("role") == "tool"]
    assert sorted(ids) == sorted(results)
    assert len(set(ids)) == len(ids), "tool call ids must be unique in a conversation"


def events(jsonl: str | Path) -> list[dict[str, Any]]:
    """The parsed events of a run's .jsonl."""
    return [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]


def user_texts(messages: list[Message]) -> list[str]:
    return [m["content"] for m in messages if m.get("role") == "user"]
