"""Chat templates: the real templates vendored in llama.cpp render an agent's tool conversation,
each family's calls are shown in its own format, and what the model would write parses back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcode.backends.chat_template import ChatTemplate
from localcode.backends.tool_parsers import FAMILIES, detect_family
from localcode.errors import ConfigError, ModelError

TOOLS = [
    {"type": "function", "function": {
        "name": "read_file", "description": "Read a file.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
                       "required": ["path"]}}},
    {"type": "function", "function": {
        "name": "run_tests", "description": "Run the tests.",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}},
]
CALLS = [("read_file", {"path": "src/main.py", "limit": 20}), ("run_tests", {"cmd": "pytest -q"})]
BEFORE = [
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "Read main.py"},
]


def assistant_msg(calls: list[tuple[str, dict]]) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": f"call_{i}x{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for i, (name, args) in enumerate(calls)]}


def conversation(calls: list[tuple[str, dict]]) -> list[dict]:
    msg = assistant_msg(calls)
    results = [{"role": "tool", "tool_call_id": c["id"], "name": c["function"]["name"],
                "content": f"RESULT_{i}_NEEDLE"} for i, c in enumerate(msg["tool_calls"])]
    return [*BEFORE, msg, *results, {"role": "assistant", "content": "FOLLOWUP_NEEDLE done."},
            {"role": "user", "content": "LAST_USER_NEEDLE"}]


def calls_for(template: ChatTemplate) -> list[tuple[str, dict]]:
    """Both calls, or one for templates that allow one call per message (Llama 3.x, gpt-oss)."""
    single = "single tool-call" in template.source or "<|channel|>" in template.source or (
        "message.tool_calls[0]" in template.source and "<|role_sep|>" in template.source)  # GigaChat
    return CALLS[:1] if single else CALLS


def assistant_turn(template: ChatTemplate, calls: list[tuple[str, dict]]) -> tuple[str, str]:
    """(prompt, text): the generation prompt, and the assistant turn as the family writes it."""
    prompt = template.render(BEFORE, tools=TOOLS, add_generation_prompt=True)
    full = template.render([*BEFORE, assistant_msg(calls)], tools=TOOLS, add_generation_prompt=False)
    n = 0
    while n < min(len(prompt), len(full)) and prompt[n] == full[n]:
        n += 1
    if n < len(prompt):
        # The generation prompt opens something history turns don't (e.g. "<think>"): cut at a boundary.
        while n > 0 and prompt[n - 1] not in ">\n]":
            n -= 1
    text = full[n:]
    if "Read main.py" in text:
        # Mistral Nemo moves the tool list before the last user turn, so the prompts differ earlier.
        text = text.split("Read main.py")[-1].removeprefix("[/INST]")
    return prompt[:n], text


def load(templates: Path, stem: str) -> ChatTemplate:
    return ChatTemplate.from_file(templates / f"{stem}.jinja", bos_token="<s>", eos_token="</s>")


# (template, family, strings the rendered conversation must hold: calls and results in the family's format)
FAMILY_CASES = [
    ("Qwen-Qwen3-0.6B", "hermes", [
        '<tool_call>\n{"name": "read_file", "arguments": {"path": "src/main.py", "limit": 20}}\n</tool_call>',
        "<tool_response>\nRESULT_0_NEEDLE\n</tool_response>"]),
    ("Qwen-Qwen2.5-7B-Instruct", "hermes", [
        '<tool_call>\n{"name": "run_tests", "arguments": {"cmd": "pytest -q"}}\n</tool_call>',
        "<tool_response>\nRESULT_1_NEEDLE\n</tool_response>"]),
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "hermes", ['<tool_call>\n{"name": "read_file"', "RESULT_0_NEEDLE"]),
    ("Qwen3-Coder", "qwen3_coder", [
        "<tool_call>\n<function=read_file>\n<parameter=path>\nsrc/main.py\n</parameter>\n<parameter=limit>\n20\n"
        "</parameter>\n</function>\n</tool_call>",
        "<tool_response>\nRESULT_0_NEEDLE\n</tool_response>"]),
    ("GLM-4.6", "glm45", [
        "<tool_call>read_file\n<arg_key>path</arg_key>\n<arg_value>src/main.py</arg_value>\n<arg_key>limit</arg_key>"
        "\n<arg_value>20</arg_value>\n</tool_call>",
        "<|observation|>\n<tool_response>\nRESULT_0_NEEDLE\n</tool_response>"]),
    ("GLM-4.7-Flash", "glm45", [
        "<tool_call>run_tests<arg_key>cmd</arg_key><arg_value>pytest -q</arg_value></tool_call>",
        "<tool_response>RESULT_1_NEEDLE</tool_response>"]),
    ("openai-gpt-oss-120b", "harmony", [
        '<|start|>assistant to=functions.read_file<|channel|>commentary json<|message|>'
        '{"path": "src/main.py", "limit": 20}<|call|>',
        "<|start|>functions.read_file to=assistant<|channel|>commentary<|message|>\"RESULT_0_NEEDLE\"<|end|>"]),
    ("unsloth-mistral-Devstral-Small-2507", "mistral", [
        '[TOOL_CALLS]read_file[ARGS]{"path": "src/main.py", "limit": 20}[TOOL_CALLS]run_tests[ARGS]{"cmd": "pytest -q"}',
        "[TOOL_RESULTS]RESULT_0_NEEDLE[/TOOL_RESULTS]"]),
    ("Mistral-Small-3.2-24B-Instruct-2506", "mistral", ["[TOOL_CALLS]read_file[CALL_ID]", '[ARGS]{"cmd": "pytest -q"}',
                                                        "[TOOL_CONTENT]RESULT_1_NEEDLE[/TOOL_RESULTS]"]),
    ("mistralai-Mistral-Nemo-Instruct-2407", "mistral", ['[TOOL_CALLS][{"name": "read_file", "arguments": {"path": ',
                                                         '[TOOL_RESULTS]{"content": RESULT_0_NEEDLE']),
    ("meta-llama-Llama-3.1-8B-Instruct", "llama3", [
        '{"name": "read_file", "parameters": {"path": "src/main.py", "limit": 20}}<|eot_id|>',
        "<|start_header_id|>ipython<|end_header_id|>\n\n\"RESULT_0_NEEDLE\""]),
    ("meta-llama-Llama-3.2-3B-Instruct", "llama3", ['{"name": "read_file", "parameters": {"path": "src/main.py"',
                                                    "ipython<|end_header_id|>"]),
    ("meta-llama-Llama-3.3-70B-Instruct", "llama3", ['{"name": "read_file", "parameters": {', "RESULT_0_NEEDLE"]),
    ("moonshotai-Kimi-K2", "kimi_k2", [
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0<|tool_call_argument_begin|>"
        '{"path": "src/main.py", "limit": 20}<|tool_call_end|>',
        # The template writes a literal backslash-n here (outside a string literal).
        "<|im_system|>tool<|im_middle|>## Return of call_0xread_file\\nRESULT_0_NEEDLE"]),
    ("Kimi-K2-Instruct", "kimi_k2", ["<|tool_call_begin|>functions.run_tests:1<|tool_call_argument_begin|>",
                                     "## Return of functions.read_file:0\nRESULT_0_NEEDLE"]),
    ("Kimi-K2-Thinking", "kimi_k2", ["<|tool_calls_section_begin|>", "## Return of functions.run_tests:1"]),
    ("MiniMax-M2", "minimax_m2", [
        '<minimax:tool_call>\n<invoke name="read_file">\n<parameter name="path">src/main.py</parameter>\n'
        '<parameter name="limit">20</parameter>\n</invoke>',
        "]~b]tool\n<response>RESULT_0_NEEDLE</response>"]),
    ("deepseek-ai-DeepSeek-V3.1", "deepseek_v3", [
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>read_file<｜tool▁sep｜>{"path": "src/main.py", "limit": 20}'
        "<｜tool▁call▁end｜>",
        "<｜tool▁output▁begin｜>RESULT_0_NEEDLE<｜tool▁output▁end｜>"]),
    ("deepseek-ai-DeepSeek-V3.2", "deepseek_dsml", [
        '<｜DSML｜invoke name="read_file">\n<｜DSML｜parameter name="path" string="true">src/main.py</｜DSML｜parameter>\n'
        '<｜DSML｜parameter name="limit" string="false">20</｜DSML｜parameter>',
        "<result>RESULT_0_NEEDLE</result>"]),
    # Families with parsers of their own since issue 12 (they fell back to the generic parser before).
    ("Apertus-8B-Instruct", "apertus", [
        '<|tools_prefix|>[{"read_file": {"path": "src/main.py", "limit": 20}}, {"run_tests": {"cmd": "pytest -q"}}]'
        "<|tools_suffix|>"]),
    ("GigaChat3-10B-A1.8B", "gigachat3", [
        'function call<|role_sep|>\n{"name": "read_file", "arguments": {"path": "src/main.py", "limit": 20}}']),
    ("GigaChat3.1-10B-A1.8B", "gigachat3", [
        '<|function_call|>{"name": "read_file", "arguments": {"path": "src/main.py", "limit": 20}}']),
    ("Kimi-K3", "kimi_k3", [  # arguments as a mapping: the template writes them in the model's own syntax
        '<|open|>call tool="read_file" index="1"<|sep|><|open|>argument key="path" type="string"<|sep|>src/main.py'
        '<|close|>argument<|sep|><|open|>argument key="limit" type="number"<|sep|>20<|close|>argument<|sep|>']),
    ("MiniMax-M3", "minimax_m3", [
        ']<]minimax[>[<invoke name="read_file">]<]minimax[>[<path>src/main.py]<]minimax[>[</path>']),
    ("google-gemma-4-31B-it", "gemma4", ['<|tool_call>call:read_file{limit:20,path:<|"|>src/main.py<|"|>}<tool_call|>']),
    ("google-gemma-4-31B-it-interleaved", "gemma4", ["<|tool_call>call:run_tests{cmd:<|\"|>pytest -q<|\"|>}"]),
    ("meetkai-functionary-medium-v3.2", "functionary_v3_2", ['>>>read_file\n{"path": "src/main.py", "limit": 20}']),
    ("muse-glimmer", "muse", [
        ' to=read_file<|message|><atem:function_calls>\n<atem:invoke name="read_file">\n'
        '<atem:parameter name="path">src/main.py</atem:parameter>']),
    ("tencent-Hy3", "hy3", [
        "<tool_call:opensource>read_file<tool_sep:opensource>\n<arg_key:opensource>path</arg_key:opensource>\n"
        "<arg_value:opensource>src/main.py</arg_value:opensource>"]),
    ("LFM2.5-Instruct", "lfm2", [  # the template cannot show calls: written in LFM2's own format
        "<|tool_call_start|>[read_file(path='src/main.py', limit=20), run_tests(cmd='pytest -q')]<|tool_call_end|>"]),
    ("ibm-granite-granite-3.3-2B-Instruct", "granite", [  # likewise, in Granite's format
        '<|tool_call|>[{"name": "read_file", "arguments": {"path": "src/main.py", "limit": 20}}, ']),
    ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "deepseek_r1", [  # shown only with null content
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>read_file\n```json\n"]),
]


@pytest.mark.parametrize(("stem", "family", "expected"), FAMILY_CASES, ids=[c[0] for c in FAMILY_CASES])
def test_family_renders_calls_and_results_and_parses_back(
    llama_templates_dir: Path, stem: str, family: str, expected: list[str]
) -> None:
    template = load(llama_templates_dir, stem)
    assert template.family == family
    calls = calls_for(template)
    prompt = template.render(conversation(calls), tools=TOOLS)
    for needle in [*expected, "FOLLOWUP_NEEDLE", "LAST_USER_NEEDLE", "You are a coding agent."]:
        assert needle in prompt, f"{needle!r} not in the rendered prompt:\n{prompt}"

    gen_prompt, text = assistant_turn(template, calls)
    out = template.parser.parse(text, starts_in_reasoning=template.opens_reasoning(gen_prompt), tools=TOOLS)
    assert out.malformed == []
    assert [(c.name, json.loads(c.arguments)) for c in out.tool_calls] == calls, text
    assert out.content == ""


def test_every_vendored_template_renders_a_tool_conversation(llama_templates_dir: Path) -> None:
    files = sorted(llama_templates_dir.glob("*.jinja"))
    assert len(files) >= 60, f"expected the ~70 vendored templates, found {len(files)}"
    failures: dict[str, str] = {}
    for f in files:
        template = ChatTemplate.from_file(f, bos_token="<s>", eos_token="</s>")
        try:
            prompt = template.render(conversation(calls_for(template)), tools=TOOLS)
        except ModelError as e:
            failures[f.name] = str(e)
            continue
        missing = [n for n in ("read_file", "src/main.py", "RESULT_0_NEEDLE", "FOLLOWUP_NEEDLE", "LAST_USER_NEEDLE",
                               "You are a coding agent.") if n not in prompt]
        if missing:
            failures[f.name] = f"missing {missing}"
        assert template.family in FAMILIES
    assert failures == {}


def test_native_tool_calls_parse_back_for_most_templates(llama_templates_dir: Path) -> None:
    """Across all templates, the family's parser reads back the calls the template renders (or, for
    templates that cannot show calls, the calls written into the history in the family's format)."""
    wrong: dict[str, str] = {}
    for f in sorted(llama_templates_dir.glob("*.jinja")):
        template = ChatTemplate.from_file(f, bos_token="<s>", eos_token="</s>")
        calls = calls_for(template)
        gen_prompt, text = assistant_turn(template, calls)
        out = template.parser.parse(text, starts_in_reasoning=template.opens_reasoning(gen_prompt), tools=TOOLS)
        got = [(c.name, json.loads(c.arguments)) for c in out.tool_calls]
        if got != calls:
            wrong[f.stem] = f"{template.family}: {text[:200]!r} -> {got} {out.malformed}"
    assert wrong == {}


