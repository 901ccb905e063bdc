"""Agent configs: one JSON file per model setup, validated by pydantic.

Every field of the original localcode agent format is accepted; unknown keys are an
error that names the file and the field. Settings merge as
defaults < agent JSON < ``--agent-args`` < command-line flags (``merge_overrides``).

``--agent gguf/NAME`` resolves ``<LOCALCODE_HOME>/agents/gguf/NAME.json``, then
``agents/gguf/NAME.json`` shipped with localcode; a path to a ``.json`` file also works.
A config's relative ``prompt`` path is looked up next to it first (the original layout:
``<root>/agents/gguf/NAME.json`` naming ``prompts/FILE.txt`` under ``<root>``).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from localcode import paths
from localcode.errors import ConfigError

BUILTIN_AGENTS = ("oracle", "none")
"""Agents that need no model: ``oracle`` writes the reference solution, ``none`` changes nothing."""


NOT_APPLICABLE_FIELDS: dict[str, str] = {
    "send_tool_categories": "localcode sends each tool's JSON schema, never tool categories",
}
"""Fields of the original format that are accepted and have no effect here, with the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerConfig(_Strict):
    """How the model is loaded (the original tool's llama-server / mlx_lm.server settings)."""

    model_path: str | None = None
    """Local model file (GGUF; first part of a split GGUF) or MLX model folder; ``~`` expands."""
    hf_model: str | None = None
    """``repo_id/file.gguf`` (or an MLX repo id) to download with huggingface_hub when ``model_path`` is missing."""
    context_window: int | None = None
    """Context size in tokens. Also settable as ``--ctx-size`` in ``extra_args``."""
    extra_args: list[str] = Field(default_factory=list)
    """llama-server (or mlx_lm.server) flags, mapped onto load parameters where they apply."""
    server_type: Literal["llama", "llama.cpp", "llama-server", "mlx", "openai", "http"] | None = None
    """Which backend to use; inferred from the agent's folder (gguf/ or mlx/) or ``url`` when absent."""

    @field_validator("extra_args", mode="before")
    @classmethod
    def _split_args(cls, v: Any) -> Any:
        if isinstance(v, str):
            return shlex.split(v)
        return v


class PhaseRules(_Strict):
    """Rules that move the phase machine without asking the model."""

    min_files_read_for_plan: int = 1
    """Files read before the phase may move from context-gathering to planning."""
    auto_plan_after_read: bool = True
    """Move to planning as soon as enough files were read."""
    write_to_implement: bool = True
    """A write or edit moves the phase to implementing."""


class PhaseProbe(_Strict):
    """The LLM probe that classifies phase transitions (modes ``llm`` and ``hybrid``)."""

    temperature: float = 0.0
    max_tokens: int = 16


class PhaseControl(_Strict):
    """A side channel that tracks what the agent is doing; never written into the conversation."""

    mode: Literal["off", "rules", "llm", "hybrid"] = "off"
    states: list[str] = Field(default_factory=lambda: ["context", "plan", "implement", "verify"])
    default: str = "context"
    rules: PhaseRules = Field(default_factory=PhaseRules)
    llm: PhaseProbe = Field(default_factory=PhaseProbe)
    hints: dict[str, str] = Field(default_factory=dict)
    """Per-phase hint appended to the system prompt while that phase is active."""


class FlowStage(_Strict):
    """One stage of a staged flow."""

    name: str
    instructions: str = ""
    allowed_tools: list[str] | None = None
    """Only these tools may run in this stage (``None``: all configured tools)."""
    blocked_tools: list[str] = Field(default_factory=list)


