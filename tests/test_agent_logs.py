"""Run logs (.jsonl, .log, .raw.json) and saved sessions."""

from __future__ import annotations

import json
import time

import pytest

from agent_support import call, config, context, events, finish
from localcode.agent.logs import RunLogger
from localcode.agent.loop import run_agent
from localcode.agent.session import SESSION_ID, SessionStore, workdir_key
from localcode.backends.scripted import ScriptedChatModel
from localcode.errors import SessionError


def test_jsonl_log_and_raw_json(tmp_path):
    base = tmp_path / "logs" / "task"
    logger = RunLogger(base)
    model = ScriptedChatModel([{"malformed": ["<tool_call>{"]}, call("read", path="a.py"),
                               call("write", path="a.py", content="x = 2\n"), finish("all done")])
    run = run_agent(model, config(phase_control={"mode": "rules"}, phase_log="log"), "the task", context(tmp_path),
                    logger=logger)
    assert run.log_paths == {"jsonl": f"{base}.jsonl", "log": f"{base}.log", "raw": f"{base}.raw.json"}
    evs = events(f"{base}.jsonl")
    kinds = [e["kind"] for e in evs]
    assert kinds[0] == "session_start" and kinds[-1] == "end"
    for kind in ("request", "response", "tool_call", "tool_result", "phase", "format_error"):
        assert kind in kinds, kind
    assert all(isinstance(e["t"], float) for e in evs)
    response = next(e for e in evs if e["kind"] == "response")
    assert set(response["usage"]) == {"prompt_tokens", "cached_tokens", "completion_tokens"}
    assert response["timings"]["predicted_n"] == response["usage"]["completion_tokens"]
    end = evs[-1]
    assert end["reason"] == "finished" and end["final_answer"] == "all done"
    assert end["tool_calls"] == {"read": 1, "write": 1, "finish": 1}
    assert end["malformed_responses"] == 1
    raw = json.loads(open(f"{base}.raw.json").read())
    assert raw["messages"] == run.messages
    assert raw["summary"]["reason"] == "finished"
    text = open(f"{base}.log").read()
    assert "=== [1] USER\nthe task" in text
    assert ">>> write(" in text and "FORMAT ERROR" in text
    assert "=== PHASE EVENTS" in text and "context -> plan by rules" in text
    assert "reason: finished" in text


def test_logger_without_files_still_counts_phase_events(tmp_path):
    logger = RunLogger()
    assert logger.paths == {}
    run = run_agent(ScriptedChatModel([call("read", path="a.py"), finish()]),
                    config(phase_control={"mode": "rules"}), "t", context(tmp_path), logger=logger)
    assert len(run.phase_events) == 1 and run.log_paths == {}


def test_sessions_are_kept_per_workdir(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    s1 = store.create(a, "agent")
    time.sleep(0.01)
    s2 = store.create(b, "agent")
    assert SESSION_ID.match(s1.id)
    assert store.latest(a).id == s1.id  # s2 is newer, but of another folder
    s1.save([{"role": "user", "content": "hi"}], {"plan": "p"}, {"reason": "finished", "turns": 1})
    again = store.latest(a)
    assert again.load_messages() == [{"role": "user", "content": "hi"}]
    assert again.load_state() == {"plan": "p"}
    assert again.meta["runs"] == 1 and again.next_log_base().name == "run-002"
    assert store.open(a, s1.id).id == s1.id
    with pytest.raises(SessionError, match=f"belongs to {b.resolve()}"):
        store.open(a, s2.id)
    with pytest.raises(SessionError, match="no session"):
        store.open(a, "20000101-000000-abcdef")
    with pytest.raises(SessionError, match="not a session id"):
        store.open(a, "../../etc")
    with pytest.raises(SessionError, match="no saved session"):
        store.latest(tmp_path)


def test_latest_follows_the_last_update(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    s1 = store.create(tmp_path, "x")
    time.sleep(0.01)
    s2 = store.create(tmp_path, "x")
    assert store.latest(tmp_path).id == s2.id
    time.sleep(0.01)
    s1.save([], {}, {})
    assert store.latest(tmp_path).id == s1.id


def test_workdir_key_is_stable_and_distinct(tmp_path):
    (tmp_path / "x" / "proj").mkdir(parents=True)
    (tmp_path / "y" / "proj").mkdir(parents=True)
    k1, k2 = workdir_key(tmp_path / "x" / "proj"), workdir_key(tmp_path / "y" / "proj")
    assert k1 != k2 and k1.startswith("proj-") and k2.startswith("proj-")
    assert workdir_key(tmp_path / "x" / "proj" / ".." / "proj") == k1


def test_unreadable_session_file_is_a_session_error(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    s = store.create(tmp_path, "x")
    (s.dir / "messages.json").write_text("{broken")
    with pytest.raises(SessionError, match="unreadable"):
        s.load_messages()
