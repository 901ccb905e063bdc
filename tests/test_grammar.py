"""Grammar-constrained tool calls for every family with a native format: each grammar is built
from the tools' JSON schemas, compiles in llama.cpp, and (with the demo GGUF and the family's real
chat template) forces a call that the family's parser reads back with the same name and arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from localcode.backends.base import ChatOptions
from localcode.backends.tool_parsers import get_parser
from localcode.backends.tool_parsers.grammar import GRAMMAR_FAMILIES, tool_call_grammar
from localcode.errors import ConfigError

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "read", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string", "maxLength": 12}},
                       "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "run", "description": "Run a command.",
        "parameters": {"type": "object", "properties": {
            "cmd": {"type": "string", "enum": ["pytest -q", "make test"]},
            "timeout": {"type": "integer"}}, "required": ["cmd", "timeout"]}}},
]

# family -> a vendored template of that family
TEMPLATES = {
    "hermes": "Qwen-Qwen2.5-7B-Instruct",
    "qwen3_coder": "Qwen3-Coder",
    "glm45": "GLM-4.6",
    "minimax_m2": "MiniMax-M2",
    "kimi_k2": "Kimi-K2-Instruct",
    "deepseek_v3": "deepseek-ai-DeepSeek-V3.1",
    "deepseek_r1": "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
    "mistral": "unsloth-mistral-Devstral-Small-2507",
    "llama3": "meta-llama-Llama-3.1-8B-Instruct",
    "harmony": "openai-gpt-oss-120b",
}


def test_every_native_family_has_a_grammar() -> None:
    assert set(TEMPLATES) | {"generic"} == set(GRAMMAR_FAMILIES)


@pytest.mark.parametrize("family", GRAMMAR_FAMILIES)
def test_grammars_compile_forced_lazy_and_named(family: str) -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    for choice, forced in (("required", True), ("auto", False), ({"type": "function", "function": {"name": "run"}}, True)):
        gbnf, trigger = tool_call_grammar(TOOLS, family, choice, forced)
        LlamaGrammar.from_string(gbnf, verbose=False)
        assert trigger and gbnf.startswith("root ::= ")
        if isinstance(choice, dict):
            assert "read" not in gbnf.split("\n", 2)[1]  # only the named function


def test_grammar_errors_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="set tool_call_grammar false"):
        tool_call_grammar(TOOLS, "lfm2")
    with pytest.raises(ConfigError, match="not among the request's tools"):
        tool_call_grammar(TOOLS, "hermes", {"type": "function", "function": {"name": "nope"}}, True)


def _conforms(args: dict[str, Any], name: str) -> bool:
    schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)
    props = schema["properties"]
    if not set(schema["required"]) <= set(args) <= set(props):
        return False
    for key, value in args.items():
        p = props[key]
        if p["type"] == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
            return False
        if p["type"] == "string" and not isinstance(value, str):
            return False
        if "enum" in p and value not in p["enum"]:
            return False
        if "maxLength" in p and len(value) > p["maxLength"]:
            return False
    return True


@pytest.mark.gguf
@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_forced_call_round_trips_through_the_familys_parser(demo_gguf: Path, llama_templates_dir: Path,
                                                            family: str) -> None:
    from localcode.backends.llama_cpp import LlamaCppChatModel
    from localcode.config import AgentConfig, ServerConfig

    template = llama_templates_dir / f"{TEMPLATES[family]}.jinja"
    cfg = AgentConfig(name="grammar", temperature=0.0, seed=1, max_tokens=120, server_config=ServerConfig(
        model_path=str(demo_gguf), context_window=4096, extra_args=["--chat-template-file", str(template)]))
    model = LlamaCppChatModel(cfg)
    try:
        assert model.family == family
        # One forced call per family (decoding under a grammar is slow on a 262K vocabulary): half the
        # families get "required", half a named function; the grammars of both are compiled above.
        named = sorted(TEMPLATES).index(family) % 2 == 1
        choice: Any = {"type": "function", "function": {"name": "run"}} if named else "required"
        r = model.chat([{"role": "user", "content": "Run the tests."}], TOOLS,
                       ChatOptions(tool_choice=choice, tool_call_grammar=True))
        assert r.malformed_tool_calls == [] and len(r.tool_calls) == 1, r.raw
        call = r.tool_calls[0]
        assert call.name in ({"run"} if named else {"read", "run"}), r.raw
        args = json.loads(call.arguments)
        assert _conforms(args, call.name), (r.raw, args)
        again = get_parser(family).parse(r.raw, tools=TOOLS)
        assert [(c.name, json.loads(c.arguments)) for c in again.tool_calls] == [(call.name, args)], r.raw
    finally:
        model.close()