# -- thinking switches


def test_qwen3_think_false_closes_the_think_block(llama_templates_dir: Path) -> None:
    t = load(llama_templates_dir, "Qwen-Qwen3-0.6B")
    assert "enable_thinking" in t.think_switches
    off = t.render(BEFORE, think=False)
    on = t.render(BEFORE, think=True)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")
    assert not t.opens_reasoning(off) and not t.opens_reasoning(on)


def test_qwq_prompt_opens_reasoning(llama_templates_dir: Path) -> None:
    t = load(llama_templates_dir, "Qwen-QwQ-32B")
    prompt = t.render(BEFORE, think=True)
    assert prompt.endswith("<think>\n") and t.opens_reasoning(prompt)
    # This template closes the block unless enable_thinking is set (llama.cpp always sets it).
    assert not t.opens_reasoning(t.render(BEFORE, think=False))
    out = t.parser.parse("Let me think.\n</think>\n\nHello!", starts_in_reasoning=t.opens_reasoning(prompt))
    assert (out.reasoning, out.content) == ("Let me think.", "Hello!")


def test_glm_think_false_adds_nothink(llama_templates_dir: Path) -> None:
    t = load(llama_templates_dir, "GLM-4.6")
    off = t.render(BEFORE, think=False)
    assert "/nothink" in off and off.endswith("<think></think>")
    assert "/nothink" not in t.render(BEFORE, think=True)


