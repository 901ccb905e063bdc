"""Prompt-cache reuse of the mlx backend: an 8-turn agent-like conversation, cache vs. none.

Runs on mlx[cpu] with the tiny random-weight models of ``tests/mlx_tiny.py`` (no download):
``qwen2`` (trimmable KV cache) and ``qwen3_next`` (Qwen3-Coder-Next's architecture, whose
linear-attention cache is restored from a snapshot). Each turn appends the answer and a
tool result of about 450 tokens. Prints per-turn evaluated / cached tokens and the
total-time ratio. Tiny models make the time ratio mostly overhead; the token counts are
what carries over to real models.

    python benchmarks/mlx_kv_reuse.py
    python benchmarks/mlx_kv_reuse.py --agent mlx/qwen2.5-coder-0.5b   # the real coder (converted from its GGUF)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mlx_tiny import make_tiny_model  # noqa: E402

from localcode.backends.base import ChatOptions  # noqa: E402
from localcode.backends.mlx import MlxChatModel  # noqa: E402

TOOL_RESULT = "ok: " + " ".join(f"line {i}: def solve(x): return x + {i}" for i in range(23))
TURNS = 8


def run(load: Callable[[bool], MlxChatModel], cache: bool) -> tuple[list[tuple[int, int]], float]:
    m = load(cache)
    tok = m._tokenizer
    ban = {str(tok.convert_tokens_to_ids(t)): -1e9 for t in ("<tool_call>", "</tool_call>", "<think>", "</think>")}
    opts = ChatOptions(temperature=0.0, max_tokens=32, extra={"logit_bias": ban})
    msgs = [{"role": "system", "content": "You are a coding agent."}, {"role": "user", "content": "Solve the task."}]
    per_turn = []
    t0 = time.perf_counter()
    for _ in range(TURNS):
        r = m.chat(msgs, None, opts)
        per_turn.append((r.timings.prompt_n, r.timings.cache_n))
        msgs += [r.to_message(), {"role": "user", "content": TOOL_RESULT}]
    return per_turn, time.perf_counter() - t0


def compare(label: str, load: Callable[[bool], MlxChatModel]) -> None:
    run(load, True)  # warm-up (kernel compilation)
    reuse, t_reuse = run(load, True)
    reset, t_reset = run(load, False)
    print(f"{label}: turn  evaluated(reuse)  cached(reuse)  evaluated(no cache)")
    for i, ((e, c), (e0, _)) in enumerate(zip(reuse, reset), 1):
        print(f"{label}: {i:4d}  {e:16d}  {c:13d}  {e0:19d}")
    tot, tot0 = sum(e for e, _ in reuse), sum(e for e, _ in reset)
    print(f"{label}: evaluated tokens total {tot} vs {tot0} ({tot0 / tot:.2f}x fewer); "
          f"time {t_reuse:.2f}s vs {t_reset:.2f}s (ratio {t_reset / t_reuse:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default=None, help="an mlx agent config (e.g. mlx/qwen2.5-coder-0.5b) instead of the tiny models")
    args = ap.parse_args()
    if args.agent:
        from localcode.config import merge_overrides, resolve_agent

        cfg = resolve_agent(args.agent)
        compare(args.agent, lambda cache: MlxChatModel.from_agent(merge_overrides(cfg, {"cache": cache})))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("qwen2", "qwen3_next"):
            folder = make_tiny_model(Path(tmp) / arch, arch=arch, template="hermes")
            compare(arch, lambda cache, folder=folder: MlxChatModel(folder, context_window=16384, cache=cache))


if __name__ == "__main__":
    main()
