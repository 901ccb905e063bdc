"""``localcode solve`` end to end, in a subprocess, with the scripted model hook ($LOCALCODE_TEST_SCRIPT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_support import assert_paired, call, finish


def solve(args: list[str], script: list, home: Path, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    script_file = home / f"script-{len(list(home.glob('script-*')))}.json"
    home.mkdir(parents=True, exist_ok=True)
    script_file.write_text(json.dumps(script))
    env = {**os.environ, "LOCALCODE_HOME": str(home), "LOCALCODE_TEST_SCRIPT": str(script_file)}
    agent_file = home / "test-agent.json"
    if not agent_file.exists():
        agent_file.write_text(json.dumps({"description": "the scripted model's agent", "max_turns": 10}))
    env["LOCALCODE_AGENT"] = str(agent_file)
    env.pop("LOCALCODE_PHASE_LOG", None)
    return subprocess.run([sys.executable, "-m", "localcode", "solve", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120, input=stdin)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "project"
    p.mkdir()
    (p / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    return p


def session_dirs(home: Path) -> list[Path]:
    return sorted((home / "sessions").glob("*/*/session.json"))


def test_solve_writes_a_file_and_prints_the_answer(tmp_path, project):
    home = tmp_path / "home"
    script = [call("read", path="calc.py"), call("edit", path="calc.py", old="a - b", new="a + b"),
              finish("add() adds now")]
    proc = solve(["fix add() in calc.py"], script, home, project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "add() adds now\n"
    assert (project / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert "turn 2: edit -> ok" in proc.stderr
    assert "session " in proc.stderr
    [meta_file] = session_dirs(home)
    meta = json.loads(meta_file.read_text())
    assert meta["workdir"] == str(project.resolve()) and meta["runs"] == 1
    folder = meta_file.parent
    assert {p.name for p in folder.iterdir()} >= {"messages.json", "state.json", "run-001.jsonl", "run-001.log",
                                                   "run-001.raw.json"}
    messages = json.loads((folder / "messages.json").read_text())
    assert messages[1] == {"role": "user", "content": "fix add() in calc.py"}
    assert_paired(messages)


def test_prompt_from_a_file_argument_from_file_option_and_stdin(tmp_path, project):
    home = tmp_path / "home"
    (tmp_path / "task.md").write_text("Task from a file.\n")
    for args, stdin in (([str(tmp_path / "task.md")], None), (["--file", str(tmp_path / "task.md")], None),
                        (["-"], "Task from a file.\n")):
        proc = solve(args, ["ok"], home, project, stdin=stdin)
        assert proc.returncode == 0, proc.stderr
    for meta_file in session_dirs(home):
        messages = json.loads((meta_file.parent / "messages.json").read_text())
        assert messages[1]["content"] == "Task from a file.\n"


def test_continue_picks_the_latest_session_of_the_same_workdir(tmp_path, project):
    home = tmp_path / "home"
    other = tmp_path / "other"
    other.mkdir()
    assert solve(["first task"], ["first answer"], home, project).returncode == 0
    assert solve(["unrelated"], ["other answer"], home, other).returncode == 0  # newer, another folder
    proc = solve(["--continue", "second task"], ["second answer"], home, project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "second answer\n"
    metas = [json.loads(p.read_text()) for p in session_dirs(home)]
    mine = [m for m in metas if m["workdir"] == str(project.resolve())]
    assert len(mine) == 1 and mine[0]["runs"] == 2
    folder = next(p.parent for p in session_dirs(home) if json.loads(p.read_text())["workdir"] == str(project.resolve()))
    messages = json.loads((folder / "messages.json").read_text())
    assert [m["content"] for m in messages if m["role"] == "user"] == ["first task", "second task"]
    assert "unrelated" not in json.dumps(messages)
    assert (folder / "run-002.jsonl").exists()


def test_continue_with_an_id_and_with_workdir(tmp_path, project):
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert solve(["one"], ["a1"], home, project).returncode == 0
    sid = session_dirs(home)[0].parent.name
    proc = solve(["--workdir", str(project), "--continue", sid, "two"], ["a2"], home, elsewhere)
    assert proc.returncode == 0, proc.stderr
    # an id of another folder's session is refused
    proc = solve(["--continue", sid, "three"], ["a3"], home, elsewhere)
    assert proc.returncode == 1
    assert f"belongs to {project.resolve()}" in proc.stderr
    # nothing to continue in a folder without sessions
    proc = solve(["--continue", "four"], ["a4"], home, elsewhere)
    assert proc.returncode == 1 and "no saved session" in proc.stderr


def test_stopping_early_exits_1_with_a_hint(tmp_path, project):
    home = tmp_path / "home"
    proc = solve(["--max-turns", "2", "loop"], [call("ls", path="."), call("ls", path="."), finish()], home, project)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "the agent stopped: max_turns (2 turns)" in proc.stderr
    assert "--continue" in proc.stderr


def test_shell_is_off_unless_enabled(tmp_path, project):
    home = tmp_path / "home"
    script = [call("shell", command="echo hi > made.txt"), finish()]
    args = ["--agent-args", """tools='["shell","finish"]'""", "run it"]
    proc = solve(args, script, home, project)
    assert proc.returncode == 0, proc.stderr
    assert not (project / "made.txt").exists()
    proc = solve(["--shell", *args], script, home, project)
    assert proc.returncode == 0, proc.stderr
    assert (project / "made.txt").read_text().strip() == "hi"


def test_json_output_and_agent_args(tmp_path, project):
    home = tmp_path / "home"
    proc = solve(["--json", "--agent-args", "max_turns=5 temperature=0.5", "q"], ["the answer"], home, project)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["reason"] == "answered" and data["final_answer"] == "the answer"
    assert data["session"] and "messages" not in data


def test_usage_errors(tmp_path, project):
    home = tmp_path / "home"
    proc = solve([], ["x"], home, project)
    assert proc.returncode == 2 and "give a PROMPT" in proc.stderr
    proc = solve(["--agent", "gguf/nope", "x"], ["x"], home, project)
    assert proc.returncode == 1 and "unknown agent 'gguf/nope'" in proc.stderr


def test_help_mentions_the_options():
    proc = subprocess.run([sys.executable, "-m", "localcode", "solve", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    for opt in ("--agent", "--model", "--url", "--workdir", "--continue", "--shell", "--max-turns", "--agent-args",
                "--file"):
        assert opt in proc.stdout


@pytest.mark.gguf
@pytest.mark.slow
def test_solve_with_the_real_demo_model(tmp_path, project, demo_gguf):
    """The demo GGUF in-process through the real loader: mechanics only (a base model has no skill)."""
    home = tmp_path / "home"
    env = {**os.environ, "LOCALCODE_HOME": str(home)}
    for key in ("LOCALCODE_TEST_SCRIPT", "LOCALCODE_AGENT", "LOCALCODE_PHASE_LOG"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "localcode", "solve", "--agent", "gguf/gemma-3-270m", "--max-turns", "2",
         "--agent-args", "max_tokens=48", "Change add() in calc.py so it adds."],
        cwd=project, env=env, text=True, capture_output=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr
    if proc.returncode == 1:
        assert "the agent stopped:" in proc.stderr, proc.stderr
    [meta_file] = session_dirs(home)
    folder = meta_file.parent
    evs = [json.loads(line) for line in (folder / "run-001.jsonl").read_text().splitlines()]
    responses = [e for e in evs if e["kind"] == "response"]
    assert responses, proc.stderr
    assert all(r["usage"]["prompt_tokens"] > 0 for r in responses)
    assert all(r["usage"]["completion_tokens"] > 0 for r in responses)
    assert evs[-1]["kind"] == "end"
    assert_paired(json.loads((folder / "messages.json").read_text()))