def test_deepseek_v31_thinking_switch(llama_templates_dir: Path) -> None:
    t = load(llama_templates_dir, "deepseek-ai-DeepSeek-V3.1")
    on, off = t.render(BEFORE, think=True), t.render(BEFORE, think=False)
    assert on.endswith("<think>") and t.opens_reasoning(on)
    assert off.endswith("<think></think>") and not t.opens_reasoning(off)


def test_gpt_oss_reasoning_effort(llama_templates_dir: Path) -> None:
    t = load(llama_templates_dir, "openai-gpt-oss-120b")
    assert "Reasoning: high" in t.render(BEFORE, think_level="high")
    assert "Reasoning: low" in t.render(BEFORE, think=False)
    assert "Reasoning: medium" in t.render(BEFORE)


def test_minimax_m3_thinking_mode_and_seed_budget(llama_templates_dir: Path) -> None:
    m3 = load(llama_templates_dir, "MiniMax-M3")
    assert m3.render(BEFORE, think=False) != m3.render(BEFORE, think=True)
    seed = load(llama_templates_dir, "ByteDance-Seed-OSS")
    assert "thinking_budget" in seed.think_switches
    assert seed.render(BEFORE, think=False) != seed.render(BEFORE)


def test_extra_kwargs_win(llama_templates_dir: Path) -> None:
    t = load(llama_templates_dir, "Qwen-Qwen3-0.6B")
    assert t.render(BEFORE, think=True, extra_kwargs={"enable_thinking": False}) == t.render(BEFORE, think=False)


