"""Render a model's own chat template (Jinja, as in its GGUF or HF tokenizer config).

``ChatTemplate(source, bos_token, eos_token)`` renders OpenAI-shaped messages and tools the
way Hugging Face transformers does (a sandboxed Jinja environment with ``tojson``,
``raise_exception``, ``strftime_now`` and the ``{% generation %}`` tag), plus the
adaptations llama.cpp makes so that real templates accept an agent's conversation:

- tool-call arguments arrive as JSON text (OpenAI shape); templates that need a mapping
  (``arguments|items``, ``arguments|tojson``) get the parsed dict (probed once per template);
- ``reasoning_content`` is also passed as ``thinking`` (gpt-oss reads that name);
- tool-call ids are mapped to 9 alphanumerics for templates that demand it (Mistral),
  deterministically, so a re-rendered history stays token-identical;
- templates without a system role get the system text merged into the first user turn;
  templates that cannot show tools, tool calls or tool results get them as text
  (a tool list in the system prompt, ``<tool_call>`` JSON, and user turns with the result),
  and their family is ``generic``;
- ``think`` / ``think_level`` become whichever switches the template reads
  (``enable_thinking``, ``thinking``, ``reasoning_effort``, ``thinking_mode``, ...).

A template that fails to render raises ``ModelError`` with one line saying why; a template
that does not compile raises ``ConfigError``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localcode.backends.base import Message, ToolSchema
from localcode.backends.tool_parsers import ToolCallParser, detect_family, get_parser
from localcode.errors import ConfigError, ModelError

__all__ = ["ChatTemplate", "TemplateCaps"]

THINK_SWITCHES: tuple[str, ...] = (
    "enable_thinking", "thinking", "reasoning_effort", "thinking_mode", "thinking_budget",
    "thinking_option", "thinking_effort", "reasoning", "reasoning_strength",
)
"""Template variables that ``think`` / ``think_level`` may set (when the template reads them)."""


class _TemplateRaised(Exception):
    """``raise_exception(...)`` called by the template itself."""


class _GenerationTag(Extension):
    """HF's ``{% generation %}...{% endgeneration %}`` (marks assistant text for training): renders its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _TemplateSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, except that lists and dicts the template builds may grow.

    Real templates (Kimi-K2-Thinking, ...) call ``list.append``/``pop``; llama.cpp's Jinja
    engine allows it. The caller's messages are deep-copied before rendering, so this
    cannot change them; attribute access to Python internals stays blocked.
    """

    _ALLOWED = frozenset({"append", "pop", "extend", "insert", "update", "setdefault"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, (list, dict)) and attr in self._ALLOWED:
            return True
        return super().is_safe_attribute(obj, attr, value)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """HF-compatible ``tojson``: no HTML escaping, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


class TemplateCaps:
    """What a template can show natively, found by rendering small probe conversations."""

    def __init__(self, *, system_role: bool, tools: bool, tool_calls: bool, tool_role: bool,
                 object_arguments: bool, nine_char_ids: bool, null_content_calls: bool = False) -> None:
        self.system_role = system_role
        """A system message is rendered (else it is merged into the first user turn)."""
        self.tools = tools
        """Tool schemas passed as ``tools`` appear in the prompt."""
        self.tool_calls = tool_calls
        """Assistant ``tool_calls`` appear in the prompt."""
        self.tool_role = tool_role
        """``role: tool`` messages appear in the prompt."""
        self.object_arguments = object_arguments
        """Tool-call arguments must be passed as a mapping, not JSON text."""
        self.nine_char_ids = nine_char_ids
        """Tool-call ids must be 9 alphanumerics (Mistral)."""
        self.null_content_calls = null_content_calls
        """Calls are shown only when the assistant message's content is null (R1-Distill-Llama)."""

    def __repr__(self) -> str:
        return "TemplateCaps(" + ", ".join(f"{k}={v}" for k, v in vars(self).items()) + ")"


_NEEDLE_ARGS = {"argument_needle": "print('Hello, World!')"}
_PROBE_TOOL: ToolSchema = {
    "type": "function",
    "function": {
        "name": "probe_tool_needle",
        "description": "A probe.",
        # The schema names a different property than the probe call uses, so that finding the
        # argument in the output proves the call (not the tool list) was rendered.
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    },
}


