"""Small-model loop handling with the scripted backend: repeated failing calls, finish under
``tool_choice: required``, the solution files in the first message, the default system prompt."""

from __future__ import annotations

from pathlib import Path

from agent_support import assert_paired, call, config, context, events, finish
from localcode.agent.logs import RunLogger
from localcode.agent.loop import run_agent
from localcode.backends.scripted import ScriptedChatModel
from localcode.harness.agent_solver import files_message
from localcode.harness.results import TaskResult, TryResult
from localcode.harness.stats import compute_stats

NOOP_EDIT = {"path": "a.py", "old": "x = 1", "new": "x = 1"}


def tool_texts(messages: list) -> list[str]:
    return [m["content"] for m in messages if m.get("role") == "tool"]


def test_second_identical_failing_call_gets_a_stronger_message_third_ends_stuck(tmp_path: Path) -> None:
    log = tmp_path / "run"
    model = ScriptedChatModel([call("edit", **NOOP_EDIT)] * 3 + [finish()])
    run = run_agent(model, config(max_turns=10), "change x", context(tmp_path), logger=RunLogger(log))
    assert run.reason == "stuck"
    assert run.turns == 3 and len(model.requests) == 3  # did not burn the remaining turns
    first, second, third = tool_texts(run.messages)
    assert first == "error: old and new are the same; nothing to change"
    assert second.startswith(first) and "exactly this call" in second and "a third identical call ends" in second
    assert "`write`" in second  # the advice names a way out the agent has
    assert third == first
    assert run.tool_errors == {"edit": 3}
    assert "edit" in run.detail
    kinds = [e["kind"] for e in events(log.with_suffix(".jsonl"))]
    assert kinds.count("repeated_call") == 1 and kinds.count("stuck") == 1
    assert_paired(run.messages)


def test_the_same_call_is_recognised_however_its_json_is_written(tmp_path: Path) -> None:
    model = ScriptedChatModel([
        call("edit", '{"path": "a.py", "old": "x = 1", "new": "x = 1"}'),
        call("edit", '{"new":"x = 1","old":"x = 1","path":"a.py"}'),
        call("edit", '{ "old": "x = 1", "path": "a.py", "new": "x = 1" }'),
    ])
    assert run_agent(model, config(), "t", context(tmp_path)).reason == "stuck"


def test_different_calls_and_calls_with_new_answers_do_not_count(tmp_path: Path) -> None:
    model = ScriptedChatModel([
        call("edit", **NOOP_EDIT),
        call("read", path="missing.py"),
        call("read", path="a.py"),
        call("edit", path="a.py", old="x = 1", new="x = 2"),    # works
        call("read", path="a.py"), call("read", path="a.py"), call("read", path="a.py"),  # reads are not counted
        call("write", path="a.py", content="x = 1\n"),
        call("edit", **NOOP_EDIT),                               # second: warned, not stuck
        finish(),
    ])
    run = run_agent(model, config(max_turns=20), "t", context(tmp_path))
    assert run.reason == "finished"
    texts = tool_texts(run.messages)
    assert [i for i, t in enumerate(texts) if "exactly this call" in t] == [8]
    assert run.nudges == 1


def test_the_same_content_written_again_and_again_ends_stuck(tmp_path: Path) -> None:
    # what Qwen2.5-Coder-0.5B did on cpp/circular-buffer: two files, the same junk, in turn, until max_turns
    junk = [call("write", path="a.py", content="1234567890"), call("write", path="pkg/b.py", content="1234567890")]
    model = ScriptedChatModel(junk * 4)
    run = run_agent(model, config(max_turns=8), "t", context(tmp_path))
    assert run.reason == "stuck" and run.turns == 5
    texts = tool_texts(run.messages)
    assert "exactly this call" in texts[2] and "not the same content again" in texts[2]
    assert run.tool_errors == {}


def test_finish_is_offered_under_required_even_when_not_configured(tmp_path: Path) -> None:
    model = ScriptedChatModel(["I think it is fine.", finish("x is already 1")])
    run = run_agent(model, config(tool_choice="required", tools=["read", "edit"]), "is x 1?", context(tmp_path))
    names = [t["function"]["name"] for t in model.requests[0]["tools"]]
    assert names == ["read", "edit", "finish"]
    assert run.reason == "finished" and run.final_answer == "x is already 1"
    # the plain answer was refused with a message that says how to end
    refusal = [m["content"] for m in run.messages if m.get("role") == "user"][1]
    assert "`finish`" in refusal


