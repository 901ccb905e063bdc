"""Tool-call and reasoning parsing of generated text, per model family.

A local model writes its tool calls as text in its own family's format; this module turns
that text back into OpenAI-shaped results::

    family = detect_family(template_source)      # e.g. "qwen3_coder", from the chat template
    parser = get_parser(family)
    out = parser.parse(text, starts_in_reasoning=prompt_opened_think, tools=tools)
    out.content, out.reasoning, out.tool_calls, out.malformed

    s = parser.stream(starts_in_reasoning=..., tools=tools)   # incremental, for streaming
    for delta in generated: events = s.feed(delta)             # content/reasoning/tool_call
    out = s.finish()                                            # == parser.parse(full_text)

Both paths run the same state machine, so a stream's final result equals one-shot parsing
of the whole text, whatever the chunking. Content and reasoning deltas are emitted as soon as
they are certain: only a suffix that could be the start of a marker is held back; a tool
call is emitted when its block is complete. A call that cannot be parsed (bad JSON, an
unclosed block) lands in ``malformed`` with its raw text and the error: never dropped, never
turned into content. Parsing never raises.

``parser.stop_sequences`` lists the strings generation must stop at for that family
(llama.cpp removes them from the output; the parsers accept text with or without them).

The formats were checked against the real chat templates in llama.cpp's
``models/templates`` and its reference parsers (``common/chat*.cpp``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, Field

from localcode.backends.base import MalformedToolCall, StreamEvent, ToolCall, ToolSchema

__all__ = [
    "FAMILIES",
    "ParsedOutput",
    "ToolCallParser",
    "StreamParser",
    "detect_family",
    "get_parser",
]


class ParsedOutput(BaseModel):
    """Generated text split into what the user sees, the reasoning and the tool calls."""

    content: str = ""
    """The visible answer, with tool-call blocks and reasoning removed (stripped)."""
    reasoning: str = ""
    """Text from ``<think>`` blocks, Harmony analysis channels and the like (stripped)."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Well-formed calls; ``arguments`` is JSON text."""
    malformed: list[MalformedToolCall] = Field(default_factory=list)
    """Text that was meant as a tool call but could not be parsed, with the reason."""


# ---------------------------------------------------------------------------------------------
# Family detection


def detect_family(template_source: str) -> str:
    """The tool-call family of a chat template, from markers in its source.

    Returns one of ``FAMILIES``; ``"generic"`` when no known format is found (the parser then
    accepts ``<tool_call>`` JSON, a bare JSON call or a fenced JSON call).
    """
    s = template_source
    if "<|channel|>" in s:
        return "harmony"
    if "<|tool_calls_section_begin|>" in s and "<|tool_call_begin|>" in s:
        return "kimi_k2"
    if "<|open|>" in s and "<|end_of_msg|>" in s:
        return "kimi_k3"
    if "dsml_token" in s and "DSML" in s:
        return "deepseek_dsml"
    if "<｜tool▁sep｜>" in s or "<｜tool▁calls▁begin｜>" in s:
        if "```json" in s and "function<｜tool▁sep｜>" in s:
            return "deepseek_r1"
        return "deepseek_v3"
    if "]<]minimax[>[" in s:
        return "minimax_m3"
    if "<minimax:tool_call>" in s or "minimax:tool_call" in s:
        return "minimax_m2"
    if "<arg_key>" in s and "<arg_value>" in s:
        return "glm45"
    if "<seed:tool_call>" in s:
        return "seed_oss"
    if "'<|tool_call>call:'" in s:
        return "gemma4"
    if "<tool_call>" in s and "<function=" in s and "<parameter=" in s:
        return "qwen3_coder"
    if "[TOOL_CALLS]" in s:
        return "mistral"
    if ">>>all" in s:
        return "functionary_v3_2"
    if "<function=" in s and "<|python_tag|>" in s:
        return "functionary_v3_1"
    if " functools[" in s:
        return "firefunction_v2"
    if "<|tool_call_start|>" in s or "List of tools: [" in s:
        return "lfm2"
    if "<|tool_call|>" in s:
        return "granite"
    if "<TOOLCALL>" in s:
        return "nemotron_v2"
    if "<|START_ACTION|>" in s:
        return "command_r"
    if "<tool_calls>" in s:
        return "tool_calls_json"
    if "<|tool_call:begin|>" in s:
        return "solar"
    if "<function name=\"" in s and "<param name=\"" in s:
        return "minicpm5"
    if "<tool_call>" in s:
        return "hermes"
    if "<|python_tag|>" in s or ("<|start_header_id|>" in s and '"parameters"' in s):
        return "llama3"
    return "generic"


# ---------------------------------------------------------------------------------------------
# Value conversion helpers shared by the XML-ish formats


