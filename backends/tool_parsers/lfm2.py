"""LFM2: ``<|tool_call_start|>[name(a=1, b='x'), other()]<|tool_call_end|>``."""

from __future__ import annotations

from collections.abc import Sequence

from localcode.backends.base import ToolCall, ToolSchema
from localcode.backends.tool_parsers.common import args_json
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


def block_pythonic(text: str, tools: Sequence[ToolSchema] | None) -> list[ToolCall]:
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
        calls.append(ToolCall(name=name, arguments=args_json(args)))
    return calls


LFM2 = ToolCallParser(ParserSpec(
    "lfm2", (("<think>", "</think>"),), (BlockSpec("<|tool_call_start|>", "<|tool_call_end|>", block_pythonic),),
    drop=("<|im_end|>",), stop_sequences=("<|im_end|>",)))
