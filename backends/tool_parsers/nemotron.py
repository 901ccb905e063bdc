"""Nemotron Nano v2: ``<TOOLCALL>[{"name": ..., "arguments": {...}}]</TOOLCALL>``."""

from __future__ import annotations

from localcode.backends.tool_parsers.hermes import block_hermes
from localcode.backends.tool_parsers.core import BlockSpec, ParserSpec, ToolCallParser


NEMOTRON_V2 = ToolCallParser(ParserSpec(
    "nemotron_v2", (("<think>", "</think>"),), (BlockSpec("<TOOLCALL>", "</TOOLCALL>", block_hermes),),
    drop=("<SPECIAL_12>",)))