def _tool_properties(tools: Sequence[ToolSchema] | None, name: str) -> dict[str, Any]:
    for tool in tools or ():
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(fn, dict) and fn.get("name") == name:
            params = fn.get("parameters") or {}
            props = params.get("properties") if isinstance(params, dict) else None
            return props if isinstance(props, dict) else {}
    return {}


def _schema_types(prop: Any) -> set[str]:
    if not isinstance(prop, dict):
        return set()
    t = prop.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    types: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for sub in prop.get(key) or ():
            types |= _schema_types(sub)
    return types


def _coerce_value(text: str, prop: Any) -> Any:
    """A parameter value written as plain text, converted with the schema's type when known."""
    types = _schema_types(prop)
    if types == {"string"} or (not types and prop and isinstance(prop, dict) and "enum" in prop):
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if not types:
        # Without a schema, only structured values and literals are taken as JSON.
        return value
    if "string" in types and not isinstance(value, (dict, list)) and not (
        ({"integer", "number"} & types and isinstance(value, (int, float)) and not isinstance(value, bool))
        or ("boolean" in types and isinstance(value, bool))
        or ("null" in types and value is None)
    ):
        return text
    return value


def _args_json(args: Any) -> str:
    return json.dumps(args, ensure_ascii=False)


class _NotACall(Exception):
    """The block turned out not to be a tool call after all: keep its text as content."""


@dataclass
class _BlockResult:
    calls: list[ToolCall] = field(default_factory=list)
    malformed: list[MalformedToolCall] = field(default_factory=list)


BlockFn = Callable[[str, Sequence[ToolSchema] | None], list[ToolCall]]
"""Parses the text inside one block into calls; raises ValueError (malformed) or _NotACall."""


