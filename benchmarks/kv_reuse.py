"""Prompt-cache reuse: an 8-turn agent-like conversation on the demo model, in-process,
with KV reuse vs. a cache reset every turn (two loaded copies, alternating turn by turn).

    python benchmarks/kv_reuse.py [--turns 8] [--result-tokens 450] [--agent gguf/qwen2.5-coder-1.5b]

Prints per turn the tokens added since the previous turn, the tokens evaluated and reused
with reuse on, the tokens evaluated with reuse off, and the total-time ratio.
Targets: every turn after the first evaluates at most the added tokens + 16; ratio >= 2.5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _conversation import Conversation, source_chunks  # noqa: E402

from localcode.backends.llama_cpp import LlamaCppChatModel  # noqa: E402
from localcode.config import resolve_agent  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=8, help="model calls in the conversation")
    ap.add_argument("--result-tokens", type=int, default=450, help="tokens per tool result")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--agent", default="gguf/gemma-3-270m", help="a gguf agent config (e.g. gguf/qwen2.5-coder-1.5b)")
    args = ap.parse_args()

    cfg = resolve_agent(args.agent)
    # two loaded copies, one per mode, alternating turn by turn: changing machine load hits both alike
    model = LlamaCppChatModel(cfg.model_copy(update={"cache": True}))
    fresh = LlamaCppChatModel(cfg.model_copy(update={"cache": False}))
    print(f"model {model.info.path} ctx {model.info.context_window} threads {model.info.threads}", file=sys.stderr)
    results = source_chunks(args.turns - 1, args.result_tokens, model.count_tokens)
    a, b = Conversation(model, results, args.max_tokens), Conversation(fresh, results, args.max_tokens)
    while not a.done:
        a.step()
        b.step()
    reuse, reset = a.turns, b.turns
    model.close()
    fresh.close()

    print(f"{'turn':>4} {'added':>6} | {'reuse: eval':>11} {'cached':>6} {'s':>6} | {'reset: eval':>11} {'s':>6} | ok")
    all_ok = True
    for i, (a, b) in enumerate(zip(reuse, reset), start=1):
        ua = a.result.usage
        if i == 1:
            added = ua.prompt_tokens
            ok = True
        else:
            prev = reuse[i - 2].result.usage
            added = ua.prompt_tokens - (prev.prompt_tokens + prev.completion_tokens)
            ok = a.result.timings.prompt_n <= added + 16
        all_ok &= ok
        print(f"{i:>4} {added:>6} | {a.result.timings.prompt_n:>11} {ua.cached_tokens:>6} {a.seconds:>6.2f} | "
              f"{b.result.timings.prompt_n:>11} {b.seconds:>6.2f} | {'yes' if ok else 'NO'}")
    t_reuse = sum(t.seconds for t in reuse)
    t_reset = sum(t.seconds for t in reset)
    same = [a.result.raw for a in reuse] == [b.result.raw for b in reset]
    print(f"total: reuse {t_reuse:.2f} s, reset {t_reset:.2f} s, ratio {t_reset / t_reuse:.2f}x (target >= 2.5)")
    print(f"prompt tokens evaluated: reuse {sum(t.result.timings.prompt_n for t in reuse)}, "
          f"reset {sum(t.result.timings.prompt_n for t in reset)}; same answers in both modes: {same}")
    print(f"every later turn evaluates <= added + 16: {all_ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