class AgentConfig(_Strict):
    """One agent: a model, how it is sampled and which tools it gets."""

    name: str = ""
    """Shown in results and logs; defaults to the config's file stem."""
    description: str = ""
    prompt: str | None = None
    """System prompt template: a file name under ``prompts/`` or inline text."""
    model: str | None = None
    """Model name sent to an HTTP endpoint; informational for in-process backends."""
    url: str | None = None
    """OpenAI-compatible endpoint (``http://host:port/v1``) for the HTTP backend: used when
    ``server_config`` names no model file, when ``server_type`` is ``openai``, or when given on the
    command line (``--url``); otherwise (the original configs name both) the model is loaded
    in-process and ``url`` is not applicable."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    """Completion tokens per model call."""

    tool_choice: Literal["auto", "required", "none"] | dict[str, Any] = "auto"
    """``auto``, ``required``, ``none`` or OpenAI's ``{"type": "function", "function": {"name": ...}}``."""
    think: bool | None = None
    """Turn the template's thinking switch on or off (``"auto"``, as the original format allows, is None)."""
    think_level: Literal["low", "medium", "high"] | None = None
    cache: bool = True
    """Reuse the KV cache across turns (prompt-cache reuse); ``"auto"`` means on."""
    native_thinking: bool = False
    """Keep reasoning in the history the way the model's template expects."""
    thinking_visibility: Literal["show", "hide", "log"] = "log"
    """Where reasoning goes: shown on stderr, hidden, or only in logs (the original's ``hidden`` is ``hide``)."""
    send_tool_categories: bool = False
    """Original format: sent tool categories along with the tool list. Not applicable here."""
    tool_call_grammar: bool = False
    """Constrain tool calls with a grammar built from the tools' JSON schemas (small models)."""
    repetition_guard: bool = True
    """Stop a response that has fallen into a loop (one piece repeated over 800 characters, and
    three times for pieces up to 1,000 characters) and tell the model so, instead of letting it
    run to ``max_tokens`` (``backends.base.RepetitionGuard``)."""
    redirect_misplaced_writes: bool = False
    """``bench``: a ``write`` to a path the test run would not use whose file name is one
    solution file's (``src/react.js`` for ``react.js``) writes that solution file, and says
    so, instead of being refused (small models repeat the refused path)."""
    files_in_prompt: bool = False
    """``bench``: put the solution files' current content in the first message (as Aider's chat does)."""

    tools: list[str] = Field(default_factory=lambda: ["ls", "read", "write", "edit", "glob", "grep", "search", "apply_patch", "finish"])
    """Ordered tool names; aliases (``read_file``) are accepted."""
    tool_name_style: Literal["canonical", "alias", "as_configured"] = "as_configured"
    """Names the model sees: canonical (``read``), the first alias (``read_file``) or as listed in ``tools``."""
    tool_aliases: dict[str, str] = Field(default_factory=dict)
    """Extra alias → tool name mappings."""
    min_tool_calls: int = 0
    """Answers without tool calls are refused until this many calls were made."""
    max_format_retries: int = 3
    """Consecutive malformed responses answered with a FORMAT ERROR before the run ends."""
    auto_tool_call_on_failure: bool = False
    """Recover a call from plain text (e.g. a fenced code block naming a file) after a malformed response."""
    require_code_change: bool = False
    """Refuse ``finish`` until a file was changed."""
    max_turns: int = 24
    max_batch_tool_calls: int = 5
    history_max_messages: int | None = None
    max_wall_seconds: float | None = None
    """Wall-clock limit for one agent run."""
    max_total_tokens: int | None = None
    """Token budget (prompt + completion) for one agent run."""

    phase_log: Literal["off", "stdout", "log", "both"] = "off"
    phase_control: PhaseControl = Field(default_factory=PhaseControl)
    task_flow_mode: str | None = None
    """A flow preset name (see docs/TASK_FLOW.md)."""
    flow: list[FlowStage] | None = None
    """A custom staged flow; overrides ``task_flow_mode``."""

    request_overrides: dict[str, Any] = Field(default_factory=dict)
    """Extra request fields passed to the backend as they are."""
    prompt_overlays: list[str] = Field(default_factory=list)
    """Extra text appended to the system prompt (inline or a file under ``prompts/``)."""
    request_timeout: float | None = None
    """Seconds for one model call (HTTP backend) or one generation (in-process)."""
    server_config: ServerConfig = Field(default_factory=ServerConfig)

    # Where the config came from; not part of the format.
    kind: str | None = Field(default=None, exclude=True)
    """``gguf`` or ``mlx`` from the folder the config was found in."""
    source: str | None = Field(default=None, exclude=True)

    @field_validator("think", mode="before")
    @classmethod
    def _think_auto(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() == "auto" else v

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_auto(cls, v: Any) -> Any:
        return True if v is None or (isinstance(v, str) and v.strip().lower() == "auto") else v

    @field_validator("thinking_visibility", mode="before")
    @classmethod
    def _visibility_hidden(cls, v: Any) -> Any:
        return "hide" if isinstance(v, str) and v.strip().lower() == "hidden" else v

    def not_applicable(self) -> list[str]:
        """Settings this config sets that have no effect here, each with the reason.

        Raises ``ConfigError`` when ``server_config.extra_args`` holds a flag the backend does not know.
        """
        out = [f"{key}: {why}" for key, why in NOT_APPLICABLE_FIELDS.items() if key in self.model_fields_set]
        if self.backend != "http":
            if self.url:
                out.append("url: the model in server_config is loaded in-process instead of calling this server")
            if self.model:
                out.append("model: the name is sent to HTTP endpoints only; in-process the file in server_config is loaded")
        args = self.server_config.extra_args
        if args and self.backend == "llama_cpp":
            from localcode.backends.llama_args import parse_llama_args

            out += [f"server_config.extra_args {flag}: llama-server only" for flag in parse_llama_args(args).not_applicable]
        elif args and self.backend == "mlx":
            from localcode.backends.mlx import parse_mlx_args

            out += [f"server_config.extra_args {flag}: mlx_lm.server only" for flag in parse_mlx_args(args).not_applicable]
        return out

    @property
    def backend(self) -> Literal["llama_cpp", "mlx", "http"]:
        """Which backend loads this agent's model."""
        st = self.server_config.server_type
        sc = self.server_config
        # The original configs carry both the model to start a server with and that server's url:
        # the model is then loaded in-process, and url serves only configs that name no model.
        if st in ("openai", "http") or (self.url and not (sc.model_path or sc.hf_model)):
            return "http"
        if st == "mlx" or self.kind == "mlx":
            return "mlx"
        return "llama_cpp"


def _format_validation_error(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(root)"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown field '{loc}'")
        else:
            parts.append(f"field '{loc}': {e['msg']}")
    return f"invalid agent config {source}: " + "; ".join(parts)


def parse_agent(data: dict[str, Any], source: str, kind: str | None = None) -> AgentConfig:
    """Validate a config dict; errors name the source and the field."""
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None
    cfg.kind = kind
    cfg.source = source
    if not cfg.name:
        cfg.name = Path(source).stem
    return cfg


def load_agent_file(path: Path, kind: str | None = None) -> AgentConfig:
    """Read and validate one agent JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"agent config {path} does not exist: run 'localcode agents' to list them") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"agent config {path} is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"agent config {path} must hold a JSON object")
    if kind is None and path.parent.name in ("gguf", "mlx"):
        kind = path.parent.name
    cfg = parse_agent(data, str(path), kind)
    _resolve_prompt_files(cfg, path)
    return cfg


def _resolve_prompt_files(cfg: AgentConfig, path: Path) -> None:
    """Point ``prompt`` and ``prompt_overlays`` at the files they name next to the config.

    Lookup order: the config's folder and the two above it (the original ``agents/../prompts/``
    layout), then the shipped prompts, then a path from the working directory. A name that
    looks like a file and is found nowhere is a ``ConfigError`` naming the config and the field.
    """
    from localcode.agent.prompts import config_prompt_dirs, find_config_prompt, load_prompt

    def resolve(spec: str, field: str) -> str:
        found = find_config_prompt(spec, path)
        if found is not None:
            return str(found)
        try:
            load_prompt(spec)
        except ConfigError:
            where = ", ".join(str(d) for d in config_prompt_dirs(path))
            raise ConfigError(
                f"invalid agent config {path}: field '{field}': prompt file '{spec}' not found under {where} "
                "or in the shipped prompts: copy it there or fix the path"
            ) from None
        return spec

    if cfg.prompt:
        cfg.prompt = resolve(cfg.prompt, "prompt")
    if cfg.prompt_overlays:
        cfg.prompt_overlays = [resolve(o, f"prompt_overlays.{i}") for i, o in enumerate(cfg.prompt_overlays)]


def agent_search_dirs() -> list[Path]:
    """Folders searched for ``KIND/NAME.json``, first match wins: the user's own configs shadow shipped ones."""
    return [paths.user_agents_dir(), paths.package_dir("agents")]


