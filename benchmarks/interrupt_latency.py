"""Ctrl-C during a long prompt evaluation: how long until it stops, and what the abort callback costs.

In-process, one loaded GGUF: a prompt of ``--tokens`` tokens is evaluated from an empty
cache; a timer thread sends this process SIGINT ``--after`` seconds in, under
``localcode.interrupt.handling()`` as the CLI runs it. Printed side by side, alternating:

- with llama.cpp's abort callback (what localcode does): seconds from SIGINT to
  ``KeyboardInterrupt``;
- without it (the callback switched off, as before): Python only sees the interrupt between
  ``n_batch`` batches;
- prefill tokens/s with and without the callback installed, no interrupt (its cost),
  ``--prefill-rounds`` alternating rounds on a ``--prefill-tokens`` prompt::

    python benchmarks/interrupt_latency.py [--agent gguf/qwen2.5-coder-1.5b] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import threading
import time
from typing import Any

from localcode import interrupt
from localcode.backends.base import ChatOptions
from localcode.backends.loader import load_model
from localcode.config import merge_overrides, resolve_agent


def prompt_of(model: Any, tokens: int) -> str:
    line = "The quick brown fox jumps over the lazy dog while the compiler checks every branch. "
    text = line * max(1, tokens // 16)
    while len(model._tokenize(text, add_bos=False)) > tokens:
        text = text[: int(len(text) * 0.95)]
    return text


def prefill(model: Any, text: str) -> float:
    """Prompt tokens/s of one evaluation from an empty cache (one generated token)."""
    model.reset_cache()
    r = model.chat([{"role": "user", "content": text}], None,
                   ChatOptions(max_tokens=1, temperature=0, tool_call_grammar=False))
    return r.timings.prompt_per_second


def stop_latency(model: Any, text: str, after: float) -> float:
    """Seconds from SIGINT to KeyboardInterrupt, ``after`` seconds into the prompt evaluation."""
    model.reset_cache()
    sent: list[float] = []

    def fire() -> None:
        time.sleep(after)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=fire, daemon=True)
    with interrupt.handling():
        timer.start()
        try:
            model.chat([{"role": "user", "content": text}], None,
                       ChatOptions(max_tokens=1, temperature=0, tool_call_grammar=False))
        except KeyboardInterrupt:
            stopped = time.perf_counter()
        else:
            raise SystemExit("the prompt finished before the interrupt: raise --tokens or lower --after")
    timer.join()
    return stopped - sent[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="gguf/gemma-3-270m")
    ap.add_argument("--tokens", type=int, default=6000)
    ap.add_argument("--after", type=float, default=1.5, help="seconds into the prompt evaluation to send SIGINT")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the SIGINT measurement")
    ap.add_argument("--prefill-rounds", type=int, default=4, help="alternating prefill rounds with/without the callback")
    ap.add_argument("--prefill-tokens", type=int, default=1500, help="prompt tokens of the prefill rounds")
    a = ap.parse_args()
    cfg = resolve_agent(a.agent)
    ctx = max(a.tokens + 512, cfg.server_config.context_window or 0)
    model = load_model(merge_overrides(cfg, {"server_config.context_window": ctx}))
    text = prompt_of(model, a.tokens)
    on, off = model._abort_on, model._abort_off
    print(f"{a.agent}: prompt of {len(model._tokenize(text, add_bos=False))} tokens, n_batch {model._llm.n_batch}, "
          f"SIGINT {a.after} s in")
    rows: dict[str, list[float]] = {"stop_with": [], "stop_without": [], "tps_with": [], "tps_without": []}
    short = prompt_of(model, a.prefill_tokens)
    try:
        for r in range(a.rounds):
            model._abort_on = on
            rows["stop_with"].append(stop_latency(model, text, a.after))
            model._abort_on = off  # the callback never installed: the behaviour before localcode.interrupt
            rows["stop_without"].append(stop_latency(model, text, a.after))
            print(f"round {r + 1}: stop {rows['stop_with'][-1]:.2f} s with the callback, "
                  f"{rows['stop_without'][-1]:.2f} s without")
        for r in range(a.prefill_rounds):
            for first in ((on, "tps_with"), (off, "tps_without")) if r % 2 == 0 else ((off, "tps_without"), (on, "tps_with")):
                model._abort_on = first[0]
                rows[first[1]].append(prefill(model, short))
            print(f"prefill round {r + 1}: {rows['tps_with'][-1]:.0f} tok/s with the callback, "
                  f"{rows['tps_without'][-1]:.0f} without")
    finally:
        model._abort_on = on
        model.close()
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    if a.rounds:
        print(f"median: SIGINT to stop {med['stop_with']:.2f} s with the abort callback vs "
              f"{med['stop_without']:.2f} s without")
    if a.prefill_rounds:
        ratios = [w / o for w, o in zip(rows["tps_with"], rows["tps_without"])]
        print(f"median: prefill of {a.prefill_tokens} tokens with/without the callback "
              f"{med['tps_with'] / med['tps_without']:.3f}x ({med['tps_with']:.0f} vs {med['tps_without']:.0f} tok/s); "
              f"per round {min(ratios):.2f}x-{max(ratios):.2f}x")


if __name__ == "__main__":
    main()
