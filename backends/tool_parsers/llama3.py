"""Llama 3.x: a bare ``{"name": ..., "parameters": {...}}`` answer, or ``<|python_tag|>`` with JSON or a builtin call."""

from __future__ import annotations

import re
from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, leading_json
from localcode.backends.tool_parsers.core import BlockSpec, NotACall, ParserSpec, ToolCallParser


_PY_CALL = re.compile(r"^\s*([A-Za-z_][\w.]*)\.call\((.*)\)\s*$", re.S)


def block_python_tag(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
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
        return [ToolCall(name=m.group(1), arguments=args_json(args))]
    try:
        return leading_json(text, tools)
    except NotACall:
        raise ValueError("<|python_tag|> is not followed by a tool call") from None


_DROP = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
PYTHON_TAG = BlockSpec("<|python_tag|>", None, block_python_tag, eos_closes=True)
LLAMA3 = ToolCallParser(ParserSpec("llama3", (), (PYTHON_TAG,), json_text="native", drop=_DROP,
                                   stop_sequences=("<|eot_id|>", "<|eom_id|>")))
