"""Try 2 keeps its KV state when other tasks used the model in between.

Scripted: the bench session saves each task's conversation after a try and restores it
before the next (a single-slot stand-in model counts the messages it would evaluate).
Real model (gguf, slow): a continued try's first turn evaluates fewer than 200 prompt tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_support import call, config, finish
from localcode.backends.base import ChatResult, ConversationStates, Message
from localcode.backends.scripted import ScriptedChatModel
from localcode.harness.agent_solver import ModelSolver
from localcode.harness.dataset import Exercise


class OneSlotModel(ScriptedChatModel):
    """A scripted model with one KV slot: a request evaluates the messages its slot lacks."""

    def __init__(self, script: Any) -> None:
        super().__init__(script)
        self.slot: list[str] = []
        self.saved: dict[str, list[str]] = {}
        self.evaluated: list[int] = []
        self.log: list[str] = []

    def chat(self, messages: list[Message], tools: Any = None, options: Any = None) -> ChatResult:
        rows = [json.dumps(m, sort_keys=True) for m in messages]
        keep = 0
        for a, b in zip(self.slot, rows):
            if a != b:
                break
            keep += 1
        self.evaluated.append(len(rows) - keep)
        result = super().chat(messages, tools, options)
        self.slot = rows + [json.dumps(result.to_message(), sort_keys=True)]
        return result

    def save_conversation(self, key: str) -> int:
        self.log.append(f"save {key}")
        self.saved[key] = list(self.slot)
        return len(self.slot)

    def restore_conversation(self, key: str) -> bool:
        self.log.append(f"restore {key}")
        if key not in self.saved:
            return False
        self.slot = list(self.saved[key])
        return True

    def drop_conversation(self, key: str) -> None:
        self.log.append(f"drop {key}")
        self.saved.pop(key, None)


def exercise(tmp_path: Path, name: str) -> tuple[Exercise, Path]:
    ws = tmp_path / name
    ws.mkdir()
    (ws / f"{name}.py").write_text("def f():\n    pass\n")
    ex = Exercise(language="python", name=name, path=tmp_path / "src" / name, instructions="write f",
                  solution_files=[f"{name}.py"], test_files=[f"{name}_test.py"])
    return ex, ws


def interleaved(tmp_path: Path, model: ScriptedChatModel) -> list[int]:
    """Try 1 of a, try 1 of b, try 2 of a, try 2 of b; returns which requests were a's try 2."""
    solver = ModelSolver("m", config(tools=["read", "write", "finish"]), model)
    (a, ws_a), (b, ws_b) = exercise(tmp_path, "a"), exercise(tmp_path, "b")
    sa, sb = solver.start(a, ws_a), solver.start(b, ws_b)
    sa.attempt("solve a", 1, None)
    sb.attempt("solve b", 1, None)
    before = len(model.requests)
    sa.attempt("tests of a failed", 2, None)
    sb.attempt("tests of b failed", 2, None)
    sa.close()
    sb.close()
    return [before]


def script() -> list[Any]:
    return [call("write", path="a.py", content="def f():\n    return 1\n"), finish(),
            call("write", path="b.py", content="def f():\n    return 2\n"), finish(),
            finish("a again"), finish("b again")]


def test_bench_session_restores_its_state_before_try_2(tmp_path: Path) -> None:
    model = OneSlotModel(script())
    assert isinstance(model, ConversationStates)
    [first_of_a2] = interleaved(tmp_path, model)
    assert model.log == ["save python/a", "save python/b", "restore python/a", "save python/a",
                         "restore python/b", "save python/b", "drop python/a", "drop python/b"]
    # a's try 2 evaluates only its new user message, although b used the model in between
    assert model.evaluated[first_of_a2] == 2  # the tool result of finish + the new user message
    assert model.saved == {}


def test_without_saved_states_try_2_evaluates_the_whole_conversation(tmp_path: Path) -> None:
    model = OneSlotModel(script())
    model.save_conversation = lambda key: 0  # type: ignore[method-assign]
    model.restore_conversation = lambda key: False  # type: ignore[method-assign]
    [first_of_a2] = interleaved(tmp_path, model)
    assert model.evaluated[first_of_a2] > 5  # system, task, and every turn of try 1 again


@pytest.mark.gguf
@pytest.mark.slow
def test_real_model_continued_try_evaluates_only_new_tokens(tmp_path: Path, coder_small_gguf: Path) -> None:
    """Qwen2.5-Coder-0.5B in-process: two conversations interleave; the first one's continuation
    (restored KV state) evaluates fewer than 200 prompt tokens, against its whole history without."""
    from localcode.backends.llama_cpp import LlamaCppChatModel
    from localcode.backends.base import ChatOptions
    from localcode.config import AgentConfig, ServerConfig

    cfg = AgentConfig(name="t", temperature=0.0, max_tokens=24,
                      server_config=ServerConfig(model_path=str(coder_small_gguf), context_window=4096))
    model = LlamaCppChatModel(cfg, n_threads=2)
    opts = ChatOptions(max_tokens=24)
    long_text = "Here is some code to remember:\n" + "\n".join(f"def f{i}(x):\n    return x + {i}" for i in range(50))

    def convo(tag: str) -> list[Message]:
        return [{"role": "system", "content": f"You are assistant {tag}."}, {"role": "user", "content": long_text}]

    try:
        a = convo("A")
        a.append(model.chat(a, None, opts).to_message())
        assert model.save_conversation("a") > 0
        b = convo("B")
        b.append(model.chat(b, None, opts).to_message())  # another conversation takes the KV cache
        a.append({"role": "user", "content": "What does f3 return?"})
        assert model.restore_conversation("a")
        first = model.chat(a, None, opts)
        assert first.usage.prompt_tokens > 500
        assert first.timings.prompt_n < 200, first.timings
        # the same continuation without the saved state evaluates the whole conversation
        model.chat(b + [{"role": "user", "content": "And f4?"}], None, opts)
        again = model.chat(a, None, opts)
        assert again.timings.prompt_n > 500
        assert model.state_stats["restored"] == 1
    finally:
        model.close()


def test_state_store_keeps_the_most_recent_states_within_its_budget() -> None:
    from localcode.backends.base import StateStore

    store: StateStore[str] = StateStore(budget_bytes=100)
    store.put("a", "A", 40)
    store.put("b", "B", 40)
    assert store.get("a") == "A"  # a is now the most recently used
    store.put("c", "C", 40)  # 120 > 100: the least recently used (b) goes
    assert store.get("b") is None and store.get("a") == "A" and store.get("c") == "C"
    assert store.stats == {"saved": 3, "restored": 0, "evicted": 1, "peak_bytes": 80}
    assert not store.admits("a", 101) and store.get("a") is None  # too large: the old copy is gone too
    assert store.admits("c", 60) and store.held_bytes() == 0
    store.put("c", "C2", 60)
    assert store.get("c") == "C2" and store.held_bytes() == 60
    store.pop("c")
    assert store.held_bytes() == 0