def _call_from_obj(obj: Any) -> ToolCall:
    """A call from ``{"name", "arguments"|"parameters"}`` (or OpenAI's ``{"function": {...}}``)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object with name and arguments, got {type(obj).__name__}")
    if isinstance(obj.get("function"), dict):
        obj = {**obj["function"], **({"id": obj["id"]} if "id" in obj else {})}
    name = obj.get("name", obj.get("tool_name"))
    if not isinstance(name, str) or not name:
        raise ValueError("tool call has no name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            json.loads(args)
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
        arguments = args
    else:
        if args is None:
            args = {}
        arguments = _args_json(args)
    call_id = obj.get("id")
    if isinstance(call_id, str) and call_id:
        return ToolCall(id=call_id, name=name, arguments=arguments)
    return ToolCall(name=name, arguments=arguments)


def _strip_fence(text: str) -> str:
    t = text.strip()
    m = re.fullmatch(r"```(?:json|JSON)?\s*\n?(.*?)\n?```", t, re.S)
    return m.group(1).strip() if m else t


def _json_calls(text: str) -> list[ToolCall]:
    """One JSON object or a list of them, each a call."""
    body = _strip_fence(text)
    if not body:
        raise ValueError("empty tool call")
    try:
        obj = json.loads(body)
    except ValueError as e:
        raise ValueError(f"invalid JSON in tool call: {e}") from None
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        raise ValueError("empty list of tool calls")
    return [_call_from_obj(o) for o in items]


def _block_hermes(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    return _json_calls(text)


_QC_FUNC = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|\Z)", re.S)
_QC_PARAM = re.compile(r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.S)


def _trim_one_newline(value: str) -> str:
    if value.startswith("\n"):
        value = value[1:]
    if value.endswith("\n"):
        value = value[:-1]
    return value


def _block_qwen3_coder(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for fm in _QC_FUNC.finditer(text):
        if not fm.group(0).endswith("</function>"):
            raise ValueError(f"unclosed <function={fm.group(1)}>")
        name = fm.group(1).strip()
        props = _tool_properties(tools, name)
        args: dict[str, Any] = {}
        for pm in _QC_PARAM.finditer(fm.group(2)):
            if not pm.group(0).endswith("</parameter>"):
                raise ValueError(f"unclosed <parameter={pm.group(1)}> in call of {name}")
            key = pm.group(1).strip()
            args[key] = _coerce_value(_trim_one_newline(pm.group(2)), props.get(key))
        calls.append(ToolCall(name=name, arguments=_args_json(args)))
    if not calls:
        raise ValueError("no <function=NAME> in tool call")
    return calls


_GLM_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.S)


def _block_glm(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    head, sep, rest = text.partition("<arg_key>")
    name = head.strip()
    if not name or "<" in name or "\n" in name:
        raise ValueError("tool call has no function name before its arguments")
    props = _tool_properties(tools, name)
    args: dict[str, Any] = {}
    body = sep + rest
    leftover = _GLM_PAIR.sub("", body).strip()
    if leftover:
        raise ValueError(f"unparsable arguments in call of {name}: {leftover[:80]!r}")
    for m in _GLM_PAIR.finditer(body):
        key = m.group(1).strip()
        args[key] = _coerce_value(m.group(2), props.get(key))
    return [ToolCall(name=name, arguments=_args_json(args))]


_XML_INVOKE = re.compile(r"<invoke\s+name=\"([^\"]*)\"\s*>(.*?)(?:</invoke>|\Z)", re.S)
_XML_PARAM = re.compile(r"<parameter\s+name=\"([^\"]*)\"\s*>(.*?)</parameter>", re.S)


def _block_minimax(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for im in _XML_INVOKE.finditer(text):
        if not im.group(0).endswith("</invoke>"):
            raise ValueError(f'unclosed <invoke name="{im.group(1)}">')
        name = im.group(1).strip()
        props = _tool_properties(tools, name)
        args: dict[str, Any] = {}
        for pm in _XML_PARAM.finditer(im.group(2)):
            key = pm.group(1).strip()
            args[key] = _coerce_value(_trim_one_newline(pm.group(2)), props.get(key))
        if "<parameter" in _XML_PARAM.sub("", im.group(2)):
            raise ValueError(f"unclosed <parameter> in call of {name}")
        calls.append(ToolCall(name=name, arguments=_args_json(args)))
    if not calls:
        raise ValueError('no <invoke name="..."> in tool call')
    return calls


_DSML = "｜DSML｜"
_DSML_INVOKE = re.compile(r"<｜DSML｜invoke\s+name=\"([^\"]*)\"\s*>(.*?)(?:</｜DSML｜invoke>|\Z)", re.S)
_DSML_PARAM = re.compile(
    r"<｜DSML｜parameter\s+name=\"([^\"]*)\"(?:\s+string=\"(true|false)\")?\s*>(.*?)</｜DSML｜parameter>", re.S
)


def _block_dsml(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for im in _DSML_INVOKE.finditer(text):
        if not im.group(0).endswith("</｜DSML｜invoke>"):
            raise ValueError(f'unclosed <｜DSML｜invoke name="{im.group(1)}">')
        name = im.group(1).strip()
        props = _tool_properties(tools, name)
        args: dict[str, Any] = {}
        for pm in _DSML_PARAM.finditer(im.group(2)):
            key, is_string, raw = pm.group(1).strip(), pm.group(2), pm.group(3)
            if is_string == "true":
                args[key] = raw
            elif is_string == "false":
                try:
                    args[key] = json.loads(raw)
                except ValueError as e:
                    raise ValueError(f"parameter {key} of {name} is not valid JSON: {e}") from None
            else:
                args[key] = _coerce_value(raw, props.get(key))
        calls.append(ToolCall(name=name, arguments=_args_json(args)))
    if not calls:
        raise ValueError(f'no <{_DSML}invoke name="..."> in tool call')
    return calls


_DS_CALL = re.compile(r"<｜tool▁call▁begin｜>(.*?)<｜tool▁sep｜>(.*?)(?:<｜tool▁call▁end｜>|\Z)", re.S)


def _block_deepseek(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for m in _DS_CALL.finditer(text):
        if not m.group(0).endswith("<｜tool▁call▁end｜>"):
            raise ValueError("unclosed <｜tool▁call▁begin｜>")
        name, args = m.group(1).strip(), m.group(2).strip()
        if name == "function" and "\n" in args:
            # DeepSeek R1 / V3-0324: function<｜tool▁sep｜>NAME\n```json\n{...}\n```
            name, _, args = args.partition("\n")
            name = name.strip()
        if not name:
            raise ValueError("tool call has no name")
        body = _strip_fence(args) or "{}"
        try:
            parsed = json.loads(body)
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"arguments of {name} are not a JSON object")
        calls.append(ToolCall(name=name, arguments=_args_json(parsed)))
    if not calls:
        raise ValueError("no <｜tool▁call▁begin｜> in tool-call section")
    return calls


_KIMI_CALL = re.compile(
    r"<\|tool_call_begin\|>(.*?)<\|tool_call_argument_begin\|>(.*?)(?:<\|tool_call_end\|>|\Z)", re.S
)


def _block_kimi(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for m in _KIMI_CALL.finditer(text):
        if not m.group(0).endswith("<|tool_call_end|>"):
            raise ValueError("unclosed <|tool_call_begin|>")
        call_id = m.group(1).strip()
        name = call_id
        if name.startswith("functions."):
            name = name[len("functions."):]
        name = re.sub(r":\d+$", "", name)
        if not name:
            raise ValueError("tool call has no name")
        try:
            parsed = json.loads(m.group(2).strip() or "{}")
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"arguments of {name} are not a JSON object")
        calls.append(ToolCall(id=call_id, name=name, arguments=_args_json(parsed)))
    if not calls:
        raise ValueError("no <|tool_call_begin|> in tool-call section")
    return calls


def _block_mistral(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """``[{"name", "arguments"}, ...]`` (v3 / Nemo) or ``name[CALL_ID]id[ARGS]{...}`` repeated."""
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if text.startswith("[TOOL_CALLS]", pos):
            pos += len("[TOOL_CALLS]")
            continue
        if pos >= n:
            break
        if text[pos] in "[{":
            try:
                obj, end = decoder.raw_decode(text, pos)
            except ValueError as e:
                raise ValueError(f"invalid JSON in [TOOL_CALLS]: {e}") from None
            for item in obj if isinstance(obj, list) else [obj]:
                calls.append(_call_from_obj(item))
            pos = end
            continue
        args_at = text.find("[ARGS]", pos)
        if args_at < 0:
            raise ValueError("[TOOL_CALLS] without [ARGS]")
        head = text[pos:args_at]
        name, _, call_id = head.partition("[CALL_ID]")
        name = name.strip()
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"bad tool name {name!r} after [TOOL_CALLS]")
        start = args_at + len("[ARGS]")
        while start < n and text[start].isspace():
            start += 1
        try:
            args, end = decoder.raw_decode(text, start)
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
        if not isinstance(args, dict):
            raise ValueError(f"arguments of {name} are not a JSON object")
        call_id = call_id.strip()
        calls.append(
            ToolCall(id=call_id, name=name, arguments=_args_json(args))
            if call_id
            else ToolCall(name=name, arguments=_args_json(args))
        )
        pos = end
    if not calls:
        raise ValueError("empty [TOOL_CALLS]")
    return calls


def _leading_json(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """A whole answer that is JSON: one or more calls (``;``/newline separated), else content."""
    body = _strip_fence(text)
    looks_like_call = re.match(r'\s*[\[{]\s*\{?\s*"(name|function)"\s*:', body) is not None
    decoder = json.JSONDecoder()
    objs: list[Any] = []
    pos, n = 0, len(body)
    try:
        while True:
            while pos < n and (body[pos].isspace() or body[pos] == ";"):
                pos += 1
            if pos >= n:
                break
            obj, pos = decoder.raw_decode(body, pos)
            objs.extend(obj if isinstance(obj, list) else [obj])
    except ValueError as e:
        if looks_like_call:
            raise ValueError(f"invalid JSON in tool call: {e}") from None
        raise _NotACall() from None
    if not objs or not all(
        isinstance(o, dict)
        and isinstance(o.get("name") or o.get("tool_name") or (o.get("function") or {}).get("name"), str)
        and ({"arguments", "parameters", "function"} & o.keys())
        for o in objs
    ):
        if looks_like_call:
            raise ValueError("JSON tool call needs name and arguments")
        raise _NotACall()
    return [_call_from_obj(o) for o in objs]


_PY_CALL = re.compile(r"^\s*([A-Za-z_][\w.]*)\.call\((.*)\)\s*$", re.S)


def _block_python_tag(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """Llama 3.1 ``<|python_tag|>``: a JSON call, or a builtin ``name.call(k="v")``."""
    m = _PY_CALL.match(text)
    if m:
        import ast

        try:
            node = ast.parse(f"f({m.group(2)})", mode="eval").body
            assert isinstance(node, ast.Call)
            args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except (SyntaxError, ValueError, AssertionError) as e:
            raise ValueError(f"bad builtin tool call: {e}") from None
        return [ToolCall(name=m.group(1), arguments=_args_json(args))]
    try:
        return _leading_json(text, tools)
    except _NotACall:
        raise ValueError("<|python_tag|> is not followed by a tool call") from None


def _fenced_json(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    try:
        return _leading_json(text, tools)
    except ValueError:
        raise _NotACall() from None


# ---------------------------------------------------------------------------------------------
# Parser specification


@dataclass(frozen=True)
class BlockSpec:
    """A tool-call block: text from ``open`` to ``close`` is parsed by ``parse``.

    ``close=None`` runs to the end of the output. ``eos_closes`` accepts a block cut off by
    the end of generation (its closing marker is a stop sequence llama.cpp removes).
    ``keep_markers`` passes the markers to ``parse`` too (formats that need them).
    """

    open: str
    close: str | None
    parse: BlockFn
    eos_closes: bool = False
    keep_markers: bool = False
    maybe_content: bool = False
    """The block may turn out not to be a call (``_NotACall``): then its text is content."""


@dataclass(frozen=True)
class ParserSpec:
    """Markers and block parsers of one family."""

    family: str
    reasoning: tuple[tuple[str, str], ...] = (("<think>", "</think>"),)
    blocks: tuple[BlockSpec, ...] = ()
    leading_json: bool = False
    """The whole answer may be a bare JSON call (Llama 3.x, generic)."""
    drop: tuple[str, ...] = ()
    """End-of-turn tokens removed if the backend passes them through."""
    stop_sequences: tuple[str, ...] = ()


_HERMES_BLOCK = BlockSpec("<tool_call>", "</tool_call>", _block_hermes)
_FENCE_BLOCK = BlockSpec("```json", "```", _fenced_json, maybe_content=True, keep_markers=True)


def _spec(family: str) -> ParserSpec:
    """The parser spec of a family (``generic`` for unknown names)."""
    think = (("<think>", "</think>"),)
    im_end = ("<|im_end|>", "<|endoftext|>")
    match family:
        case "hermes":
            return ParserSpec(family, think, (_HERMES_BLOCK,), drop=im_end, stop_sequences=("<|im_end|>",))
        case "qwen3_coder":
            return ParserSpec(
                family, think, (BlockSpec("<tool_call>", "</tool_call>", _block_qwen3_coder),),
                drop=im_end, stop_sequences=("<|im_end|>",),
            )
        case "glm45":
            return ParserSpec(
                family, think, (BlockSpec("<tool_call>", "</tool_call>", _block_glm),),
                drop=("<|user|>", "<|observation|>", "<|endoftext|>"),
                stop_sequences=("<|user|>", "<|observation|>"),
            )
        case "mistral":
            return ParserSpec(
                family, (("[THINK]", "[/THINK]"),),
                (BlockSpec("[TOOL_CALLS]", None, _block_mistral, eos_closes=True),),
                drop=("</s>",), stop_sequences=("</s>",),
            )
        case "llama3":
            return ParserSpec(
                family, (),
                (BlockSpec("<|python_tag|>", None, _block_python_tag, eos_closes=True),),
                leading_json=True, drop=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
                stop_sequences=("<|eot_id|>", "<|eom_id|>"),
            )
        case "kimi_k2":
            return ParserSpec(
                family, think,
                (BlockSpec("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", _block_kimi),),
                drop=("<|im_end|>",), stop_sequences=("<|im_end|>",),
            )
        case "minimax_m2":
            return ParserSpec(
                family, think, (BlockSpec("<minimax:tool_call>", "</minimax:tool_call>", _block_minimax),),
                drop=("[e~[",), stop_sequences=("[e~[",),
            )
        case "deepseek_v3" | "deepseek_r1":
            return ParserSpec(
                family, think,
                (BlockSpec("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", _block_deepseek),),
                drop=("<｜end▁of▁sentence｜>",), stop_sequences=("<｜end▁of▁sentence｜>",),
            )
        case "deepseek_dsml":
            return ParserSpec(
                family, think,
                (BlockSpec(f"<{_DSML}function_calls>", f"</{_DSML}function_calls>", _block_dsml),
                 BlockSpec(f"<{_DSML}tool_calls>", f"</{_DSML}tool_calls>", _block_dsml)),
                drop=("<｜end▁of▁sentence｜>",), stop_sequences=("<｜end▁of▁sentence｜>",),
            )
        case "seed_oss":
            return ParserSpec(
                family, (("<seed:think>", "</seed:think>"),),
                (BlockSpec("<seed:tool_call>", "</seed:tool_call>", _block_qwen3_coder),),
                drop=("<seed:eos>",), stop_sequences=("<seed:eos>",),
            )
        case "granite":
            return ParserSpec(
                family, (("<think>", "</think>"),),
                (BlockSpec("<|tool_call|>", None, _block_hermes, eos_closes=True),),
                drop=("<|end_of_text|>",), stop_sequences=("<|end_of_text|>",),
            )
        case "nemotron_v2":
            return ParserSpec(
                family, think, (BlockSpec("<TOOLCALL>", "</TOOLCALL>", _block_hermes),),
                drop=("<SPECIAL_12>",),
            )
        case "functionary_v3_1":
            return ParserSpec(
                family, (),
                (BlockSpec("<|python_tag|>", None, _block_python_tag, eos_closes=True),
                 BlockSpec("<function=", "</function>", _block_functionary, keep_markers=True)),
                drop=("<|eot_id|>", "<|eom_id|>"), stop_sequences=("<|eot_id|>", "<|eom_id|>"),
            )
        case "firefunction_v2":
            return ParserSpec(
                family, (), (BlockSpec(" functools", None, _block_hermes, eos_closes=True),),
                drop=("<|eot_id|>",), stop_sequences=("<|eot_id|>",),
            )
        case "tool_calls_json":
            return ParserSpec(
                family, think, (BlockSpec("<tool_calls>", "</tool_calls>", _block_json_seq),),
                drop=("<|end|>", "<end_of_sentence>", "</s>"),
            )
        case "command_r":
            return ParserSpec(
                family, (("<|START_THINKING|>", "<|END_THINKING|>"),),
                (BlockSpec("<|START_ACTION|>", "<|END_ACTION|>", _block_json_seq),),
                drop=("<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_TEXT|>", "<|END_TEXT|>",
                      "<|END_OF_TURN_TOKEN|>"),
                stop_sequences=("<|END_OF_TURN_TOKEN|>",),
            )
        case "lfm2":
            return ParserSpec(
                family, think, (BlockSpec("<|tool_call_start|>", "<|tool_call_end|>", _block_pythonic),),
                drop=("<|im_end|>",), stop_sequences=("<|im_end|>",),
            )
        case "solar":
            return ParserSpec(
                family, think, (BlockSpec("<|tool_call:begin|>", "<|tool_call:end|>", _block_solar),),
                drop=("<|tool_calls|>", "<|calls|>", "<|end|>"), stop_sequences=("<|calls|>",),
            )
        case "minicpm5":
            return ParserSpec(
                family, think, (BlockSpec('<function name="', "</function>", _block_minicpm, keep_markers=True),),
                drop=("<|im_end|>",), stop_sequences=("<|im_end|>",),
            )
        case "harmony":
            return ParserSpec(family, (), (), stop_sequences=("<|call|>", "<|return|>"))
        case _:
            return ParserSpec(
                "generic", think, (_HERMES_BLOCK, _FENCE_BLOCK), leading_json=True,
                drop=("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "</s>"),
            )


def _block_json_seq(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """A JSON list of calls or one call per line (Apriel, MiniMax-M1, Command R)."""
    try:
        return _leading_json(text, tools)
    except _NotACall:
        raise ValueError("tool-call block holds no JSON call") from None


def _block_pythonic(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """LFM2: ``[name(a=1, b='x'), other()]``."""
    import ast

    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"tool call is not a Python call list: {e.msg}") from None
    items = tree.elts if isinstance(tree, ast.List) else [tree]
    calls: list[ToolCall] = []
    for node in items:
        if not isinstance(node, ast.Call):
            raise ValueError("tool call is not a Python call")
        name = ast.unparse(node.func)
        try:
            args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError as e:
            raise ValueError(f"arguments of {name} are not literals: {e}") from None
        calls.append(ToolCall(name=name, arguments=_args_json(args)))
    return calls


def _block_solar(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    """Solar Open: ``ID<|tool_call:name|>NAME<|tool_call:args|>{...}``."""
    call_id, _, rest = text.partition("<|tool_call:name|>")
    name, sep, args = rest.partition("<|tool_call:args|>")
    if not sep or not name.strip():
        raise ValueError("tool call without <|tool_call:name|> and <|tool_call:args|>")
    try:
        parsed = json.loads(args.strip() or "{}")
    except ValueError as e:
        raise ValueError(f"arguments of {name.strip()} are not valid JSON: {e}") from None
    call_id = call_id.strip()
    if call_id:
        return [ToolCall(id=call_id, name=name.strip(), arguments=_args_json(parsed))]
    return [ToolCall(name=name.strip(), arguments=_args_json(parsed))]


_CPM_FUNC = re.compile(r'<function name="([^"]+)">(.*)</function>', re.S)
_CPM_PARAM = re.compile(r'<param name="([^"]+)">(.*?)</param>', re.S)


def _block_minicpm(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    m = _CPM_FUNC.fullmatch(text.strip())
    if not m:
        raise ValueError('bad <function name="...">...</function> call')
    name = m.group(1)
    props = _tool_properties(tools, name)
    args = {k: _coerce_value(v, props.get(k)) for k, v in _CPM_PARAM.findall(m.group(2))}
    return [ToolCall(name=name, arguments=_args_json(args))]


def _block_functionary(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
    m = re.fullmatch(r"<function=([^>]+)>(.*)</function>", text.strip(), re.S)
    if not m:
        raise ValueError("bad <function=NAME>{...}</function> call")
    name = m.group(1).strip()
    try:
        args = json.loads(m.group(2).strip() or "{}")
    except ValueError as e:
        raise ValueError(f"arguments of {name} are not valid JSON: {e}") from None
    return [ToolCall(name=name, arguments=_args_json(args))]


FAMILIES: tuple[str, ...] = (
    "hermes", "qwen3_coder", "glm45", "harmony", "mistral", "llama3", "kimi_k2", "minimax_m2",
    "deepseek_v3", "deepseek_r1", "deepseek_dsml", "seed_oss", "granite", "nemotron_v2",
    "functionary_v3_1", "firefunction_v2", "tool_calls_json", "command_r", "lfm2", "solar", "minicpm5",
    "generic",
    # Detected, parsed with the generic parser (their own formats are not implemented yet):
    "kimi_k3", "minimax_m3", "gemma4", "functionary_v3_2",
)
"""Every name ``detect_family`` can return."""

_PARSED_FAMILIES = frozenset(FAMILIES[: FAMILIES.index("generic") + 1])


# ---------------------------------------------------------------------------------------------
# The incremental state machine


def _partial_start(buf: str, markers: Sequence[str]) -> int:
    """Earliest index from which ``buf``'s tail is a proper prefix of some marker."""
    best = len(buf)
    for m in markers:
        for k in range(min(len(m) - 1, len(buf)), 0, -1):
            if buf.endswith(m[:k]):
                best = min(best, len(buf) - k)
                break
    return best


