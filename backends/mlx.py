"""The mlx-lm backend: an MLX model loaded in-process behind the ``ChatModel`` interface.

``MlxChatModel.from_agent(cfg)`` loads ``server_config.model_path`` (a local MLX folder,
or ``from-gguf:SOURCE``: a GGUF converted once into the models cache, see ``mlx_convert``)
or downloads ``server_config.hf_model`` (a Hugging Face repo id) into localcode's cache
dir, then answers chat requests with mlx-lm: the tokenizer's own chat template (with
tools and the ``--chat-template-args`` / ``think`` switches), ``stream_generate`` with
``make_sampler`` and ``make_logits_processors``, and localcode's tool-call parser of the
template's family (mlx-lm's own parser where localcode knows no specific family).
Forced calls (``tool_choice`` required or named) and per-conversation KV states are
described on ``MlxChatModel``; on Linux the CPU backend is pointed at OpenBLAS before mlx
loads (``blas_before_import``).

Prompt cache: one KV cache is kept across calls, append only. Tokens already in the cache
are not evaluated again; when a new prompt diverges from the cached tokens the cache is
trimmed back to the common prefix, or — for models whose cache cannot be trimmed, such as
Qwen3-Next's linear-attention layers — restored from a snapshot taken at the end of the
previous prompt, else rebuilt. ``usage.cached_tokens`` / ``timings.cache_n`` report the
reuse.

The original tool ran ``mlx_lm.server``; its flags in ``server_config.extra_args`` are
accepted (see ``parse_mlx_args``): load and sampling flags apply, server-only flags are
reported as not applicable, anything else is a ``ConfigError``.

Errors: ``MissingDependency`` without mlx-lm, ``ModelNotFound`` when no model can be found
or downloaded, ``ModelError`` when loading or generation fails, ``ContextWindowExceeded``
before generation when the prompt does not fit, ``ConfigError`` for bad flags or options.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel, Field

from localcode import paths
from localcode.backends.base import (
    ChatOptions,
    ChatResult,
    FinishReason,
    MalformedToolCall,
    Message,
    ModelInfo,
    RepetitionGuard,
    StateStore,
    StreamEvent,
    Timings,
    ToolCall,
    ToolSchema,
    Usage,
)
from localcode.errors import (
    ConfigError,
    ContextWindowExceeded,
    MissingDependency,
    ModelError,
    ModelNotFound,
)

if TYPE_CHECKING:
    from localcode.config import AgentConfig

log = logging.getLogger(__name__)

CALL_OPENINGS: dict[str, tuple[str, str]] = {
    "hermes": ('<tool_call>\n{"name": "', '<tool_call>\n{"name": "{name}", "arguments": '),
    "qwen3_coder": ("<tool_call>\n<function=", "<tool_call>\n<function={name}>\n"),
}
"""Per tool-call family: how a forced answer starts (any tool, a named tool), as its template writes calls."""
_MLX_PARSER_FAMILY = {"json_tools": "hermes", "qwen3_coder": "qwen3_coder"}
"""mlx-lm's tool parser names -> the family whose call opening they read."""
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|return|>")
"""Special tokens that end a turn, besides the model's eos (llama.cpp treats them as end-of-generation too)."""
CPU_PREFILL_STEP = 512
"""Prompt tokens per evaluation step on a CPU (unless ``--prefill-step-size`` says otherwise)."""

SUPPORTED_EXTRA = ("logit_bias", "repetition_context_size", "xtc_probability", "xtc_threshold")
"""Keys of ``ChatOptions.extra`` (the agent's ``request_overrides``) this backend understands."""


# --------------------------------------------------------------------------- flags


class MlxServerArgs(BaseModel):
    """The ``mlx_lm.server`` flags of an agent's ``server_config.extra_args``, parsed."""

    model: str | None = None
    """``--model``: the model folder or repo id (``model_path`` / ``hf_model`` take precedence)."""
    adapter_path: str | None = None
    """``--adapter-path``: LoRA adapters applied at load."""
    trust_remote_code: bool = False
    """``--trust-remote-code``: allow the tokenizer's custom code."""
    chat_template: str | None = None
    """``--chat-template``: template text, or a file (absolute, or under ``agents/templates``)."""
    chat_template_args: dict[str, Any] = Field(default_factory=dict)
    """``--chat-template-args``: JSON keyword arguments for the template (``enable_thinking`` ...)."""
    temperature: float | None = None
    """``--temp``: default temperature when a request sets none."""
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    """``--max-tokens``: default completion limit when a request sets none."""
    seed: int | None = None
    prefill_step_size: int = 2048
    """``--prefill-step-size``: prompt tokens evaluated per step."""
    kv_bits: int | None = None
    """``--kv-bits``: quantize the KV cache to this many bits."""
    kv_group_size: int = 64
    quantized_kv_start: int | None = None
    context_window: int | None = None
    """``--ctx-size`` / ``-c`` (a localcode extension, as for gguf agents)."""
    not_applicable: list[str] = Field(default_factory=list)
    """Server-only flags that were accepted and have no effect in-process."""