class ChatTemplate:
    """A compiled chat template that renders OpenAI-shaped conversations into a prompt."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "", name: str | None = None,
                 now: datetime | None = None) -> None:
        """Compile ``source``. Raises ``ConfigError`` when it is not valid Jinja.

        ``now`` fixes the date templates print (default: when the template was created, so a
        long run renders every turn identically and the prompt cache keeps matching).
        """
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.name = name or "chat template"
        self._now = now or datetime.now()
        env = _TemplateSandbox(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols", _GenerationTag],
            undefined=jinja2.Undefined,
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = self._strftime_now
        try:
            ast = env.parse(source)
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"{self.name} is not a valid Jinja template (line {e.lineno}: {e.message}): "
                              "fix the template file or use another one") from None
        self.variables: frozenset[str] = frozenset(jinja2.meta.find_undeclared_variables(ast))
        """Top-level variables the template reads (the switches it accepts)."""

    @classmethod
    def from_file(cls, path: str | Path, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
        """Load a template file. Raises ``ConfigError`` when it is missing or invalid."""
        p = Path(path).expanduser()
        try:
            source = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read chat template {p}: {e.strerror}: check the path") from None
        return cls(source, bos_token=bos_token, eos_token=eos_token, name=p.name)

    def _strftime_now(self, fmt: str) -> str:
        return self._now.strftime(fmt)

    # -- what the template is
    @cached_property
    def caps(self) -> TemplateCaps:
        """Capabilities found by probing (computed once)."""
        return self._probe()

    @cached_property
    def family(self) -> str:
        """The tool-call family (see ``tool_parsers.detect_family``).

        A template that cannot show calls gets them written as text into the history: in its
        family's own format when that family has one (granite-3.3, LFM2.5-Instruct), else as
        ``<tool_call>`` JSON (family ``generic``).
        """
        detected = detect_family(self.source)
        if self.caps.tool_calls or get_parser(detected).render_calls([]) is not None:
            return detected
        return "generic"

    @cached_property
    def parser(self) -> ToolCallParser:
        """The parser for what this template's model generates."""
        return get_parser(self.family)  # type: ignore[return-value]

    @property
    def think_switches(self) -> list[str]:
        """The thinking switches this template reads."""
        return [v for v in THINK_SWITCHES if v in self.variables]

    def opens_reasoning(self, prompt: str) -> bool:
        """Whether ``prompt`` ends inside an opened reasoning block (generation starts as reasoning)."""
        tail = prompt.rstrip()
        return any(tail.endswith(open_) for open_, _ in self.parser.reasoning_tags)

    def generation_prompt(self, messages: Sequence[Message] | None = None, **kwargs: Any) -> str:
        """What ``add_generation_prompt`` appends (e.g. ``<|im_start|>assistant\\n<think>\\n``)."""
        msgs = list(messages or [{"role": "user", "content": "Hi"}])
        with_gp = self.render(msgs, add_generation_prompt=True, **kwargs)
        without = self.render(msgs, add_generation_prompt=False, **kwargs)
        n = 0
        while n < min(len(with_gp), len(without)) and with_gp[n] == without[n]:
            n += 1
        return with_gp[n:]

    # -- rendering
    def render(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema] | None = None,
        add_generation_prompt: bool = True,
        think: bool | None = None,
        think_level: str | None = None,
        extra_kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """The prompt text for ``messages`` (OpenAI shape) and ``tools``.

        ``think``/``think_level`` set the template's thinking switches; ``extra_kwargs`` (the
        agent's ``chat_template_kwargs``) are passed last and win. Raises ``ModelError``.
        """
        caps = self.caps
        msgs = self._prepare(messages, tools, caps)
        ctx = self._base_context(tools if caps.tools else None)
        ctx.update(self._think_kwargs(think, think_level))
        ctx.update(extra_kwargs or {})
        return self._render(msgs, add_generation_prompt, ctx)

    def _base_context(self, tools: Sequence[ToolSchema] | None) -> dict[str, Any]:
        """Variables llama.cpp passes besides messages: dates, and ``functions`` (firefunction)."""
        ctx: dict[str, Any] = {"bos_token": self.bos_token, "eos_token": self.eos_token}
        if "date_string" in self.variables:
            ctx["date_string"] = self._now.strftime("%d %b %Y")
        if "datetime" in self.variables:
            ctx["datetime"] = self._now.strftime("%b %d %Y")
        if "functions" in self.variables:
            ctx["functions"] = json.dumps([t.get("function", t) for t in tools or ()], ensure_ascii=False, indent=2)
        if tools:
            ctx["tools"] = list(tools)
        return ctx

    def _render(self, messages: list[Message], add_generation_prompt: bool, ctx: Mapping[str, Any]) -> str:
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, **ctx)
        except _TemplateRaised as e:
            raise ModelError(f"{self.name} refused the conversation: {e}") from None
        except jinja2.TemplateError as e:
            raise ModelError(f"{self.name} failed to render: {type(e).__name__}: {e}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError) as e:
            raise ModelError(f"{self.name} failed to render: {type(e).__name__}: {e}") from None

    def _think_kwargs(self, think: bool | None, level: str | None) -> dict[str, Any]:
        v, out = self.variables, {}
        if think is not None:
            for name in ("enable_thinking", "thinking", "reasoning"):
                if name in v:
                    out[name] = think
            if "thinking_mode" in v:
                out["thinking_mode"] = "enabled" if think else "disabled"
            if "thinking_option" in v:
                out["thinking_option"] = "on" if think else "off"
            if "thinking_budget" in v and not think:
                out["thinking_budget"] = 0
            if not think and "reasoning_effort" in v and level is None:
                # Templates that can switch reasoning off through the effort name it so.
                if "'no_think'" in self.source:
                    out["reasoning_effort"] = "no_think"
                elif '"none"' in self.source and "reasoning_effort" in self.source:
                    out["reasoning_effort"] = "none"
                elif "<|channel|>" in self.source:
                    out["reasoning_effort"] = "low"  # gpt-oss cannot turn reasoning off
        if level is not None and (think is None or think):
            for name in ("reasoning_effort", "thinking_effort", "reasoning_strength"):
                if name in v:
                    out[name] = level
        return out

    # -- message preparation
    def _prepare(self, messages: Sequence[Message], tools: Sequence[ToolSchema] | None,
                 caps: TemplateCaps) -> list[Message]:
        msgs: list[Message] = [dict(m) for m in copy.deepcopy(list(messages))]
        polyfill_calls = not caps.tool_calls
        for m in msgs:
            if m.get("role") == "developer":
                m["role"] = "system"
            if m.get("reasoning_content") and "thinking" not in m:
                m["thinking"] = m["reasoning_content"]
            calls = m.get("tool_calls")
            if calls:
                if caps.null_content_calls and not polyfill_calls and not m.get("content"):
                    m["content"] = None
                elif m.get("content") is None:
                    m["content"] = ""
                new_calls = []
                for c in calls:
                    c = dict(c)
                    fn = dict(c.get("function") or {})
                    args = fn.get("arguments", {})
                    if caps.object_arguments and isinstance(args, str):
                        try:
                            args = json.loads(args) if args.strip() else {}
                        except ValueError:
                            pass  # shown as text; the template decides
                    fn["arguments"] = args
                    c["function"] = fn
                    c.setdefault("type", "function")
                    if caps.nine_char_ids and "id" in c:
                        c["id"] = _nine_char_id(str(c["id"]))
                    new_calls.append(c)
                m["tool_calls"] = new_calls
                if polyfill_calls:
                    pairs = [(str(c["function"].get("name")), _as_obj(c["function"].get("arguments")))
                             for c in new_calls]
                    text = self.parser.render_calls(
                        [(n, a if isinstance(a, dict) else {}) for n, a in pairs]) or ""
                    m["content"] = ((m.get("content") or "") + "\n" + text).strip()
                    del m["tool_calls"]
            if m.get("role") == "tool" and caps.nine_char_ids and "tool_call_id" in m:
                m["tool_call_id"] = _nine_char_id(str(m["tool_call_id"]))
        if not caps.tool_role:
            for m in msgs:
                if m.get("role") == "tool":
                    m["role"] = "user"
                    m["content"] = "<tool_response>\n" + _text_of(m.get("content")) + "\n</tool_response>"
                    m.pop("tool_call_id", None)
                    m.pop("name", None)
            msgs = _merge_consecutive_users(msgs)
        if tools and not caps.tools:
            text = _tools_prompt(tools, self.family)
            if msgs and msgs[0].get("role") == "system":
                msgs[0]["content"] = _text_of(msgs[0].get("content")) + "\n\n" + text
            else:
                msgs.insert(0, {"role": "system", "content": text})
        if not caps.system_role and msgs and msgs[0].get("role") == "system":
            system = _text_of(msgs.pop(0).get("content"))
            if msgs and msgs[0].get("role") == "user":
                msgs[0]["content"] = system + "\n\n" + _text_of(msgs[0].get("content"))
            else:
                msgs.insert(0, {"role": "user", "content": system})
        return msgs

    def _try(self, messages: list[Message], tools: Sequence[ToolSchema] | None = None,
             add_generation_prompt: bool = False) -> str | None:
        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         **self._base_context(tools))
        except Exception:  # noqa: BLE001 - probing: any failure means "not supported"
            return None

    def _probe(self) -> TemplateCaps:
        user = {"role": "user", "content": "Hey"}
        out = self._try([{"role": "system", "content": "system_needle"}, user])
        system_role = out is not None and "system_needle" in out
        out = self._try([user], tools=[_PROBE_TOOL])
        tools = out is not None and "probe_tool_needle" in out
        nine = "length 9" in self.source

        def call_msg(args: Any, content: str | None = "") -> list[Message]:
            call_id = "call12345" if nine else "call_probe_1"
            return [user, {"role": "assistant", "content": content, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "probe_tool_needle", "arguments": args}}]}]

        def renders_args(text: str | None) -> bool:
            return text is not None and "argument_needle" in text and '\\"argument_needle' not in text \
                and "'argument_needle'" not in text

        null_content = False
        as_str = self._try(call_msg(json.dumps(_NEEDLE_ARGS)), tools=[_PROBE_TOOL])
        as_obj = self._try(call_msg(dict(_NEEDLE_ARGS)), tools=[_PROBE_TOOL])
        str_ok, obj_ok = renders_args(as_str), renders_args(as_obj)
        if not (str_ok or obj_ok):
            as_str = self._try(call_msg(json.dumps(_NEEDLE_ARGS), None), tools=[_PROBE_TOOL])
            as_obj = self._try(call_msg(dict(_NEEDLE_ARGS), None), tools=[_PROBE_TOOL])
            str_ok, obj_ok = renders_args(as_str), renders_args(as_obj)
            null_content = str_ok or obj_ok
        tool_calls = str_ok or obj_ok
        # Both forms render: the mapping where the family's own syntax comes from it (Gemma 4, Kimi-K3).
        object_arguments = obj_ok and (not str_ok or get_parser(detect_family(self.source)).object_arguments)
        probe = call_msg(dict(_NEEDLE_ARGS) if object_arguments else json.dumps(_NEEDLE_ARGS),
                         None if null_content else "")
        probe.append({"role": "tool", "tool_call_id": probe[1]["tool_calls"][0]["id"], "name": "probe_tool_needle",
                      "content": "tool_result_needle"})
        out = self._try(probe, tools=[_PROBE_TOOL], add_generation_prompt=True) if tool_calls else None
        tool_role = out is not None and "tool_result_needle" in out
        if not tool_calls:
            # Calls will be shown as assistant text; can a tool turn follow such a turn?
            out = self._try([user, {"role": "assistant", "content": "Calling."},
                             {"role": "tool", "tool_call_id": "call12345", "content": "tool_result_needle"}],
                            tools=[_PROBE_TOOL], add_generation_prompt=True)
            tool_role = out is not None and "tool_result_needle" in out
        return TemplateCaps(system_role=system_role, tools=tools, tool_calls=tool_calls, tool_role=tool_role,
                            object_arguments=object_arguments, nine_char_ids=nine, null_content_calls=null_content)