def _find_marker(buf: str, markers: Sequence[str]) -> tuple[int, str] | None:
    """Earliest complete marker in ``buf`` (the longest one at that position)."""
    found: tuple[int, str] | None = None
    for m in markers:
        i = buf.find(m)
        if i >= 0 and (found is None or i < found[0] or (i == found[0] and len(m) > len(found[1]))):
            found = (i, m)
    return found


class StreamBase:
    """What every streaming parser shares: ``flush`` / ``finish`` over the parts it collected.

    Subclasses fill ``_content``, ``_reasoning``, ``_calls`` and ``_malformed`` from ``_run``.
    """

    _content: list[str]
    _reasoning: list[str]
    _calls: list[ToolCall]
    _malformed: list[MalformedToolCall]
    _finished: ParsedOutput | None
    _buf: str
    """Generated text not yet turned into events."""

    def _run(self, events: list[StreamEvent], final: bool = False) -> None:
        raise NotImplementedError

    def feed(self, delta: str) -> list[StreamEvent]:
        """Add generated text; returns the events that became certain."""
        if self._finished is not None:
            raise RuntimeError("feed() after flush()/finish()")
        self._buf += delta
        events: list[StreamEvent] = []
        self._run(events, final=False)
        return events

    def flush(self) -> list[StreamEvent]:
        """End of generation: the events for what was held back (call once, then ``finish``)."""
        if self._finished is not None:
            return []
        events: list[StreamEvent] = []
        self._run(events, final=True)
        self._finished = self._result()
        return events

    def finish(self) -> ParsedOutput:
        """The complete result (flushes first if ``flush`` was not called)."""
        if self._finished is None:
            self.flush()
        assert self._finished is not None
        return self._finished

    def _result(self) -> ParsedOutput:
        return ParsedOutput(
            content="".join(self._content).strip(),
            reasoning="".join(self._reasoning).strip(),
            tool_calls=list(self._calls),
            malformed=list(self._malformed),
        )


