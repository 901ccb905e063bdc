"""shell: on the host in the workspace (solve), in a sandbox (bench), timeouts, caps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from localcode.agent.tools.base import ToolContext
from localcode.agent.tools.registry import ToolOutcome, ToolRegistry
from localcode.harness.sandbox import LocalSandbox


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "tasks" / "ws"
    root.mkdir(parents=True)
    (root / "hello.txt").write_text("hello\n")
    return root


def run(ctx: ToolContext, tool: str = "shell", **args: object) -> ToolOutcome:
    return ToolRegistry(["shell"]).execute(tool, args, ctx)


def test_disabled_by_default(ws: Path) -> None:
    out = run(ToolContext(workspace=ws), command="touch made.txt")
    assert out.error_kind == "tool_error" and "shell is disabled" in out.text
    assert not (ws / "made.txt").exists()


def test_host_runs_in_the_workspace(ws: Path) -> None:
    ctx = ToolContext(workspace=ws, shell_enabled=True, shell_env={"GREETING": "hi"})
    out = run(ctx, command="cat hello.txt; echo $GREETING; pwd; echo err >&2; exit 3")
    assert out.ok
    first, *rest = out.text.splitlines()
    assert first.startswith("ok: exit code 3 (")
    assert rest == ["hello", "hi", str(ws), "err"]
    assert run(ctx, tool="bash", cmd="true").text.endswith("s), no output")


def test_host_timeout_kills_the_process_group(ws: Path) -> None:
    ctx = ToolContext(workspace=ws, shell_enabled=True, shell_timeout=30)
    start = time.monotonic()
    out = run(ctx, command="echo started; (sleep 30; touch late.txt) & sleep 30", timeout=1)
    assert time.monotonic() - start < 10
    assert out.error_kind == "tool_error"
    assert out.text == "error: timed out after 1s and was killed; output so far:\nstarted"
    time.sleep(0.2)
    assert not (ws / "late.txt").exists()


def test_timeout_is_capped_by_the_context(ws: Path) -> None:
    ctx = ToolContext(workspace=ws, shell_enabled=True, shell_timeout=1)
    out = run(ctx, command="sleep 20", timeout=100)
    assert "timed out after 1s" in out.text


def test_output_is_capped_keeping_the_end(ws: Path) -> None:
    ctx = ToolContext(workspace=ws, shell_enabled=True, max_output_chars=1000)
    out = run(ctx, command="for i in $(seq 1 2000); do echo line $i; done")
    assert out.ok and len(out.text) < 1200
    assert "characters omitted" in out.text
    assert out.text.endswith("line 2000")


def test_in_a_local_sandbox_the_workspace_is_not_changed(ws: Path) -> None:
    with LocalSandbox(ws.parent) as sandbox:
        ctx = ToolContext(workspace=ws, sandbox=sandbox)
        out = run(ctx, command="cat hello.txt && echo changed > hello.txt && touch new.txt && pwd")
        assert out.ok, out.text
        assert out.text.splitlines()[1:] == ["hello", str(ws)]
        assert (ws / "hello.txt").read_text() == "hello\n"
        assert not (ws / "new.txt").exists()
        out = run(ctx, command="sleep 20", timeout=1)
        assert out.error_kind == "tool_error" and "timed out after 1s" in out.text
