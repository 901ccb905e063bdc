"""Hostile models: random and malicious scripted responses never break the loop.

Whatever the model sends (random tool names, random or hostile argument text, paths out
of the workspace, malformed calls, huge content, backend errors) ``run_agent`` returns an
``AgentRun``, every tool call gets exactly one result, and no file outside the workspace
changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import get_args

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent_support import assert_paired
from localcode.agent.loop import run_agent
from localcode.agent.state import EndReason
from localcode.agent.tools.base import ToolContext
from localcode.agent.tools.registry import all_tools
from localcode.backends.scripted import ScriptedChatModel
from localcode.config import AgentConfig
from localcode.errors import ContextWindowExceeded, ModelError

TOOLS = ["ls", "read", "batch_read", "write", "edit", "apply_patch", "glob", "grep", "search", "shell", "think",
         "plan_solution", "plan_tasks", "flow_stage_done", "ask_questions", "ask_agent", "finish"]

HOSTILE_PATHS = ["../outside/secret.txt", "/etc/passwd", "link/secret.txt", "link", "a\x00b", "~/x", "..", ".",
                 "sub/../../outside/secret.txt", "a.py", "new.py", "CON", "/dev/zero", "ws/../../x", "link/../a.py"]

names = st.one_of(st.sampled_from(TOOLS), st.sampled_from(TOOLS), st.sampled_from(TOOLS),
                  st.sampled_from([t for cls in all_tools().values() for t in cls.aliases]), st.text(max_size=30))
paths = st.one_of(st.sampled_from(HOSTILE_PATHS), st.text(max_size=40))
values = st.one_of(paths, st.integers(-10**6, 10**6), st.booleans(), st.none(), st.text(max_size=200),
                   st.lists(paths, max_size=4))
arg_dicts = st.dictionaries(
    st.one_of(st.sampled_from(["path", "paths", "content", "old", "new", "all", "offset", "limit", "pattern",
                               "query", "command", "patch", "summary", "thought", "plan", "tasks", "questions",
                               "file_path", "old_str", "text", "task", "task", "agent", "tools"]),
              st.text(max_size=12)),
    values, max_size=5)
patch_texts = st.builds(
    lambda p, body: f"*** Begin Patch\n*** Add File: {p}\n+{body}\n*** End Patch",
    paths, st.text(max_size=50))
arguments = st.one_of(arg_dicts, st.text(max_size=300), patch_texts.map(lambda t: {"patch": t}),
                      st.builds(lambda d: json.dumps(d)[:-1], arg_dicts))
sensible_call = st.one_of(
    st.fixed_dictionaries({"name": st.just("write"), "arguments": st.fixed_dictionaries(
        {"path": paths, "content": st.text(max_size=100)})}),
    st.fixed_dictionaries({"name": st.just("edit"), "arguments": st.fixed_dictionaries(
        {"path": paths, "old": st.sampled_from(["x = 1", "1", ""]), "new": st.text(max_size=20)})}),
    st.fixed_dictionaries({"name": st.sampled_from(["read", "ls"]), "arguments": st.fixed_dictionaries({"path": paths})}),
    st.fixed_dictionaries({"name": st.just("apply_patch"), "arguments": patch_texts.map(lambda t: {"patch": t})}),
    st.fixed_dictionaries({"name": st.just("finish"), "arguments": st.fixed_dictionaries({"summary": st.text(max_size=20)})}),
)
tool_call = st.one_of(sensible_call, sensible_call, st.fixed_dictionaries({"name": names, "arguments": arguments}))
with_calls = st.fixed_dictionaries({"tool_calls": st.lists(tool_call, min_size=1, max_size=8)}, optional={
    "content": st.text(max_size=300),
    "reasoning": st.text(max_size=100),
    "malformed": st.lists(st.text(max_size=100), max_size=2),
})
_KINDS = {
    "calls": with_calls,
    "text": st.text(max_size=300),
    "huge": st.just("x" * 200_000),
    "any": st.fixed_dictionaries({}, optional={
        "content": st.text(max_size=300),
        "reasoning": st.text(max_size=100),
        "tool_calls": st.lists(tool_call, max_size=8),
        "malformed": st.lists(st.text(max_size=100), max_size=3),
        "finish_reason": st.sampled_from(["stop", "length", "tool_calls"]),
    }),
    "error": st.sampled_from([ModelError("backend crashed"), ContextWindowExceeded(99999, 4096)]),
}
response = st.sampled_from(["calls"] * 12 + ["text", "huge", "any", "any", "error"]).flatmap(_KINDS.__getitem__)
configs = st.fixed_dictionaries({
    "tools": st.sampled_from(["all", "all", "subset"]).flatmap(
        lambda k: st.just(TOOLS) if k == "all" else st.lists(st.sampled_from(TOOLS), min_size=1, unique=True)),
    "max_turns": st.integers(1, 12),
    "max_batch_tool_calls": st.integers(1, 6),
    "max_format_retries": st.integers(0, 4),
    "min_tool_calls": st.integers(0, 3),
    "require_code_change": st.booleans(),
    "auto_tool_call_on_failure": st.booleans(),
    "tool_choice": st.sampled_from(["auto", "required", "none"]),
    "native_thinking": st.booleans(),
    "history_max_messages": st.one_of(st.none(), st.integers(4, 30)),
    "task_flow_mode": st.sampled_from([None, "context-plan-implement", "plan-implement"]),
    "phase_control": st.sampled_from([{"mode": "off"}, {"mode": "rules"}, {"mode": "hybrid"}, {"mode": "llm"}]),
    "tool_name_style": st.sampled_from(["canonical", "alias", "as_configured"]),
})


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Hash of every file under ``root`` except the workspace ``skip``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        if d == skip or skip in d.parents:
            dirnames[:] = []
            continue
        for f in filenames:
            p = d / f
            out[str(p)] = "link" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(d)] = "dir:" + ",".join(sorted(dirnames + filenames))
    return out


@settings(max_examples=int(os.environ.get("LOCALCODE_PROP_EXAMPLES", "120")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(script=st.lists(response, min_size=1, max_size=14), cfg=configs)
def test_hostile_models_never_break_the_loop(script, cfg):
    root = Path(tempfile.mkdtemp(prefix="lc-prop-"))
    try:
        ws = root / "ws"
        (ws / "sub").mkdir(parents=True)
        (ws / "a.py").write_text("x = 1\n")
        outside = root / "outside"
        outside.mkdir()
        (outside / "secret.txt").write_text("do not touch\n")
        (ws / "link").symlink_to(outside, target_is_directory=True)
        before = snapshot(root, ws)
        ctx = ToolContext(workspace=ws, shell_enabled=False)
        config = AgentConfig(name="prop", **cfg)
        run = run_agent(ScriptedChatModel(script), config, "do something", ctx)
        assert run.reason in get_args(EndReason)
        event(f"reason={run.reason}")
        event(f"tool calls={min(run.total_tool_calls, 5)}")
        event(f"ok calls={min(run.total_tool_calls - sum(run.tool_errors.values()), 3)}")
        if run.changed_files:
            event("changed files")
        for purpose in run.side_calls:
            event(f"side call {purpose}")
        assert_paired(run.messages)
        assert run.messages[1] == {"role": "user", "content": "do something"}
        assert snapshot(root, ws) == before
        assert (outside / "secret.txt").read_text() == "do not touch\n"
        json.dumps(run.summary(), default=str)
    finally:
        shutil.rmtree(root, ignore_errors=True)