class StreamParser(StreamBase):
    """Incremental parser: ``feed`` deltas, then ``finish`` for the complete result."""

    def __init__(
        self, spec: ParserSpec, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None
    ) -> None:
        self._spec = spec
        self._tools = tools
        self._buf = ""
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[ToolCall] = []
        self._malformed: list[MalformedToolCall] = []
        self._started = {"content": False, "reasoning": False}
        self._seen_text = False  # any non-whitespace content yet (for leading JSON)
        self._finished: ParsedOutput | None = None
        self._block: BlockSpec | None = None
        self._leading = False
        self._reasoning_close: str | None = None
        if starts_in_reasoning and spec.reasoning:
            self._reasoning_close = spec.reasoning[0][1]

    # -- emitting
    def _emit(self, kind: str, text: str, events: list[StreamEvent]) -> None:
        if not text:
            return
        if not self._started[kind]:
            text = text.lstrip()
            if not text:
                return
            self._started[kind] = True
        (self._content if kind == "content" else self._reasoning).append(text)
        if kind == "content":
            self._seen_text = True
        if events and events[-1].kind == kind:
            events[-1] = StreamEvent(kind=kind, text=events[-1].text + text)  # type: ignore[arg-type]
        else:
            events.append(StreamEvent(kind=kind, text=text))  # type: ignore[arg-type]

    def _emit_block(self, block: BlockSpec, raw: str, closed: bool, events: list[StreamEvent]) -> None:
        full = block.open + raw + (block.close or "" if closed else "")
        body = full if block.keep_markers else raw
        if not closed and not block.eos_closes and block.close is not None:
            if block.maybe_content:
                self._emit("content", full, events)
                return
            self._malformed.append(
                MalformedToolCall(raw=full, error=f"unclosed {block.open}: output ended before {block.close}")
            )
            return
        try:
            calls = block.parse(body, self._tools)
        except _NotACall:
            self._emit("content", full, events)
            return
        except Exception as e:  # noqa: BLE001 - a parser bug must not lose the model's output
            self._malformed.append(MalformedToolCall(raw=full, error=str(e) or type(e).__name__))
            return
        for call in calls:
            events.append(
                StreamEvent(kind="tool_call", index=len(self._calls), id=call.id, name=call.name,
                            arguments=call.arguments)
            )
            self._calls.append(call)

    # -- the machine
    def _run(self, events: list[StreamEvent], final: bool) -> None:
        spec = self._spec
        while True:
            buf = self._buf
            if self._leading:
                end = _find_marker(buf, spec.drop)
                if end is None:
                    if not final:
                        return
                    self._buf, self._leading = "", False
                    self._emit_leading(buf, events)
                    return
                self._buf, self._leading = buf[end[0] + len(end[1]):], False
                self._emit_leading(buf[: end[0]], events)
                continue
            if self._block is not None:
                block = self._block
                if block.close is None:
                    # Runs to the end of the turn: the end of the output or an end-of-turn token.
                    end = _find_marker(buf, spec.drop)
                    if end is None:
                        if not final:
                            return
                        self._buf, self._block = "", None
                        self._emit_block(block, buf, closed=True, events=events)
                        return
                    self._buf, self._block = buf[end[0] + len(end[1]):], None
                    self._emit_block(block, buf[: end[0]], closed=True, events=events)
                    continue
                i = buf.find(block.close)
                if i < 0:
                    if not final:
                        return
                    self._buf, self._block = "", None
                    self._emit_block(block, buf, closed=False, events=events)
                    return
                self._buf, self._block = buf[i + len(block.close):], None
                self._emit_block(block, buf[:i], closed=True, events=events)
                continue
            if self._reasoning_close is not None:
                markers: list[str] = [self._reasoning_close, *spec.drop]
                kind = "reasoning"
            else:
                if spec.leading_json and not self._seen_text and not self._calls:
                    stripped = buf.lstrip()
                    if not stripped:
                        if final:
                            self._buf = ""
                        return
                    if stripped[0] in "[{" or stripped.startswith("```"):
                        self._leading = True
                        continue
                # A stray reasoning close (history turns of GLM-4.7 start with a bare "</think>") is dropped.
                markers = [o for o, _ in spec.reasoning] + [b.open for b in spec.blocks] + list(spec.drop) + [
                    c for _, c in spec.reasoning]
                kind = "content"
            hold = len(buf) if final else _partial_start(buf, markers)
            hit = _find_marker(buf, markers)
            if hit is None or hit[0] >= hold:
                self._emit(kind, buf[:hold], events)
                self._buf = buf[hold:]
                return
            i, marker = hit
            self._emit(kind, buf[:i], events)
            self._buf = buf[i + len(marker):]
            if marker in spec.drop or (kind == "content" and any(marker == c for _, c in spec.reasoning)):
                continue
            if kind == "reasoning":
                self._reasoning_close = None
                continue
            for open_, close in spec.reasoning:
                if marker == open_:
                    self._reasoning_close = close
                    break
            else:
                self._block = next(b for b in spec.blocks if b.open == marker)

    def _emit_leading(self, text: str, events: list[StreamEvent]) -> None:
        try:
            calls = _leading_json(text, self._tools)
        except _NotACall:
            # Not a call: the text is content (markers inside it still count).
            self._seen_text = True
            rest, self._buf = self._buf, text
            self._run(events, final=True)
            self._buf = rest
            return
        except Exception as e:  # noqa: BLE001
            self._malformed.append(MalformedToolCall(raw=text.strip(), error=str(e) or type(e).__name__))
            return
        for call in calls:
            events.append(StreamEvent(kind="tool_call", index=len(self._calls), id=call.id, name=call.name,
                                      arguments=call.arguments))
            self._calls.append(call)



