"""The mlx-lm backend on mlx[cpu], with tiny random-weight models the tests build.

Random weights write gibberish, so these tests check mechanics. Where a test needs the
model to write something specific (a tool call, a stop string, text that re-renders
identically), ``ForcedMlx`` adds a logits processor that forces a token script: the
real generation path (sampler, stream_generate, detokenizer, parser, prompt cache) still
runs end to end.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.mlx

sys.path.insert(0, str(Path(__file__).parent))
from mlx_tiny import make_tiny_model  # noqa: E402

from localcode.backends.base import ChatModel, ChatOptions, Message  # noqa: E402
from localcode.errors import ConfigError, ContextWindowExceeded, MissingDependency, ModelError, ModelNotFound  # noqa: E402

TOOLS = [{
    "type": "function",
    "function": {
        "name": "read",
        "description": "Read a file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
                       "required": ["path"]},
    },
}]


def _mlx():  # imported lazily so a missing mlx fails the tests with a clear message
    try:
        from localcode.backends import mlx
    except ImportError as e:  # pragma: no cover
        pytest.fail(f"localcode.backends.mlx cannot be imported: {e}")
    try:
        import mlx_lm  # noqa: F401
    except ImportError:
        pytest.fail("mlx-lm is not installed: pip install 'localcode[mlx]' (mlx[cpu] on Linux)")
    return mlx


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    _mlx()
    base = tmp_path_factory.mktemp("mlx_models")
    return {
        "hermes": make_tiny_model(base / "hermes", arch="qwen2", template="hermes"),
        "hermes_plain": make_tiny_model(base / "hermes_plain", arch="qwen2", template="hermes_plain"),
        "qwen3_coder": make_tiny_model(base / "qwen3_coder", arch="qwen2", template="qwen3_coder"),
        "next": make_tiny_model(base / "next", arch="qwen3_next", template="qwen3_coder"),
    }


def forced_model(folder: Path, **kwargs: Any) -> Any:
    """An ``MlxChatModel`` whose next generations write ``model.script`` (then end with eos)."""
    mlx = _mlx()
    import mlx.core as mx

    class ForcedMlx(mlx.MlxChatModel):
        script: str = ""

        def _logits_processors(self, options: ChatOptions) -> list[Any]:
            seq = self._tokenizer.encode(self.script, add_special_tokens=False) + [self._tokenizer.eos_token_id]
            step = {"i": 0}

            def force(tokens: Any, logits: Any) -> Any:
                tok = seq[min(step["i"], len(seq) - 1)]
                step["i"] += 1
                return mx.where(mx.arange(logits.shape[-1]) == tok, 0.0, -1e9)[None].astype(logits.dtype)

            return super()._logits_processors(options) + [force]

    return ForcedMlx(folder, **kwargs)


def plain_options(model: Any, **kw: Any) -> ChatOptions:
    """Sampling that never writes think/tool markers, so random text is plain content."""
    tok = model._tokenizer
    ban = {str(tok.convert_tokens_to_ids(t)): -1e9 for t in ("<tool_call>", "</tool_call>", "<think>", "</think>")}
    return ChatOptions(extra={"logit_bias": ban}, **kw)


def conversation() -> list[Message]:
    return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Write the solution file."}]


def lcp(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


# ------------------------------------------------------------------------- flags


def test_parse_mlx_args_maps_server_flags() -> None:
    mlx = _mlx()
    a = mlx.parse_mlx_args(["--chat-template-args", '{"enable_thinking":false}', "--temp", "0.2", "--top-p=0.9",
                            "--top-k", "30", "--min-p", "0.01", "--max-tokens", "100", "--trust-remote-code",
                            "--host", "0.0.0.0", "--port", "1236", "--pipeline", "--prefill-step-size", "512",
                            "--kv-bits", "8"])
    assert a.chat_template_args == {"enable_thinking": False}
    assert (a.temperature, a.top_p, a.top_k, a.min_p, a.max_tokens) == (0.2, 0.9, 30, 0.01, 100)
    assert a.trust_remote_code and a.prefill_step_size == 512 and a.kv_bits == 8
    assert a.not_applicable == ["--host 0.0.0.0", "--port 1236", "--pipeline"]


@pytest.mark.parametrize("args, words", [
    (["--no-such-flag"], "unknown mlx_lm.server flag '--no-such-flag'"),
    (["--draft-model", "x"], "speculative decoding"),
    (["--chat-template-args", "{not json"], "bad value for --chat-template-args"),
    (["--chat-template-args", "[1]"], "must be a JSON object"),
    (["--temp"], "--temp needs a value"),
    (["--pipeline=1"], "takes no value"),
])
def test_parse_mlx_args_rejects(args: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("{", r"\{")):
        _mlx().parse_mlx_args(args)


# ------------------------------------------------------------------------- loading


def test_load_reports_model_info(tiny_dirs: dict[str, Path]) -> None:
    mlx = _mlx()
    m = mlx.MlxChatModel(tiny_dirs["hermes"], context_window=2048)
    assert isinstance(m, ChatModel)
    assert m.info.backend == "mlx" and m.info.model == "hermes" and m.info.context_window == 2048
    assert m.info.size_bytes == (tiny_dirs["hermes"] / "model.safetensors").stat().st_size
    assert m.info.details["tool_parser"] == "json_tools"
    assert m.info.details["prompt_cache"] == "trim"
    assert mlx.MlxChatModel(tiny_dirs["qwen3_coder"]).info.details["tool_parser"] == "qwen3_coder"
    # no context_window: the model's max_position_embeddings
    assert mlx.MlxChatModel(tiny_dirs["qwen3_coder"]).info.context_window == 4096
    nxt = mlx.MlxChatModel(tiny_dirs["next"])
    assert nxt.info.details["prompt_cache"] == "snapshot"  # linear attention cannot be trimmed


def test_from_agent_uses_server_config(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from localcode.config import resolve_agent

    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps({"server_config": {
        "model_path": str(tiny_dirs["hermes"]), "context_window": 1024,
        "extra_args": ["--chat-template-args", '{"enable_thinking":false}', "--host", "0.0.0.0", "--max-tokens", "7"]}}))
    cfg = resolve_agent(str(cfg_file))
    m = _mlx().MlxChatModel.from_agent(cfg)
    assert m.info.context_window == 1024
    assert m.info.details["not_applicable_flags"] == ["--host 0.0.0.0"]
    assert m.info.details["template_kwargs"] == {"enable_thinking": False}
    text = m._tokenizer.decode(m.render(conversation()))
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # --chat-template-args reached the template
    r = m.chat(conversation(), options=plain_options(m, temperature=1.0, seed=3))
    assert r.usage.completion_tokens <= 7  # --max-tokens is the default limit


def test_missing_model_is_model_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlx = _mlx()
    with pytest.raises(ModelNotFound, match="does not exist"):
        mlx.resolve_model_dir(str(tmp_path / "nope"), None)
    with pytest.raises(ModelNotFound, match="set server_config.model_path or server_config.hf_model"):
        mlx.resolve_model_dir(None, None)
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="cannot download MLX model mlx-community/none"):
        mlx.resolve_model_dir(None, "mlx-community/none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="is not an MLX model folder"):
        mlx.MlxChatModel(tmp_path / "empty")


def test_hf_model_already_downloaded_needs_no_network(tiny_dirs: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from localcode.backends.models import models_dir
    from localcode.config import parse_agent

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shutil.copytree(tiny_dirs["hermes"], models_dir() / "tiny-org" / "tiny-model")
    cfg = parse_agent({"server_config": {"hf_model": "tiny-org/tiny-model", "context_window": 512}}, "t.json", "mlx")
    m = _mlx().MlxChatModel.from_agent(cfg)
    assert m.info.model == "tiny-org/tiny-model"
    assert Path(m.info.path) == models_dir() / "tiny-org" / "tiny-model"


def test_missing_mlx_names_the_extra(monkeypatch: pytest.MonkeyPatch, tiny_dirs: dict[str, Path]) -> None:
    mlx = _mlx()
    monkeypatch.setitem(sys.modules, "mlx_lm", None)
    with pytest.raises(MissingDependency, match=r"pip install 'localcode\[mlx\]'"):
        mlx.MlxChatModel(tiny_dirs["hermes"])


# ------------------------------------------------------------------------- generation


def test_chat_usage_and_timings(tiny_dirs: dict[str, Path]) -> None:
    m = _mlx().MlxChatModel(tiny_dirs["hermes"], context_window=2048)
    r = m.chat(conversation(), TOOLS, plain_options(m, temperature=1.0, seed=1, max_tokens=12))
    n_prompt = m.count_tokens(conversation(), TOOLS)
    assert r.usage.prompt_tokens == n_prompt and r.usage.cached_tokens == 0
    assert 1 <= r.usage.completion_tokens <= 12
    t = r.timings
    assert (t.prompt_n, t.cache_n, t.predicted_n) == (n_prompt, 0, r.usage.completion_tokens)
    assert t.prompt_ms > 0 and t.predicted_ms >= 0
    assert r.finish_reason in ("stop", "length")
    assert r.finish_reason == "length" or r.usage.completion_tokens < 12
    assert r.content == r.raw and not r.tool_calls and not r.reasoning
    # the cache holds exactly the prompt and the completion
    assert m.cached_tokens == n_prompt + r.usage.completion_tokens == m._prompt_cache.offset()


def test_seed_makes_sampling_reproducible(tiny_dirs: dict[str, Path]) -> None:
    m = _mlx().MlxChatModel(tiny_dirs["hermes"], context_window=2048, cache=False)
    a = m.chat(conversation(), options=plain_options(m, temperature=1.0, seed=7, max_tokens=16))
    b = m.chat(conversation(), options=plain_options(m, temperature=1.0, seed=7, max_tokens=16))
    c = m.chat(conversation(), options=plain_options(m, temperature=1.0, seed=8, max_tokens=16))
    assert a.content == b.content
    assert a.content != c.content


def test_stream_deltas_add_up_to_the_result(tiny_dirs: dict[str, Path]) -> None:
    m = _mlx().MlxChatModel(tiny_dirs["hermes"], context_window=2048)
    events = list(m.stream(conversation(), TOOLS, plain_options(m, temperature=1.0, seed=2, max_tokens=24)))
    assert [e.kind for e in events].count("done") == 1 and events[-1].kind == "done"
    result = events[-1].result
    assert result is not None and result.content
    assert "".join(e.text for e in events if e.kind == "content") == result.content
    assert len([e for e in events if e.kind == "content"]) > 1  # really streamed, not one blob


def test_closing_the_stream_cancels_and_keeps_the_cache_consistent(tiny_dirs: dict[str, Path]) -> None:
    m = _mlx().MlxChatModel(tiny_dirs["hermes"], context_window=2048)
    opts = plain_options(m, temperature=1.0, seed=2, max_tokens=200)
    it = m.stream(conversation(), None, opts)
    first = [next(it), next(it)]
    it.close()
    assert all(e.kind == "content" for e in first)
    assert m.cached_tokens == m._prompt_cache.offset()
    r = m.chat(conversation(), None, plain_options(m, temperature=1.0, seed=2, max_tokens=4))  # the lock was released
    assert r.usage.cached_tokens == r.usage.prompt_tokens - 1


def test_stop_strings_end_generation(tiny_dirs: dict[str, Path]) -> None:
    m = forced_model(tiny_dirs["hermes"], context_window=2048)
    m.script = "Hello world. STOP and more text"
    events = list(m.stream(conversation(), None, ChatOptions(max_tokens=50, stop=["STOP"])))
    r = events[-1].result
    assert r.raw == "Hello world. " and r.finish_reason == "stop"
    assert r.content == "Hello world."  # localcode's Hermes parser trims the answer, as for GGUF models
    assert "".join(e.text for e in events if e.kind == "content").strip() == r.content


def test_repetition_guard_stops_a_loop(tiny_dirs: dict[str, Path]) -> None:
    m = forced_model(tiny_dirs["hermes"], context_window=4096)
    m.script = "x = compute(1)\n" * 150  # a loop, as small models write one, ~750 tokens
    r = m.chat(conversation(), None, ChatOptions(max_tokens=1000, repetition_guard=True))
    assert r.finish_reason == "repetition"
    whole = len(m._tokenizer.encode(m.script, add_special_tokens=False))
    assert 800 <= len(r.raw) < 1000 and r.usage.completion_tokens < whole / 2  # cut soon after 800 repeated characters
    m.script = "x = compute(1)\n" * 30
    assert m.chat(conversation(), None, ChatOptions(max_tokens=1000, repetition_guard=True)).finish_reason == "stop"


def test_context_overflow_raises_before_generating(tiny_dirs: dict[str, Path]) -> None:
    m = _mlx().MlxChatModel(tiny_dirs["hermes"], context_window=64)
    n = m.count_tokens(conversation(), TOOLS)
    assert n > 64
    with pytest.raises(ContextWindowExceeded) as err:
        m.chat(conversation(), TOOLS, ChatOptions(max_tokens=5))
    assert err.value.prompt_tokens == n and err.value.context_window == 64
    assert m.cached_tokens == 0  # nothing was evaluated
    # a prompt that fits gets at most the room left in the window
    m2 = _mlx().MlxChatModel(tiny_dirs["hermes"], context_window=n + 3)
    r = m2.chat(conversation(), TOOLS, plain_options(m2, temperature=1.0, seed=1, max_tokens=100))
    assert r.usage.completion_tokens <= 3


def test_thinking_switch_and_open_think_start_in_reasoning(tiny_dirs: dict[str, Path]) -> None:
    mlx = _mlx()
    m = forced_model(tiny_dirs["hermes"], context_window=2048,
                     server_args=mlx.parse_mlx_args(["--chat-template-args", '{"open_think": true}']))
    tail = m._tokenizer.decode(m.render(conversation()))[-40:]
    assert tail.endswith("assistant\n<think>\n")
    assert m._tokenizer.decode(m.render(conversation(), options=ChatOptions(think=False))).endswith("</think>\n\n")
    m.script = "plan it</think>The answer."
    events = list(m.stream(conversation(), None, ChatOptions(max_tokens=40)))
    r = events[-1].result
    assert (r.reasoning, r.content) == ("plan it", "The answer.")
    assert "".join(e.text for e in events if e.kind == "reasoning") == "plan it"


# ------------------------------------------------------------------------- tool calls


@pytest.mark.parametrize("which, script", [
    ("hermes", '<think>hmm</think>Let me read.\n<tool_call>\n{"name": "read", "arguments": {"path": "a.py", "limit": 5}}\n</tool_call>'),
    ("qwen3_coder", "<think>hmm</think>Let me read.\n<tool_call>\n<function=read>\n<parameter=path>\na.py\n</parameter>\n"
                    "<parameter=limit>\n5\n</parameter>\n</function>\n</tool_call>"),
    ("next", "<think>hmm</think>Let me read.\n<tool_call>\n<function=read>\n<parameter=path>\na.py\n</parameter>\n"
             "<parameter=limit>\n5\n</parameter>\n</function>\n</tool_call>"),
    ("hermes_plain", '<think>hmm</think>Let me read.\n<tool_call>\n{"name": "read", "arguments": {"path": "a.py", "limit": 5}}\n</tool_call>'),
])
def test_generated_tool_call_is_parsed(tiny_dirs: dict[str, Path], which: str, script: str) -> None:
    m = forced_model(tiny_dirs[which], context_window=4096)
    # localcode's parsers (the GGUF backend's) wherever they know the family, mlx-lm's tool_parser is only reported
    assert m.info.details["tool_family"] == ("hermes" if which.startswith("hermes") else "qwen3_coder")
    m.script = script
    events = list(m.stream(conversation(), TOOLS, ChatOptions(temperature=0.7, seed=1, max_tokens=120)))
    r = events[-1].result
    assert r.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in r.tool_calls] == [("read", {"path": "a.py", "limit": 5})]
    assert r.reasoning == "hmm" and r.content.strip() == "Let me read."
    assert not r.malformed_tool_calls
    calls = [e for e in events if e.kind == "tool_call"]
    assert [(e.id, e.name, e.arguments) for e in calls] == [(c.id, c.name, c.arguments) for c in r.tool_calls]
    assert r.raw == script
    # the call goes back into the history and renders through the template
    msgs = conversation() + [r.to_message(), {"role": "tool", "tool_call_id": r.tool_calls[0].id, "content": "ok"}]
    assert m.count_tokens(msgs, TOOLS) > r.usage.prompt_tokens


def test_malformed_tool_call_is_kept(tiny_dirs: dict[str, Path]) -> None:
    m = forced_model(tiny_dirs["hermes"], context_window=4096)
    m.script = '<tool_call>\n{"name": "read", "arguments": {"path": \n</tool_call>'
    r = m.chat(conversation(), TOOLS, ChatOptions(max_tokens=60))
    assert not r.tool_calls and r.finish_reason == "stop"
    assert len(r.malformed_tool_calls) == 1
    bad = r.malformed_tool_calls[0]
    assert bad.raw.startswith("<tool_call>") and '"path"' in bad.raw and bad.error


def test_unclosed_tool_call_at_max_tokens_is_malformed(tiny_dirs: dict[str, Path]) -> None:
    m = forced_model(tiny_dirs["qwen3_coder"], context_window=4096)
    m.script = "<tool_call>\n<function=read>\n<parameter=path>\na.py\n</parameter>\n</function>\n</tool_call>"
    r = m.chat(conversation(), TOOLS, ChatOptions(max_tokens=6))
    assert r.finish_reason == "length" and not r.tool_calls
    assert len(r.malformed_tool_calls) == 1 and r.malformed_tool_calls[0].raw.startswith("<tool_call>")


# ------------------------------------------------------------------------- prompt cache


def test_cache_reuse_evaluates_only_new_tokens(tiny_dirs: dict[str, Path]) -> None:
    m = forced_model(tiny_dirs["hermes"], context_window=4096)
    m.script = "Hello world."
    msgs = conversation()
    r1 = m.chat(msgs, TOOLS, ChatOptions(max_tokens=20))
    p1 = m.count_tokens(msgs, TOOLS)
    assert r1.content == "Hello world." and r1.finish_reason == "stop"
    assert m.cached_tokens == p1 + r1.usage.completion_tokens
    msgs += [r1.to_message(), {"role": "user", "content": "Now the tests."}]
    r2 = m.chat(msgs, TOOLS, ChatOptions(max_tokens=20))
    p2 = m.count_tokens(msgs, TOOLS)
    # the re-rendered history is token-identical: all of turn 1 (prompt + answer + eos) is reused
    assert r2.usage.cached_tokens == p1 + r1.usage.completion_tokens
    assert r2.timings.prompt_n == p2 - r2.usage.cached_tokens
    new_text = "\n<|im_start|>user\nNow the tests.<|im_end|>\n<|im_start|>assistant\n"
    assert r2.timings.prompt_n == len(m._tokenizer.encode(new_text, add_special_tokens=False)) < p1 / 5
    # without the cache every token is evaluated again
    fresh = forced_model(tiny_dirs["hermes"], context_window=4096, cache=False)
    fresh.script = "Hello world."
    fresh.chat(conversation(), TOOLS, ChatOptions(max_tokens=20))
    r2b = fresh.chat(msgs, TOOLS, ChatOptions(max_tokens=20))
    assert (r2b.usage.cached_tokens, r2b.timings.prompt_n) == (0, p2)


def test_cache_reuse_matches_uncached_results(tiny_dirs: dict[str, Path]) -> None:
    mlx = _mlx()
    cached = mlx.MlxChatModel(tiny_dirs["hermes"], context_window=4096)
    uncached = mlx.MlxChatModel(tiny_dirs["hermes"], context_window=4096, cache=False)
    msgs = conversation()
    for turn in range(3):
        before = list(cached._prompt_cache.tokens)
        prompt = cached.render(msgs, TOOLS)
        a = cached.chat(msgs, TOOLS, plain_options(cached, temperature=0.0, max_tokens=10))
        b = uncached.chat(msgs, TOOLS, plain_options(uncached, temperature=0.0, max_tokens=10))
        assert a.content == b.content  # greedy: reuse must not change the answer
        assert a.usage.cached_tokens == min(lcp(before, prompt), len(prompt) - 1)
        if turn:
            assert a.usage.cached_tokens >= len(cached.render(msgs[:-2], TOOLS))  # the previous prompt at least
        msgs = msgs + [a.to_message(), {"role": "user", "content": f"turn {turn} more"}]


def test_cache_is_trimmed_when_history_diverges(tiny_dirs: dict[str, Path]) -> None:
    mlx = _mlx()
    m = mlx.MlxChatModel(tiny_dirs["hermes"], context_window=4096)
    opts = plain_options(m, temperature=0.0, max_tokens=8)
    msgs = conversation()
    r1 = m.chat(msgs, TOOLS, opts)
    msgs2 = msgs + [r1.to_message(), {"role": "user", "content": "again"}]
    m.chat(msgs2, TOOLS, opts)
    held = list(m._prompt_cache.tokens)
    edited = [msgs2[0], {"role": "user", "content": "Write the test file."}] + msgs2[2:]
    prompt = m.render(edited, TOOLS)
    r3 = m.chat(edited, TOOLS, opts)
    assert 0 < r3.usage.cached_tokens == lcp(held, prompt) < m.count_tokens(msgs, TOOLS)
    assert r3.timings.prompt_n == len(prompt) - r3.usage.cached_tokens
    assert m.cached_tokens == m._prompt_cache.offset() == len(prompt) + r3.usage.completion_tokens
    ref = mlx.MlxChatModel(tiny_dirs["hermes"], context_window=4096, cache=False).chat(edited, TOOLS, opts)
    assert r3.content == ref.content


def test_untrimmable_cache_reuses_the_snapshot_or_resets(tiny_dirs: dict[str, Path]) -> None:
    m = forced_model(tiny_dirs["next"], context_window=4096)
    assert not m._prompt_cache.trimmable
    call = "<tool_call>\n<function=read>\n<parameter=path>\na.py\n</parameter>\n</function>\n</tool_call>"
    msgs = conversation()

    # 1. the template re-renders the generated call token for token: the live cache is reused whole
    m.script = call
    r1 = m.chat(msgs, TOOLS, ChatOptions(max_tokens=60))
    p1 = len(m.render(msgs, TOOLS))
    assert r1.tool_calls
    msgs2 = msgs + [r1.to_message(), {"role": "tool", "tool_call_id": r1.tool_calls[0].id, "content": "ok: 3 lines"}]
    m.script = "<think>why not</think>" + call
    r2 = m.chat(msgs2, TOOLS, ChatOptions(max_tokens=60))
    p2 = len(m.render(msgs2, TOOLS))
    assert r2.usage.cached_tokens == p1 + r1.usage.completion_tokens

    # 2. the template drops the reasoning of turn 2, so the live cache diverges right after
    #    turn 2's prompt; the snapshot taken at the end of that prompt is reused instead
    assert r2.reasoning == "why not" and r2.tool_calls
    msgs3 = msgs2 + [r2.to_message(), {"role": "tool", "tool_call_id": r2.tool_calls[0].id, "content": "ok"}]
    m.script = "Done."
    r3 = m.chat(msgs3, TOOLS, ChatOptions(max_tokens=20))
    assert r3.usage.cached_tokens == p2 - 1 and r3.content == "Done."

    # 3. an edit at the start leaves nothing to reuse: the cache is rebuilt
    edited = [msgs3[0], {"role": "user", "content": "Something else."}] + msgs3[2:]
    r4 = m.chat(edited, TOOLS, ChatOptions(max_tokens=20))
    assert r4.usage.cached_tokens == 0 and r4.timings.prompt_n == len(m.render(edited, TOOLS))


def test_untrimmable_cache_matches_uncached_results(tiny_dirs: dict[str, Path]) -> None:
    mlx = _mlx()
    cached = mlx.MlxChatModel(tiny_dirs["next"], context_window=4096)
    uncached = mlx.MlxChatModel(tiny_dirs["next"], context_window=4096, cache=False)
    msgs = conversation()
    reused = []
    for turn in range(3):
        a = cached.chat(msgs, TOOLS, plain_options(cached, temperature=0.0, max_tokens=8))
        b = uncached.chat(msgs, TOOLS, plain_options(uncached, temperature=0.0, max_tokens=8))
        assert a.content == b.content
        reused.append(a.usage.cached_tokens)
        msgs = msgs + [a.to_message(), {"role": "user", "content": f"turn {turn}"}]
    assert reused[0] == 0 and all(n > 0 for n in reused[1:])


def test_close_frees_the_model(tiny_dirs: dict[str, Path]) -> None:
    m = _mlx().MlxChatModel(tiny_dirs["hermes"], context_window=512)
    m.close()
    with pytest.raises(ModelError, match="closed"):
        m.chat(conversation())


def test_unknown_request_override_is_a_config_error(tiny_dirs: dict[str, Path]) -> None:
    m = _mlx().MlxChatModel(tiny_dirs["hermes"], context_window=512)
    with pytest.raises(ConfigError, match="nonsense_key"):
        m.chat(conversation(), options=ChatOptions(max_tokens=2, extra={"nonsense_key": 1}))


# ------------------------------------------------------------------------- agent configs

REFERENCE_TOOLS = ["ls", "read", "write", "edit", "glob", "grep", "search", "apply_patch", "finish"]


@pytest.mark.parametrize("name, repo, tools, max_tokens", [
    ("qwen3-coder-next-8bit", "mlx-community/Qwen3-Coder-Next-8bit", REFERENCE_TOOLS, 16000),
    ("qwen3-coder-next-bf16", "mlx-community/Qwen3-Coder-Next-bf16", REFERENCE_TOOLS, 16000),
    ("qwen3-coder-next-bf16-edit-only", "mlx-community/Qwen3-Coder-Next-bf16",
     [t for t in REFERENCE_TOOLS if t not in ("write", "apply_patch")], 16000),
    ("qwen3-coder-next-bf16-no-write", "mlx-community/Qwen3-Coder-Next-bf16",
     [t for t in REFERENCE_TOOLS if t != "write"], 16000),
    ("qwen3-coder-next-bf16-patch-only", "mlx-community/Qwen3-Coder-Next-bf16",
     ["ls", "read", "apply_patch", "glob", "grep", "search", "finish"], 4000),
])
def test_mlx_agent_configs_resolve(name: str, repo: str, tools: list[str], max_tokens: int) -> None:
    from localcode.config import resolve_agent

    cfg = resolve_agent(f"mlx/{name}")
    assert cfg.backend == "mlx" and cfg.name == name
    assert cfg.server_config.hf_model == repo and cfg.server_config.context_window == 32768
    assert (cfg.temperature, cfg.top_p, cfg.top_k, cfg.min_p) == (0.0, 0.9, 30, 0.01)
    assert cfg.max_tokens == max_tokens and cfg.tools == tools
    args = _mlx().parse_mlx_args(cfg.server_config.extra_args)
    assert args.chat_template_args == {"enable_thinking": False} and not args.not_applicable


def test_real_qwen3_coder_template_on_qwen3_next(llama_templates_dir: Path, tmp_path: Path) -> None:
    """The Qwen3-Coder-Next path: its architecture, its real chat template, mlx-lm's qwen3_coder parser."""
    template = (llama_templates_dir / "Qwen3-Coder.jinja").read_text(encoding="utf-8")
    folder = make_tiny_model(tmp_path / "q3c", arch="qwen3_next", chat_template=template)
    m = forced_model(folder, context_window=8192)
    assert m.info.details["tool_parser"] == "qwen3_coder" and m.info.details["prompt_cache"] == "snapshot"
    m.script = ("I will read it.\n<tool_call>\n<function=read>\n<parameter=path>\nsrc/main.py\n</parameter>\n"
                "<parameter=limit>\n40\n</parameter>\n</function>\n</tool_call>")
    msgs = conversation()
    prev_prompt = 0
    for turn in range(3):
        r = m.chat(msgs, TOOLS, ChatOptions(max_tokens=80))
        prompt = len(m.render(msgs, TOOLS))
        assert [(c.name, json.loads(c.arguments)) for c in r.tool_calls] == [("read", {"path": "src/main.py", "limit": 40})]
        assert r.content == "I will read it." and r.finish_reason == "tool_calls"
        if turn:
            # the history up to the previous prompt is reused; only the re-rendered answer,
            # the tool result and the previous prompt's last token are evaluated
            assert r.usage.cached_tokens == prev_prompt - 1
            assert r.timings.prompt_n == prompt - prev_prompt + 1
        prev_prompt = prompt
        msgs = msgs + [r.to_message(), {"role": "tool", "tool_call_id": r.tool_calls[0].id, "content": "ok: 40 lines"}]


