"""Prompt files and their placeholders.

Prompts live in ``prompts/`` (shipped as package data). A config's ``prompt`` and
``prompt_overlays`` name a file there (``system`` or ``system.md``), a file path, or hold
inline text. Placeholders:

- ``{{TOOLS}}``: the tool names the model sees, comma-separated;
- ``{{tool:NAME}}``: the name the model sees for tool ``NAME`` (``{{tool:read}}`` →
  ``read_file`` under ``tool_name_style: alias``);
- ``{{name}}``: a value passed by the caller (``{{problem}}`` in the format-error message).

Unknown placeholders stay as they are, so prompts may quote ``{{`` in code examples.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from localcode import paths
from localcode.errors import ConfigError

DEFAULT_SYSTEM_PROMPT = "system"
"""The prompt file used when a config names none."""

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)(?::\s*([\w.-]+))?\s*\}\}")


def prompts_dir() -> Path:
    """The folder of shipped prompt files."""
    return paths.package_dir("prompts")


def prompt_file(name: str) -> Path | None:
    """The file ``name`` names under ``prompts/`` (``.md`` optional, a leading ``prompts/`` allowed), or None."""
    name = name.removeprefix("prompts/")
    if "\n" in name or "/" in name or "\\" in name or not name.strip():
        return None
    base = prompts_dir()
    for candidate in (base / name, base / f"{name}.md"):
        if candidate.is_file():
            return candidate
    return None


def looks_like_file(spec: str) -> bool:
    """One line ending in ``.md``/``.txt``/``.jinja``/``.prompt``: meant as a file, never as prompt text."""
    return re.fullmatch(r"\S+\.(md|txt|jinja|prompt)", spec.strip()) is not None


def config_prompt_dirs(config_file: Path) -> list[Path]:
    """Where a config's relative prompt paths are looked up first: its folder and the two above it.

    The original tool's layout is ``<root>/agents/<kind>/<name>.json`` naming ``prompts/<file>.txt``
    relative to ``<root>``, so a copy of its ``agents/`` and ``prompts/`` folders works anywhere.
    """
    folder = config_file.resolve().parent
    return [folder, folder.parent, folder.parent.parent]


def find_config_prompt(spec: str, config_file: Path) -> Path | None:
    """The file a config's ``prompt`` (or overlay) names next to ``config_file``, or None.

    None also for shipped prompt names, absolute paths and inline text: ``load_prompt`` reads those.
    """
    if "\n" in spec or not spec.strip() or len(spec) >= 4096 or Path(spec).expanduser().is_absolute():
        return None
    for base in config_prompt_dirs(config_file):
        candidate = base / spec
        if candidate.is_file():
            return candidate
    return None


def load_prompt(spec: str) -> str:
    """The text ``spec`` stands for: a prompt file name, a file path, or inline text.

    A spec that looks like a file name (one line ending in ``.md``/``.txt``/``.jinja``)
    but names no file is a ``ConfigError`` rather than being sent to the model as text.
    """
    found = prompt_file(spec)
    if found is not None:
        return found.read_text(encoding="utf-8")
    one_line = "\n" not in spec and len(spec) < 4096
    if one_line:
        path = Path(spec).expanduser()
        try:
            if path.is_file():
                return path.read_text(encoding="utf-8")
        except OSError:
            pass
        if looks_like_file(spec):
            raise ConfigError(
                f"prompt file '{spec}' not found in {prompts_dir()} or as a path: "
                "fix the config's prompt/prompt_overlays or give the text inline"
            )
    return spec


def render(text: str, tool_names: Mapping[str, str] | None = None, exposed: list[str] | None = None,
           **values: object) -> str:
    """Substitute the placeholders of ``text``.

    ``tool_names`` maps canonical tool names (and aliases) to the names the model sees;
    ``exposed`` is the ordered list for ``{{TOOLS}}``. A ``{{tool:NAME}}`` for a tool
    that is not exposed becomes ``NAME``.
    """
    names = tool_names or {}

    def sub(m: re.Match[str]) -> str:
        key, arg = m.group(1), m.group(2)
        if arg is not None:
            return names.get(arg, arg) if key == "tool" else m.group(0)
        if key == "TOOLS" and exposed is not None:
            return ", ".join(exposed)
        if key in values:
            return str(values[key])
        return m.group(0)

    return _PLACEHOLDER.sub(sub, text)


def render_file(name: str, tool_names: Mapping[str, str] | None = None, exposed: list[str] | None = None,
                **values: object) -> str:
    """``render`` applied to the shipped prompt file ``name``, stripped."""
    return render(load_prompt(name), tool_names, exposed, **values).strip()


def system_prompt(
    prompt: str | None,
    overlays: list[str],
    tool_names: Mapping[str, str],
    exposed: list[str],
    sections: Sequence[str] = (),
) -> str:
    """The full system prompt: the base prompt, each overlay, then ``sections``.

    ``sections`` are already-rendered extras (the phase hint, the flow stage) in order;
    empty ones are skipped.
    """
    parts = [render(load_prompt(prompt or DEFAULT_SYSTEM_PROMPT), tool_names, exposed).strip()]
    parts += [render(load_prompt(o), tool_names, exposed).strip() for o in overlays]
    parts += [render(s, tool_names, exposed).strip() for s in sections if s and s.strip()]
    return "\n\n".join(p for p in parts if p)
