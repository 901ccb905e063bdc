"""Tool-call and reasoning parsers: one sample per family in the format its models write,
malformed calls kept, and streaming equal to one-shot parsing whatever the chunking."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localcode.backends.tool_parsers import FAMILIES, ParsedOutput, get_parser

TOOLS = [
    {"type": "function", "function": {
        "name": "write_file", "parameters": {"type": "object", "properties": {
            "path": {"type": "string"}, "content": {"type": "string"}, "mode": {"type": "integer"},
            "force": {"type": "boolean"}, "tags": {"type": "array"}}}}},
]


def norm(out: ParsedOutput, keep_ids: bool = False) -> dict[str, Any]:
    """Comparable form: generated call ids are random unless the text carried them."""
    return {
        "content": out.content, "reasoning": out.reasoning,
        "calls": [((c.id if keep_ids else None), c.name, json.loads(c.arguments)) for c in out.tool_calls],
        "malformed": [(m.raw, m.error) for m in out.malformed],
    }


def calls(out: ParsedOutput) -> list[tuple[str, Any]]:
    return [(c.name, json.loads(c.arguments)) for c in out.tool_calls]


READ = ("read_file", {"path": "a.py"})

# family -> (generated text, starts_in_reasoning, content, reasoning, calls)
SAMPLES: dict[str, tuple[str, bool, str, str, list[tuple[str, Any]]]] = {
    "hermes": ('<think>\nplan\n</think>\n\nLet me look.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}'
               '\n</tool_call>\n<tool_call>\n{"name": "ls", "arguments": {}}\n</tool_call><|im_end|>',
               False, "Let me look.", "plan", [READ, ("ls", {})]),
    "qwen3_coder": ("plan\n</think>\n\n<tool_call>\n<function=read_file>\n<parameter=path>\na.py\n</parameter>\n"
                    "</function>\n</tool_call>", True, "", "plan", [READ]),
    "glm45": ("plan</think><tool_call>read_file\n<arg_key>path</arg_key>\n<arg_value>a.py</arg_value>\n</tool_call>",
              True, "", "plan", [READ]),
    "harmony": ('<|channel|>analysis<|message|>plan<|end|><|start|>assistant<|channel|>commentary to=functions.read_file'
                ' <|constrain|>json<|message|>{"path": "a.py"}<|call|>', False, "", "plan", [READ]),
    "mistral": ('[TOOL_CALLS]read_file[ARGS]{"path": "a.py"}</s>', False, "", "", [READ]),
    "llama3": ('{"name": "read_file", "parameters": {"path": "a.py"}}<|eom_id|>', False, "", "", [READ]),
    "kimi_k2": ("<think>plan</think>Reading.<|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0"
                '<|tool_call_argument_begin|>{"path": "a.py"}<|tool_call_end|><|tool_calls_section_end|>',
                False, "Reading.", "plan", [READ]),
    "minimax_m2": ('plan\n</think>\n\n<minimax:tool_call>\n<invoke name="read_file">\n<parameter name="path">a.py'
                   "</parameter>\n</invoke>\n</minimax:tool_call>", True, "", "plan", [READ]),
    "deepseek_v3": ('plan</think>Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>read_file<｜tool▁sep｜>{"path": "a.py"}'
                    "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", True, "Sure.", "plan", [READ]),
    "deepseek_r1": ("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>read_file\n```json\n"
                    '{"path": "a.py"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>', False, "", "", [READ]),
    "deepseek_dsml": ('<｜DSML｜function_calls>\n<｜DSML｜invoke name="read_file">\n<｜DSML｜parameter name="path" '
                      'string="true">a.py</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>',
                      False, "", "", [READ]),
    "generic": ('I will read it.\n```json\n{"name": "read_file", "arguments": {"path": "a.py"}}\n```', False,
                "I will read it.", "", [READ]),
}


@pytest.mark.parametrize("family", sorted(SAMPLES))
def test_family_sample(family: str) -> None:
    text, in_reasoning, content, reasoning, expected = SAMPLES[family]
    out = get_parser(family).parse(text, starts_in_reasoning=in_reasoning)
    assert (out.content, out.reasoning, calls(out), out.malformed) == (content, reasoning, expected, [])


def test_mistral_forms() -> None:
    p = get_parser("mistral")
    old = p.parse('[TOOL_CALLS][{"name": "read_file", "arguments": {"path": "a.py"}, "id": "abcdefghi"}]</s>')
    assert calls(old) == [READ] and old.tool_calls[0].id == "abcdefghi"
    new = p.parse('[TOOL_CALLS]read_file[CALL_ID]Zx9Zx9Zx9[ARGS]{"path": "a.py"}[TOOL_CALLS]ls[ARGS]{}')
    assert calls(new) == [READ, ("ls", {})] and new.tool_calls[0].id == "Zx9Zx9Zx9"
    think = p.parse('[THINK]plan[/THINK]Answer')
    assert (think.reasoning, think.content) == ("plan", "Answer")


def test_llama3_python_tag_and_plain_json_answer() -> None:
    p = get_parser("llama3")
    tagged = p.parse('<|python_tag|>{"name": "read_file", "parameters": {"path": "a.py"}}')
    assert calls(tagged) == [READ]
    builtin = p.parse('<|python_tag|>brave_search.call(query="llama")<|eom_id|>')
    assert calls(builtin) == [("brave_search", {"query": "llama"})]
    answer = p.parse('{"answer": 42}')
    assert answer.content == '{"answer": 42}' and answer.tool_calls == [] and answer.malformed == []


def test_kimi_keeps_the_models_call_id() -> None:
    out = get_parser("kimi_k2").parse(SAMPLES["kimi_k2"][0])
    assert out.tool_calls[0].id == "functions.read_file:0"


def test_xml_values_follow_the_tool_schema() -> None:
    text = ("<tool_call>\n<function=write_file>\n<parameter=path>\n123\n</parameter>\n<parameter=content>\n"
            "line 1\nline 2\n</parameter>\n<parameter=mode>\n420\n</parameter>\n<parameter=force>\ntrue\n"
            '</parameter>\n<parameter=tags>\n["a", "b"]\n</parameter>\n</function>\n</tool_call>')
    out = get_parser("qwen3_coder").parse(text, tools=TOOLS)
    assert calls(out) == [("write_file", {"path": "123", "content": "line 1\nline 2", "mode": 420, "force": True,
                                          "tags": ["a", "b"]})]
    # Without a schema, JSON-looking values are taken as JSON.
    assert json.loads(get_parser("qwen3_coder").parse(text).tool_calls[0].arguments)["path"] == 123
    glm = get_parser("glm45").parse(
        "<tool_call>write_file<arg_key>path</arg_key><arg_value>7</arg_value><arg_key>mode</arg_key>"
        "<arg_value>7</arg_value></tool_call>", tools=TOOLS)
    assert calls(glm) == [("write_file", {"path": "7", "mode": 7})]


MALFORMED: dict[str, str] = {
    "hermes": '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"\n</tool_call>',
    "hermes_unclosed": '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"',
    "qwen3_coder": "<tool_call>\n<function=>\n<parameter=path>\nread_file.py\n</parameter>\n</function>\n</tool_call>",
    "glm45": "<tool_call>read_file<arg_key>path</arg_key><arg_value>a.py</tool_call>",
    "harmony": "<|channel|>commentary to=functions.read_file <|constrain|>json<|message|>{path: a.py}<|call|>",
    "mistral": '[TOOL_CALLS]read_file[ARGS]{"path": </s>',
    "llama3": '{"name": "read_file", "parameters": {"path": ',
    "kimi_k2": "<|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0<|tool_call_argument_begin|>"
               "{oops}<|tool_call_end|><|tool_calls_section_end|>",
    "minimax_m2": '<minimax:tool_call>\n<invoke name="read_file">\n<parameter name="path">a.py</parameter>\n'
                  "</minimax:tool_call>",
    "deepseek_v3": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>read_file<｜tool▁sep｜>{bad<｜tool▁call▁end｜>"
                   "<｜tool▁calls▁end｜>",
    "generic": '<tool_call>{"name": "read_file"</tool_call>',
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_calls_are_kept_with_raw_text(case: str) -> None:
    family = case.removesuffix("_unclosed")
    text = MALFORMED[case]
    out = get_parser(family).parse(text)
    assert out.tool_calls == []
    assert len(out.malformed) == 1, out
    assert out.malformed[0].error
    assert "read_file" in out.malformed[0].raw
    assert "read_file" not in out.content  # never turned into content


def test_streaming_emits_certain_text_early() -> None:
    s = get_parser("hermes").stream()
    assert [(e.kind, e.text) for e in s.feed("<think>a")] == [("reasoning", "a")]
    assert [(e.kind, e.text) for e in s.feed("b</thi")] == [("reasoning", "b")]
    assert [(e.kind, e.text) for e in s.feed("nk>Hello <tool")] == [("content", "Hello ")]
    assert s.feed('_call>{"name": "ls", "arguments": {}}') == []
    events = s.feed("</tool_call>")
    assert [(e.kind, e.index, e.name, e.arguments) for e in events] == [("tool_call", 0, "ls", "{}")]
    assert s.flush() == []
    out = s.finish()
    assert (out.content, out.reasoning, out.tool_calls[0].id) == ("Hello", "ab", events[0].id)


def test_stop_sequences() -> None:
    assert "<|call|>" in get_parser("harmony").stop_sequences
    assert "<|im_end|>" in get_parser("hermes").stop_sequences
    assert "<|eom_id|>" in get_parser("llama3").stop_sequences


def test_unknown_family_gets_generic_parser() -> None:
    assert get_parser("no-such-family").family == "generic"


# -- properties

_FRAGMENTS = [
    "<think>", "</think>", "<tool_call>", "</tool_call>", '{"name": "read_file", "arguments": {"path": "a.py"}}',
    "<function=read_file>", "<parameter=path>", "</parameter>", "</function>", "<arg_key>", "</arg_key>",
    "<arg_value>", "</arg_value>", "<|channel|>", "analysis", "final", "<|message|>", "<|end|>", "<|start|>assistant",
    " to=functions.ls", "<|call|>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_tag|>", "{", "}", "[", "]",
    "<|tool_calls_section_begin|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>",
    "<minimax:tool_call>", '<invoke name="x">', '<parameter name="p">', "</invoke>", "</minimax:tool_call>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>", "```json", "```",
    "<|im_end|>", "</s>", "\n", " ", "hello", '"', ":", ",",
    '{"name": "write_file", "arguments": {"path": "x"}}', '{"name": "write_file", "arguments": ', "```python\n",
    "```\n", "`", "<|tool_calls_section_end|>", "<｜tool▁calls▁end｜>", "[THINK]", "[/THINK]", "<|end|>",
    '<｜DSML｜function_calls>', '<｜DSML｜invoke name="x">', "</｜DSML｜invoke>",
    "<|tool_call>", "call:ls{", '<|"|>', "<tool_call|>", "<|channel>thought", "<channel|>", ">>>", "all\n",
    "<|open|>tools<|sep|>", '<|open|>call tool="ls" index="1"<|sep|>', "<|close|>call<|sep|>",
    "]<]minimax[>[<tool_call>", "]<]minimax[>[", '<invoke name="ls">', "<atem:function_calls>", " to=ls<|message|>",
    " to=self<|message|>", "<|eom|>", "<tool_calls:opensource>", "<tool_call:opensource>", "<|tools_prefix|>",
    "<|tools_suffix|>", "function call<|role_sep|>", "<|function_call|>", "<|message_sep|>",
]
_texts = st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=8)), max_size=25).map("".join)


@settings(max_examples=60, deadline=None)
@given(text=_texts, family=st.sampled_from(FAMILIES), in_reasoning=st.booleans())
def test_parse_never_raises(text: str, family: str, in_reasoning: bool) -> None:
    out = get_parser(family).parse(text, starts_in_reasoning=in_reasoning, tools=TOOLS)
    for call in out.tool_calls:
        json.loads(call.arguments)


@settings(max_examples=int(os.environ.get("LOCALCODE_HYPOTHESIS_EXAMPLES", 150)), deadline=None)
@given(text=_texts, family=st.sampled_from(FAMILIES), in_reasoning=st.booleans(), data=st.data())
def test_streaming_in_random_chunks_equals_one_shot(text: str, family: str, in_reasoning: bool,
                                                    data: st.DataObject) -> None:
    parser = get_parser(family)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=10)))
    stream = parser.stream(starts_in_reasoning=in_reasoning, tools=TOOLS)
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    events = [e for piece in pieces for e in stream.feed(piece)]
    events += stream.flush()
    streamed = stream.finish()
    assert norm(streamed) == norm(parser.parse(text, starts_in_reasoning=in_reasoning, tools=TOOLS))
    # The tool_call events are exactly the final calls.
    assert [(e.id, e.name, e.arguments) for e in events if e.kind == "tool_call"] == [
        (c.id, c.name, c.arguments) for c in streamed.tool_calls]
    # Streamed content/reasoning deltas add up to the final text (up to trailing whitespace).
    for kind, final in (("content", streamed.content), ("reasoning", streamed.reasoning)):
        assert "".join(e.text for e in events if e.kind == kind).rstrip() == final


@settings(max_examples=60, deadline=None)
@given(junk=st.text(alphabet='{}[]":,ab \n', max_size=30))
def test_broken_json_in_a_tool_block_is_malformed_never_content(junk: str) -> None:
    for family in ("hermes", "generic"):
        out = get_parser(family).parse(f"Before.<tool_call>{junk}</tool_call>")
        assert out.content == "Before."
        assert len(out.tool_calls) + len(out.malformed) >= 1


# -- salvage: never lose a call (issue 12)

OFFERED = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {
    "path": {"type": "string"}, "content": {"type": "string"}}}}} for n in ("read_file", "write", "ls")]


def test_kimi_broken_call_keeps_its_valid_neighbour() -> None:
    text = ("<|tool_calls_section_begin|><|tool_call_begin|>functions.ls:0<|tool_call_argument_begin|>{oops"
            "<|tool_call_end|><|tool_call_begin|>functions.read_file:1<|tool_call_argument_begin|>"
            '{"path": "a.py"}<|tool_call_end|><|tool_calls_section_end|>')
    out = get_parser("kimi_k2").parse(text)
    assert calls(out) == [READ]
    assert len(out.malformed) == 1 and "functions.ls:0" in out.malformed[0].raw


@pytest.mark.parametrize("family", ["deepseek_v3", "minimax_m2", "deepseek_dsml", "qwen3_coder"])
def test_one_broken_call_in_a_block_keeps_the_other(family: str) -> None:
    text = {
        "deepseek_v3": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>ls<｜tool▁sep｜>{bad<｜tool▁call▁end｜>"
                       '<｜tool▁call▁begin｜>read_file<｜tool▁sep｜>{"path": "a.py"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        "minimax_m2": '<minimax:tool_call>\n<invoke name="ls">\n<parameter name="p">x\n</invoke>\n<invoke name="read_file">'
                      '<parameter name="path">a.py</parameter></invoke>\n</minimax:tool_call>',
        "deepseek_dsml": '<｜DSML｜function_calls><｜DSML｜invoke name="ls"><｜DSML｜parameter name="n" string="false">{x'
                         '</｜DSML｜parameter></｜DSML｜invoke><｜DSML｜invoke name="read_file"><｜DSML｜parameter name="path" '
                         'string="true">a.py</｜DSML｜parameter></｜DSML｜invoke></｜DSML｜function_calls>',
        "qwen3_coder": "<tool_call><function=><parameter=x>1</parameter></function>"
                       "<function=read_file><parameter=path>a.py</parameter></function></tool_call>",
    }[family]
    out = get_parser(family).parse(text)
    assert calls(out) == [READ] and len(out.malformed) == 1, out


def test_llama3_json_call_with_prose_around_it() -> None:
    p = get_parser("llama3")
    after = p.parse('{"name": "read_file", "parameters": {"path": "a.py"}} I used the tool to read it.')
    assert (calls(after), after.content, after.malformed) == ([READ], "I used the tool to read it.", [])
    before = p.parse('Let me read it.\n{"name": "read_file", "parameters": {"path": "a.py"}}')
    assert (calls(before), before.content) == ([READ], "Let me read it.")
    assert not before.tool_calls[0].repaired  # bare JSON is Llama 3's own format


def test_mistral_calls_followed_by_text() -> None:
    out = get_parser("mistral").parse('[TOOL_CALLS]read_file[ARGS]{"path": "a.py"} Reading the file now.')
    assert (calls(out), out.content, out.malformed) == ([READ], "Reading the file now.", [])
    bad_then_good = get_parser("mistral").parse('[TOOL_CALLS]ls[ARGS]{bad[TOOL_CALLS]read_file[ARGS]{"path": "a.py"}')
    assert calls(bad_then_good) == [READ] and len(bad_then_good.malformed) == 1


@pytest.mark.parametrize(("family", "text"), [
    ("qwen3_coder", "I need the file.\n<tool_call>\n<function=read_file>\n<parameter=path>\na.py\n</parameter>\n"
                    "</function>\n</tool_call>"),
    ("hermes", 'I need the file. <tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>'),
    ("kimi_k2", "I need the file.<|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0"
                '<|tool_call_argument_begin|>{"path": "a.py"}<|tool_call_end|><|tool_calls_section_end|>'),
])
def test_call_inside_unclosed_reasoning_is_extracted(family: str, text: str) -> None:
    out = get_parser(family).parse(text, starts_in_reasoning=True)
    assert (calls(out), out.reasoning, out.content, out.malformed) == ([READ], "I need the file.", "", [])
    # The same call opened before an explicit </think> (Kimi-K2.5 does this), with reasoning after it.
    closed = get_parser(family).parse("<think>" + text + " Then I answer.</think>Done.")
    assert (calls(closed), " ".join(closed.reasoning.split()), closed.content) == (
        [READ], "I need the file. Then I answer.", "Done.")


@pytest.mark.parametrize("family", ["hermes", "qwen3_coder"])
def test_call_made_in_reasoning_and_repeated_after_it_is_one_call(family: str) -> None:
    call = {"hermes": '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>',
            "qwen3_coder": "<tool_call>\n<function=read_file>\n<parameter=path>\na.py\n</parameter>\n"
                           "</function>\n</tool_call>"}[family]
    text = f"<think>I need the file. {call}</think>{call}"
    parser = get_parser(family)
    assert calls(parser.parse(text)) == [READ]
    stream = parser.stream()
    events = [e for i in range(0, len(text), 7) for e in stream.feed(text[i:i + 7])] + stream.flush()
    assert [e.name for e in events if e.kind == "tool_call"] == ["read_file"]
    # A different call after the reasoning is a second call.
    other = call.replace("a.py", "b.py")
    assert len(parser.parse(f"<think>I need the file. {call}</think>{other}").tool_calls) == 2


def test_reasoning_that_only_mentions_a_call_marker_stays_reasoning() -> None:
    out = get_parser("hermes").parse("<think>I could write <tool_call> here, but no.</think>The answer is 4.")
    assert (out.reasoning, out.content, out.tool_calls, out.malformed) == (
        "I could write <tool_call> here, but no.", "The answer is 4.", [], [])
    cut = get_parser("hermes").parse("<think>maybe <tool_call>{\"name\": ", starts_in_reasoning=False)
    assert (cut.reasoning, cut.malformed) == ('maybe <tool_call>{"name":', [])


def test_lenient_forms() -> None:
    qc = get_parser("qwen3_coder")
    missing_close = qc.parse("<tool_call>\n<function=write>\n<parameter=path>\nb.py\n<parameter=content>\nx = 1\n"
                             "</function>\n</tool_call>")
    assert calls(missing_close) == [("write", {"path": "b.py", "content": "x = 1"})]
    no_opener = qc.parse("<function=read_file>\n<parameter=path>\na.py\n</parameter>\n</function>\n</tool_call>")
    assert (calls(no_opener), no_opener.content) == ([READ], "")
    ds = get_parser("deepseek_v3").parse(
        'Sure.<｜tool▁call▁begin｜>read_file<｜tool▁sep｜>{"path": "a.py"}<｜tool▁call▁end｜>')
    assert (calls(ds), ds.content) == ([READ], "Sure.")
    cut = get_parser("hermes").parse('<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n')
    assert (calls(cut), cut.malformed) == ([READ], [])
    oss = get_parser("harmony").parse('Let me check.<|start|>assistant<|channel|>commentary to=functions.read_file '
                                      '<|constrain|>json<|message|>{"path": "a.py"}<|call|>')
    assert (calls(oss), oss.content) == ([READ], "Let me check.")
    no_end = get_parser("harmony").parse('<|channel|>analysis<|message|>plan<|start|>assistant<|channel|>commentary '
                                         'to=functions.read_file<|message|>{"path": "a.py"}')
    assert (calls(no_end), no_end.reasoning) == ([READ], "plan")


# -- calls written as JSON text

WRITE = ("write", {"path": "calc.py", "content": "def add(a, b):\n    return a + b\n"})


@pytest.mark.parametrize("family", ["hermes", "qwen3_coder", "glm45", "mistral", "kimi_k2", "deepseek_v3", "generic",
                                    "harmony", "gemma4", "hy3"])
def test_fenced_or_bare_json_naming_an_offered_tool_is_a_repaired_call(family: str) -> None:
    p = get_parser(family)
    body = '{"name": "write", "arguments": {"path": "calc.py", "content": "def add(a, b):\n    return a + b\n"}}'
    fenced = p.parse(f"I'll write the file.\n```json\n{body}\n```", tools=OFFERED)
    assert (calls(fenced), fenced.content) == ([WRITE], "I'll write the file.")
    assert fenced.tool_calls[0].repaired
    bare = p.parse(f"{body}\nDone.", tools=OFFERED)
    assert (calls(bare), bare.content) == ([WRITE], "Done.")
    listed = p.parse(f"```\n[{body}, {{\"name\": \"ls\", \"arguments\": {{}}}}]\n```", tools=OFFERED)
    assert calls(listed) == [WRITE, ("ls", {})]


@pytest.mark.parametrize("text", [
    '```json\n{"name": "delete_everything", "arguments": {}}\n```',  # not an offered tool
    '{"name": "write", "arguments": "not an object"}',
    '{"answer": 42}',
    'Config:\n```json\n{"name": "demo", "version": 1}\n```',
    '```python\nprint({"name": "write", "arguments": {"path": "x"}})\n```',  # code, not a call
    "Use a dict like {'a': 1} or [1, 2] and {\"k\": [1, {\"n\": 2}]}.",
])
def test_other_json_stays_content(text: str) -> None:
    out = get_parser("hermes").parse(text, tools=OFFERED)
    assert (out.content, out.tool_calls, out.malformed) == (text.strip(), [], [])


def test_json_that_cannot_be_a_call_streams_at_once() -> None:
    """An object whose first key is not a call's is content as soon as that key is seen."""
    s = get_parser("hermes").stream(tools=OFFERED)
    assert [(e.kind, e.text) for e in s.feed('Use {"colour": "red", and more text')] == [
        ("content", 'Use {"colour": "red", and more text')]
    assert s.feed('{"name": "wri') == []  # could still be a call: held back


