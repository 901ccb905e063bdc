"""llama-server flags (an agent's ``server_config.extra_args``) → in-process load and sampling settings.

The original localcode configs carry llama-server command lines. In-process, each flag
either maps onto a ``llama_cpp.Llama`` load parameter or a sampling default, changes how
localcode renders and parses (chat template, reasoning format), or only concerns a
server (host, port, parallel slots, ...). ``FLAGS`` is the one table of all of them;
an unknown flag is a ``ConfigError`` that names it.

    >>> a = parse_llama_args(["--ctx-size", "8192", "-fa", "on", "--port", "1235"])
    >>> a.load["n_ctx"], a.load["flash_attn"], a.not_applicable
    (8192, True, ['--port 1235'])
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from localcode.errors import ConfigError

GGML_TYPES: dict[str, int] = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
    "iq4_nl": 20, "bf16": 30,
}
"""KV-cache types llama-server accepts for ``--cache-type-k/-v`` → ggml type ids (ggml's stable enum)."""

ROPE_SCALING: dict[str, int] = {"none": 0, "linear": 1, "yarn": 2, "longrope": 3}
"""``--rope-scaling`` values → llama_rope_scaling_type."""

REASONING_FORMATS = ("none", "auto", "deepseek", "deepseek-legacy")

Target = Literal["load", "sampling", "template", "localcode", "server"]


class LlamaArgs(BaseModel):
    """What a list of llama-server flags means in-process."""

    load: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for ``llama_cpp.Llama`` (``n_ctx``, ``n_gpu_layers``, ``type_k``, ...)."""
    sampling: dict[str, Any] = Field(default_factory=dict)
    """Sampling defaults named like ``ChatOptions`` fields (``temperature``, ``top_k``, ``seed``, ...)."""
    chat_template_file: str | None = None
    """``--chat-template-file``: a Jinja chat template that replaces the GGUF's own."""
    chat_template: str | None = None
    """``--chat-template``: inline template text."""
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)
    """``--chat-template-kwargs``: extra variables for the chat template (e.g. ``enable_thinking``)."""
    reasoning_format: str | None = None
    """``--reasoning-format``: ``none`` keeps reasoning in the content; otherwise it is split off."""
    flash_attn: Literal["on", "off", "auto"] | None = None
    """``--flash-attn`` as given; ``auto`` (and no flag) loads with flash attention on."""
    context_shift: bool | None = None
    """``--(no-)context-shift``. localcode never shifts: a prompt that does not fit raises."""
    not_applicable: list[str] = Field(default_factory=list)
    """Flags (with their values) that only concern a server; accepted and reported, not used."""


@dataclass(frozen=True)
class Flag:
    """One llama-server flag: its spellings, whether it takes a value, and what it sets."""

    names: tuple[str, ...]
    target: Target
    key: str = ""
    convert: Callable[[str], Any] | None = None
    """Value converter; ``None`` means the flag takes no value."""
    const: Any = True
    """Value set by a flag without a value."""
    optional_values: tuple[str, ...] = ()
    """For flags whose value is optional (``-fa`` / ``-fa on``): the values that may follow."""


def _int(v: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"extra_args: expected an integer, got '{v}'") from None


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise ConfigError(f"extra_args: expected a number, got '{v}'") from None


def _gpu_layers(v: str) -> int:
    return -1 if v in ("auto", "all", "-1") else _int(v)


def _cache_type(v: str) -> int:
    try:
        return GGML_TYPES[v.lower()]
    except KeyError:
        raise ConfigError(f"extra_args: unknown KV cache type '{v}' (use one of {', '.join(GGML_TYPES)})") from None


def _rope_scaling(v: str) -> int:
    try:
        return ROPE_SCALING[v]
    except KeyError:
        raise ConfigError(f"extra_args: unknown --rope-scaling '{v}' (use one of {', '.join(ROPE_SCALING)})") from None


def _on_off_auto(v: str) -> str:
    v = v.lower()
    aliases = {"1": "on", "true": "on", "enabled": "on", "0": "off", "false": "off", "disabled": "off"}
    v = aliases.get(v, v)
    if v not in ("on", "off", "auto"):
        raise ConfigError(f"extra_args: --flash-attn takes on, off or auto, got '{v}'")
    return v