# -- message adaptation


def test_mistral_ids_are_mapped_to_nine_alphanumerics_consistently(llama_templates_dir: Path) -> None:
    t = load(llama_templates_dir, "Mistral-Small-3.2-24B-Instruct-2506")
    prompt = t.render(conversation(CALLS), tools=TOOLS)
    call_id = prompt.split("[CALL_ID]", 1)[1][:9]
    assert call_id.isalnum() and prompt[prompt.index("[CALL_ID]") + 18:].startswith("[ARGS]")
    assert f"[TOOL_RESULTS]{call_id}[TOOL_CONTENT]RESULT_0_NEEDLE" in prompt
    assert t.render(conversation(CALLS), tools=TOOLS) == prompt


def test_render_does_not_change_the_callers_messages(llama_templates_dir: Path) -> None:
    t = load(llama_templates_dir, "Qwen3-Coder")  # needs dict arguments
    msgs = conversation(CALLS)
    snapshot = json.dumps(msgs)
    t.render(msgs, tools=TOOLS)
    assert json.dumps(msgs) == snapshot
    assert t.caps.object_arguments


def test_template_without_tool_support_gets_polyfilled(llama_templates_dir: Path) -> None:
    t = load(llama_templates_dir, "google-gemma-2-2b-it")  # no system role, no tools, strict alternation
    assert not t.caps.system_role and not t.caps.tools
    assert t.family == "generic"
    prompt = t.render(conversation(CALLS), tools=TOOLS)
    assert '<tool_call>{"name": "read_file", "arguments": {"path": "src/main.py", "limit": 20}}</tool_call>' in prompt
    assert "<tool_response>\nRESULT_0_NEEDLE\n</tool_response>" in prompt
    assert '"name": "run_tests"' in prompt.split("<start_of_turn>model")[0]  # the tool list, in the first turn
    out = t.parser.parse('<tool_call>{"name": "run_tests", "arguments": {"cmd": "pytest -q"}}</tool_call>')
    assert [(c.name, json.loads(c.arguments)) for c in out.tool_calls] == [CALLS[1]]