# ------------------------------------------------------------------------- GGUF -> MLX conversion (no real model)


def test_from_gguf_spec_parsing() -> None:
    from localcode.backends.mlx_convert import parse_spec

    assert parse_spec("from-gguf:pypi:qwen2.5-coder-0.5b") == ("pypi:qwen2.5-coder-0.5b", "float32")
    assert parse_spec("from-gguf:/m/x.gguf#q4") == ("/m/x.gguf", "q4")
    assert parse_spec("from-gguf:pypi:a-part{1..3}#sha256=ab") == ("pypi:a-part{1..3}#sha256=ab", "float32")
    for bad in ("pypi:qwen2.5-coder-0.5b", "from-gguf:"):
        with pytest.raises(ModelNotFound, match="from-gguf:"):
            parse_spec(bad)


def test_from_gguf_reuses_a_conversion_and_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from localcode.backends.mlx_convert import MARKER, mlx_from_gguf, target_dir

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    # nothing converted yet and transformers missing: one line naming the extra and the script
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependency, match=r"make-mlx-coder.*localcode\[mlx-convert\]"):
        mlx_from_gguf(f"from-gguf:{gguf}")
    # a complete conversion of a GGUF of this size is reused without converting again
    target = target_dir(gguf, "float32")
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"x")
    (target / MARKER).write_text(json.dumps({"gguf_size": 64, "dtype": "float32"}))
    assert mlx_from_gguf(f"from-gguf:{gguf}") == target
    assert target.parent.name == "mlx" and target.name == "m-float32"
    # another dtype is another folder, not this one
    with pytest.raises(MissingDependency):
        mlx_from_gguf(f"from-gguf:{gguf}#float16")