def _json_object(v: str) -> dict[str, Any]:
    try:
        data = json.loads(v)
    except json.JSONDecodeError as e:
        raise ConfigError(f"extra_args: --chat-template-kwargs is not valid JSON ({e.msg}): {v}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"extra_args: --chat-template-kwargs must be a JSON object: {v}")
    return data


def _reasoning_format(v: str) -> str:
    if v not in REASONING_FORMATS:
        raise ConfigError(f"extra_args: --reasoning-format takes one of {', '.join(REASONING_FORMATS)}, got '{v}'")
    return v


def _kv_override(v: str) -> tuple[str, Any]:
    # llama-server syntax: KEY=TYPE:VALUE with TYPE in int, float, bool, str
    try:
        key, typed = v.split("=", 1)
        kind, raw = typed.split(":", 1)
    except ValueError:
        raise ConfigError(f"extra_args: --override-kv expects KEY=TYPE:VALUE, got '{v}'") from None
    conv: dict[str, Callable[[str], Any]] = {
        "int": _int, "float": _float, "str": str, "bool": lambda s: s.lower() in ("true", "1"),
    }
    if kind not in conv:
        raise ConfigError(f"extra_args: --override-kv type must be int, float, bool or str, got '{kind}'")
    return key, conv[kind](raw)


def _str(v: str) -> str:
    return v


FLAGS: tuple[Flag, ...] = (
    # load parameters of llama_cpp.Llama
    Flag(("-c", "--ctx-size"), "load", "n_ctx", _int),
    Flag(("-ngl", "--n-gpu-layers", "--gpu-layers"), "load", "n_gpu_layers", _gpu_layers),
    Flag(("-b", "--batch-size"), "load", "n_batch", _int),
    Flag(("-ub", "--ubatch-size"), "load", "n_ubatch", _int),
    Flag(("-ctk", "--cache-type-k"), "load", "type_k", _cache_type),
    Flag(("-ctv", "--cache-type-v"), "load", "type_v", _cache_type),
    Flag(("-t", "--threads"), "load", "n_threads", _int),
    Flag(("-tb", "--threads-batch"), "load", "n_threads_batch", _int),
    Flag(("--swa-full",), "load", "swa_full"),
    Flag(("--no-mmap",), "load", "use_mmap", const=False),
    Flag(("--mmap",), "load", "use_mmap", const=True),
    Flag(("--mlock",), "load", "use_mlock"),
    Flag(("-nr", "--no-repack"), "load", "use_extra_bufts", const=False),
    Flag(("--repack",), "load", "use_extra_bufts", const=True),
    Flag(("--no-kv-offload", "-nkvo"), "load", "offload_kqv", const=False),
    Flag(("--rope-scaling",), "load", "rope_scaling_type", _rope_scaling),
    Flag(("--rope-scale",), "load", "rope_freq_scale", lambda v: 1.0 / _float(v)),
    Flag(("--rope-freq-base",), "load", "rope_freq_base", _float),
    Flag(("--rope-freq-scale",), "load", "rope_freq_scale", _float),
    Flag(("--yarn-orig-ctx",), "load", "yarn_orig_ctx", _int),
    Flag(("--yarn-ext-factor",), "load", "yarn_ext_factor", _float),
    Flag(("--yarn-attn-factor",), "load", "yarn_attn_factor", _float),
    Flag(("--yarn-beta-slow",), "load", "yarn_beta_slow", _float),
    Flag(("--yarn-beta-fast",), "load", "yarn_beta_fast", _float),
    Flag(("--override-kv",), "load", "kv_overrides", _kv_override),
    Flag(("-fa", "--flash-attn"), "localcode", "flash_attn", _on_off_auto, const="on",
         optional_values=("on", "off", "auto", "1", "0", "true", "false", "enabled", "disabled")),
    # sampling defaults (ChatOptions names)
    Flag(("-s", "--seed"), "sampling", "seed", _int),
    Flag(("--temp", "--temperature"), "sampling", "temperature", _float),
    Flag(("--top-k",), "sampling", "top_k", _int),
    Flag(("--top-p",), "sampling", "top_p", _float),
    Flag(("--min-p",), "sampling", "min_p", _float),
    Flag(("--repeat-penalty",), "sampling", "repeat_penalty", _float),
    Flag(("--presence-penalty",), "sampling", "presence_penalty", _float),
    Flag(("--frequency-penalty",), "sampling", "frequency_penalty", _float),
    Flag(("-n", "--n-predict", "--predict"), "sampling", "max_tokens", _int),
    # rendering and parsing
    Flag(("--chat-template-file",), "template", "chat_template_file", _str),
    Flag(("--chat-template",), "template", "chat_template", _str),
    Flag(("--chat-template-kwargs",), "template", "chat_template_kwargs", _json_object),
    Flag(("--jinja",), "template", ""),  # always on: localcode renders every template with jinja2
    Flag(("--reasoning-format",), "localcode", "reasoning_format", _reasoning_format),
    Flag(("--no-context-shift",), "localcode", "context_shift", const=False),
    Flag(("--context-shift",), "localcode", "context_shift", const=True),
    # server-only: accepted, reported as not applicable
    Flag(("--host",), "server", convert=_str),
    Flag(("--port",), "server", convert=_str),
    Flag(("-np", "--parallel"), "server", convert=_str),
    Flag(("--fit",), "server", convert=_str, const="on", optional_values=("on", "off")),
    Flag(("--fit-ctx", "--fit-target"), "server", convert=_str),
    Flag(("-cb", "--cont-batching", "-nocb", "--no-cont-batching"), "server"),
    Flag(("--metrics", "--slots", "--no-slots", "--props", "--no-webui", "--webui"), "server"),
    Flag(("--draft-max", "--draft", "--draft-n", "--draft-min", "--draft-n-min", "--draft-p-min"), "server", convert=_str),
    Flag(("-sp", "--special"), "server"),
    Flag(("-a", "--alias"), "server", convert=_str),
    Flag(("-to", "--timeout"), "server", convert=_str),
    Flag(("--api-key", "--threads-http", "--cache-reuse", "--slot-save-path", "--ctx-checkpoints",
           "--reasoning-budget", "--log-file", "--prio", "--slot-prompt-similarity"), "server", convert=_str),
    Flag(("-kvu", "--kv-unified", "--no-warmup", "--log-disable", "-v", "--verbose", "--no-perf",
           "--cache-ram", "-cram"), "server"),
)

_BY_NAME: dict[str, Flag] = {name: f for f in FLAGS for name in f.names}


def parse_llama_args(args: list[str]) -> LlamaArgs:
    """Map llama-server flags onto ``LlamaArgs``; an unknown flag or a bad value raises ``ConfigError``."""
    out = LlamaArgs()
    i = 0
    while i < len(args):
        token = args[i]
        name, inline = (token.split("=", 1) + [None])[:2] if token.startswith("--") and "=" in token else (token, None)
        flag = _BY_NAME.get(name)
        if flag is None:
            raise ConfigError(
                f"server_config.extra_args: unrecognised flag '{token}': remove it or use one of the "
                "llama-server flags localcode knows (see backends/llama_args.py)"
            )
        i += 1
        raw: str | None = inline
        if flag.convert is not None and raw is None:
            if flag.optional_values:
                if i < len(args) and args[i].lower() in flag.optional_values:
                    raw = args[i]
                    i += 1
            else:
                if i >= len(args):
                    raise ConfigError(f"server_config.extra_args: flag '{name}' needs a value")
                raw = args[i]
                i += 1
        value = flag.const if raw is None or flag.convert is None else flag.convert(raw)
        _apply(out, flag, name, raw, value)
    return out


def _apply(out: LlamaArgs, flag: Flag, name: str, raw: str | None, value: Any) -> None:
    if flag.target == "server":
        out.not_applicable.append(name if raw is None else f"{name} {raw}")
    elif flag.target == "load":
        if flag.key == "kv_overrides":
            out.load.setdefault("kv_overrides", {})[value[0]] = value[1]
        else:
            out.load[flag.key] = value
    elif flag.target == "sampling":
        out.sampling[flag.key] = value
    elif flag.key:
        if flag.key == "chat_template_kwargs":
            out.chat_template_kwargs.update(value)
        else:
            setattr(out, flag.key, value)
    if flag.key == "flash_attn":
        # llama-cpp-python's Llama takes a bool; "auto" is left to the backend's default (on)
        if value == "auto":
            out.load.pop("flash_attn", None)
        else:
            out.load["flash_attn"] = value == "on"
