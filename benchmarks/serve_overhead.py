"""What does ``localcode serve`` cost over calling the model in-process? And over llama-cpp-python's
own server (``python -m llama_cpp.server``)?

Measured side by side in one run, with the demo GGUF (or any gguf agent), greedy decoding
(temperature 0, fixed seed) and a fixed ``max_tokens``, so every path generates the same
tokens (the script prints the counts; a base model rambles, so the end-of-generation token
is not reached):

- ``localcode in-process``: ``ChatModel.chat`` / ``ChatModel.stream`` in this process.
- ``localcode serve``: ``localcode serve`` in a subprocess, asked through the official
  ``openai`` client (``/v1/chat/completions``, non-streamed and streamed).
- ``llama_cpp in-process``: ``llama_cpp.Llama.create_completion`` in this process, same load
  parameters, same prompt text (localcode's rendered chat prompt), same tokens.
- ``llama_cpp.server``: ``python -m llama_cpp.server`` in a subprocess with the same
  parameters, asked through the ``openai`` client (``/v1/completions`` with the same prompt
  text: its leanest path).

The variants run interleaved, ``--repeats`` times each; the median and the best wall time per
request are reported, with ms per generated token and the ratios (of medians and of bests):

    serve / in-process         (target: within 1.10)
    llama_cpp.server / llama_cpp in-process  (its own overhead)
    serve / llama_cpp.server   (target: below 1.0)

Last, serve's own cost per streamed token is measured with a fake model that does no work.

    python benchmarks/serve_overhead.py [--agent gguf/gemma-3-270m] [--tokens 128] [--repeats 5]

Needs the ``serve`` extra and llama-cpp-python's server dependencies (starlette-context,
pydantic-settings, sse-starlette; in the ``test`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai

from localcode.backends.base import ChatOptions

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]


LLAMA_SERVER_LAUNCHER = """
import runpy, sys
import llama_cpp.llama_cpp as low
if sys.argv.pop(1) == "False":
    original = low.llama_model_default_params
    def patched():
        params = original()
        params.use_extra_bufts = False
        return params
    low.llama_model_default_params = patched
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
"""Runs ``python -m llama_cpp.server`` with the load setting localcode's backend used that the
server has no flag for: ``use_extra_bufts=False`` (ggml's AMX buffers crash llama-cpp-python
0.3.36 on some CPUs; without it ``llama_cpp.Llama`` segfaults on its first decode there)."""


@contextlib.contextmanager
def _extra_bufts(llama_cpp: Any, enabled: bool) -> Iterator[None]:
    """Load a ``Llama`` with ggml's extra buffer types on or off (as localcode's backend did)."""
    if enabled:
        yield
        return
    low = llama_cpp.llama_cpp
    original = low.llama_model_default_params

    def patched() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = patched
    try:
        yield
    finally:
        low.llama_model_default_params = original


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: see its stderr above")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not become healthy in {timeout} s")


def start(argv: list[str], health: str) -> subprocess.Popen[bytes]:
    print("starting:", " ".join(argv), file=sys.stderr)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=None)
    wait_healthy(health, proc)
    return proc


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, n


class InstantModel:
    """A fake ``ChatModel`` that streams ``n`` one-word deltas without any decode work."""

    def __init__(self, n: int) -> None:
        from localcode.backends.base import ModelInfo

        self.n = n
        self.info = ModelInfo(backend="fake", model="instant")

    def stream(self, messages: Any, tools: Any = None, options: Any = None) -> Iterator[Any]:
        from localcode.backends.base import ChatResult, StreamEvent, Usage

        for i in range(self.n):
            yield StreamEvent(kind="content", text=" word")
        yield StreamEvent(kind="done", result=ChatResult(content=" word" * self.n, finish_reason="length",
                                                         usage=Usage(prompt_tokens=1, completion_tokens=self.n)))

    def chat(self, messages: Any, tools: Any = None, options: Any = None) -> Any:
        return [e for e in self.stream(messages)][-1].result

    def close(self) -> None:
        pass


