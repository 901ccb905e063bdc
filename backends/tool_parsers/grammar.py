"""GBNF grammars that constrain tool calls to a family's own format, built from the tools' JSON schemas.

``tool_call_grammar(tools, family, tool_choice, forced)`` returns the grammar and the text
that triggers it. With ``forced`` (``tool_choice`` ``"required"`` or a named function) the
grammar covers the whole answer: exactly one call. Otherwise it is meant to be lazy: it
starts at the trigger (the family's call opener) and allows one or more calls, leaving plain
answers free. JSON arguments follow each tool's schema (llama-cpp-python's
``SchemaConverter``); the XML families write string parameters as raw text (anything up to
the closing tag) and other parameters as JSON values of their schema type.

Every grammar is checked by parsing what it makes the model write with the family's parser
(``tests/test_grammar.py``, the demo GGUF).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from localcode.backends.base import ToolSchema
from localcode.errors import ConfigError


def lit(text: str) -> str:
    """A GBNF string literal."""
    return json.dumps(text, ensure_ascii=False)


@dataclass
class _Tool:
    index: int
    name: str
    schema: dict[str, Any]


class _Builder:
    """Collects rules: the schema converter's, and raw-text rules for XML string values."""

    def __init__(self) -> None:
        from llama_cpp.llama_grammar import SchemaConverter

        self.conv = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self.text_rules: dict[str, tuple[str, str]] = {}
        """closing text and length limit -> (rule name, rule) for raw-text values."""

    def json_value(self, schema: Any, name: str) -> str:
        schema = schema if isinstance(schema, dict) else {}
        return self.conv.visit(self.conv.resolve_refs(json.loads(json.dumps(schema)), name), name)

    def args(self, tool: _Tool) -> str:
        """A JSON object of the tool's arguments."""
        return self.json_value(tool.schema, f"tool{tool.index}-args")

    def until(self, close: str, max_length: Any = None) -> str:
        """A rule for raw text that does not contain ``close`` (at most ``max_length`` pieces)."""
        n = max_length if isinstance(max_length, int) and max_length >= 0 else None
        key = f"{close}\0{n}"
        if key not in self.text_rules:
            name = f"text-until-{len(self.text_rules)}"
            alts = [f"{lit(close[:k])} [^{_cls(close[k])}]" if k else f"[^{_cls(close[0])}]"
                    for k in range(len(close))]
            rep = "*" if n is None else f"{{0,{n}}}"
            self.text_rules[key] = (name, f"{name} ::= ({' | '.join(alts)}){rep}")
        return self.text_rules[key][0]

    def xml_params(self, tool: _Tool, element: Callable[[str, str], tuple[str, str]]) -> str:
        """The tool's parameters as elements: required ones in schema order, then optional ones.

        ``element(key, close_tag)`` gives the text before the value and the closing text.
        """
        props = tool.schema.get("properties") or {}
        required = [k for k in tool.schema.get("required") or [] if k in props]
        parts: list[str] = []
        for key in [*required, *[k for k in props if k not in required]]:
            before, after = element(key, "")
            prop = props.get(key) if isinstance(props.get(key), dict) else {}
            types = prop.get("type")
            is_text = types == "string" or (isinstance(types, list) and "string" in types) or not prop
            if is_text and isinstance(prop.get("enum"), list) and prop["enum"]:
                value = "(" + " | ".join(lit(str(v)) for v in prop["enum"]) + ")"
            elif is_text:
                value = self.until(after, prop.get("maxLength"))
            else:
                value = self.json_value(prop, f"tool{tool.index}-{key}")
            piece = f"{lit(before)} {value} {lit(after)}"
            parts.append(piece if key in required else f"({piece})?")
        return " ".join(parts) if parts else '""'

    def text(self, root: str, alts: dict[str, str]) -> str:
        lines = [root] + [f"{k} ::= {v}" for k, v in alts.items()]
        lines += [rule for _, rule in self.text_rules.values()]
        lines.append(self.conv.format_grammar())
        return "\n".join(lines) + "\n"


def _cls(ch: str) -> str:
    """A character for a GBNF ``[...]`` class."""
    return {"\n": "\\n", "\t": "\\t", "\\": "\\\\", "]": "\\]", "^": "\\^", "-": "\\-", "[": "\\["}.get(ch, ch)


@dataclass(frozen=True)
class _Format:
    """How a family writes calls: one call, and the text around a group of calls."""

    call: Callable[[_Builder, _Tool], str]
    """The GBNF of one call of ``tool``."""
    trigger: str
    """Text that starts the calls (the lazy grammar's trigger; also the start of ``open``/the call)."""
    open: str = ""
    close: str = ""
    sep: str = "\n"
    single: bool = False
    """Only one call per answer."""


def _json_call(head: Callable[[_Tool], str], tail: str) -> Callable[[_Builder, _Tool], str]:
    return lambda b, t: f"{lit(head(t))} {b.args(t)} {lit(tail)}"