def test_generation_prompt(llama_templates_dir: Path) -> None:
    assert load(llama_templates_dir, "Qwen-Qwen2.5-7B-Instruct").generation_prompt() == "<|im_start|>assistant\n"
    assert load(llama_templates_dir, "MiniMax-M2").generation_prompt().endswith("<think>\n")


# -- errors


def test_template_raise_is_a_model_error() -> None:
    t = ChatTemplate("{{ raise_exception('roles must alternate') }}", name="custom.jinja")
    with pytest.raises(ModelError, match="custom.jinja refused the conversation: roles must alternate"):
        t.render(BEFORE)


def test_template_type_error_is_a_model_error() -> None:
    t = ChatTemplate("{{ messages[0].content + 1 }}", name="bad.jinja")
    with pytest.raises(ModelError, match="bad.jinja failed to render"):
        t.render(BEFORE)


def test_invalid_template_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a valid Jinja template"):
        ChatTemplate("{% for x in %}", name="broken.jinja")
    with pytest.raises(ConfigError, match="cannot read chat template"):
        ChatTemplate.from_file(tmp_path / "missing.jinja")


def test_hf_helpers_tojson_and_strftime() -> None:
    t = ChatTemplate(
        "{{ messages[0] | tojson(indent=2, sort_keys=True) }}|{{ 'é' | tojson }}|{{ strftime_now('%Y') }}"
        "{% generation %}!{% endgeneration %}")
    out = t.render([{"role": "user", "content": "x"}])
    assert out.startswith('{\n  "content": "x",\n  "role": "user"\n}|"é"|2')
    assert out.endswith("!")


def test_detect_family_on_all_templates(llama_templates_dir: Path) -> None:
    """Every template gets a known family; the named reference families are recognised."""
    found = {f.stem: detect_family(f.read_text(encoding="utf-8")) for f in llama_templates_dir.glob("*.jinja")}
    assert set(found.values()) <= set(FAMILIES)
    for stem, family, _ in FAMILY_CASES:
        assert found[stem] == family
