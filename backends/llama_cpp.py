"""The in-process GGUF backend: llama-cpp-python behind the ``ChatModel`` interface.

localcode renders the chat template itself (``ChatTemplate``), tokenizes the prompt, and
drives llama.cpp's decode/sample loop directly, so it controls stop sequences, sampling,
timeouts, streaming through the family's tool-call parser, cancellation and exact
token accounting.

Prompt-cache reuse (the reason this loop exists). The KV cache holds the tokens of the
previous prompt plus what the model generated. When the next request extends that
conversation (the previous messages, then the assistant message built from the previous
answer, then new messages), only the text *after* the assistant turn is tokenized and
evaluated; the model's own generated tokens stay in the cache, even when re-rendering
the assistant message would give different text (reformatted tool-call JSON, dropped
reasoning) or different tokens. Otherwise the whole conversation is rendered and the
longest common token prefix with the cache is kept (llama.cpp's usual reuse), or the
cache is cleared when a sliding-window or recurrent cache cannot be rolled back.
``LlamaRAMCache`` is not used: it made conversations slower (see DESIGN.md).

Conversation states (``save_conversation`` / ``restore_conversation``): when several
conversations take turns on one model (``bench``: try 2 of a task runs after other tasks'
tries), each keeps a copy of its sequence's KV state (llama.cpp's per-sequence state, KV
cells only, no logits) plus what the delta logic needs; restoring it lets the next turn
evaluate only its new tokens. Copies are kept least-recently-used first within
``state_budget_bytes`` (default ``localcode.backends.base.DEFAULT_STATE_BUDGET``; logged on the first save).

Context policy: a prompt that leaves no room for one generated token raises
``ContextWindowExceeded`` before anything is evaluated; otherwise generation is capped at
the room left and ends with ``finish_reason="length"`` when it runs out. The same
``"length"`` ends a generation that exceeds ``request_timeout``.

tool_choice: ``"none"`` renders no tools; ``"required"`` or a named function renders the
tools and, with ``tool_call_grammar``, forces exactly one call (of that function) with a
grammar; without the grammar it is only prompted. ``tool_call_grammar`` with ``"auto"``
uses a lazy grammar that constrains a call once the model opens ``<tool_call>``, leaving
plain answers free. Grammars exist for every family with a native call format
(``tool_parsers.grammar``: Hermes, Qwen3-Coder, GLM, Kimi, MiniMax, DeepSeek, Mistral,
Llama 3, Harmony); other families raise ``ConfigError``.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcode import interrupt, paths
from localcode.backends.base import (
    ChatOptions,
    ChatResult,
    Message,
    ModelInfo,
    RepetitionGuard,
    StateStore,
    StreamEvent,
    Timings,
    ToolSchema,
    Usage,
)
from localcode.backends.llama_args import LlamaArgs, parse_llama_args
from localcode.backends.models import file_sha256, quantization_name, resolve_model_path
from localcode.backends.tool_parsers.grammar import tool_call_grammar
from localcode.config import AgentConfig
from localcode.errors import ConfigError, ContextWindowExceeded, MissingDependency, ModelError

log = logging.getLogger(__name__)

DEFAULT_MAX_CONTEXT = 32768
"""Context size when neither the config nor ``--ctx-size`` gives one: the GGUF's training context, capped here."""

SERVER_SAMPLING_DEFAULTS: dict[str, Any] = {
    "temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
    "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
    "max_tokens": 2048, "seed": None,
}
"""llama-server's sampling defaults, used when neither the request, the config nor ``extra_args`` set a value."""



def physical_cores() -> int:
    """Physical CPU cores (llama.cpp is fastest with one thread per core; ``os.cpu_count()`` counts hyperthreads)."""
    try:
        import psutil  # optional

        n = psutil.cpu_count(logical=False)
        if n:
            return int(n)
    except ImportError:
        pass
    try:
        cores: set[tuple[str, str]] = set()
        phys = core = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "physical id":
                phys = value.strip()
            elif key == "core id":
                core = value.strip()
                cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            return int(subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True,
                                      check=True).stdout.strip())
        except (OSError, ValueError, subprocess.CalledProcessError):
            pass
    return max(1, os.cpu_count() or 1)


def resolve_template_file(name: str, config_source: str | None = None) -> Path:
    """A template path from a config: absolute, relative to the config file, the cwd, or ``agents/templates/``."""
    p = Path(name).expanduser()
    candidates = [p] if p.is_absolute() else []
    if not p.is_absolute():
        if config_source and Path(config_source).exists():
            candidates.append(Path(config_source).parent / p)
        candidates += [Path.cwd() / p, paths.package_dir("agents") / "templates" / p,
                       paths.package_dir("agents") / "templates" / p.name]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"chat template file '{name}' not found: put it in agents/templates/ or give a full path")


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependency("llama-cpp-python", "gguf", "GGUF models") from None
    return llama_cpp