def _xml_call(head: Callable[[_Tool], str], element: Callable[[str], tuple[str, str]],
              tail: str) -> Callable[[_Builder, _Tool], str]:
    """A call written as ``head``, one element per parameter, ``tail``."""
    return lambda b, t: " ".join([lit(head(t)), b.xml_params(t, lambda k, _: element(k)), lit(tail)])


_FORMATS: dict[str, _Format] = {
    "hermes": _Format(_json_call(lambda t: f'<tool_call>\n{{"name": {json.dumps(t.name)}, "arguments": ', "}\n</tool_call>"),
                      "<tool_call>"),
    "qwen3_coder": _Format(_xml_call(lambda t: f"<tool_call>\n<function={t.name}>\n",
                                     lambda k: (f"<parameter={k}>\n", "\n</parameter>\n"), "</function>\n</tool_call>"),
                           "<tool_call>"),
    "glm45": _Format(_xml_call(lambda t: f"<tool_call>{t.name}\n",
                               lambda k: (f"<arg_key>{k}</arg_key>\n<arg_value>", "</arg_value>\n"), "</tool_call>"),
                     "<tool_call>"),
    "minimax_m2": _Format(_xml_call(lambda t: f'<invoke name="{t.name}">\n',
                                    lambda k: (f'<parameter name="{k}">', "</parameter>\n"), "</invoke>"),
                          "<minimax:tool_call>", open="<minimax:tool_call>\n", close="\n</minimax:tool_call>"),
    "kimi_k2": _Format(_json_call(lambda t: f"<|tool_call_begin|>functions.{t.name}:{t.index}<|tool_call_argument_begin|>",
                                  "<|tool_call_end|>"),
                       "<|tool_calls_section_begin|>", open="<|tool_calls_section_begin|>",
                       close="<|tool_calls_section_end|>", sep=""),
    "deepseek_v3": _Format(_json_call(lambda t: f"<｜tool▁call▁begin｜>{t.name}<｜tool▁sep｜>", "<｜tool▁call▁end｜>"),
                           "<｜tool▁calls▁begin｜>", open="<｜tool▁calls▁begin｜>", close="<｜tool▁calls▁end｜>"),
    "deepseek_r1": _Format(_json_call(lambda t: f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{t.name}\n```json\n",
                                      "\n```<｜tool▁call▁end｜>"),
                           "<｜tool▁calls▁begin｜>", open="<｜tool▁calls▁begin｜>", close="<｜tool▁calls▁end｜>"),
    "mistral": _Format(_json_call(lambda t: f"[TOOL_CALLS]{t.name}[ARGS]", ""), "[TOOL_CALLS]", sep=""),
    "llama3": _Format(_json_call(lambda t: f'{{"name": {json.dumps(t.name)}, "parameters": ', "}"), '{"name": ',
                      single=True),
    "harmony": _Format(_json_call(lambda t: f"<|channel|>commentary to=functions.{t.name} <|constrain|>json<|message|>", ""),
                       "<|channel|>commentary to=", single=True),
}
_FORMATS["generic"] = _FORMATS["hermes"]

GRAMMAR_FAMILIES: tuple[str, ...] = tuple(_FORMATS)
"""Families with a grammar (the others raise ``ConfigError`` when a grammar is asked for)."""


def tool_call_grammar(tools: Sequence[ToolSchema], family: str, tool_choice: Any = "auto",
                      forced: bool = False) -> tuple[str, str]:
    """A GBNF grammar for ``family``'s tool calls and its trigger text.

    ``forced`` allows exactly one call (the whole answer); otherwise one or more calls (the
    grammar is lazy and starts at the trigger). A named ``tool_choice`` restricts the grammar
    to that function. Raises ``ConfigError`` for a family without a grammar or a named
    function that is not among ``tools``.
    """
    fmt = _FORMATS.get(family)
    if fmt is None:
        raise ConfigError(
            f"tool_call_grammar is not available for the '{family}' tool-call format "
            f"(grammars exist for {', '.join(GRAMMAR_FAMILIES)}): set tool_call_grammar false for this agent"
        )
    wanted = None
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    selected = []
    for i, tool in enumerate(tools):
        fn = tool.get("function", tool)
        if wanted and fn["name"] != wanted:
            continue
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        selected.append(_Tool(i, fn["name"], schema if isinstance(schema, dict) else {}))
    if not selected:
        raise ConfigError(f"tool_choice names '{wanted}', which is not among the request's tools")
    b = _Builder()
    alts = {"call": " | ".join(f"call{t.index}" for t in selected)}
    alts.update({f"call{t.index}": fmt.call(b, t) for t in selected})
    calls = "call" if forced or fmt.single else f"call ({lit(fmt.sep)} call)*" if fmt.sep else "call+"
    body = f"{lit(fmt.open)} {calls} {lit(fmt.close)}" if fmt.open or fmt.close else calls
    return b.text(f"root ::= {body}", alts), fmt.trigger
