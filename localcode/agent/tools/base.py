"""The base of every agent tool: ``Tool``, its parameter model, ``ToolContext`` and ``ToolError``.

A tool is a small class::

    class Read(Tool):
        name = "read"
        aliases = ("read_file",)
        description = "Read a file with line numbers."

        class Params(ToolParams):
            path: str
            \"\"\"File to read, relative to the workspace.\"\"\"

        def run(self, params: Params, ctx: ToolContext) -> str:
            ...
            return "ok: ..."

The ``Params`` model's JSON schema (field docstrings included) is what the model sees.
``run`` returns short text starting with ``ok:`` (the registry adds the prefix when it is
missing) and raises ``ToolError`` for failures the model should see; the registry turns
those into ``error: <message>``. Any other exception is a bug and propagates, except
``OSError`` from the file system, which the registry reports as a tool error.

Tools are stateless: everything a call needs comes from its params and the
``ToolContext``, which the agent loop builds once per run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from localcode.agent.tools.registry import ToolRegistry


class ToolError(Exception):
    """A tool failure the model should see as ``error: <message>``.

    The message is one line (a short second line with a hint is fine) that says what
    went wrong and what to do instead.
    """


class ToolParams(BaseModel):
    """Base of every tool's parameter model.

    Field docstrings become descriptions in the JSON schema. Lax coercion is on
    ("10" → 10, 10 → "10") because local models are sloppy with types; unknown
    arguments are dropped by the registry (and reported) before validation.
    """

    model_config = ConfigDict(
        use_attribute_docstrings=True,
        coerce_numbers_to_str=True,
        extra="ignore",
    )


@dataclass
class ToolContext:
    """Everything a tool call may touch, built once per agent run.

    Tools read and write only inside ``workspace`` (see ``localcode.agent.tools.paths``).
    """

    workspace: Path
    """The workspace root; resolved (symlinks followed) on construction."""
    protected: frozenset[str] = frozenset()
    """Workspace-relative POSIX paths that may not be written, edited, patched or deleted
    (a benchmark's test files). A protected directory protects everything below it."""
    write_policy: Callable[[str], str | None] | None = None
    """Called with the workspace-relative path of every write, edit, patch, move or delete;
    a returned text refuses it (the model sees ``error: <text>``). A benchmark passes its
    carry rule (``localcode.harness.workspace.write_refusal``); ``solve`` passes none."""
    redirect_write: Callable[[str], str | None] | None = None
    """For a ``write`` that ``write_policy`` refuses: the workspace-relative path to write
    instead, or None to refuse it (a benchmark with ``redirect_misplaced_writes``: the
    solution file of the same name, for ``src/react.js`` when the solution is ``react.js``)."""
    sandbox: Any = None
    """A ``localcode.harness.sandbox.Sandbox`` where ``shell`` runs (a benchmark), or None:
    then ``shell`` runs on the host in ``workspace`` when ``shell_enabled``."""
    shell_cwd: Path | None = None
    """Working directory passed to ``sandbox.exec`` (the workspace as the sandbox sees it);
    None → ``workspace``."""
    shell_enabled: bool = False
    """Whether ``shell`` may run at all (a sandbox counts as enabled)."""
    shell_timeout: float = 60.0
    """Upper bound in seconds for one ``shell`` command; the model may ask for less."""
    shell_env: dict[str, str] | None = None
    """Extra environment for ``shell`` commands."""
    max_read_bytes: int = 1_000_000
    """Files larger than this are not read (use grep to find the lines you need)."""
    max_write_bytes: int = 1_000_000
    """Content larger than this is not written."""
    max_output_chars: int = 12_000
    """Tool results longer than this are cut, with a note how to see more."""
    state: Any = None
    """The agent loop's state object (used by the agent-level tools)."""
    model: Any = None
    """The ``ChatModel`` of the run (used by ask_agent / ask_questions)."""
    registry: ToolRegistry | None = None
    """The registry executing this call (set by ``ToolRegistry.execute``)."""
    changed_files: set[str] = field(default_factory=set)
    """Workspace-relative paths written, edited, patched or deleted by tools in this run."""
    files_read: set[str] = field(default_factory=set)
    """Workspace-relative paths read by tools in this run."""

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace).resolve()
        # "./tests/", "tests" and "tests/x/.." all name the same folder.
        normalized = (os.path.normpath(p.replace("\\", "/")).lstrip("/") for p in self.protected)
        self.protected = frozenset(p for p in normalized if p and p != ".")


class Tool:
    """Base class of the agent's tools. Subclasses set the class attributes and ``run``."""

    name: ClassVar[str]
    """Canonical name (``read``)."""
    aliases: ClassVar[tuple[str, ...]] = ()
    """Other names the model may call it by; the first is its ``alias``-style exposed name."""
    description: ClassVar[str]
    """One or two sentences the model sees."""
    Params: ClassVar[type[ToolParams]]
    """The parameter model; its JSON schema is the tool's ``parameters``."""
    arg_aliases: ClassVar[dict[str, str]] = {}
    """Extra argument-name aliases for this tool (alias → field); they take precedence
    over the shared table in ``localcode.agent.tools.repair``."""
    writes_files: ClassVar[bool] = False
    """True for tools that change files (flows and phase rules look at it)."""

    def run(self, params: Any, ctx: ToolContext) -> str:
        """Do the work; return ``ok: ...`` text or raise ``ToolError``."""
        raise NotImplementedError

    @classmethod
    def parameters_schema(cls) -> dict[str, Any]:
        """The JSON schema of ``Params``, flattened for small models (no titles)."""
        schema = cls.Params.model_json_schema()
        _strip_titles(schema)
        schema.setdefault("properties", {})
        schema["additionalProperties"] = False
        return schema

    @classmethod
    def schema(cls, exposed_name: str | None = None) -> dict[str, Any]:
        """The OpenAI tool schema, under ``exposed_name`` (default: the canonical name)."""
        return {
            "type": "function",
            "function": {
                "name": exposed_name or cls.name,
                "description": cls.description,
                "parameters": cls.parameters_schema(),
            },
        }


def _strip_titles(node: Any) -> None:
    """Drop pydantic's auto-generated ``title`` keys: they cost tokens and tell nothing."""
    if isinstance(node, dict):
        node.pop("title", None)
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for prop in value.values():
                    _strip_titles(prop)
            else:
                _strip_titles(value)
    elif isinstance(node, list):
        for item in node:
            _strip_titles(item)


def ok(text: str) -> str:
    """``ok: <text>`` — the success prefix every tool result carries."""
    return text if text.startswith("ok:") else f"ok: {text}"


def cap_text(text: str, limit: int, hint: str = "") -> str:
    """Cut ``text`` to about ``limit`` characters, keeping the head, with a note saying so.

    ``hint`` tells the model how to see the rest (e.g. "read with offset=200").
    """
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    if cut < limit // 2:
        cut = limit
    omitted = len(text) - cut
    note = f"\n[... {omitted} more characters cut"
    note += f"; {hint}]" if hint else "]"
    return text[:cut] + note


def cap_head_tail(text: str, limit: int) -> str:
    """Cut ``text`` to about ``limit`` characters keeping its start and (mostly) its end.

    For command output, where the end (the error, the summary) matters most.
    """
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[-tail:]}"
