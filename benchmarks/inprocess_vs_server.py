"""The same agent-like conversation in-process (LlamaCppChatModel) vs. through the HTTP
backend against ``llama-server`` built from the same vendored llama.cpp — the original
localcode's architecture. Same model, context, threads, flash attention and repack settings;
both sides reuse their prompt cache (llama-server: one slot, ``cache_prompt``).

    python benchmarks/inprocess_vs_server.py [--turns 8] [--result-tokens 450] [--rounds 2]

The two sides alternate turn by turn (each keeps its own cache), so changing machine load
hits both alike. The turns are plain text (greedy, the same tokens on both sides):
llama-server cannot force this template's tool-call format, and a tool call forced on one
side only would make the two conversations differ. Prints per-turn seconds, tokens and the
total-time ratio. Target: in-process total time <= 1.0x the server path.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _llama_build  # noqa: E402
from _conversation import Conversation, Turn, source_chunks  # noqa: E402

from localcode import paths  # noqa: E402
from localcode.backends.http import HttpChatModel  # noqa: E402
from localcode.backends.llama_cpp import LlamaCppChatModel  # noqa: E402
from localcode.config import resolve_agent  # noqa: E402


def start_server(binary: Path, model: Path, ctx: int, threads: int, flash: bool, repack: bool,
                 template: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [str(binary), "-m", str(model), "-c", str(ctx), "-t", str(threads), "-tb", str(threads),
            "-ngl", "0", "-fa", "on" if flash else "off", "--jinja", "--chat-template-file", str(template),
            "-np", "1", "--host", "127.0.0.1", "--port", str(port)]
    if not repack:
        argv.append("--no-repack")
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited: see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url + "/v1"
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"llama-server did not start: see {log}")


def _template_file(model: LlamaCppChatModel) -> Path:
    """The loaded model's chat template in a file, for llama-server's --chat-template-file."""
    f = Path(tempfile.mkdtemp()) / "template.jinja"
    f.write_text(model.template_source, encoding="utf-8")
    return f


def show(name: str, turns: list[Turn]) -> float:
    total = sum(t.seconds for t in turns)
    cells = " ".join(f"{t.seconds:5.2f}" for t in turns)
    print(f"{name:<11} {total:7.2f} s | per turn: {cells}")
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--result-tokens", type=int, default=450)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--agent", default="gguf/gemma-3-270m", help="a gguf agent config (e.g. gguf/qwen2.5-coder-1.5b)")
    args = ap.parse_args()

    cfg = resolve_agent(args.agent)
    local = LlamaCppChatModel(cfg)
    info = local.info
    results = source_chunks(args.turns - 1, args.result_tokens, local.count_tokens)
    # the server gets the same chat template: the config's file, else the one inside the GGUF
    template = (paths.package_dir("agents") / "templates" / "gemma-3-270m.jinja" if args.agent == "gguf/gemma-3-270m"
                else _template_file(local))
    log = Path(tempfile.mkdtemp()) / "llama-server.log"
    proc, url = start_server(_llama_build.binary("llama-server"), Path(info.path or ""), info.context_window,
                             int(info.threads or 1), bool(info.details.get("flash_attn")),
                             bool(info.details.get("use_extra_bufts")), template, log)
    remote = HttpChatModel(url, info.model, request_timeout=600)
    print(f"model {info.path}; ctx {info.context_window}; threads {info.threads}; server log {log}", file=sys.stderr)
    totals: dict[str, list[float]] = {"in-process": [], "server": []}
    try:
        for r in range(1, args.rounds + 1):
            local.reset_cache()
            ca = Conversation(local, results, args.max_tokens, tools=False)
            cb = Conversation(remote, results, args.max_tokens, tools=False)
            while not ca.done:
                ca.step()
                cb.step()
            a, b = ca.turns, cb.turns
            print(f"round {r}")
            totals["in-process"].append(show("in-process", a))
            totals["server"].append(show("server", b))
            for name, turns in (("in-process", a), ("server", b)):
                u = [t.result.usage for t in turns]
                print(f"  {name}: prompt tokens {sum(x.prompt_tokens for x in u)}, cached {sum(x.cached_tokens for x in u)}, "
                      f"generated {sum(x.completion_tokens for x in u)}")
            same = [t.result.content for t in a] == [t.result.content for t in b]
            print(f"  same answers on both sides: {same}")
    finally:
        remote.close()
        proc.terminate()
        proc.wait(timeout=30)
        local.close()
    ours, theirs = sum(totals["in-process"]), sum(totals["server"])
    print(f"total over {args.rounds} rounds: in-process {ours:.2f} s, server {theirs:.2f} s, "
          f"in-process / server = {ours / theirs:.3f}x (target <= 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
