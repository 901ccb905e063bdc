"""LFM2: ``<|tool_call_start|>[name(a=1, b='x'), other()]<|tool_call_end|>``."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json, salvage
from localcode.backends.tool_parsers.core import BlockSpec, Parsed, ParserSpec, ToolCallParser


def _call(node: ast.expr) -> ToolCall:
    if not isinstance(node, ast.Call):
        raise ValueError("tool call is not a Python call")
    name = ast.unparse(node.func)
    try:
        args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except ValueError as e:
        raise ValueError(f"arguments of {name} are not literals: {e}") from None
    return ToolCall(name=name, arguments=args_json(args))


def block_pythonic(text: str, tools: Sequence[ToolSchema] | None) -> Parsed:
    """``[name(a=1, b='x'), other()]``: each call on its own."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"tool call is not a Python call list: {e.msg}") from None
    items = tree.elts if isinstance(tree, ast.List) else [tree]
    return salvage(((ast.unparse(n), n) for n in items), _call, "empty tool-call list")


def _render(calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
    return "<|tool_call_start|>[" + ", ".join(
        f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")" for name, args in calls
    ) + "]<|tool_call_end|>"


LFM2 = ToolCallParser(ParserSpec(
    "lfm2", (("<think>", "</think>"),), (BlockSpec("<|tool_call_start|>", "<|tool_call_end|>", block_pythonic),),
    drop=("<|im_end|>",), stop_sequences=("<|im_end|>",), render=_render))