@dataclass
class _Held:
    """What the KV cache holds beyond its tokens: enough to append the next turn as a delta."""

    messages: list[Message]
    request_key: str
    """Tools and template switches of the request; a change means a different prompt."""
    prompt_text: str
    result: ChatResult
    gen_text: str
    """Everything generated, decoded (end marker excluded)."""
    held_text: str
    """The generated text whose tokens are in the KV cache (a prefix of ``gen_text`` + marker)."""
    end_marker: str | None
    """The EOG token text or stop string that ended the generation (``None``: length, timeout, cancel)."""


@dataclass
class _SavedState:
    """One conversation's KV state, kept while other conversations use the model."""

    tokens: list[int]
    data: Any
    """A ctypes byte array from ``llama_state_seq_get_data`` (sequence 0)."""
    size: int
    held: _Held | None


@dataclass
class _Params:
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    presence_penalty: float
    frequency_penalty: float
    max_tokens: int
    seed: int | None
    stop: list[str] = field(default_factory=list)


class LlamaCppChatModel:
    """A GGUF model loaded in-process with llama-cpp-python.

    ``LlamaCppChatModel(cfg)`` loads ``cfg.server_config``'s model once. ``overrides`` replace
    ``llama_cpp.Llama`` load parameters (``n_ctx``, ``n_threads``, ``flash_attn``, ...) after
    the config and ``extra_args`` were applied. Raises ``ModelNotFound``, ``ConfigError``
    (bad flags, no chat template), ``MissingDependency`` (llama-cpp-python) or ``ModelError``.
    """

    def __init__(self, cfg: AgentConfig, **overrides: Any) -> None:
        llama_cpp = _import_llama()
        self.cfg = cfg
        self.args: LlamaArgs = parse_llama_args(cfg.server_config.extra_args)
        for flag in self.args.not_applicable:
            log.info("extra_args %s: only concerns a server, not applicable in-process", flag)
        path = resolve_model_path(cfg.server_config)
        self._path = path
        load = self._load_params(llama_cpp, path)
        load.update(overrides)
        self._lock = threading.Lock()
        self._held: _Held | None = None
        self._states: StateStore[_SavedState] = StateStore()
        self.state_stats = self._states.stats
        """Counters of the conversation-state store (``save_conversation``)."""
        t0 = time.perf_counter()
        try:
            self._llm = _new_llama(llama_cpp, path, load)
        except (ValueError, RuntimeError) as e:
            if interrupt.requested():
                raise KeyboardInterrupt from None  # the progress callback stopped the load
            raise ModelError(f"could not load {path}: {e}: check the file and the load flags in extra_args") from None
        load_seconds = time.perf_counter() - t0
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._llama_cpp = llama_cpp
        # Kept referenced: llama.cpp holds only the C pointer. A NULL one turns the callback off.
        self._abort_on = llama_cpp.ggml_abort_callback(interrupt.abort_callback)
        self._abort_off = llama_cpp.ggml_abort_callback()
        meta = dict(self._llm.metadata)
        self.metadata = meta
        self._bos = self._token_text(self._llm.token_bos())
        self._eos = self._token_text(self._llm.token_eos())
        self.template_source, template_origin = self._template_source(meta)
        from localcode.backends.chat_template import ChatTemplate

        self.template = ChatTemplate(self.template_source, bos_token=self._bos, eos_token=self._eos,
                                     name=Path(template_origin).name)
        self.family: str = self.template.family
        self._n_swa = int(llama_cpp.llama_model_n_swa(self._llm.model)) if not load.get("swa_full") else 0
        self._rollback_ok = not (self._llm._is_recurrent or self._llm._is_hybrid)
        self.info = ModelInfo(
            backend="llama_cpp",
            model=path.name.removesuffix(".gguf"),
            path=str(path),
            size_bytes=sum(p.stat().st_size for p in _parts(path)),
            quantization=quantization_name(meta, path),
            context_window=self._llm.n_ctx(),
            threads=load.get("n_threads"),
            gpu_layers=load.get("n_gpu_layers"),
            load_seconds=round(load_seconds, 3),
            details={
                "n_batch": load.get("n_batch"), "n_ubatch": load.get("n_ubatch"),
                "flash_attn": load.get("flash_attn"), "use_extra_bufts": load.get("use_extra_bufts"),
                "type_k": load.get("type_k"), "type_v": load.get("type_v"),
                "chat_template": template_origin, "family": self.family,
                "reasoning_format": self.args.reasoning_format,
                "not_applicable_flags": list(self.args.not_applicable),
                "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
                "llama_cpp_python": getattr(llama_cpp, "__version__", ""),
                "n_ctx_train": self._llm._model.n_ctx_train(),
                "state_budget_bytes": self._states.budget_bytes,
            },
        )

    # ---------------------------------------------------------------- loading

    def _load_params(self, llama_cpp: Any, path: Path) -> dict[str, Any]:
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        load: dict[str, Any] = {
            "n_threads": physical_cores(),
            "n_gpu_layers": -1 if gpu else 0,
            # every llama.cpp backend implements flash attention; on a 2-core CPU with a 3k-token prompt
            # it made decode ~1.2x and prefill ~1.2x faster (demo model; no difference on short prompts)
            "flash_attn": True,
            "n_batch": 2048,
            "n_ubatch": 512,
            # ggml's AMX matmul (an "extra buffer type") crashed with SIGSEGV on an AMX Xeon under KVM
            # with llama-cpp-python 0.3.36; --repack turns extra buffer types back on
            "use_extra_bufts": not (not gpu and _cpu_has_amx()),
        }
        load.update(self.args.load)
        load.setdefault("n_threads_batch", load["n_threads"])
        n_ctx = self.cfg.server_config.context_window or self.args.load.get("n_ctx")
        if not n_ctx:
            train = _training_context(llama_cpp, path)
            n_ctx = min(train, DEFAULT_MAX_CONTEXT) if train else DEFAULT_MAX_CONTEXT
            print(f"localcode: no context size configured; using {n_ctx} (model trained with {train}); "
                  "set server_config.context_window to change it", file=sys.stderr)
        load["n_ctx"] = int(n_ctx)
        load["n_batch"] = min(load["n_batch"], load["n_ctx"])
        load["n_ubatch"] = min(load["n_ubatch"], load["n_batch"])
        return load

    def _template_source(self, meta: dict[str, str]) -> tuple[str, str]:
        if self.args.chat_template_file:
            f = resolve_template_file(self.args.chat_template_file, self.cfg.source)
            return f.read_text(encoding="utf-8"), str(f)
        if self.args.chat_template:
            return self.args.chat_template, "--chat-template"
        if meta.get("tokenizer.chat_template"):
            return meta["tokenizer.chat_template"], "gguf:tokenizer.chat_template"
        raise ConfigError(
            f"{self._path.name} has no chat template: add \"--chat-template-file NAME.jinja\" to "
            "server_config.extra_args (templates live in agents/templates/)"
        )

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm._model.token_to_piece(token, special=True).rstrip(b"\0").decode("utf-8", "replace")

    # ---------------------------------------------------------------- public

    def chat(self, messages: list[Message], tools: list[ToolSchema] | None = None,
             options: ChatOptions | None = None) -> ChatResult:
        """Generate one assistant turn (see ``ChatModel.chat``)."""
        result: ChatResult | None = None
        for event in self.stream(messages, tools, options):
            if event.kind == "done":
                result = event.result
        assert result is not None
        return result

    def stream(self, messages: list[Message], tools: list[ToolSchema] | None = None,
               options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        """Generate one assistant turn as deltas; the last event is ``done``. Closing the iterator cancels."""
        options = options or ChatOptions()
        with self._lock:
            if self._llm is None:
                raise ModelError("the model was closed")
            yield from self._generate(messages, tools, options)

    def stream_text(self, prompt: str, options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        """Continue raw ``prompt`` without a chat template (``/v1/completions``).

        ``content`` deltas, then ``done`` with the result. Stop strings and end-of-generation
        tokens end it; the KV cache keeps the longest common prefix with the previous request.
        Raises ``ContextWindowExceeded`` before evaluating a prompt that does not fit.
        """
        options = options or ChatOptions()
        with self._lock:
            if self._llm is None:
                raise ModelError("the model was closed")
            yield from self._complete(prompt, options)

    def _complete(self, prompt: str, options: ChatOptions) -> Iterator[StreamEvent]:
        params = self._params(options)
        tokens = self._tokenize(prompt, add_bos=True)
        n_ctx = self._llm.n_ctx()
        if len(tokens) + 1 > n_ctx:
            raise ContextWindowExceeded(len(tokens), n_ctx, params.max_tokens)
        self._held = None  # the chat-turn delta logic must not build on a raw completion
        keep = self._reusable_prefix(tokens) if self.cfg.cache else 0
        max_tokens = min(params.max_tokens, n_ctx - len(tokens))
        stops = [s for s in dict.fromkeys(params.stop) if s]
        sampler = self._sampler(params, None, "none")
        t0 = time.perf_counter()
        self._truncate(keep)
        try:
            self._llm.eval(tokens[keep:])
        except Exception as e:  # llama.cpp decode failure (out of memory, bad batch)
            self._clear_kv()
            raise ModelError(f"prompt evaluation failed: {e}") from None
        prompt_ms = (time.perf_counter() - t0) * 1000.0
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, emitted, n_gen, finish = "", 0, 0, "length"
        t1 = time.perf_counter()
        while n_gen < max_tokens:
            token = sampler.sample(self._llm._ctx, -1)
            n_gen += 1
            if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                finish = "stop"
                break
            text += decoder.decode(self._piece(token))
            hit = _find_stop(text, stops, max(0, emitted - max((len(x) for x in stops), default=0)))
            if hit is not None:
                text, finish = text[: hit[0]], "stop"
                break
            safe = len(text) - _partial_stop_len(text, stops)
            if safe > emitted:
                yield StreamEvent(kind="content", text=text[emitted:safe])
                emitted = safe
            if n_gen < max_tokens:
                self._eval_one(token)
        if len(text) > emitted:
            yield StreamEvent(kind="content", text=text[emitted:])
        predicted_ms = (time.perf_counter() - t1) * 1000.0
        result = ChatResult(
            content=text, finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=len(tokens), cached_tokens=keep, completion_tokens=n_gen),
            timings=Timings(prompt_n=len(tokens) - keep, cache_n=keep, prompt_ms=round(prompt_ms, 3),
                            predicted_n=n_gen, predicted_ms=round(predicted_ms, 3)),
            raw=text,
        )
        yield StreamEvent(kind="done", result=result)

    def close(self) -> None:
        """Free the model and its KV cache (not after Ctrl-C: the process is ending, and freeing
        takes most of a second of the 2 s that Ctrl-C may take)."""
        if interrupt.requested():
            return
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None  # type: ignore[assignment]
            self._held = None
            self._states.clear()

    def reset_cache(self) -> None:
        """Forget what the KV cache holds; the next request evaluates its whole prompt."""
        with self._lock:
            self._clear_kv()

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as this model tokenizes a prompt (special tokens recognised)."""
        return len(self._tokenize(text, add_bos=False))

    def compute_sha256(self) -> str:
        """sha256 of the model file(s), computed once and cached; also stored in ``info.sha256``."""
        if not self.info.sha256:
            self.info.sha256 = file_sha256(self._path)
        return self.info.sha256

    def save_conversation(self, key: str) -> int:
        """Keep a copy of the KV state the last request left, under ``key``; returns its size in bytes.

        Call it right after the conversation's last turn. The copy replaces an earlier one
        of ``key``; least recently used copies are dropped to stay within ``state_budget_bytes``
        (a copy larger than the budget is not kept: 0 is returned).
        """
        with self._lock:
            if self._llm is None or self._llm.n_tokens == 0:
                return 0
            c, ctx = self._llama_cpp, self._llm._ctx.ctx
            size = int(c.llama_state_seq_get_size(ctx, 0))
            if not self._states.admits(key, size):
                return 0
            import ctypes

            buf = (ctypes.c_uint8 * size)()
            n = int(c.llama_state_seq_get_data(ctx, buf, size, 0))
            if n == 0:
                return 0
            self._states.put(key, _SavedState(tokens=self.kv_tokens, data=buf, size=n, held=self._held), n)
            return n

    def restore_conversation(self, key: str) -> bool:
        """Put ``key``'s saved KV state back, unless the cache still holds it; False when none is kept.

        The next request that continues that conversation then evaluates only its new tokens.
        """
        with self._lock:
            self.state_stats.pop("last_restore", None)
            saved = self._states.get(key)
            if saved is None or self._llm is None:
                return False
            current = self.kv_tokens
            if self._held is saved.held and current == saved.tokens:
                return True  # nobody used the model in between
            # for the record: what the cache would have kept of this conversation without the copy
            common = next((i for i, (a, b) in enumerate(zip(current, saved.tokens)) if a != b),
                          min(len(current), len(saved.tokens)))
            self.state_stats["last_restore"] = {"tokens": len(saved.tokens), "kept_without": common}
            self._clear_kv()
            if not self._llama_cpp.llama_state_seq_set_data(self._llm._ctx.ctx, saved.data, saved.size, 0):
                self._clear_kv()
                self._states.pop(key)
                log.warning("conversation state %s could not be restored; the prompt is evaluated again", key)
                return False
            n = len(saved.tokens)
            self._llm.input_ids[:n] = saved.tokens
            self._llm.n_tokens = n
            self._held = saved.held
            self.state_stats["restored"] += 1
            return True

    def drop_conversation(self, key: str) -> None:
        """Forget ``key``'s saved state (the conversation is over)."""
        with self._lock:
            self._states.pop(key)

    @property
    def kv_tokens(self) -> list[int]:
        """The tokens the KV cache holds, in order."""
        return self._llm.input_ids[: self._llm.n_tokens].tolist()

    # ---------------------------------------------------------------- request

    def _params(self, options: ChatOptions) -> _Params:
        values: dict[str, Any] = {}
        for name, default in SERVER_SAMPLING_DEFAULTS.items():
            v = getattr(options, name, None)
            if v is None:
                v = getattr(self.cfg, name, None)
            if v is None:
                v = self.args.sampling.get(name)
            values[name] = default if v is None else v
        return _Params(stop=list(options.stop), **values)

    def _render(self, messages: list[Message], tools: list[ToolSchema] | None, options: ChatOptions,
                add_generation_prompt: bool) -> str:
        think = options.think if options.think is not None else self.cfg.think
        level = options.think_level or self.cfg.think_level
        return self.template.render(messages, tools=tools or None, add_generation_prompt=add_generation_prompt,
                                    think=think, think_level=level,
                                    extra_kwargs=dict(self.args.chat_template_kwargs))

    def _tokenize(self, text: str, add_bos: bool) -> list[int]:
        return self._llm._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def _generate(self, messages: list[Message], tools: list[ToolSchema] | None,
                  options: ChatOptions) -> Iterator[StreamEvent]:
        params = self._params(options)
        tool_choice = options.tool_choice
        if tool_choice == "none":
            tools = None
        grammar_on = bool(tools) and (options.tool_call_grammar or self.cfg.tool_call_grammar)
        request_key = json.dumps([tools or [], options.think, options.think_level], sort_keys=True, default=str)
        prompt_text = self._render(messages, tools, options, add_generation_prompt=True)
        # ---- decide what to keep in the KV cache and what to evaluate
        keep, new_tokens = self._plan(messages, tools, options, request_key, prompt_text)
        n_prompt = keep + len(new_tokens)
        n_ctx = self._llm.n_ctx()
        if n_prompt + 1 > n_ctx:
            raise ContextWindowExceeded(n_prompt, n_ctx, params.max_tokens)
        max_tokens = min(params.max_tokens, n_ctx - n_prompt)

        parser = self.template.parser
        stops = [s for s in dict.fromkeys(params.stop + parser.stop_sequences) if s]
        starts_in_reasoning = self.template.opens_reasoning(prompt_text)
        sampler = self._sampler(params, tools if grammar_on else None, tool_choice)
        timeout = self.cfg.request_timeout

        # ---- prompt evaluation
        t0 = time.perf_counter()
        self._truncate(keep)
        if new_tokens:
            self._eval_prompt(new_tokens)
        prompt_ms = (time.perf_counter() - t0) * 1000.0
        self._held = None

        # ---- decode loop
        stream_parser = parser.stream(starts_in_reasoning=starts_in_reasoning, tools=tools)
        sent = {"content": "", "reasoning": ""}
        n_calls = 0
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = ""          # everything decoded so far
        emitted = 0        # chars of ``text`` passed to the streaming parser
        held_len = 0       # chars of ``text`` whose tokens are in the KV cache
        end_marker: str | None = None
        finish = "length"
        n_gen = 0
        t1 = time.perf_counter()
        deadline = t1 + timeout if timeout else None
        completed = False
        held_text: str | None = None
        guard = RepetitionGuard() if options.repetition_guard else None
        try:
            while n_gen < max_tokens:
                if interrupt.requested():  # serve's generation thread: no KeyboardInterrupt arrives there
                    raise KeyboardInterrupt
                token = sampler.sample(self._llm._ctx, -1)
                n_gen += 1
                if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    end_marker = self._token_text(token)
                    finish = "stop"
                    break
                held_len = len(text)
                text += decoder.decode(self._piece(token))
                hit = _find_stop(text, stops, max(0, held_len - max((len(s) for s in stops), default=0)))
                if hit is not None:
                    pos, stop = hit
                    end_marker = stop
                    held_text = text[:held_len]
                    text = text[:pos]  # stop strings are cut from the output, as llama-server does
                    finish = "stop"
                    break
                if guard is not None and guard.check(text) is not None:
                    finish = "repetition"
                    break
                safe = len(text) - _partial_stop_len(text, stops)
                if safe > emitted:
                    for ev in stream_parser.feed(text[emitted:safe]):
                        n_calls += ev.kind == "tool_call"
                        if ev.kind in sent:
                            sent[ev.kind] += ev.text
                        yield ev
                    emitted = safe
                if deadline is not None and time.perf_counter() > deadline:
                    log.warning("generation stopped after request_timeout=%ss", timeout)
                    self._eval_one(token)
                    held_len = len(text)
                    break
                if n_gen < max_tokens:
                    self._eval_one(token)
                    held_len = len(text)
            completed = True
        finally:
            predicted_ms = (time.perf_counter() - t1) * 1000.0
            if not completed:
                self._held = None  # cancelled: the cache keeps its tokens; the next turn uses the common prefix
        if len(text) > emitted:
            for ev in stream_parser.feed(text[emitted:]):
                n_calls += ev.kind == "tool_call"
                if ev.kind in sent:
                    sent[ev.kind] += ev.text
                yield ev
        parsed = stream_parser.finish()
        # finish() flushes what was held back without events: send the rest as final deltas
        for kind, final in (("reasoning", parsed.reasoning), ("content", parsed.content)):
            if final.startswith(sent[kind]) and len(final) > len(sent[kind]):
                yield StreamEvent(kind=kind, text=final[len(sent[kind]):])  # type: ignore[arg-type]
        for i, call in enumerate(parsed.tool_calls[n_calls:], start=n_calls):
            yield StreamEvent(kind="tool_call", index=i, id=call.id, name=call.name, arguments=call.arguments)
        content, reasoning = parsed.content, parsed.reasoning
        if self.args.reasoning_format == "none" and reasoning:
            content, reasoning = f"<think>{reasoning}</think>{content}", ""
        if parsed.tool_calls and finish == "stop":
            finish = "tool_calls"
        result = ChatResult(
            content=content, reasoning=reasoning, tool_calls=list(parsed.tool_calls),
            malformed_tool_calls=list(parsed.malformed), finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt_tokens=n_prompt, cached_tokens=keep, completion_tokens=n_gen),
            timings=Timings(prompt_n=len(new_tokens), cache_n=keep, prompt_ms=round(prompt_ms, 3),
                            predicted_n=n_gen, predicted_ms=round(predicted_ms, 3)),
            raw=text,
        )
        self._held = _Held(messages=_copy(messages), request_key=request_key, prompt_text=prompt_text,
                           result=result, gen_text=text,
                           held_text=text[:held_len] if held_text is None else held_text, end_marker=end_marker)
        yield StreamEvent(kind="done", result=result)

    def _piece(self, token: int) -> bytes:
        return self._llm._model.token_to_piece(token, special=True).rstrip(b"\0")

    # ---------------------------------------------------------------- KV cache

    def _plan(self, messages: list[Message], tools: list[ToolSchema] | None, options: ChatOptions,
              request_key: str, prompt_text: str) -> tuple[int, list[int]]:
        """(tokens of the KV cache to keep, tokens to evaluate after them)."""
        if not self.cfg.cache:
            return 0, self._tokenize(prompt_text, add_bos=False)
        delta = self._delta(messages, tools, options, request_key, prompt_text)
        if delta is not None:
            return self._llm.n_tokens, self._tokenize(delta, add_bos=False)
        tokens = self._tokenize(prompt_text, add_bos=False)
        lcp = self._reusable_prefix(tokens)
        return lcp, tokens[lcp:]

    def _reusable_prefix(self, tokens: list[int]) -> int:
        """How many leading ``tokens`` the KV cache already holds and can keep."""
        cached = self.kv_tokens
        lcp = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            lcp += 1
        if lcp == len(tokens):
            lcp -= 1  # evaluate at least one token: sampling needs fresh logits
        if lcp < len(cached) and not self._can_roll_back(lcp):
            lcp = 0
        return max(lcp, 0)

    def _delta(self, messages: list[Message], tools: list[ToolSchema] | None, options: ChatOptions,
               request_key: str, prompt_text: str) -> str | None:
        """The text to append to the KV cache when ``messages`` extend the held conversation, else ``None``."""
        held = self._held
        if held is None or held.end_marker is None or held.request_key != request_key:
            return None
        k = len(held.messages)
        if len(messages) <= k + 1 or _copy(messages[:k]) != held.messages:
            return None
        if not _same_answer(messages[k], held.result):
            return None
        with_answer = self._render(messages[: k + 1], tools, options, add_generation_prompt=False)
        if not prompt_text.startswith(with_answer) or not with_answer.startswith(held.prompt_text):
            return None
        turn = with_answer[len(held.prompt_text):]
        idx = turn.rfind(held.end_marker)
        if idx >= 0:
            # the KV holds held_text; the generation went on (unevaluated) to gen_text + end_marker,
            # which the template writes as end_marker + tail
            pending = (held.gen_text + held.end_marker)[len(held.held_text):]
            tail = turn[idx + len(held.end_marker):]
        elif turn.startswith(held.gen_text):
            # ended by another end token (e.g. <eos> after a grammar) but the answer re-renders verbatim:
            # continue with the template's own end of turn
            pending = held.gen_text[len(held.held_text):]
            tail = turn[len(held.gen_text):]
        else:
            return None
        return pending + tail + prompt_text[len(with_answer):]

    def _can_roll_back(self, n: int) -> bool:
        if not self._rollback_ok:
            return False
        if self._n_swa <= 0:
            return True
        # a sliding-window cache only holds the last n_swa positions: rolling back further loses them
        mem = self._llama_cpp.llama_get_memory(self._llm.ctx)
        pos_min = self._llama_cpp.llama_memory_seq_pos_min(mem, 0)
        return pos_min <= max(0, n - self._n_swa)

    def _truncate(self, keep: int) -> None:
        if keep == 0:
            self._clear_kv()
        elif keep < self._llm.n_tokens:
            if not self._llm._ctx.kv_cache_seq_rm(-1, keep, -1):
                raise ModelError("the KV cache refused a partial removal")
            self._llm.n_tokens = keep

    def _clear_kv(self) -> None:
        self._llm.n_tokens = 0
        self._llm._ctx.kv_cache_clear()
        self._held = None

    def _eval_one(self, token: int) -> None:
        self._llm.eval([token])

    def _eval_prompt(self, tokens: list[int]) -> None:
        """Evaluate ``tokens`` after the cache. Ctrl-C stops it within one graph node.

        The abort callback (``localcode.interrupt``) is on only here: llama.cpp calls it after
        every graph node, nothing next to a prompt batch but a measurable share of one decoded
        token. Batches evaluated before the stop stay in the cache for the next prompt.
        """
        log.debug("evaluating %d prompt tokens after %d cached", len(tokens), self._llm.n_tokens)
        ctx = self._llm._ctx.ctx
        self._llama_cpp.llama_set_abort_callback(ctx, self._abort_on, None)
        try:
            self._llm.eval(tokens)
        except BaseException as e:
            self._held = None
            if isinstance(e, KeyboardInterrupt) or interrupt.requested():
                raise KeyboardInterrupt from None  # llama_decode returned 2: aborted
            self._clear_kv()  # llama.cpp decode failure (out of memory, bad batch)
            raise ModelError(f"prompt evaluation failed: {e}") from None
        finally:
            self._llama_cpp.llama_set_abort_callback(ctx, self._abort_off, None)

    # ---------------------------------------------------------------- sampling

    def _sampler(self, p: _Params, grammar_tools: list[ToolSchema] | None, tool_choice: Any) -> _Sampler:
        from llama_cpp import _internals as internals

        chain = internals.LlamaSampler()
        if (p.repeat_penalty, p.frequency_penalty, p.presence_penalty) != (1.0, 0.0, 0.0):
            chain.add_penalties(self._llm.n_vocab(), 64, p.repeat_penalty, p.frequency_penalty, p.presence_penalty)
        seed = p.seed if p.seed is not None else int.from_bytes(os.urandom(4), "little")
        if p.temperature <= 0:
            chain.add_greedy()
        else:
            if p.top_k > 0:
                chain.add_top_k(p.top_k)
            if p.top_p < 1.0:
                chain.add_top_p(p.top_p, 1)
            if p.min_p > 0:
                chain.add_min_p(p.min_p, 1)
            chain.add_temp(p.temperature)
            chain.add_dist(seed & 0xFFFFFFFF)
        grammar = None
        if grammar_tools:
            forced = tool_choice == "required" or isinstance(tool_choice, dict)
            gbnf, trigger = tool_call_grammar(grammar_tools, self.family, tool_choice, forced)
            from llama_cpp.llama_grammar import LlamaGrammar

            grammar = internals.LlamaSampler()  # a chain holding only the grammar
            g = LlamaGrammar.from_string(gbnf)
            if forced:
                grammar.add_grammar(self._llm._model, g)
            else:
                tokens = self._tokenize(trigger, add_bos=False)
                grammar.add_grammar_lazy_patterns(self._llm._model, g, [_regex_escape(trigger)],
                                                  tokens if len(tokens) == 1 else [])
        greedy = p.temperature <= 0 and (p.repeat_penalty, p.frequency_penalty, p.presence_penalty) == (1.0, 0.0, 0.0)
        # (the greedy chain keeps no state, so skipping it for an argmax changes nothing)
        return _Sampler(self._llama_cpp, chain, grammar, self._llm.n_vocab(), argmax=greedy)


