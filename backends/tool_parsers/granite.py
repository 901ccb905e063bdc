"""Granite 3.x: ``<|tool_call|>[{"name": ..., "arguments": {...}}]`` to the end of the turn."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from localcode.backends.tool_parsers.hermes import block_hermes
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


def _render(calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
    return "<|tool_call|>" + json.dumps([{"name": n, "arguments": a} for n, a in calls], ensure_ascii=False)


GRANITE = ToolCallParser(ParserSpec(
    "granite", (("<think>", "</think>"),), (BlockSpec("<|tool_call|>", None, block_hermes, eos_closes=True),),
    drop=("<|end_of_text|>",), stop_sequences=("<|end_of_text|>",), render=_render))