def resolve_agent(spec: str) -> AgentConfig:
    """``gguf/NAME``, ``mlx/NAME`` or a path to a JSON file → a validated config."""
    p = Path(spec).expanduser()
    if spec.endswith(".json") and p.exists():
        return load_agent_file(p)
    for base in agent_search_dirs():
        candidate = base / f"{spec}.json"
        if candidate.is_file():
            return load_agent_file(candidate)
    raise ConfigError(
        f"unknown agent '{spec}': expected KIND/NAME (e.g. gguf/gemma-3-270m) or a .json path; "
        "run 'localcode agents' to list them"
    )


def list_agents() -> list[tuple[str, Path]]:
    """Every ``KIND/NAME`` config that ``resolve_agent`` can find, with its file."""
    seen: dict[str, Path] = {}
    for base in agent_search_dirs():
        if not base.is_dir():
            continue
        for f in sorted(base.glob("*/*.json")):
            seen.setdefault(f"{f.parent.name}/{f.stem}", f)
    return sorted(seen.items())


def parse_agent_args(text: str) -> dict[str, Any]:
    """``"key=value key2=value"`` → dict. Values are JSON when they parse, else strings.

    Dotted keys reach nested fields: ``server_config.context_window=8192``.
    """
    out: dict[str, Any] = {}
    for token in shlex.split(text):
        if "=" not in token:
            raise ConfigError(f"--agent-args: '{token}' is not key=value")
        key, raw = token.split("=", 1)
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def merge_overrides(cfg: AgentConfig, overrides: dict[str, Any], source: str = "--agent-args") -> AgentConfig:
    """A new config with ``overrides`` (dotted keys allowed) applied and validated.

    A ``url`` given here (``--url``, ``--agent-args url=...``) means "use that server": the HTTP
    backend, even when the config names a model file (``server_config.server_type`` becomes
    ``openai`` unless the overrides set it).
    """
    data = cfg.model_dump()
    if overrides.get("url") and "server_config.server_type" not in overrides:
        data["server_config"]["server_type"] = "openai"
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{source}: '{key}' does not name a nested field")
            node = node[part]
        node[parts[-1]] = value
    merged = parse_agent(data, f"{cfg.source} + {source}", cfg.kind)
    merged.name = cfg.name if "name" not in overrides else merged.name
    return merged
