"""The tool registry: the one source of truth for the tool list, names and aliases.

``TOOL_MODULES`` names the modules that define tools; each exposes
``TOOLS: tuple[type[Tool], ...]``. ``all_tools()`` imports them (lazily, so no module
imports another's tools and there are no import cycles) and returns every tool class by
canonical name. To add tools, define them in a module with a ``TOOLS`` tuple and list
the module here.

A ``ToolRegistry`` is the set of tools one agent run offers: built from the agent
config's ``tools`` (ordered, aliases allowed), ``tool_aliases`` and ``tool_name_style``.
It gives the schemas the model sees and executes calls, turning every failure the model
caused into ``error: ...`` text::

    registry = ToolRegistry.from_config(cfg)
    outcome = registry.execute("read_file", '{"file_path": "a.py"}', ctx)
    outcome.text   # "ok: a.py lines 1-3 of 3\\n     1\\t..."
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from localcode.agent.tools.base import Tool, ToolContext, ToolError
from localcode.agent.tools.repair import ArgumentError, normalize_arguments, normalize_key, parse_arguments
from localcode.errors import ConfigError

if TYPE_CHECKING:
    from localcode.config import AgentConfig

TOOL_MODULES: tuple[str, ...] = (
    "localcode.agent.tools.files",
    "localcode.agent.tools.patch",
    "localcode.agent.tools.search",
    "localcode.agent.tools.shell",
    "localcode.agent.agent_tools",
)
"""Modules defining tools, in the order their tools are listed. The agent-level tools
(think, ask_agent, plan_*, flow_stage_done, finish) live in ``localcode.agent.agent_tools``."""

ErrorKind = Literal["unknown_tool", "not_allowed", "bad_arguments", "tool_error"]

_NAME_PREFIXES = ("functions.", "function.", "tools.", "tool.", "default_api.", "api.")


@cache
def all_tools() -> dict[str, type[Tool]]:
    """Every tool class by canonical name, in ``TOOL_MODULES`` order.

    A module listed in ``TOOL_MODULES`` that does not exist (yet) is skipped; a name or
    alias defined twice is a bug and raises ``RuntimeError``.
    """
    table: dict[str, type[Tool]] = {}
    seen: dict[str, str] = {}
    for module_name in TOOL_MODULES:
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        for tool in module.TOOLS:
            for n in (tool.name, *tool.aliases):
                key = _name_key(n)
                if key in seen:
                    raise RuntimeError(f"tool name {n!r} of {tool.__name__} is already used by {seen[key]}")
                seen[key] = tool.name
            table[tool.name] = tool
    return table


def _name_key(name: str) -> str:
    key = normalize_key(name)
    for prefix in _NAME_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def find_tool(name: str, catalog: Mapping[str, type[Tool]] | None = None) -> type[Tool] | None:
    """The tool class called ``name`` (canonical or alias, case/hyphen tolerant), or None.

    ``catalog`` defaults to ``all_tools()``.
    """
    key = _name_key(name)
    for tool in (all_tools() if catalog is None else catalog).values():
        if key in {_name_key(n) for n in (tool.name, *tool.aliases)}:
            return tool
    return None


@dataclass
class ToolOutcome:
    """The result of one tool call, as the agent appends it and counts it."""

    tool: str
    """The canonical tool name, or the name as called when it matched no tool."""
    ok: bool
    text: str
    """``ok: ...`` or ``error: ...`` — what goes back to the model."""
    repaired: bool = False
    """Whether the arguments needed any repair or renaming."""
    repairs: list[str] = field(default_factory=list)
    """Repair kinds applied (see ``localcode.agent.tools.repair``)."""
    error_kind: ErrorKind | None = None
    arguments: dict[str, Any] | None = None
    """The validated arguments (for logs); None when they could not be read."""


class ToolRegistry:
    """The tools of one agent run, under the names the model sees."""

    def __init__(
        self,
        tools: Sequence[str],
        tool_aliases: Mapping[str, str] | None = None,
        tool_name_style: Literal["canonical", "alias", "as_configured"] = "as_configured",
        catalog: Mapping[str, type[Tool]] | None = None,
    ) -> None:
        """Raises ``ConfigError`` for a name that matches no tool.

        ``catalog`` (canonical name → class) defaults to ``all_tools()``; tests pass their own.
        """
        catalog = all_tools() if catalog is None else catalog
        self.tools: list[Tool] = []
        self._exposed: dict[str, str] = {}
        self._by_key: dict[str, Tool] = {}
        for configured in tools:
            cls = find_tool(configured, catalog)
            if cls is None:
                raise ConfigError(
                    f"unknown tool '{configured}' in tools: known tools are {', '.join(catalog)}"
                )
            if cls.name in self._exposed:
                continue
            tool = cls()
            self.tools.append(tool)
            if tool_name_style == "canonical":
                exposed = cls.name
            elif tool_name_style == "alias":
                exposed = cls.aliases[0] if cls.aliases else cls.name
            else:
                exposed = configured
            self._exposed[cls.name] = exposed
            for n in (cls.name, *cls.aliases, exposed):
                self._by_key[_name_key(n)] = tool
        for alias, target in (tool_aliases or {}).items():
            tool_obj = self.resolve(target)
            if tool_obj is None:
                raise ConfigError(
                    f"tool_aliases: '{alias}' points to '{target}', which is not among the agent's tools "
                    f"({', '.join(self.names())})"
                )
            self._by_key[_name_key(alias)] = tool_obj

    @classmethod
    def from_config(cls, cfg: AgentConfig) -> ToolRegistry:
        """The registry for an agent config (its ``tools``, ``tool_aliases``, ``tool_name_style``)."""
        return cls(cfg.tools, cfg.tool_aliases, cfg.tool_name_style)

    def names(self) -> list[str]:
        """The exposed names, in the configured order."""
        return [self._exposed[t.name] for t in self.tools]

    def exposed_name(self, name: str) -> str | None:
        """The name the model sees for a tool given by any of its names, or None."""
        tool = self.resolve(name)
        return self._exposed[tool.name] if tool else None

    def resolve(self, name: str) -> Tool | None:
        """The configured tool called ``name`` (canonical, alias, exposed or a configured
        extra alias; case-, hyphen- and ``functions.``-prefix tolerant), or None."""
        return self._by_key.get(_name_key(str(name)))

    def schemas(self, only: Collection[str] | None = None) -> list[dict[str, Any]]:
        """OpenAI tool schemas under their exposed names (``only``: canonical names to include)."""
        return [
            t.schema(self._exposed[t.name])
            for t in self.tools
            if only is None or t.name in only
        ]

    def describe(self) -> str:
        """One line per tool, ``- name: description``, for a ``{{TOOLS}}`` prompt placeholder."""
        return "\n".join(f"- {self._exposed[t.name]}: {t.description}" for t in self.tools)

    def execute(
        self,
        name: str,
        arguments: str | Mapping[str, Any] | None,
        ctx: ToolContext,
        allowed: Collection[str] | None = None,
    ) -> ToolOutcome:
        """Run one call. Never raises for anything the model sent; bugs still propagate.

        ``allowed`` (canonical names) restricts which of the configured tools may run now,
        e.g. in a flow stage; others get an ``error:`` listing the allowed ones.
        """
        tool = self.resolve(name)
        if tool is None:
            listed = [self._exposed[t.name] for t in self.tools if allowed is None or t.name in allowed]
            return ToolOutcome(
                tool=str(name),
                ok=False,
                text=f"error: unknown tool '{_short(str(name))}'; allowed tools: {', '.join(listed)}",
                error_kind="unknown_tool",
            )
        if allowed is not None and tool.name not in allowed:
            listed = [self._exposed[t.name] for t in self.tools if t.name in allowed]
            return ToolOutcome(
                tool=tool.name,
                ok=False,
                text=f"error: tool '{self._exposed[tool.name]}' is not allowed now; allowed tools: {', '.join(listed)}",
                error_kind="not_allowed",
            )
        outcome = ToolOutcome(tool=tool.name, ok=False, text="")
        exposed = self._exposed[tool.name]
        try:
            parsed = parse_arguments(arguments)
        except ArgumentError as e:
            outcome.text = f"error: arguments for {exposed} are not JSON: {e}; send a JSON object like {_example(tool)}"
            outcome.error_kind = "bad_arguments"
            return outcome
        outcome.repairs = list(parsed.repairs)
        fields = list(tool.Params.model_fields)
        value = parsed.value
        if not isinstance(value, dict):
            required = [n for n, f in tool.Params.model_fields.items() if f.is_required()]
            if len(required) == 1 and value is not None and not isinstance(value, dict):
                value = {required[0]: value}
                if "bare_value" not in outcome.repairs:
                    outcome.repairs.append("bare_value")
            elif value is None:
                value = {}
            else:
                outcome.text = (
                    f"error: arguments for {exposed} must be a JSON object, not {type(value).__name__}; "
                    f"send {_example(tool)}"
                )
                outcome.error_kind = "bad_arguments"
                return outcome
        args, renamed, unknown = normalize_arguments(value, fields, tool.arg_aliases)
        if renamed:
            outcome.repairs.append("arg_alias")
        outcome.repaired = bool(outcome.repairs)
        try:
            params = tool.Params.model_validate(args)
        except ValidationError as e:
            outcome.text = f"error: bad arguments for {exposed}: {_validation_summary(e, unknown)}; expected {_example(tool)}"
            outcome.error_kind = "bad_arguments"
            return outcome
        outcome.arguments = params.model_dump()
        ctx.registry = self
        try:
            text = tool.run(params, ctx)
        except ToolError as e:
            outcome.text = f"error: {e}"
            outcome.error_kind = "tool_error"
            return outcome
        except OSError as e:
            outcome.text = f"error: {exposed} failed: {e.strerror or e}"
            outcome.error_kind = "tool_error"
            return outcome
        if text.startswith("error:"):
            outcome.text = text
            outcome.error_kind = "tool_error"
            return outcome
        outcome.ok = True
        outcome.text = text if text.startswith("ok:") else f"ok: {text}"
        if unknown:
            outcome.text += f"\nnote: ignored unknown argument(s) {', '.join(map(_short, unknown))}; {exposed} takes {', '.join(fields)}"
        return outcome


def _short(text: str, limit: int = 60) -> str:
    text = text.replace("\n", "\\n").replace("\x00", "\\0")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _example(tool: Tool) -> str:
    """``{"path": string, "offset"?: integer}`` — the argument shape, compactly."""
    schema = tool.parameters_schema()
    required = set(schema.get("required", []))
    parts = []
    for fname, prop in schema.get("properties", {}).items():
        kind = prop.get("type")
        if kind is None and "anyOf" in prop:
            kind = "|".join(p.get("type", "?") for p in prop["anyOf"] if p.get("type") != "null")
        mark = "" if fname in required else "?"
        parts.append(f'"{fname}"{mark}: {kind or "any"}')
    return "{" + ", ".join(parts) + "}"


def _validation_summary(err: ValidationError, unknown: list[str]) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "arguments"
        if e["type"] == "missing":
            parts.append(f"missing '{loc}'")
        else:
            parts.append(f"'{loc}': {e['msg'].lower()}")
    if unknown:
        parts.append(f"unknown argument(s) {', '.join(map(_short, unknown))}")
    return "; ".join(parts[:5])