_SWITCH = object()
# flag -> (field of MlxServerArgs or None for server-only, converter or _SWITCH)
_FLAGS: dict[str, tuple[str | None, Any]] = {
    "--model": ("model", str),
    "--adapter-path": ("adapter_path", str),
    "--trust-remote-code": ("trust_remote_code", _SWITCH),
    "--chat-template": ("chat_template", str),
    "--chat-template-args": ("chat_template_args", json.loads),
    "--temp": ("temperature", float),
    "--top-p": ("top_p", float),
    "--top-k": ("top_k", int),
    "--min-p": ("min_p", float),
    "--max-tokens": ("max_tokens", int),
    "--seed": ("seed", int),
    "--prefill-step-size": ("prefill_step_size", int),
    "--kv-bits": ("kv_bits", int),
    "--kv-group-size": ("kv_group_size", int),
    "--quantized-kv-start": ("quantized_kv_start", int),
    "--ctx-size": ("context_window", int),
    "-c": ("context_window", int),
    # server-only: accepted, reported as not applicable
    "--host": (None, str),
    "--port": (None, int),
    "--allowed-origins": (None, str),
    "--log-level": (None, str),
    "--decode-concurrency": (None, int),
    "--prompt-concurrency": (None, int),
    "--prompt-cache-size": (None, int),
    "--prompt-cache-bytes": (None, str),
    "--num-draft-tokens": (None, int),
    "--pipeline": (None, _SWITCH),
    "--use-default-chat-template": (None, _SWITCH),
}
_UNSUPPORTED = {
    "--draft-model": "speculative decoding is not supported by the in-process mlx backend yet",
}


def parse_mlx_args(args: list[str]) -> MlxServerArgs:
    """Parse ``mlx_lm.server`` flags. Unknown or malformed flags raise ``ConfigError``."""
    out = MlxServerArgs()
    i = 0
    while i < len(args):
        token = args[i]
        flag, inline = (token.split("=", 1) + [None])[:2] if token.startswith("--") and "=" in token else (token, None)
        if flag in _UNSUPPORTED:
            raise ConfigError(f"server_config.extra_args: {flag}: {_UNSUPPORTED[flag]}; remove it")
        if flag not in _FLAGS:
            known = ", ".join(sorted(f for f in _FLAGS if f.startswith("--")))
            raise ConfigError(f"server_config.extra_args: unknown mlx_lm.server flag '{token}'; known flags: {known}")
        field, conv = _FLAGS[flag]
        if conv is _SWITCH:
            if inline is not None:
                raise ConfigError(f"server_config.extra_args: {flag} takes no value")
            value: Any = True
            shown = flag
            i += 1
        else:
            if inline is None:
                if i + 1 >= len(args):
                    raise ConfigError(f"server_config.extra_args: {flag} needs a value")
                inline = args[i + 1]
                i += 2
            else:
                i += 1
            try:
                value = conv(inline)
            except (ValueError, json.JSONDecodeError) as e:
                raise ConfigError(f"server_config.extra_args: bad value for {flag}: {inline!r} ({e})") from None
            if flag == "--chat-template-args" and not isinstance(value, dict):
                raise ConfigError(f"server_config.extra_args: {flag} must be a JSON object, got {inline!r}")
            shown = f"{flag} {inline}"
        if field is None:
            out.not_applicable.append(shown)
        else:
            setattr(out, field, value)
    return out


# --------------------------------------------------------------------------- model files


def _import_mlx_lm() -> Any:
    blas_before_import()
    try:
        import mlx.core  # noqa: F401
        import mlx_lm
    except ImportError:
        raise MissingDependency("mlx-lm", "mlx", "MLX models") from None
    return mlx_lm


@functools.lru_cache(maxsize=1)
def blas_before_import() -> str:
    """The BLAS that mlx's CPU matmuls will use: ``openblas`` when it could be put in first, else ``bundled``.

    mlx[cpu] wheels for Linux bundle the reference BLAS, which multiplies float32 about 10x
    slower than OpenBLAS here (1.8 vs 19 GFLOP/s for a 256x896x4864 product, measured on 2
    cores). mlx calls ``cblas_sgemm``; loading an OpenBLAS (Debian's ``libopenblas0``) with
    global symbols before ``mlx.core`` is imported makes mlx bind to it. Too late once mlx
    is imported (its symbols are bound at load). ``LOCALCODE_MLX_BLAS=bundled`` turns it off.
    """
    if sys.platform != "linux" or os.environ.get("LOCALCODE_MLX_BLAS") == "bundled":
        return "bundled"
    if "mlx.core" in sys.modules:
        return "openblas" if _openblas_loaded() else "bundled"
    import ctypes
    import ctypes.util

    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        return "openblas"
    log.info("mlx on Linux uses its bundled reference BLAS (slow): apt-get install libopenblas0-pthread")
    return "bundled"


def _openblas_loaded() -> bool:
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            return "libopenblas" in f.read()
    except OSError:
        return False


def resolve_model_dir(model_path: str | None, hf_model: str | None) -> Path:
    """The local MLX model folder: ``model_path`` if it exists, else ``hf_model`` downloaded.

    ``model_path = "from-gguf:SOURCE"`` is the MLX conversion of a GGUF (``mlx_convert``),
    made once in the models cache.

    Downloads go to ``<cache_dir>/models/<repo id>`` through huggingface_hub (with its
    progress bars); a complete earlier download is used without touching the network.
    Raises ``ModelNotFound`` with the next step to take.
    """
    from localcode.backends import mlx_convert

    if model_path and model_path.startswith(mlx_convert.PREFIX):
        return mlx_convert.mlx_from_gguf(model_path)
    if model_path:
        p = Path(model_path).expanduser()
        if p.is_dir():
            return p
        if p.exists():
            raise ModelNotFound(f"MLX model path {p} is a file: point server_config.model_path at the model folder")
        if not hf_model:
            raise ModelNotFound(
                f"MLX model folder {p} does not exist: fix server_config.model_path or set server_config.hf_model"
            )
    if not hf_model:
        raise ModelNotFound("no MLX model configured: set server_config.model_path or server_config.hf_model")
    return _download(hf_model)