def _nine_char_id(call_id: str) -> str:
    if len(call_id) == 9 and call_id.isalnum():
        return call_id
    digest = int(hashlib.sha256(call_id.encode()).hexdigest(), 16)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    out = []
    for _ in range(9):
        digest, r = divmod(digest, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


def _as_obj(args: Any) -> Any:
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return args
    return args


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _merge_consecutive_users(msgs: list[Message]) -> list[Message]:
    out: list[Message] = []
    for m in msgs:
        if out and m.get("role") == "user" and out[-1].get("role") == "user":
            out[-1] = {**out[-1], "content": _text_of(out[-1].get("content")) + "\n\n" + _text_of(m.get("content"))}
        else:
            out.append(m)
    return out


_CALL_FORMATS = {
    "deepseek_v3": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>TOOL_NAME<｜tool▁sep｜>ARGUMENTS_AS_JSON"
                   "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "deepseek_r1": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>TOOL_NAME\n```json\n"
                   "ARGUMENTS_AS_JSON\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
}
"""How to write a call, for templates that render calls natively but not the tool list."""


def _tools_prompt(tools: Sequence[ToolSchema], family: str) -> str:
    listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    fmt = _CALL_FORMATS.get(family, '<tool_call>{"name": "TOOL_NAME", "arguments": ARGUMENTS_AS_JSON}</tool_call>')
    return (
        "## Tools\nYou can call these tools (JSON schemas):\n" + listing + "\n\n"
        "To call a tool, write exactly (one per call):\n" + fmt
    )