class ToolCallParser:
    """Parses one family's generated text into content, reasoning and tool calls."""

    def __init__(self, spec: ParserSpec) -> None:
        self.spec = spec

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def stop_sequences(self) -> list[str]:
        """Strings at which generation must stop for this family."""
        return list(self.spec.stop_sequences)

    @property
    def reasoning_tags(self) -> list[tuple[str, str]]:
        """(open, close) markers of reasoning blocks."""
        return list(self.spec.reasoning)

    def stream(
        self, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None
    ) -> StreamParser:
        """An incremental parser for one generation."""
        return StreamParser(self.spec, starts_in_reasoning=starts_in_reasoning, tools=tools)

    def parse(
        self, text: str, starts_in_reasoning: bool = False, tools: Sequence[ToolSchema] | None = None
    ) -> ParsedOutput:
        """Parse a complete generation. Never raises."""
        s = self.stream(starts_in_reasoning=starts_in_reasoning, tools=tools)
        s.feed(text)
        return s.finish()


def get_parser(family: str) -> ToolCallParser:
    """The parser of a family; unknown or not-yet-implemented families get the generic one."""
    if family == "harmony":
        from localcode.backends.parsers_harmony import HarmonyParser

        return HarmonyParser()
    return ToolCallParser(_spec(family if family in _PARSED_FAMILIES else "generic"))


PARSED_FAMILIES = MappingProxyType({f: f in _PARSED_FAMILIES for f in FAMILIES})
"""For each detectable family: whether it has a parser of its own (else: generic)."""