def _complete_snapshot(folder: Path) -> bool:
    """A folder holding an MLX model: config, tokenizer and every weight shard."""
    if not (folder / "config.json").is_file() or not list(folder.glob("model*.safetensors")):
        return False
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError):
            return False
        return all((folder / s).is_file() for s in shards)
    return True


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise MissingDependency("huggingface-hub", "mlx", "downloading models") from None
    from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

    from localcode.backends.models import models_dir

    local_dir = models_dir() / repo_id
    if _complete_snapshot(local_dir):
        return local_dir
    print(f"downloading {repo_id} into {local_dir}", file=sys.stderr)
    try:
        snapshot_download(repo_id, local_dir=str(local_dir), allow_patterns=DEFAULT_ALLOW_PATTERNS)
    except Exception as e:  # huggingface_hub raises many kinds (offline, 404, gated, network)
        raise ModelNotFound(
            f"cannot download MLX model {repo_id} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
            "check the repo id and your network, or set server_config.model_path to a local folder"
        ) from None
    if not _complete_snapshot(local_dir):
        raise ModelNotFound(f"{repo_id} has no MLX weights (model*.safetensors): use an mlx-community/... repo")
    return local_dir


def _resolve_template(value: str) -> str:
    """``--chat-template`` holds template text, or names a file."""
    if "{" in value or "\n" in value:
        return value
    for candidate in (Path(value).expanduser(), paths.package_dir("agents") / "templates" / value):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise ConfigError(f"--chat-template {value}: no such template file (absolute path or a name under agents/templates)")


def _quantization(config: dict[str, Any]) -> str | None:
    q = config.get("quantization") or config.get("quantization_config")
    if isinstance(q, dict) and q.get("bits"):
        return f"{q['bits']}bit"
    dtype = config.get("torch_dtype") or config.get("dtype")
    return str(dtype) if dtype else None


# --------------------------------------------------------------------------- output parsing


class _TurnParser:
    """Splits generated text into content, reasoning and tool calls as it streams.

    Uses mlx-lm's ``TextStateMachine`` with the tokenizer's think/tool markers and
    mlx-lm's tool parser for the model family; a call that does not parse is kept as a
    ``MalformedToolCall`` with its raw text.
    """

    def __init__(self, tokenizer: Any, tools: list[ToolSchema] | None, initial_state: str) -> None:
        from mlx_lm.generate import TextStateMachine, make_text_state_machine

        self._sm_cls = TextStateMachine
        self._state = make_text_state_machine(tokenizer).make_state(initial_state)
        self._prev = initial_state
        self._tokenizer = tokenizer
        self._tools = tools
        self._tool_text = ""
        self.content = ""
        self.reasoning = ""
        self.tool_calls: list[ToolCall] = []
        self.malformed: list[MalformedToolCall] = []

    def feed(self, text: str) -> list[StreamEvent]:
        self._state, segments = self._sm_cls.split(self._state, text)
        return self._segments(segments)

    def finish(self) -> list[StreamEvent]:
        self._state, flushed, current = self._sm_cls.flush(self._state)
        events = self._segments([(current, flushed)])
        if self._tool_text or self._prev == "tool":
            events += self._close_call()
        return events

    def _segments(self, segments: list[tuple[str | None, str]]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for state, text in segments:
            if self._prev == "tool" and state != "tool":
                events += self._close_call()
            if state == "tool":
                self._tool_text += text
            elif state == "reasoning" and text:
                self.reasoning += text
                events.append(StreamEvent(kind="reasoning", text=text))
            elif text:
                self.content += text
                events.append(StreamEvent(kind="content", text=text))
            self._prev = state or "normal"
        return events

    def _close_call(self) -> list[StreamEvent]:
        text, self._tool_text = self._tool_text, ""
        start = self._tokenizer.tool_call_start or ""
        end = self._tokenizer.tool_call_end or ""
        try:
            parsed = self._tokenizer.tool_parser(text, self._tools)
            items = parsed if isinstance(parsed, list) else [parsed]
            calls = []
            for item in items:
                args = item.get("arguments", {})
                calls.append(ToolCall(name=str(item["name"]),
                                      arguments=args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)))
        except Exception as e:  # parsers raise ValueError, JSONDecodeError, KeyError, TypeError...
            self.malformed.append(MalformedToolCall(raw=f"{start}{text}{end}", error=f"{type(e).__name__}: {e}"))
            return []
        events = []
        for call in calls:
            events.append(StreamEvent(kind="tool_call", index=len(self.tool_calls), id=call.id,
                                      name=call.name, arguments=call.arguments))
            self.tool_calls.append(call)
        return events


