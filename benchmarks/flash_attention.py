"""Flash attention on vs off, in-process, on the demo GGUF: decode and prefill tokens/s.

Loads the model with ``--flash-attn on`` and ``--flash-attn off`` alternately (same
threads, same prompt, same 64 greedy tokens) and prints the per-round rates and the
median on/off ratios, for a short and a long (~3k-token) prompt::

    python benchmarks/flash_attention.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics

from localcode.backends.base import ChatOptions
from localcode.backends.loader import load_model
from localcode.config import merge_overrides, resolve_agent

PROMPTS = {
    "short": "Write a long story about a dragon.",
    "long": "The quick brown fox jumps over the lazy dog. " * 300 + "Write a long story.",
}


def measure(fa: str, prompt: str, agent: str = "gguf/gemma-3-270m") -> tuple[float, float]:
    base = resolve_agent(agent)
    args = [*base.server_config.extra_args, "--flash-attn", fa]
    model = load_model(merge_overrides(base, {"server_config.extra_args": args}))
    try:
        r = model.chat([{"role": "user", "content": prompt}], None,
                       ChatOptions(max_tokens=64, temperature=0, tool_call_grammar=False))
    finally:
        model.close()
    return r.timings.predicted_per_second, r.timings.prompt_per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--agent", default="gguf/gemma-3-270m", help="a gguf agent config (e.g. gguf/qwen2.5-coder-1.5b)")
    args = ap.parse_args()
    rounds = args.rounds
    print(f"{'prompt':6} {'round':>5} {'fa':>4} {'decode tok/s':>13} {'prefill tok/s':>14}")
    for name, prompt in PROMPTS.items():
        rates: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
        for i in range(1, rounds + 1):
            for fa in ("on", "off"):
                decode, prefill = measure(fa, prompt, args.agent)
                rates[fa].append((decode, prefill))
                print(f"{name:6} {i:5} {fa:>4} {decode:13.1f} {prefill:14.0f}")
        for k, label in ((0, "decode"), (1, "prefill")):
            on = statistics.median(r[k] for r in rates["on"])
            off = statistics.median(r[k] for r in rates["off"])
            print(f"{name} prompt: {label} on/off = {on / off:.2f}x ({on:.1f} vs {off:.1f} tok/s)")


if __name__ == "__main__":
    main()
