"""Tool-call and reasoning parsing of generated text, per model family.

A local model writes its tool calls as text in its own family's format; this package turns
that text back into OpenAI-shaped results::

    family = detect_family(template_source)      # e.g. "qwen3_coder", from the chat template
    parser = get_parser(family)
    out = parser.parse(text, starts_in_reasoning=prompt_opened_think, tools=tools)
    out.content, out.reasoning, out.tool_calls, out.malformed

    s = parser.stream(starts_in_reasoning=..., tools=tools)   # incremental, for streaming
    for delta in generated: events = s.feed(delta)             # content/reasoning/tool_call
    out = s.finish()                                            # == parser.parse(full_text)

Both paths run the same state machine (``core``), so a stream's final result equals one-shot
parsing of the whole text, whatever the chunking. Content and reasoning deltas are emitted as
soon as they are certain: only a suffix that could be the start of a marker is held back; a
tool call is emitted when its block is complete. A call that cannot be parsed (bad JSON, an
unclosed block) lands in ``malformed`` with its raw text and the error: never dropped, never
turned into content. Parsing never raises.

``parser.stop_sequences`` lists the strings generation must stop at for that family
(llama.cpp removes them from the output; the parsers accept text with or without them).

Salvage: a broken call never drops the good calls beside it, a call opened inside reasoning
is extracted, and a fenced or bare JSON call naming one of the request's tools becomes a call
in any family (``ToolCall.repaired``; ``json_text``).

Layout: ``core`` (the state machine), ``common`` (shared JSON/value helpers), ``json_text``
(calls written as JSON text), ``detect`` (family from a template), ``grammar`` (GBNF for
forced/lazy calls per family), and one module per family that builds its parser. A new
family is one module and one row in ``_PARSERS`` below (plus its marker in ``detect``, and
a row in ``grammar._FORMATS`` for a grammar).

The formats were checked against the real chat templates in llama.cpp's
``models/templates`` and its reference parsers (``common/chat*.cpp``).
"""

from __future__ import annotations

from localcode.backends.tool_parsers import (
    apertus,
    deepseek,
    firefunction,
    functionary,
    functionary_v3_2,
    gemma4,
    gigachat,
    glm,
    granite,
    harmony,
    hermes,
    hy3,
    json_lists,
    kimi,
    kimi_k3,
    lfm2,
    llama3,
    minicpm,
    minimax,
    minimax_m3,
    mistral,
    muse,
    nemotron,
    qwen3_coder,
    solar,
)
from localcode.backends.tool_parsers.core import ParsedOutput, StreamBase, StreamParser, ToolCallParser
from localcode.backends.tool_parsers.detect import detect_family
from localcode.backends.tool_parsers.harmony import HarmonyParser

__all__ = [
    "FAMILIES",
    "HarmonyParser",
    "ParsedOutput",
    "StreamBase",
    "StreamParser",
    "ToolCallParser",
    "detect_family",
    "get_parser",
]

Parser = ToolCallParser | HarmonyParser
"""What ``get_parser`` returns: both have ``parse``, ``stream``, ``stop_sequences``, ``reasoning_tags``."""

_PARSERS: dict[str, Parser] = {
    "hermes": hermes.HERMES,
    "qwen3_coder": qwen3_coder.QWEN3_CODER,
    "glm45": glm.GLM45,
    "harmony": harmony.HARMONY,
    "mistral": mistral.MISTRAL,
    "llama3": llama3.LLAMA3,
    "kimi_k2": kimi.KIMI_K2,
    "minimax_m2": minimax.MINIMAX_M2,
    "deepseek_v3": deepseek.DEEPSEEK_V3,
    "deepseek_r1": deepseek.DEEPSEEK_R1,
    "deepseek_dsml": deepseek.DEEPSEEK_DSML,
    "seed_oss": qwen3_coder.SEED_OSS,
    "granite": granite.GRANITE,
    "nemotron_v2": nemotron.NEMOTRON_V2,
    "functionary_v3_1": functionary.FUNCTIONARY_V3_1,
    "firefunction_v2": firefunction.FIREFUNCTION_V2,
    "tool_calls_json": json_lists.TOOL_CALLS_JSON,
    "command_r": json_lists.COMMAND_R,
    "lfm2": lfm2.LFM2,
    "solar": solar.SOLAR,
    "minicpm5": minicpm.MINICPM5,
    "kimi_k3": kimi_k3.KIMI_K3,
    "minimax_m3": minimax_m3.MINIMAX_M3,
    "gemma4": gemma4.GEMMA4,
    "functionary_v3_2": functionary_v3_2.FUNCTIONARY_V3_2,
    "apertus": apertus.APERTUS,
    "gigachat3": gigachat.GIGACHAT3,
    "hy3": hy3.HY3,
    "muse": muse.MUSE,
    "generic": hermes.GENERIC,
}
"""One row per family: its parser."""

FAMILIES: tuple[str, ...] = tuple(_PARSERS)
"""Every name ``detect_family`` can return."""


def get_parser(family: str) -> Parser:
    """The parser of a family; unknown names get the generic one."""
    return _PARSERS.get(family, _PARSERS["generic"])