class _FamilyParser:
    """localcode's per-family parser (``tool_parsers``), for templates mlx-lm has no tool parser for."""

    def __init__(self, family: str, tools: list[ToolSchema] | None, starts_in_reasoning: bool) -> None:
        from localcode.backends.tool_parsers import get_parser

        self._stream = get_parser(family).stream(starts_in_reasoning=starts_in_reasoning, tools=tools)
        self._sent = {"content": "", "reasoning": ""}
        self._sent_calls = 0
        self.content = ""
        self.reasoning = ""
        self.tool_calls: list[ToolCall] = []
        self.malformed: list[MalformedToolCall] = []

    def feed(self, text: str) -> list[StreamEvent]:
        events = self._stream.feed(text)
        for e in events:
            if e.kind in self._sent:
                self._sent[e.kind] += e.text
            elif e.kind == "tool_call":
                self._sent_calls += 1
        return events

    def finish(self) -> list[StreamEvent]:
        out = self._stream.finish()
        self.content, self.reasoning = out.content, out.reasoning
        self.tool_calls, self.malformed = list(out.tool_calls), list(out.malformed)
        # finish() only returns the result: send what it flushed as the last deltas
        events = []
        for kind, final in (("reasoning", out.reasoning), ("content", out.content)):
            sent = self._sent[kind].strip()
            if final.startswith(sent) and len(final) > len(sent):
                events.append(StreamEvent(kind=kind, text=final[len(sent):]))  # type: ignore[arg-type]
        for i, c in enumerate(self.tool_calls[self._sent_calls:], start=self._sent_calls):
            events.append(StreamEvent(kind="tool_call", index=i, id=c.id, name=c.name, arguments=c.arguments))
        return events


class _NameConstraint:
    """A logits processor for a forced call: the first tokens must spell a tool name and its closing quote.

    Small models asked for a call often write a file name or a made-up tool there. Only the
    name is constrained (tokens whose text keeps the output a prefix of ``name"``, or that
    complete it); the arguments stay free, as mlx-lm has no grammar sampler.
    """

    def __init__(self, token_texts: list[str], names: list[str]) -> None:
        self._texts = token_texts
        self._targets = [n + '"' for n in names if n]
        self._written = ""
        self._seen = 0
        self._done = not self._targets

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        if self._done:
            return logits
        n = int(tokens.shape[-1]) if hasattr(tokens, "shape") else len(tokens)
        if self._seen and n > self._seen:  # the first call sees the last prompt token only
            self._written += "".join(self._texts[int(t)] for t in tokens.tolist()[self._seen:n])
        self._seen = n
        if any(self._written.startswith(t) for t in self._targets):
            self._done = True
            return logits
        w = self._written
        allowed = [i for i, x in enumerate(self._texts) if x and any(
            t.startswith(w + x) or (w + x).startswith(t) for t in self._targets)]
        if not allowed:
            self._done = True
            return logits
        mask = mx.full((logits.shape[-1],), -float("inf"), dtype=logits.dtype)
        mask[mx.array(allowed)] = 0.0
        return logits + mask


class _JsonEnd:
    """Finds where a JSON object that started in ``head`` closes, as text streams in."""

    def __init__(self, head: str) -> None:
        self._depth, self._in_string, self._escaped = 0, False, False
        self.feed(head)

    def feed(self, text: str) -> int:
        """The index in ``text`` just past the closing brace, or -1 while the object is open."""
        for i, ch in enumerate(text):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1
        return -1


class _StopText:
    """Holds back text that may be the start of a stop string; reports where one matched."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._keep = max((len(s) for s in self._stops), default=1) - 1
        self._pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop string was hit)."""
        if not self._stops:
            return text, False
        buf = self._pending + text
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._pending = ""
            return buf[: min(hits)], True
        cut = max(0, len(buf) - self._keep)
        self._pending = buf[cut:]
        return buf[:cut], False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


# --------------------------------------------------------------------------- prompt cache


class _PromptCache:
    """The KV cache kept across turns, with the tokens it holds.

    For caches that cannot be trimmed, a snapshot taken at the end of the last prompt
    (before generation) lets the next turn reuse the shared history.
    """

    def __init__(self, model: Any) -> None:
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache

        self._model = model
        self._make = make_prompt_cache
        self.cache: list[Any] = make_prompt_cache(model)
        self.tokens: list[int] = []
        self.trimmable: bool = can_trim_prompt_cache(self.cache)
        self.snapshot: tuple[list[int], list[Any]] | None = None

    def reset(self) -> None:
        self.cache = self._make(self._model)
        self.tokens = []
        self.snapshot = None

    def prepare(self, prompt: list[int]) -> int:
        """Make the cache hold a prefix of ``prompt`` (never all of it); return its length."""
        from mlx_lm.models.cache import trim_prompt_cache

        limit = len(prompt) - 1  # the last prompt token is always evaluated, for its logits
        common = _common_prefix(self.tokens, prompt, limit)
        if common == len(self.tokens):
            return common
        if self.trimmable:
            trim_prompt_cache(self.cache, len(self.tokens) - common)
            self.tokens = self.tokens[:common]
            return common
        if self.snapshot is not None:
            snap_tokens, snap_cache = self.snapshot
            if len(snap_tokens) <= limit and prompt[: len(snap_tokens)] == snap_tokens:
                self.cache, self.tokens, self.snapshot = snap_cache, list(snap_tokens), None
                return len(self.tokens)
        self.reset()
        return 0

    def take_snapshot(self) -> None:
        if not self.trimmable:
            self.snapshot = (list(self.tokens), copy.deepcopy(self.cache))

    def offset(self) -> int | None:
        """Tokens the cache itself says it holds, where a layer tells."""
        for c in self.cache:
            off = getattr(c, "offset", None)
            if isinstance(off, int):
                return off
        return None


@dataclass
class _SavedCache:
    """One conversation's KV cache copy and the tokens it holds."""

    tokens: list[int]
    cache: list[Any]


