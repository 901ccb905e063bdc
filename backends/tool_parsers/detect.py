"""Which tool-call family a chat template belongs to, from markers in its source."""

from __future__ import annotations

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
        if "```json" in s and ("function<｜tool▁sep｜>" in s or "tool['type'] + '<｜tool▁sep｜>'" in s):
            return "deepseek_r1"
        return "deepseek_v3"
    if "<atem:function_calls>" in s:
        return "muse"
    if "<|tools_prefix|>" in s:
        return "apertus"
    if "<|role_sep|>" in s and ("function call" in s or "<|function_call|>" in s):
        return "gigachat3"
    if "HYTK" in s and "<tool_calls{}>" in s:
        return "hy3"
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