class _Sampler:
    """The sampler chain plus an optional grammar, checked the way llama-server does it.

    Constraining the whole vocabulary with a grammar on every token is slow (3.7x per token
    on a 262K vocabulary, DESIGN.md); instead the chain picks a token unconstrained and the
    grammar only vets that one token. When it is rejected, the grammar constrains all
    candidates and the chain picks again.
    """

    def __init__(self, llama_cpp: Any, chain: Any, grammar: Any | None, n_vocab: int, argmax: bool = False) -> None:
        self._c = llama_cpp
        self._argmax = argmax
        """Plain greedy decoding: the first maximal logit, as llama.cpp's greedy sampler picks it, without
        copying the vocabulary into a candidate array first."""
        self._chain = chain
        self._grammar = grammar
        self._n_vocab = n_vocab
        if grammar is not None:
            import ctypes

            from llama_cpp import _internals as internals

            self._one = (llama_cpp.llama_token_data * 1)()
            self._one_arr = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
            self._all = internals.LlamaTokenDataArray(n_vocab=n_vocab)
            self._byref = ctypes.byref

    def sample(self, ctx: Any, idx: int = -1) -> int:
        c = self._c
        import numpy as np

        if self._grammar is None:
            if self._argmax:
                return int(np.argmax(np.ctypeslib.as_array(c.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))))
            return int(c.llama_sampler_sample(self._chain.sampler, ctx.ctx, idx))

        logits = np.ctypeslib.as_array(c.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))
        cands = self._all
        if self._argmax:
            token = int(np.argmax(logits))
        else:
            cands.copy_logits(logits)
            c.llama_sampler_apply(self._chain.sampler, self._byref(cands.candidates))
            token = int(cands.candidates_data.id[cands.candidates.selected])
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
        self._one_arr.size, self._one_arr.selected = 1, -1
        c.llama_sampler_apply(self._grammar.sampler, self._byref(self._one_arr))
        if self._one[0].logit == float("-inf"):
            cands.copy_logits(logits)
            c.llama_sampler_apply(self._grammar.sampler, self._byref(cands.candidates))
            c.llama_sampler_apply(self._chain.sampler, self._byref(cands.candidates))
            token = int(cands.candidates_data.id[cands.candidates.selected])
        c.llama_sampler_accept(self._grammar.sampler, token)
        c.llama_sampler_accept(self._chain.sampler, token)
        return token