def test_json_calls_need_the_requests_tools_except_in_generic_and_llama3() -> None:
    text = '```json\n{"name": "read_file", "arguments": {"path": "a.py"}}\n```'
    assert get_parser("hermes").parse(text).tool_calls == []
    assert calls(get_parser("generic").parse(text)) == [READ]
    truncated = get_parser("hermes").parse('{"name": "write", "arguments": {"path": "a.py", "content": "x', tools=OFFERED)
    assert truncated.tool_calls == [] and len(truncated.malformed) == 1


# -- every family: two calls with reasoning, a truncated call, a broken call (written from the templates)

LS = ("ls", {})
Q = '<|"|>'
# family -> (two calls after reasoning "plan" where the family has reasoning, the same cut off mid-call, a broken call)
FAMILY_CASES: dict[str, tuple[str, str, str]] = {
    "apertus": ('<|inner_prefix|>plan<|inner_suffix|><|tools_prefix|>[{"read_file": {"path": "a.py"}}, {"ls": {}}]'
                "<|tools_suffix|>", '<|tools_prefix|>[{"read_file": {"path": "a.', '<|tools_prefix|>[{"read_file": 3}]'),
    "gigachat3": ('<|message_sep|>\n\nfunction call<|role_sep|>\n{"name": "read_file", "arguments": {"path": "a.py"}}'
                  '<|message_sep|>', '<|function_call|>{"name": "read_file", "arguments": {"pa',
                  '<|function_call|>{"name": "read_file", "arguments": [}'),
    "kimi_k3": ('<|open|>think<|sep|>plan<|close|>think<|sep|><|open|>tools<|sep|><|open|>call tool="read_file" index="1"'
                '<|sep|><|open|>argument key="path" type="string"<|sep|>a.py<|close|>argument<|sep|><|close|>call<|sep|>'
                '<|open|>call tool="ls" index="2"<|sep|><|open|>json type="object"<|sep|>{}<|close|>json<|sep|>'
                "<|close|>call<|sep|><|close|>tools<|sep|><|close|>message<|sep|><|end_of_msg|>",
                '<|open|>tools<|sep|><|open|>call tool="read_file" index="1"<|sep|><|open|>argument key="path"',
                '<|open|>tools<|sep|><|open|>call tool="read_file" index="1"<|sep|><|open|>json type="object"<|sep|>{x'
                "<|close|>json<|sep|><|close|>call<|sep|><|close|>tools<|sep|>"),
    "minimax_m3": ("<mm:think>plan</mm:think>]<]minimax[>[<tool_call>\n]<]minimax[>[<invoke name=\"read_file\">"
                   "]<]minimax[>[<path>a.py]<]minimax[>[</path>]<]minimax[>[</invoke>\n]<]minimax[>[<invoke name=\"ls\">"
                   "]<]minimax[>[</invoke>\n]<]minimax[>[</tool_call>",
                   ']<]minimax[>[<tool_call>]<]minimax[>[<invoke name="read_file">]<]minimax[>[<path>a.py',
                   ']<]minimax[>[<tool_call>]<]minimax[>[<invoke name="read_file">]<]minimax[>[<path>a.py'
                   "]<]minimax[>[</invoke>]<]minimax[>[</tool_call>"),
    "gemma4": (f"<|channel>thought\nplan<channel|><|tool_call>call:read_file{{path:{Q}a.py{Q}}}<tool_call|>"
               "<|tool_call>call:ls{}<tool_call|><|tool_response>", f"<|tool_call>call:read_file{{path:{Q}a.",
               f"<|tool_call>call:read_file{{path {Q}a.py{Q}}}<tool_call|>"),
    "functionary_v3_2": ('all\nplan>>>read_file\n{"path": "a.py"}>>>ls\n{}<|eot_id|>', 'read_file\n{"path": "a.',
                         "read_file\n{path: a.py}"),
    "muse": (' to=self<|message|>plan<|eom|><|start|>assistant to=read_file<|message|><atem:function_calls>\n'
             '<atem:invoke name="read_file">\n<atem:parameter name="path">a.py</atem:parameter>\n</atem:invoke>\n'
             '<atem:invoke name="ls">\n</atem:invoke>\n</atem:function_calls><|eom|>',
             ' to=read_file<|message|><atem:function_calls><atem:invoke name="read_file"><atem:parameter name="path">a',
             ' to=read_file<|message|><atem:function_calls><atem:invoke name="read_file"><atem:parameter name="path">a'
             "</atem:invoke></atem:function_calls>"),
    "hy3": ("<think:opensource>plan</think:opensource><tool_calls:opensource>\n<tool_call:opensource>read_file"
            "<tool_sep:opensource>\n<arg_key:opensource>path</arg_key:opensource>\n<arg_value:opensource>a.py"
            "</arg_value:opensource>\n</tool_call:opensource>\n<tool_call:opensource>ls<tool_sep:opensource>\n"
            "</tool_call:opensource>\n</tool_calls:opensource>",
            "<tool_calls:opensource><tool_call:opensource>read_file<tool_sep:opensource><arg_key:opensource>path",
            "<tool_calls:opensource><tool_call:opensource>read_file<tool_sep:opensource><arg_key:opensource>path"
            "</tool_call:opensource></tool_calls:opensource>"),
    "seed_oss": ("<seed:think>plan</seed:think><seed:tool_call>\n<function=read_file>\n<parameter=path>\na.py\n"
                 "</parameter>\n</function>\n<function=ls>\n</function>\n</seed:tool_call>",
                 "<seed:tool_call>\n<function=read_file>\n<parameter=path>\na.", "<seed:tool_call>oops</seed:tool_call>"),
    "granite": ('<think>plan</think><|tool_call|>[{"name": "read_file", "arguments": {"path": "a.py"}}, '
                '{"name": "ls", "arguments": {}}]', '<|tool_call|>[{"name": "read_file", "arguments": {"path": "a.',
                '<|tool_call|>[{"name": "read_file", "arguments": {"path": }]'),
    "nemotron_v2": ('<think>plan</think><TOOLCALL>[{"name": "read_file", "arguments": {"path": "a.py"}}, '
                    '{"name": "ls", "arguments": {}}]</TOOLCALL>', '<TOOLCALL>[{"name": "read_file", "arguments": {"p',
                    '<TOOLCALL>[{"name": "read_file", "arguments": {"path": }]</TOOLCALL>'),
    "functionary_v3_1": ('<function=read_file>{"path": "a.py"}</function><function=ls>{}</function>',
                         '<function=read_file>{"path": "a.', "<function=read_file>{path}</function>"),
    "firefunction_v2": (' functools[{"name": "read_file", "arguments": {"path": "a.py"}}, {"name": "ls", "arguments": {}}]',
                        ' functools[{"name": "read_file", "arguments": {"pa', ' functools[{"name": "read_file", "arguments": }]'),
    "tool_calls_json": ('<think>plan</think><tool_calls>[{"name": "read_file", "arguments": {"path": "a.py"}}, '
                        '{"name": "ls", "arguments": {}}]</tool_calls>', '<tool_calls>[{"name": "read_file", "argu',
                        '<tool_calls>[{"name": "read_file", "arguments": {]</tool_calls>'),
    "command_r": ('<|START_THINKING|>plan<|END_THINKING|><|START_ACTION|>[{"tool_name": "read_file", "parameters": '
                  '{"path": "a.py"}}, {"tool_name": "ls", "parameters": {}}]<|END_ACTION|>',
                  '<|START_ACTION|>[{"tool_name": "read_file", "par', "<|START_ACTION|>[{oops}]<|END_ACTION|>"),
    "lfm2": ("<think>plan</think><|tool_call_start|>[read_file(path='a.py'), ls()]<|tool_call_end|>",
             "<|tool_call_start|>[read_file(path='a.", "<|tool_call_start|>[read_file(path=a.py))]<|tool_call_end|>"),
    "solar": ('<think>plan</think><|tool_call:begin|>c1<|tool_call:name|>read_file<|tool_call:args|>{"path": "a.py"}'
              '<|tool_call:end|><|tool_call:begin|>c2<|tool_call:name|>ls<|tool_call:args|>{}<|tool_call:end|>',
              '<|tool_call:begin|>c1<|tool_call:name|>read_file<|tool_call:args|>{"pa',
              "<|tool_call:begin|>c1<|tool_call:name|>read_file<|tool_call:args|>{x<|tool_call:end|>"),
    "minicpm5": ('<think>plan</think><function name="read_file"><param name="path">a.py</param></function>'
                 '<function name="ls"></function>', '<function name="read_file"><param name="path">a.',
                 '<function name="read_file"><param name="path">a.py</function>'),
}
_NO_REASONING = {"gigachat3", "functionary_v3_1", "firefunction_v2", "functionary_v3_2"}  # v3.2: "all" is content
_ONE_CALL = {"gigachat3"}


@pytest.mark.parametrize("family", sorted(FAMILY_CASES))
def test_every_family_two_calls_truncated_and_broken(family: str) -> None:
    good, truncated, broken = FAMILY_CASES[family]
    p = get_parser(family)
    out = p.parse(good, tools=TOOLS)
    assert calls(out) == ([READ] if family in _ONE_CALL else [READ, LS]) and out.malformed == [], out
    assert out.reasoning == ("" if family in _NO_REASONING else "plan"), out
    cut = p.parse(truncated, tools=TOOLS)
    assert cut.tool_calls == [] and len(cut.malformed) == 1 and "read_file" in cut.malformed[0].raw, cut
    bad = p.parse(broken, tools=TOOLS)
    assert bad.tool_calls == [] and len(bad.malformed) >= 1, bad
    assert "read_file" not in bad.content and "read_file" not in cut.content
