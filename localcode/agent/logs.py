"""Run logs: what happened in one agent run, for people and for programs.

Per run, next to each other (``<base>`` is chosen by the caller):

- ``<base>.jsonl``: one JSON event per line, written and flushed as it happens (a
  crashed run keeps everything up to the crash): ``session_start``, ``request``,
  ``response`` (usage and timings), ``tool_call``, ``tool_result``, ``phase``,
  ``phase_probe``, ``format_error``, ``nudge``, ``auto_tool_call``, ``history``,
  ``flow_stage``, ``sub_agent``, ``end``. Each has ``t`` (seconds since start),
  ``kind`` and its fields.
- ``<base>.log``: the conversation, readable, written at the end; with a PHASE EVENTS
  section when ``phase_log`` is ``log`` or ``both``.
- ``<base>.raw.json``: the full conversation (the messages as sent to the model) and the
  run's summary, written at the end.

A logger without a base writes no files; it can still print progress on the console.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, TextIO

from localcode.backends.base import Message

_MAX_EVENT_TEXT = 4000


class RunLogger:
    """Writes one run's ``.jsonl`` / ``.log`` / ``.raw.json`` and prints progress."""

    def __init__(self, base: Path | str | None = None, console: TextIO | None = None, prefix: str = "") -> None:
        """``base``: path without suffix (``runs/x/task``), or None for no files.
        ``console``: a stream for progress lines (stderr), or None for quiet."""
        self.base = Path(base) if base is not None else None
        self.console = console
        self.prefix = prefix
        self.start = time.monotonic()
        self.phase_events: list[dict[str, Any]] = []
        self.phase_log = "off"
        self.thinking_visibility = "log"
        self._jsonl: TextIO | None = None
        self._parent: RunLogger | None = None
        self._tag = ""
        if self.base is not None:
            self.base.parent.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.base.with_name(self.base.name + ".jsonl"), "a", encoding="utf-8")

    @property
    def paths(self) -> dict[str, str]:
        """The files this logger writes, by kind."""
        if self.base is None:
            return {}
        return {k: str(self.base.with_name(self.base.name + ext))
                for k, ext in (("jsonl", ".jsonl"), ("log", ".log"), ("raw", ".raw.json"))}

    def child(self, name: str) -> RunLogger:
        """A logger for a sub-agent: its events go into this run's ``.jsonl`` tagged ``agent``."""
        sub = RunLogger(None, self.console, prefix=f"{self.prefix}{name}> ")
        sub._parent = self
        sub.start = self.start
        sub.thinking_visibility = self.thinking_visibility
        sub._tag = name
        return sub

    def event(self, kind: str, **data: Any) -> None:
        """Append one event to the ``.jsonl`` (never raises for unserializable values)."""
        record = {"t": round(time.monotonic() - self.start, 4), "kind": kind, **data}
        if self._parent is not None:
            record["agent"] = self._tag
            self._parent._write(record)
        else:
            self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self._jsonl is None:
            return
        self._jsonl.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._jsonl.flush()

    def progress(self, text: str) -> None:
        """One progress line on the console (stderr), if any."""
        if self.console is not None:
            self.console.write(f"{self.prefix}{text}\n")
            self.console.flush()

    def phase(self, event: dict[str, Any]) -> None:
        """A phase change, shown where ``phase_log`` says (it is always in the ``.jsonl``)."""
        self.phase_events.append(event)
        if self.phase_log in ("stdout", "both") and self.console is not None:
            self.progress(f"[phase] {event.get('from')} -> {event.get('to')} ({event.get('by')}: {event.get('reason')})")

    def close(self, messages: list[Message], summary: dict[str, Any]) -> None:
        """Write ``.log`` and ``.raw.json`` and close the ``.jsonl``. Safe to call twice."""
        if self.base is None:
            return
        paths = self.paths
        _atomic_write(Path(paths["raw"]), json.dumps({"summary": summary, "messages": messages},
                                                      ensure_ascii=False, indent=1, default=str))
        _atomic_write(Path(paths["log"]), self.readable(messages, summary))
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def readable(self, messages: list[Message], summary: dict[str, Any]) -> str:
        """The conversation as text, for people."""
        out: list[str] = []
        show_reasoning = self.thinking_visibility != "hide"
        for i, m in enumerate(messages):
            role = str(m.get("role", "?")).upper()
            head = f"=== [{i}] {role}"
            if m.get("role") == "tool":
                head += f" ({m.get('name', '')} {m.get('tool_call_id', '')})"
            out.append(head)
            if show_reasoning and m.get("reasoning_content"):
                out.append(f"--- reasoning\n{m['reasoning_content']}\n---")
            content = m.get("content")
            if content:
                out.append(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))
            for c in m.get("tool_calls") or []:
                fn = c.get("function", {})
                out.append(f">>> {fn.get('name')}({fn.get('arguments')})  [{c.get('id')}]")
            out.append("")
        if self.phase_log in ("log", "both"):
            out.append("=== PHASE EVENTS")
            for e in self.phase_events:
                out.append(f"turn {e.get('turn')}: {e.get('from')} -> {e.get('to')} by {e.get('by')}: {e.get('reason')}")
            if not self.phase_events:
                out.append("(none)")
            out.append("")
        out.append("=== END")
        for key in ("reason", "detail", "turns", "final_answer"):
            if summary.get(key) not in (None, ""):
                out.append(f"{key}: {summary[key]}")
        return "\n".join(out) + "\n"


def clip(text: str, limit: int = _MAX_EVENT_TEXT) -> str:
    """Text cut for an event record, saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