def pipeline_cost(n: int = 2000, repeats: int = 3) -> float:
    """Microseconds ``serve`` adds per streamed token with no model work: worker thread → event loop →
    chunk JSON → SSE → the ``openai`` client's parsing (client and server share this process)."""
    import threading

    import uvicorn

    from localcode.server import create_app

    app = create_app(InstantModel(n), "instant")  # type: ignore[arg-type]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1", api_key="x", max_retries=0)
    best = float("inf")
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            pieces = sum(1 for c in client.chat.completions.create(model="instant", messages=PROMPT, stream=True)
                         if c.choices and c.choices[0].delta.content)
            direct = time.perf_counter()
            assert pieces == n, pieces
            t1 = time.perf_counter()
            assert sum(1 for e in InstantModel(n).stream(PROMPT) if e.kind == "content") == n
            best = min(best, ((direct - t0) - (time.perf_counter() - t1)) / n * 1e6)
    finally:
        server.should_exit = True
        thread.join(10)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agent", default="gguf/gemma-3-270m")
    ap.add_argument("--tokens", type=int, default=128, help="max_tokens of every request")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-llama-server", action="store_true", help="skip the llama_cpp.server comparison")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = ap.parse_args()

    from localcode.backends.loader import load_model
    from localcode.config import resolve_agent

    cfg = resolve_agent(args.agent)
    model = load_model(cfg)
    info = model.info
    threads = info.threads or 2
    n_ctx = info.context_window
    details = info.details
    print(f"model {info.model} ({info.path}), context {n_ctx}, threads {threads}, "
          f"max_tokens {args.tokens}, repeats {args.repeats}", file=sys.stderr)
    options = ChatOptions(temperature=0.0, seed=1, max_tokens=args.tokens, top_k=40, top_p=0.95, min_p=0.05,
                          repeat_penalty=1.0)
    sampling = {"temperature": 0.0, "seed": 1, "max_tokens": args.tokens, "top_p": 0.95}
    sampling_extra = {"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}

    procs: list[subprocess.Popen[bytes]] = []
    try:
        variants: dict[str, Callable[[], int]] = {}

        def inproc_chat() -> int:
            return model.chat(PROMPT, None, options).usage.completion_tokens

        def inproc_stream() -> int:
            n = 0
            for ev in model.stream(PROMPT, None, options):
                if ev.kind == "done" and ev.result is not None:
                    n = ev.result.usage.completion_tokens
            return n

        variants["localcode in-process chat"] = inproc_chat
        variants["localcode in-process stream"] = inproc_stream

        port = free_port()
        serve = start([sys.executable, "-m", "localcode", "-q", "serve", "--agent", args.agent, "--port", str(port)],
                      f"http://127.0.0.1:{port}/health")
        procs.append(serve)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)

        def serve_chat() -> int:
            r = client.chat.completions.create(model=cfg.name, messages=PROMPT, extra_body=sampling_extra, **sampling)
            assert r.usage is not None
            return r.usage.completion_tokens

        def serve_stream() -> int:
            n = 0
            for chunk in client.chat.completions.create(model=cfg.name, messages=PROMPT, stream=True,
                                                        stream_options={"include_usage": True},
                                                        extra_body=sampling_extra, **sampling):
                if chunk.usage is not None:
                    n = chunk.usage.completion_tokens
            return n

        variants["localcode serve non-streamed"] = serve_chat
        variants["localcode serve streamed"] = serve_stream

        if not args.no_llama_server:
            import llama_cpp

            load = {"n_ctx": n_ctx, "n_threads": threads, "n_threads_batch": threads,
                    "n_batch": details.get("n_batch") or 2048, "n_ubatch": details.get("n_ubatch") or 512,
                    "flash_attn": bool(details.get("flash_attn", True)), "n_gpu_layers": info.gpu_layers or 0}
            extra_bufts = details.get("use_extra_bufts", True) is not False
            with _extra_bufts(llama_cpp, extra_bufts):
                llm = llama_cpp.Llama(model_path=str(info.path), verbose=False, **load)
            # the same prompt tokens: localcode's rendered prompt, minus the BOS text Llama adds itself
            rendered = model.template.render(PROMPT, add_generation_prompt=True)  # type: ignore[attr-defined]
            prompt_text = rendered.removeprefix(llm.detokenize([llm.token_bos()], special=True).decode())
            completion = {"temperature": 0.0, "seed": 1, "max_tokens": args.tokens, "top_p": 0.95, "top_k": 40,
                          "min_p": 0.05, "repeat_penalty": 1.0}

            def llama_inproc() -> int:
                return int(llm.create_completion(prompt_text, **completion)["usage"]["completion_tokens"])

            def llama_inproc_stream() -> int:
                return sum(1 for c in llm.create_completion(prompt_text, stream=True, **completion)
                           if c["choices"][0]["text"])

            variants["llama_cpp in-process"] = llama_inproc
            variants["llama_cpp in-process stream"] = llama_inproc_stream

            lport = free_port()
            argv = [sys.executable, "-c", LLAMA_SERVER_LAUNCHER, str(extra_bufts),
                    "--model", str(info.path), "--host", "127.0.0.1", "--port", str(lport), "--verbose", "False"]
            for key, value in load.items():
                argv += [f"--{key}", str(value)]
            procs.append(start(argv, f"http://127.0.0.1:{lport}/v1/models"))
            lclient = openai.OpenAI(base_url=f"http://127.0.0.1:{lport}/v1", api_key="x", max_retries=0, timeout=600)
            lextra = {k: v for k, v in completion.items() if k in ("top_k", "min_p", "repeat_penalty")}

            def lserver() -> int:
                r = lclient.completions.create(model="x", prompt=prompt_text, temperature=0.0, seed=1,
                                               max_tokens=args.tokens, top_p=0.95, extra_body=lextra)
                assert r.usage is not None
                return r.usage.completion_tokens

            def lserver_stream() -> int:
                # llama_cpp.server sends no usage when streaming: count the pieces (one per token)
                return sum(1 for c in lclient.completions.create(model="x", prompt=prompt_text, temperature=0.0,
                                                                 seed=1, max_tokens=args.tokens, top_p=0.95,
                                                                 stream=True, extra_body=lextra)
                           if c.choices and c.choices[0].text)

            variants["llama_cpp.server non-streamed"] = lserver
            variants["llama_cpp.server streamed"] = lserver_stream

        for fn in variants.values():  # warm-up: page in the weights, fill the prompt caches
            fn()
        times: dict[str, list[float]] = {k: [] for k in variants}
        tokens: dict[str, set[int]] = {k: set() for k in variants}
        for rep in range(args.repeats):
            for name, fn in variants.items():
                seconds, n = timed(fn)
                times[name].append(seconds)
                tokens[name].add(n)
            print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    print(f"\n{'path':32} {'median s':>9} {'min s':>7} {'tokens':>7} {'ms/token':>9}")
    for name in variants:
        n = max(tokens[name])
        rows.append({"path": name, "median_s": med[name], "min_s": min(times[name]), "tokens": sorted(tokens[name]),
                     "ms_per_token": 1000 * med[name] / n if n else None})
        print(f"{name:32} {med[name]:9.3f} {min(times[name]):7.3f} {'/'.join(map(str, sorted(tokens[name]))):>7} "
              f"{1000 * med[name] / n if n else float('nan'):9.2f}")

    best = {k: min(v) for k, v in times.items()}

    def ratio(a: str, b: str) -> tuple[float, float] | None:
        """(median ratio, best ratio): interference from other processes only adds time, so the
        ratio of the fastest runs is the steadier figure on a shared machine."""
        return (med[a] / med[b], best[a] / best[b]) if a in med and b in med else None

    ratios = {
        "serve non-streamed / in-process chat": ratio("localcode serve non-streamed", "localcode in-process chat"),
        "serve streamed / in-process stream": ratio("localcode serve streamed", "localcode in-process stream"),
        "llama_cpp.server non-streamed / llama_cpp in-process": ratio("llama_cpp.server non-streamed",
                                                                      "llama_cpp in-process"),
        "llama_cpp.server streamed / llama_cpp in-process stream": ratio("llama_cpp.server streamed",
                                                                         "llama_cpp in-process stream"),
        "serve non-streamed / llama_cpp.server non-streamed": ratio("localcode serve non-streamed",
                                                                    "llama_cpp.server non-streamed"),
        "serve streamed / llama_cpp.server streamed": ratio("localcode serve streamed", "llama_cpp.server streamed"),
    }
    print(f"\n{'ratio':58} {'median':>7} {'best':>7}")
    for name, value in ratios.items():
        if value is not None:
            print(f"{name:58} {value[0]:6.3f}x {value[1]:6.3f}x")
    per_token_us = pipeline_cost()
    decode_ms = min(r["ms_per_token"] for r in rows if r["path"].startswith("localcode in-process") and r["ms_per_token"])
    print(f"\nserve's own cost per streamed token (fake model, client in the same process): {per_token_us:.0f} us "
          f"= {per_token_us / 10 / decode_ms:.1f}% of the in-process {decode_ms:.1f} ms/token measured above")
    counts = {n for name in variants for n in tokens[name]}
    if len(counts) > 1:
        print(f"note: token counts differ between paths ({sorted(counts)}); compare ms/token", file=sys.stderr)
    if args.json:
        print(json.dumps({"model": info.model, "threads": threads, "max_tokens": args.tokens,
                          "repeats": args.repeats, "rows": rows, "ratios": ratios,
                          "serve_us_per_streamed_token": per_token_us}, indent=2))
    model.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