# -------------------------------------------------------------------- helpers

def _cpu_has_amx() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_int8" in text or "amx_tile" in text


def _new_llama(llama_cpp: Any, path: Path, load: dict[str, Any]) -> Any:
    """``llama_cpp.Llama(path, **load)`` with two model parameters ``Llama`` does not expose:
    ``use_extra_bufts``, and a progress callback that stops the load on Ctrl-C (``localcode.interrupt``)."""
    load = dict(load)
    extra_bufts = load.pop("use_extra_bufts", True)
    low = llama_cpp.llama_cpp
    original = low.llama_model_default_params
    on_progress = low.llama_progress_callback(interrupt.load_progress)  # referenced until the load returns

    def model_params() -> Any:
        params = original()
        params.use_extra_bufts = extra_bufts
        params.progress_callback = on_progress
        return params

    # Llama.__init__ builds its model params from this function and loads right away
    low.llama_model_default_params = model_params
    try:
        llm = llama_cpp.Llama(model_path=str(path), verbose=False, **load)
    finally:
        low.llama_model_default_params = original
    llm._localcode_progress = on_progress  # its model_params still point at the callback
    return llm


def _training_context(llama_cpp: Any, path: Path) -> int:
    from llama_cpp import _internals as internals

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    try:
        m = internals.LlamaModel(path_model=str(path), params=params, verbose=False)
    except ValueError:
        return 0
    try:
        # a vocab-only load reads the metadata but not the hyper-parameters (n_ctx_train() is 0)
        meta = m.metadata()
        value = meta.get(f"{meta.get('general.architecture', '')}.context_length") or m.n_ctx_train()
        return int(value or 0)
    finally:
        m.close()


def _parts(path: Path) -> list[Path]:
    from localcode.backends.models import split_parts

    return split_parts(path)


def _copy(messages: list[Message]) -> list[Message]:
    return json.loads(json.dumps(messages, default=str))


def _same_answer(msg: Message, result: ChatResult) -> bool:
    """Is ``msg`` the assistant message built from ``result`` (content and calls; ids may differ)?"""
    if msg.get("role") != "assistant":
        return False
    if (msg.get("content") or "").strip() != (result.content or "").strip():
        return False
    calls = msg.get("tool_calls") or []
    if len(calls) != len(result.tool_calls):
        return False
    for c, r in zip(calls, result.tool_calls):
        fn = c.get("function", c)
        args = fn.get("arguments", "{}")
        if fn.get("name") != r.name or _json_norm(args) != _json_norm(r.arguments):
            return False
    return True


def _json_norm(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def _find_stop(text: str, stops: list[str], start: int) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for s in stops:
        i = text.find(s, start)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return best


def _partial_stop_len(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop string (held back while streaming)."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest


def _regex_escape(text: str) -> str:
    import re

    return re.escape(text)
