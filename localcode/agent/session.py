"""Saved agent sessions, so ``localcode solve --continue`` can pick a conversation up.

Layout under ``paths.sessions_dir()``::

    <workdir-key>/                 one folder per working directory
        <session-id>/
            session.json           id, workdir, agent, created, updated, runs, last ending
            messages.json          the conversation
            state.json             plan, tasks, flow stage, phase
            run-001.jsonl/.log/.raw.json   the logs of each run in this session

``<workdir-key>`` is the folder's name plus a hash of its resolved path, so sessions of
two folders never mix: ``latest(workdir)`` only looks at that folder's sessions, and
``open(workdir, id)`` refuses a session of another folder. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcode import paths
from localcode.backends.base import Message
from localcode.errors import SessionError

SESSION_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
"""What a session id looks like: ``20250131-142501-3fa2c1`` (sortable by time)."""


def workdir_key(workdir: Path) -> str:
    """The folder name under the sessions dir for ``workdir``."""
    resolved = Path(workdir).resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", resolved.name)[:40] or "root"
    return f"{name}-{digest}"


def new_session_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass
class Session:
    """One saved conversation of one working directory."""

    id: str
    workdir: Path
    dir: Path
    meta: dict[str, Any]

    def load_messages(self) -> list[Message]:
        """The saved conversation (empty for a new session)."""
        return _read_json(self.dir / "messages.json", [])

    def load_state(self) -> dict[str, Any]:
        """The saved ``AgentState.to_dict()`` (empty for a new session)."""
        return _read_json(self.dir / "state.json", {})

    def next_log_base(self) -> Path:
        """The log path (without suffix) for the next run of this session."""
        n = int(self.meta.get("runs", 0)) + 1
        return self.dir / f"run-{n:03d}"

    def save(self, messages: list[Message], state: dict[str, Any], run_summary: dict[str, Any]) -> None:
        """Store the conversation and state after a run; counts the run."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_json(self.dir / "messages.json", messages)
        _atomic_json(self.dir / "state.json", state)
        self.meta["runs"] = int(self.meta.get("runs", 0)) + 1
        self.meta["updated"] = time.time()
        self.meta["last"] = {k: run_summary.get(k) for k in ("reason", "final_answer", "turns", "finish_status")}
        _atomic_json(self.dir / "session.json", self.meta)


class SessionStore:
    """The sessions under one root (default ``paths.sessions_dir()``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.sessions_dir()

    def create(self, workdir: Path, agent: str) -> Session:
        """A new, empty session for ``workdir`` (written to disk at once)."""
        workdir = Path(workdir).resolve()
        sid = new_session_id()
        folder = self.root / workdir_key(workdir) / sid
        folder.mkdir(parents=True, exist_ok=False)
        now = time.time()
        meta = {"id": sid, "workdir": str(workdir), "agent": agent, "created": now, "updated": now, "runs": 0}
        _atomic_json(folder / "session.json", meta)
        return Session(sid, workdir, folder, meta)

    def list(self, workdir: Path) -> list[Session]:
        """The sessions of ``workdir``, oldest first."""
        workdir = Path(workdir).resolve()
        base = self.root / workdir_key(workdir)
        found = []
        if base.is_dir():
            for folder in base.iterdir():
                meta = _read_json(folder / "session.json", None)
                if not isinstance(meta, dict) or meta.get("workdir") != str(workdir):
                    continue
                found.append(Session(str(meta.get("id", folder.name)), workdir, folder, meta))
        return sorted(found, key=lambda s: (float(s.meta.get("updated", 0)), s.id))

    def latest(self, workdir: Path) -> Session:
        """The most recently updated session of ``workdir``; ``SessionError`` when there is none."""
        sessions = self.list(workdir)
        if not sessions:
            raise SessionError(f"no saved session for {Path(workdir).resolve()}: run 'localcode solve' there first")
        return sessions[-1]

    def open(self, workdir: Path, session_id: str) -> Session:
        """Session ``session_id`` of ``workdir``. ``SessionError`` when it does not exist or
        belongs to another folder (naming that folder)."""
        workdir = Path(workdir).resolve()
        if not SESSION_ID.match(session_id):
            raise SessionError(f"'{session_id}' is not a session id (like 20250131-142501-3fa2c1)")
        for s in self.list(workdir):
            if s.id == session_id:
                return s
        for meta_file in self.root.glob(f"*/{session_id}/session.json"):
            other = _read_json(meta_file, {}).get("workdir", "?")
            raise SessionError(f"session {session_id} belongs to {other}, not {workdir}: run with --workdir {other}")
        raise SessionError(f"no session {session_id} for {workdir}: 'localcode solve --continue' picks the latest")


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, json.JSONDecodeError) as e:
        raise SessionError(f"session file {path} is unreadable ({e}): delete that session folder") from None


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)