def test_plain_answer_still_ends_the_run_under_auto(tmp_path: Path) -> None:
    run = run_agent(ScriptedChatModel(["x is 1."]), config(tools=["read"]), "what is x?", context(tmp_path))
    assert run.reason == "answered" and run.final_answer == "x is 1."


def test_default_system_prompt_has_no_answer_template(tmp_path: Path) -> None:
    model = ScriptedChatModel([finish()])
    run_agent(model, config(), "t", context(tmp_path))
    system = model.requests[0]["messages"][0]["content"]
    assert "ok:" not in system and "error:" not in system  # small models copied "ok:" as their answer
    assert "`finish`" in system


def test_stuck_endings_are_counted_in_the_stats() -> None:
    def result(name: str, reasons: list[str]) -> TaskResult:
        return TaskResult(id=f"python/{name}", language="python", name=name, agent="a", max_tries=2,
                          tries=[TryResult(index=i + 1, stop_reason=r, passed=False) for i, r in enumerate(reasons)])
    stats = compute_stats([result("a", ["stuck", "finished"]), result("b", ["stuck", "stuck"]),
                           result("c", ["max_turns", "finished"])], tries=2)
    assert stats["stuck_endings"] == 3


def test_files_message_shows_the_solution_files_as_aider_does(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "lib.rs").write_text("pub fn f() {}\n")
    (ws / "b.md").write_text("```\ncode\n```")
    (ws / "big.py").write_text("x" * 30_000)
    text = files_message(ws, ["src/lib.rs", "b.md", "big.py", "missing.py"])
    assert "\nsrc/lib.rs\n```\npub fn f() {}\n```" in text
    assert "\nb.md\n````\n```\ncode\n```\n````" in text  # a longer fence around text that has one
    assert "big.py (30000 bytes: too long to show here; read it)" in text
    assert "missing.py" not in text
    assert files_message(ws, []) == ""


# ---------------------------------------------------------------- the repetition guard

def test_repetition_guard_spots_a_loop_and_leaves_code_alone() -> None:
    from localcode.backends.base import RepetitionGuard

    start, line = '{"path": "phone_number.cpp", "content": "6139950253\\n', "1 613 995 0253\\n"
    loop = start + line * 80
    guard = RepetitionGuard()
    seen = [guard.check(loop[:n]) for n in range(1, len(loop) + 1)]  # as a decoder would call it
    first = next(i for i, p in enumerate(seen) if p is not None)
    assert seen[first] == len(line)
    assert first < len(start) + 800 + 2 * len(line) + guard.every  # caught after ~800 repeated characters
    # real code of the same length, with repeated lines and long runs of one character, is left alone
    code = (Path(__file__).parent.parent / "harness" / "stats.py").read_text()
    quiet = RepetitionGuard()
    assert all(quiet.check(code[:n]) is None for n in range(1, len(code) + 1, 7))
    table = "int t[] = {" + "0, " * 200 + "};\n"  # 600 characters of one piece: under the 800 span
    assert RepetitionGuard().check(table) is None
    assert RepetitionGuard().check("=" * 2000) == 1
    # a longer loop, as the 1.5B wrote on python/scale-generator: seven elif branches, over and over
    block = "".join(f"            elif interval == 'MmMMm':\n                result.extend(['{c}'])\n" for c in "FGABCDE")
    looping = "def scale(interval):\n" + block * 2
    assert RepetitionGuard().check(looping) is None  # twice is not yet a loop
    assert RepetitionGuard().check(looping + block) == len(block)  # the third time is


def test_a_response_cut_by_the_repetition_guard_is_a_malformed_turn_with_its_own_message(tmp_path: Path) -> None:
    log = tmp_path / "run"
    looped = '<tool_call>\n{"name": "write", "arguments": {"path": "a.py", "content": "' + "x = 1\\n" * 200
    model = ScriptedChatModel([
        {"malformed": [looped], "raw": looped, "finish_reason": "repetition"},
        call("write", path="a.py", content="x = 2\n"), finish(),
    ])
    run = run_agent(model, config(), "change x", context(tmp_path), logger=RunLogger(log))
    assert run.reason == "finished" and run.repetition_stops == 1 and run.malformed_responses == 1
    feedback = [m["content"] for m in run.messages if m.get("role") == "user"][1]
    assert "kept repeating the same text" in feedback and "x = 1" in feedback
    assert [e["kind"] for e in events(log.with_suffix(".jsonl"))].count("repetition") == 1
    assert model.requests[0]["options"].repetition_guard is True  # on by default
    assert_paired(run.messages)
