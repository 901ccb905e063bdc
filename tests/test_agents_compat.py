"""The original localcode tool's agent configs and prompts work unchanged.

The test writes configs in the original layout (``<root>/agents/<kind>/<name>.json`` naming
``"prompt": "prompts/<file>.txt"`` relative to ``<root>``) from the field list in
``../shared/reference-agents.md``: every top-level field and every ``server_config`` field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localcode.agent import prompts
from localcode.config import AgentConfig, load_agent_file, resolve_agent
from localcode.errors import ConfigError

ORIGINAL_FIELDS = (
    "name", "description", "prompt", "model", "url", "temperature", "top_p", "top_k", "min_p",
    "presence_penalty", "frequency_penalty", "max_tokens", "tool_choice", "cache", "tool_name_style",
    "auto_tool_call_on_failure", "require_code_change", "min_tool_calls", "max_turns",
    "max_format_retries", "max_batch_tool_calls", "history_max_messages", "send_tool_categories",
    "request_timeout", "native_thinking", "think", "think_level", "thinking_visibility", "tools",
    "server_config", "phase_control", "phase_log", "task_flow_mode", "flow",
)
"""Every top-level field the original configs (and its README) use."""

ORIGINAL_SERVER_FIELDS = ("model_path", "context_window", "extra_args", "hf_model", "server_type")


def gguf_config() -> dict[str, Any]:
    """A GGUF config as the original tool wrote it (qwen3-coder-next-q4km), every field set."""
    return {
        "name": "qwen3-coder-next-q4km",
        "description": "Qwen3-Coder-Next Q4_K_M via llama-server",
        "prompt": "prompts/qwen3-coder-v5-generic-strong.txt",
        "model": "qwen3-coder-next-q4km",
        "url": None,
        "temperature": 0.0,
        "top_p": 0.95,
        "top_k": 40,
        "min_p": 0.01,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "max_tokens": 4096,
        "tool_choice": "auto",
        "cache": "auto",
        "tool_name_style": "alias",
        "auto_tool_call_on_failure": True,
        "require_code_change": True,
        "min_tool_calls": 1,
        "max_turns": 24,
        "max_format_retries": 2,
        "max_batch_tool_calls": 5,
        "history_max_messages": 50,
        "send_tool_categories": False,
        "request_timeout": 600,
        "native_thinking": False,
        "think": "auto",
        "think_level": "medium",
        "thinking_visibility": "hidden",
        "tools": ["ls", "read", "write", "edit", "glob", "grep", "search", "apply_patch", "finish"],
        "server_config": {
            "model_path": "~/models/Qwen3-Coder-Next-Q4_K_M.gguf",
            "context_window": 32768,
            "extra_args": ["--host", "0.0.0.0", "--jinja", "--no-context-shift", "--flash-attn", "on",
                           "--batch-size", "2048", "--ubatch-size", "2048", "--cache-type-k", "f16",
                           "--cache-type-v", "f16", "--reasoning-format", "none", "--parallel", "1", "--mlock"],
            "hf_model": None,
            "server_type": "llama",
        },
        "phase_control": {"mode": "off"},
        "phase_log": "off",
        "task_flow_mode": None,
        "flow": None,
    }


def mlx_config() -> dict[str, Any]:
    """An MLX variant as the original tool wrote it (qwen3-coder-next-bf16-patch-only)."""
    return {
        "name": "qwen3-coder-next-bf16-patch-only",
        "description": "Qwen3-Coder-Next bf16 via mlx_lm.server, patch-only tools",
        "prompt": "prompts/qwen3-coder-v5-patch-only.txt",
        "model": "mlx-community/Qwen3-Coder-Next-bf16",
        "url": "http://127.0.0.1:1236/v1",
        "temperature": 0.0,
        "top_p": 0.9,
        "top_k": 30,
        "min_p": 0.01,
        "max_tokens": 4000,
        "tool_choice": "required",
        "cache": True,
        "send_tool_categories": False,
        "native_thinking": True,
        "think": False,
        "thinking_visibility": "show",
        "tools": ["ls", "read", "apply_patch", "glob", "grep", "search", "finish"],
        "server_config": {"hf_model": "mlx-community/Qwen3-Coder-Next-bf16", "context_window": 32768,
                          "extra_args": ["--chat-template-args", "{\"enable_thinking\":false}"],
                          "server_type": "mlx"},
    }


def write_original_layout(root: Path) -> None:
    """``root/agents/{gguf,mlx}/*.json`` and ``root/prompts/*.txt``, as the original tool keeps them."""
    (root / "agents" / "gguf").mkdir(parents=True)
    (root / "agents" / "mlx").mkdir(parents=True)
    (root / "prompts").mkdir()
    (root / "prompts" / "qwen3-coder-v5-generic-strong.txt").write_text(
        "You are a strong coding agent. Tools: {{TOOLS}}. Read with {{tool:read}}.\n")
    (root / "prompts" / "qwen3-coder-v5-patch-only.txt").write_text("Patch only. Use {{tool:apply_patch}}.\n")
    (root / "agents" / "gguf" / "qwen3-coder-next-q4km.json").write_text(json.dumps(gguf_config(), indent=2))
    (root / "agents" / "mlx" / "qwen3-coder-next-bf16-patch-only.json").write_text(json.dumps(mlx_config(), indent=2))


def test_the_written_configs_use_every_original_field() -> None:
    assert set(gguf_config()) == set(ORIGINAL_FIELDS)
    assert set(gguf_config()["server_config"]) == set(ORIGINAL_SERVER_FIELDS)
    assert set(ORIGINAL_FIELDS) <= set(AgentConfig.model_fields)


def test_original_configs_load_and_their_prompts_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_original_layout(tmp_path)
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "agents")  # the working directory must not matter

    gguf = resolve_agent("gguf/qwen3-coder-next-q4km")
    assert gguf.backend == "llama_cpp" and gguf.server_config.context_window == 32768
    assert gguf.prompt == str(tmp_path / "prompts" / "qwen3-coder-v5-generic-strong.txt")
    assert gguf.thinking_visibility == "hide" and gguf.think is None and gguf.cache is True
    text = prompts.system_prompt(gguf.prompt, gguf.prompt_overlays, {"read": "read_file"}, ["read_file"])
    assert text == "You are a strong coding agent. Tools: read_file. Read with read_file."
    na = gguf.not_applicable()
    assert any(n.startswith("send_tool_categories:") for n in na)
    assert any(n.startswith("server_config.extra_args --host 0.0.0.0") for n in na)
    assert any(n.startswith("server_config.extra_args --parallel 1") for n in na)

    mlx = resolve_agent("mlx/qwen3-coder-next-bf16-patch-only")
    # It names the server's url and the model: the model is loaded in-process, the url not applicable.
    assert mlx.backend == "mlx" and mlx.tool_choice == "required"
    assert any(n.startswith("url:") for n in mlx.not_applicable())
    # A url given on the command line (--url) means that server: the HTTP backend.
    from localcode.config import merge_overrides

    assert merge_overrides(mlx, {"url": "http://127.0.0.1:1236/v1"}, "--url").backend == "http"
    assert mlx.prompt == str(tmp_path / "prompts" / "qwen3-coder-v5-patch-only.txt")


def test_prompt_next_to_the_config_wins_then_shipped_prompts(tmp_path: Path) -> None:
    (tmp_path / "agents" / "gguf").mkdir(parents=True)
    cfg_file = tmp_path / "agents" / "gguf" / "x.json"
    (tmp_path / "agents" / "gguf" / "mine.txt").write_text("next to the config")
    cfg_file.write_text(json.dumps({"prompt": "mine.txt", "prompt_overlays": ["prompts/system.md"]}))
    cfg = load_agent_file(cfg_file)
    assert cfg.prompt == str(tmp_path / "agents" / "gguf" / "mine.txt")
    # Not next to the config: the shipped prompt of that name, left as a name.
    assert cfg.prompt_overlays == ["prompts/system.md"]
    assert prompts.load_prompt("prompts/system.md") == prompts.load_prompt("system")

    cfg_file.write_text(json.dumps({"prompt": "prompts/missing.txt"}))
    with pytest.raises(ConfigError) as e:
        load_agent_file(cfg_file)
    assert str(cfg_file) in str(e.value) and "'prompt'" in str(e.value) and "missing.txt" in str(e.value)


def _agents(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LOCALCODE_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "localcode", "agents", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=home)


def test_agents_lists_the_good_names_the_broken_and_strict_fails(tmp_path: Path) -> None:
    write_original_layout(tmp_path)
    (tmp_path / "agents" / "gguf" / "typo.json").write_text(json.dumps({"temprature": 0.2}))
    (tmp_path / "agents" / "gguf" / "notjson.json").write_text("{ nope")

    out = _agents(tmp_path, "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["agent"]: r for r in json.loads(out.stdout)}
    assert "error" not in rows["gguf/qwen3-coder-next-q4km"] and "error" not in rows["mlx/qwen3-coder-next-bf16-patch-only"]
    assert "gguf/gemma-3-270m" in rows and "oracle" in rows
    assert "temprature" in rows["gguf/typo"]["error"]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2, out.stderr
    typo_line = next(ln for ln in errors if "typo.json" in ln)
    assert str(tmp_path / "agents" / "gguf" / "typo.json") in typo_line and "'temprature'" in typo_line
    assert any("notjson.json" in ln and "not valid JSON" in ln for ln in errors)

    table = _agents(tmp_path, "-v")
    assert table.returncode == 0, table.stderr
    assert "gguf/qwen3-coder-next-q4km: not applicable here:" in table.stdout
    assert "send_tool_categories" in table.stdout and "--host 0.0.0.0" in table.stdout

    strict = _agents(tmp_path, "--strict")
    assert strict.returncode == 1 and "typo.json" in strict.stderr

    (tmp_path / "agents" / "gguf" / "typo.json").unlink()
    (tmp_path / "agents" / "gguf" / "notjson.json").unlink()
    assert _agents(tmp_path, "--strict").returncode == 0


def test_every_shipped_config_loads() -> None:
    from localcode.config import list_agents

    for name, path in list_agents():
        cfg = load_agent_file(path)
        cfg.not_applicable()