def _cache_bytes(cache: list[Any]) -> int:
    from mlx.utils import tree_flatten

    return sum(int(a.nbytes) for c in cache for _, a in tree_flatten(c.state) if hasattr(a, "nbytes"))


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), max(limit, 0))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# --------------------------------------------------------------------------- the model


class MlxChatModel:
    """An MLX model loaded in-process with mlx-lm. One generation at a time.

    Tool calls are parsed by localcode's parser for the template's family (the same parser
    as the GGUF backend), or by mlx-lm's own where localcode knows no specific family.
    ``tool_choice="required"`` or a named function starts the answer with the family's call
    opening (``<tool_call>\n{"name": "`` for Hermes/Qwen), so the model must write a call;
    ``"none"`` leaves the tools out of the prompt. ``tool_call_grammar`` is not supported
    (mlx-lm has no grammar sampler; said once in the log): calls are otherwise unconstrained.

    Conversation states (``save_conversation`` / ``restore_conversation``, as in the GGUF
    backend): a copy of the KV cache per conversation, least recently used dropped first
    within ``state_budget_bytes``, so try 2 of a task evaluates only its new tokens even
    when other tasks used the model in between.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        name: str | None = None,
        context_window: int | None = None,
        server_args: MlxServerArgs | None = None,
        cache: bool = True,
        request_timeout: float | None = None,
    ) -> None:
        """Load the model folder ``model_dir``.

        ``context_window`` defaults to ``--ctx-size`` in ``server_args``, then the model's
        ``max_position_embeddings``. ``cache=False`` evaluates every prompt from scratch.
        ``request_timeout`` (seconds) ends a generation that runs longer with ``"length"``.
        Raises ``MissingDependency``, ``ModelNotFound``, ``ModelError``, ``ConfigError``.
        """
        mlx_lm = _import_mlx_lm()
        self.args = server_args or MlxServerArgs()
        model_dir = Path(model_dir).expanduser()
        if not model_dir.is_dir():
            raise ModelNotFound(f"MLX model folder {model_dir} does not exist: fix server_config.model_path")
        tokenizer_config: dict[str, Any] = {"trust_remote_code": True} if self.args.trust_remote_code else {}
        if self.args.chat_template:
            tokenizer_config["chat_template"] = _resolve_template(self.args.chat_template)
        t0 = time.perf_counter()
        try:
            self._model, self._tokenizer, config = mlx_lm.load(
                str(model_dir), tokenizer_config=tokenizer_config, adapter_path=self.args.adapter_path,
                return_config=True, trust_remote_code=self.args.trust_remote_code,
            )
        except FileNotFoundError as e:
            raise ModelNotFound(f"{model_dir} is not an MLX model folder ({e}): convert it with mlx_lm.convert") from None
        except Exception as e:  # mlx-lm raises ValueError, KeyError, OSError... for broken or unsupported models
            raise ModelError(f"mlx-lm cannot load {model_dir}: {type(e).__name__}: {e}") from None
        load_seconds = time.perf_counter() - t0
        if not self._tokenizer.has_chat_template:
            raise ModelError(f"{model_dir} has no chat template: add --chat-template FILE to server_config.extra_args")

        self._config: dict[str, Any] = config
        ctx = context_window or self.args.context_window or int(config.get("max_position_embeddings") or 0)
        if ctx <= 0:
            raise ConfigError(f"{model_dir}: no context size known: set server_config.context_window")
        self._use_cache = cache
        self._lock = threading.Lock()
        self._closed = False
        self._warned: set[str] = set()
        self._prompt_cache = _PromptCache(self._model)
        self._template_kwargs = dict(self.args.chat_template_args)
        family = _detect_family(self._tokenizer)
        self._family = family if family not in (None, "generic") or not self._tokenizer.has_tool_calling else None
        self._end_tokens = _add_end_tokens(self._tokenizer)
        self.request_timeout = request_timeout
        self._texts: list[str] | None = None
        self._states: StateStore[_SavedCache] = StateStore()
        self.state_stats = self._states.stats
        """Counters of the conversation-state store (``save_conversation``)."""

        import mlx.core as mx

        on_cpu = mx.default_device() == mx.cpu
        if on_cpu and "prefill_step_size" not in self.args.model_fields_set:
            # on a CPU one step of 2048 tokens runs for minutes, and Ctrl-C waits for it
            self.args.prefill_step_size = CPU_PREFILL_STEP
        self._weights = sorted(model_dir.glob("model*.safetensors"))
        weights = self._weights
        self.info = ModelInfo(
            backend="mlx",
            model=name or model_dir.name,
            path=str(model_dir),
            size_bytes=sum(f.stat().st_size for f in weights) or None,
            quantization=_quantization(config),
            context_window=ctx,
            load_seconds=round(load_seconds, 3),
            details={
                "model_type": config.get("model_type"),
                "device": str(mx.default_device()),
                "tool_parser": self._tokenizer.init_kwargs.get("tool_parser_type") if self._tokenizer.has_tool_calling else None,
                "tool_family": self._family,
                "end_tokens": [self._tokenizer.convert_ids_to_tokens(t) for t in sorted(self._end_tokens)],
                "blas": blas_before_import() if on_cpu else None,
                "prompt_cache": "trim" if self._prompt_cache.trimmable else "snapshot",
                "template_kwargs": self._template_kwargs,
                "not_applicable_flags": self.args.not_applicable,
                "state_budget_bytes": self._states.budget_bytes,
            },
        )
        if self.args.not_applicable:
            log.warning("mlx_lm.server flags not applicable in-process: %s", " ".join(self.args.not_applicable))

    @classmethod
    def from_agent(cls, cfg: AgentConfig) -> MlxChatModel:
        """Load the model of an ``mlx/...`` agent config (``server_config``)."""
        _import_mlx_lm()
        sc = cfg.server_config
        args = parse_mlx_args(sc.extra_args)
        model_path, hf_model = sc.model_path, sc.hf_model
        if args.model and not (model_path or hf_model):
            if Path(args.model).expanduser().exists():
                model_path = args.model
            else:
                hf_model = args.model
        folder = resolve_model_dir(model_path, hf_model)
        return cls(folder, name=hf_model or folder.name, context_window=sc.context_window,
                   server_args=args, cache=cfg.cache, request_timeout=cfg.request_timeout)

    # ----------------------------------------------------------------- rendering

    def render(self, messages: list[Message], tools: list[ToolSchema] | None = None,
               options: ChatOptions | None = None) -> list[int]:
        """The prompt tokens for a request: the chat template with tools and switches."""
        options = options or ChatOptions()
        kwargs = dict(self._template_kwargs)
        if options.think is not None:
            kwargs["enable_thinking"] = options.think
        if options.think_level is not None:
            kwargs["reasoning_effort"] = options.think_level
        if tools and options.tool_choice != "none":
            kwargs["tools"] = tools
        try:
            ids = self._tokenizer.apply_chat_template(
                _normalize_messages(messages), add_generation_prompt=True, tokenize=True, **kwargs)
        except Exception as e:  # jinja2 TemplateError, or the template's own raise_exception
            raise ModelError(f"the chat template failed to render the conversation: {type(e).__name__}: {e}") from None
        if isinstance(ids, dict):  # some tokenizers return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    # ----------------------------------------------------------------- generation

    def chat(self, messages: list[Message], tools: list[ToolSchema] | None = None,
             options: ChatOptions | None = None) -> ChatResult:
        """Generate one assistant turn. Raises ``ContextWindowExceeded`` before generating."""
        for event in self.stream(messages, tools, options):
            if event.kind == "done" and event.result is not None:
                return event.result
        raise ModelError("mlx generation ended without a result")

    def stream(self, messages: list[Message], tools: list[ToolSchema] | None = None,
               options: ChatOptions | None = None) -> Iterator[StreamEvent]:
        """Like ``chat``, yielding deltas; the last event is ``done``. Closing it cancels."""
        options = options or ChatOptions()
        if self._closed:
            raise ModelError("the mlx model was closed: load it again")
        if options.tool_call_grammar:
            self._warn_once("tool_call_grammar", "tool_call_grammar is not supported by the mlx backend: calls are unconstrained")
        opening = self._call_opening(options.tool_choice, tools)
        prompt = self.render(messages, tools, options)
        if opening:
            prompt += list(self._tokenizer.encode(opening, add_special_tokens=False))
        ctx = self.info.context_window
        if len(prompt) >= ctx:
            raise ContextWindowExceeded(len(prompt), ctx, options.max_tokens or 0)
        return self._generate(prompt, tools if options.tool_choice != "none" else None, options, opening)

    def _call_opening(self, tool_choice: Any, tools: list[ToolSchema] | None) -> str:
        """The text that starts a forced answer: the family's call opening ("" when nothing is forced)."""
        if not tools or tool_choice in ("auto", "none"):
            return ""
        openings = CALL_OPENINGS.get(self._family or "") or CALL_OPENINGS.get(_MLX_PARSER_FAMILY.get(
            self.info.details.get("tool_parser") or "", ""))
        if openings is None:
            self._warn_once("tool_choice", f"the mlx backend cannot force calls in this template's format "
                                           f"({self._family or self.info.details.get('tool_parser')}): tool_choice acts as 'auto'")
            return ""
        if isinstance(tool_choice, dict):
            wanted = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
            names = [(t.get("function") or t).get("name") for t in tools]
            if wanted not in names:
                raise ConfigError(f"tool_choice names '{wanted}', which is not among the request's tools")
            return openings[1].replace("{name}", str(wanted))
        return openings[0]

    def _generate(self, prompt: list[int], tools: list[ToolSchema] | None,
                  options: ChatOptions, opening: str = "") -> Iterator[StreamEvent]:
        import mlx.core as mx
        from mlx_lm.generate import generation_stream, stream_generate

        with self._lock:
            if self._closed:
                raise ModelError("the mlx model was closed: load it again")
            room = self.info.context_window - len(prompt)
            wanted = options.max_tokens if options.max_tokens is not None else self.args.max_tokens
            max_tokens = min(wanted, room) if wanted else room
            seed = options.seed if options.seed is not None else self.args.seed
            if seed is not None:
                mx.random.seed(seed)
            sampler = self._sampler(options)
            processors = self._logits_processors(options)
            parser = self._parser(prompt, tools)
            stops = _StopText(options.stop)
            opening_events = parser.feed(opening) if opening else []
            call_end = _JsonEnd(opening[opening.index("{"):]) if "{" in opening else None
            if opening and opening.endswith('"') and tools:  # the model writes the tool's name next
                names = [str((t.get("function") or t).get("name")) for t in tools]
                processors = processors + [_NameConstraint(self._token_texts(), names)]

            pc = self._prompt_cache
            if not self._use_cache:
                pc.reset()
            cached = pc.prepare(prompt)
            generated: list[int] = []
            finish: FinishReason = "length"
            guard = RepetitionGuard() if options.repetition_guard else None
            raw = opening
            yield from opening_events
            t0 = time.perf_counter()
            t_first: float | None = None
            deadline = t0 + self.request_timeout if self.request_timeout else None
            completed = False
            try:
                rest = prompt[cached:]
                step = max(1, self.args.prefill_step_size)
                with mx.stream(generation_stream):
                    for i in range(0, len(rest) - 1, step):
                        chunk = rest[i : min(i + step, len(rest) - 1)]
                        self._model(mx.array(chunk)[None], cache=pc.cache)
                        mx.eval([c.state for c in pc.cache])
                        pc.tokens.extend(chunk)
                pc.take_snapshot()
                gen_kwargs: dict[str, Any] = {}
                if self.args.kv_bits is not None:
                    gen_kwargs.update(kv_bits=self.args.kv_bits, kv_group_size=self.args.kv_group_size)
                    if self.args.quantized_kv_start is not None:
                        gen_kwargs["quantized_kv_start"] = self.args.quantized_kv_start
                pc.tokens.append(rest[-1])
                for resp in stream_generate(self._model, self._tokenizer, mx.array(rest[-1:]), max_tokens=max_tokens,
                                            sampler=sampler, logits_processors=processors,
                                            prompt_cache=pc.cache, **gen_kwargs):
                    if t_first is None:
                        t_first = time.perf_counter()
                    generated.append(resp.token)
                    pc.tokens.append(resp.token)
                    text, hit = stops.push(resp.text)
                    if call_end is not None and not hit:
                        cut = call_end.feed(text)
                        if cut >= 0:  # a forced call is one call: it ends where its JSON object closes
                            text, hit = text[:cut], True
                    raw += text
                    for event in parser.feed(text):
                        yield event
                    if hit:
                        finish = "stop"
                        break
                    if guard is not None and guard.check(raw) is not None:
                        finish = "repetition"
                        break
                    if resp.finish_reason is not None:
                        finish = "stop" if resp.finish_reason == "stop" else "length"
                    elif deadline is not None and time.perf_counter() > deadline:
                        log.warning("generation stopped after request_timeout=%ss", self.request_timeout)
                        break
                else:
                    tail = stops.flush()
                    raw += tail
                    for event in parser.feed(tail):
                        yield event
                completed = True
            except GeneratorExit:
                raise
            except Exception as e:
                pc.reset()
                raise ModelError(f"mlx generation failed: {type(e).__name__}: {e}") from e
            finally:
                self._reconcile_cache()
                if not completed:
                    log.debug("mlx generation cancelled after %d tokens", len(generated))
            t_end = time.perf_counter()
            for event in parser.finish():
                yield event
            if parser.tool_calls and finish == "stop":
                finish = "tool_calls"
            t_first = t_first or t_end
            result = ChatResult(
                content=parser.content,
                reasoning=parser.reasoning,
                tool_calls=parser.tool_calls,
                malformed_tool_calls=parser.malformed,
                finish_reason=finish,
                usage=Usage(prompt_tokens=len(prompt), cached_tokens=cached, completion_tokens=len(generated)),
                timings=Timings(prompt_n=len(prompt) - cached, cache_n=cached, prompt_ms=round((t_first - t0) * 1000.0, 3),
                                predicted_n=len(generated), predicted_ms=round((t_end - t_first) * 1000.0, 3)),
                raw=raw,
            )
        yield StreamEvent(kind="done", result=result)

    def _token_texts(self) -> list[str]:
        """Each token id's text (computed once per model, for ``_NameConstraint``)."""
        if self._texts is None:
            n = max(len(self._tokenizer), int(self._config.get("vocab_size") or 0))
            self._texts = list(self._tokenizer._tokenizer.batch_decode([[i] for i in range(n)]))
        return self._texts

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def _reconcile_cache(self) -> None:
        """Keep the token list equal to what the KV cache holds (it is the source of truth)."""
        pc = self._prompt_cache
        off = pc.offset()
        if off is None or off == len(pc.tokens):
            return
        if off < len(pc.tokens):
            pc.tokens = pc.tokens[:off]
        elif pc.trimmable:
            from mlx_lm.models.cache import trim_prompt_cache

            trim_prompt_cache(pc.cache, off - len(pc.tokens))
        else:
            pc.reset()

    def _sampler(self, options: ChatOptions) -> Callable[..., Any]:
        from mlx_lm.sample_utils import make_sampler

        def pick(value: Any, default: Any, fallback: Any) -> Any:
            return value if value is not None else (default if default is not None else fallback)

        top_k = int(pick(options.top_k, self.args.top_k, 0))
        if top_k >= len(self._tokenizer):
            top_k = 0
        extra = options.extra
        return make_sampler(
            float(pick(options.temperature, self.args.temperature, 0.0)),
            top_p=float(pick(options.top_p, self.args.top_p, 1.0)),
            min_p=float(pick(options.min_p, self.args.min_p, 0.0)),
            top_k=top_k,
            xtc_probability=float(extra.get("xtc_probability", 0.0)),
            xtc_threshold=float(extra.get("xtc_threshold", 0.1)),
            xtc_special_tokens=self._tokenizer.encode("\n") + list(self._tokenizer.eos_token_ids),
        )

    def _logits_processors(self, options: ChatOptions) -> list[Callable[..., Any]]:
        """Repetition, presence and frequency penalties and ``logit_bias``. A seam for tests."""
        from mlx_lm.sample_utils import make_logits_processors

        unknown = sorted(set(options.extra) - set(SUPPORTED_EXTRA))
        if unknown:
            raise ConfigError(f"request_overrides: {', '.join(unknown)} not supported by the mlx backend "
                              f"(supported: {', '.join(SUPPORTED_EXTRA)})")
        bias = options.extra.get("logit_bias")
        rep = options.repeat_penalty if options.repeat_penalty not in (None, 1.0) else None
        return make_logits_processors(
            {int(k): float(v) for k, v in bias.items()} if bias else None,
            rep,
            int(options.extra.get("repetition_context_size", 20)),
            options.presence_penalty or None,
            20,
            options.frequency_penalty or None,
            20,
        )

    def _parser(self, prompt: list[int], tools: list[ToolSchema] | None) -> _TurnParser | _FamilyParser:
        tok = self._tokenizer
        initial = "normal"
        if tok.has_thinking and tok.rfind_think_start(prompt) > tok.rfind_think_end(prompt):
            initial = "reasoning"  # the template opened <think> for the model
        if self._family is not None:
            return _FamilyParser(self._family, tools, initial == "reasoning")
        initial = tok.response_initial_state or initial
        return _TurnParser(tok, tools, initial)

    # ----------------------------------------------------------------- lifecycle

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema] | None = None,
                     options: ChatOptions | None = None) -> int:
        """Prompt tokens the conversation renders to."""
        return len(self.render(messages, tools, options))

    @property
    def cached_tokens(self) -> int:
        """Tokens currently held in the prompt cache."""
        return len(self._prompt_cache.tokens)

    def compute_sha256(self) -> str:
        """sha256 of the weights (one file; for several, of their digests in order); also in ``info.sha256``."""
        if not self.info.sha256:
            from localcode.backends.models import file_sha256

            digests = [file_sha256(f) for f in self._weights]
            self.info.sha256 = digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
        return self.info.sha256

    def save_conversation(self, key: str) -> int:
        """Keep a copy of the KV cache the last request left, under ``key``; returns its size in bytes.

        The copy replaces an earlier one of ``key``; least recently used copies are dropped to
        stay within ``state_budget_bytes`` (a copy larger than the budget is not kept: 0).
        """
        with self._lock:
            if self._closed or not self._prompt_cache.tokens:
                return 0
            pc = self._prompt_cache
            size = _cache_bytes(pc.cache)
            if not self._states.admits(key, size):
                return 0
            self._states.put(key, _SavedCache(tokens=list(pc.tokens), cache=copy.deepcopy(pc.cache)), size)
            return size

    def restore_conversation(self, key: str) -> bool:
        """Make ``key``'s saved KV cache current (unless the cache still holds it); False when none is kept."""
        with self._lock:
            self.state_stats.pop("last_restore", None)
            saved = self._states.get(key)
            if saved is None or self._closed:
                return False
            pc = self._prompt_cache
            if pc.tokens == saved.tokens:
                return True  # nobody used the model in between
            common = _common_prefix(pc.tokens, saved.tokens, len(saved.tokens))
            self.state_stats["last_restore"] = {"tokens": len(saved.tokens), "kept_without": common}
            # a copy: generation writes into the cache's arrays, the saved one must stay as it was
            pc.cache, pc.tokens, pc.snapshot = copy.deepcopy(saved.cache), list(saved.tokens), None
            self.state_stats["restored"] += 1
            return True

    def drop_conversation(self, key: str) -> None:
        """Forget ``key``'s saved state (the conversation is over)."""
        with self._lock:
            self._states.pop(key)

    def close(self) -> None:
        """Free the model and its cache. Further calls raise ``ModelError``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            del self._model
            self._prompt_cache.reset()
            self._prompt_cache = None  # type: ignore[assignment]
        try:
            import mlx.core as mx

            mx.clear_cache()
        except ImportError:
            pass


def _normalize_messages(messages: list[Message]) -> list[Message]:
    """Copies fit for HF templates: text content, tool-call arguments as dicts."""
    out = []
    for m in messages:
        m = copy.deepcopy(m)
        content = m.get("content")
        if content is None:
            m["content"] = ""
        elif isinstance(content, list):
            m["content"] = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        for call in m.get("tool_calls") or []:
            fn = call.get("function", call)
            args = fn.get("arguments")
            if isinstance(args, str):
                try:
                    fn["arguments"] = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError:
                    pass  # a template that needs a dict will say so
        out.append(m)
    return out


def _add_end_tokens(tokenizer: Any) -> set[int]:
    """Make the template's other end-of-turn tokens end generation too; returns all end token ids.

    A converted model's config names one eos (Qwen2.5: ``<|im_end|>``), but the model may also
    close a turn with ``<|endoftext|>``; llama.cpp stops at either.
    """
    vocab = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special |= {str(getattr(t, "content", t)) for t in added.values() if getattr(t, "special", False)}
    for text in END_TOKENS:
        if text in vocab and text in special and vocab[text] not in tokenizer.eos_token_ids:
            tokenizer.add_eos_token(text)
    return set(tokenizer.eos_token_ids)


def _detect_family(tokenizer: Any) -> str | None:
    """localcode's parser family for templates mlx-lm has no tool parser for."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    if not template:
        return None
    try:
        from localcode.backends.tool_parsers import detect_family
    except ImportError:
        return None
    return detect_family(template)
