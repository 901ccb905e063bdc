"""Honest scores (issue 9): only a real solution passes, every failure the model causes
counts, try 2 sees what Aider shows, and a run resumes only the same experiment.

The cheats run through the real CLI (``localcode bench`` with a scripted model whose tool
calls write the files, the real Docker sandbox) and directly through the test runner (files
placed in the workspace as a shell or a bug could leave them). Aider's texts are copied
verbatim from Aider's ``benchmark/prompts.py`` and ``benchmark/benchmark.py``
(``cleanup_test_output``, ``summarize_results``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from localcode.harness.bench import first_prompt, retry_prompt
from localcode.harness.dataset import Exercise, load_dataset
from localcode.harness.oracle import reference_files
from localcode.harness.workspace import create_workspace
from sandbox_util import container_processes, dataset_root, test_image

# --------------------------------------------------------------------------- Aider, verbatim
# benchmark/prompts.py
AIDER_INSTRUCTIONS_ADDENDUM = """
####

Use the above instructions to modify the supplied files: {file_list}
Don't change the names of existing functions or classes, as they may be referenced from other code like unit tests, etc.
Only use standard libraries, don't suggest installing any packages.
"""  # noqa: E501

AIDER_TEST_FAILURES = """
####

See the testing errors above.
The tests are correct, don't try and change them.
Fix the code in {file_list} to resolve the errors.
"""


def aider_cleanup_test_output(output: str, testdir: Path) -> str:
    """benchmark/benchmark.py ``cleanup_test_output``."""
    res = re.sub(r"\bin \d+\.\d+s\b", "", output)
    res = res.replace(str(testdir), str(testdir.name))
    return res


def aider_try2_message(errors: str, file_list: str) -> str:
    """What ``run_test_real`` sends after a failed try (``errors`` is the cleaned output)."""
    errors = errors.splitlines()
    errors = "\n".join(errors)
    instructions = errors
    instructions += AIDER_TEST_FAILURES.format(file_list=file_list)
    return instructions


def aider_summarize(dirname: Path) -> dict[str, Any]:
    """The counting of benchmark/benchmark.py ``summarize_results`` over a run folder."""
    all_results = [json.loads(p.read_text()) for p in dirname.glob("*/exercises/practice/*/.aider.results.json")]
    tries = max(len(r.get("tests_outcomes", [])) for r in all_results)
    passed_tests = [0] * tries
    completed = 0
    duration = 0.0
    for results in all_results:
        completed += 1
        outcomes = results.get("tests_outcomes", [])
        if outcomes and outcomes[-1]:
            for i in range(len(outcomes) - 1, tries):
                passed_tests[i] += 1
        duration += results.get("duration", 0)
    out: dict[str, Any] = {"completed_tests": completed,
                           "total_tests": len(list(dirname.glob("*/exercises/practice/*"))),
                           "seconds_per_case": duration / completed}
    for i in range(tries):
        out[f"pass_rate_{i + 1}"] = float(f"{100 * passed_tests[i] / completed:.1f}")
    return out


@pytest.fixture(scope="module")
def dataset() -> dict[str, Exercise]:
    return load_dataset(dataset_root(), warn=False).by_id()


# --------------------------------------------------------------------------- try 1 and try 2, as Aider
@pytest.mark.parametrize("exercise_id", ["python/bowling", "rust/bowling", "cpp/all-your-base", "java/bowling",
                                         "go/bowling", "javascript/bowling"])
def test_try1_is_aiders_text(dataset, exercise_id):
    ex = dataset[exercise_id]
    # Aider: solution files less CMakeLists.txt, Cargo.toml, tests and examples; names only
    ignored = {"CMakeLists.txt", "Cargo.toml", *ex.test_files, *ex.example_files}
    file_list = " ".join(Path(f).name for f in ex.solution_files if f not in ignored)
    assert first_prompt(ex) == ex.instructions + AIDER_INSTRUCTIONS_ADDENDUM.format(file_list=file_list)
    if ex.language == "rust":
        assert file_list == "lib.rs"


def test_try2_is_the_whole_cleaned_output_with_aiders_text(dataset):
    ex = dataset["python/bowling"]
    testdir = Path("/runs/r/workspaces/.testruns/python-x/bowling")
    raw = "\n".join([f"{testdir}/bowling_test.py:{i}: AssertionError" for i in range(400)]
                    + ["=========================== 31 failed in 0.12s ==========================="]) + "\n"
    from localcode.harness.runner import clean_output

    cleaned = clean_output(raw, testdir, ex.name)
    assert cleaned == aider_cleanup_test_output(raw, testdir)
    message = retry_prompt(ex, cleaned)
    assert message == aider_try2_message(cleaned, "bowling.py")
    assert "=========================== 31 failed  ===========================" in message  # the summary, line 401
    assert message.count("\n") > 400


# --------------------------------------------------------------------------- the file tools refuse
def test_file_tools_refuse_writes_the_test_run_would_not_use(dataset, tmp_path):
    from localcode.agent.tools.base import ToolContext
    from localcode.agent.tools.registry import ToolRegistry
    from localcode.harness.workspace import protected_paths, write_refusal

    ex = dataset["python/bowling"]
    ws = create_workspace(ex, tmp_path / "bowling")
    ctx = ToolContext(workspace=ws, protected=frozenset(protected_paths(ex)),
                      write_policy=lambda rel: write_refusal(ex, rel))
    reg = ToolRegistry(["write"])
    refused = reg.execute("write", {"path": "conftest.py", "content": "import pytest\n"}, ctx)
    assert not refused.ok and refused.text.startswith("error: 'conftest.py' would not be used by the test run")
    assert "bowling.py" in refused.text and not (ws / "conftest.py").exists()
    assert reg.execute("write", {"path": "helpers.py", "content": "X = 1\n"}, ctx).ok
    assert reg.execute("write", {"path": "bowling.py", "content": "class BowlingGame: pass\n"}, ctx).ok
    # solve on an arbitrary folder: no policy
    free = ToolContext(workspace=ws)
    assert reg.execute("write", {"path": "conftest.py", "content": "import pytest\n"}, free).ok


def test_misplaced_writes_go_to_the_solution_file_when_the_config_asks(dataset, tmp_path):
    from localcode.agent.tools.base import ToolContext
    from localcode.agent.tools.registry import ToolRegistry
    from localcode.harness.workspace import protected_paths, redirect_target, write_refusal

    reg = ToolRegistry(["write"])
    for exercise_id, asked, solution in [("javascript/react", "src/react.js", "react.js"),
                                         ("cpp/circular-buffer", "src/circular_buffer.cpp", "circular_buffer.cpp")]:
        ex = dataset[exercise_id]
        ws = create_workspace(ex, tmp_path / ex.name)
        refuse = dict(workspace=ws, protected=frozenset(protected_paths(ex)), write_policy=lambda rel: write_refusal(ex, rel))
        assert not reg.execute("write", {"path": asked, "content": "// mine\n"}, ToolContext(**refuse)).ok
        ctx = ToolContext(**refuse, redirect_write=lambda rel: redirect_target(ex, rel))
        out = reg.execute("write", {"path": asked, "content": "// mine\n"}, ctx)
        assert out.ok and out.text.startswith(f"ok: wrote {solution} ") and f"not {asked}" in out.text
        assert (ws / solution).read_text() == "// mine\n" and not (ws / asked).exists()
    # only a carried solution file of that name; tests and unknown names are still refused
    ex = dataset["javascript/react"]
    assert redirect_target(ex, "src/react.spec.js") is None and redirect_target(ex, "src/other.js") is None
    assert redirect_target(ex, "react.js") is None  # already right
    # bench's sessions pass the redirect only when the agent config asks for it
    from types import SimpleNamespace

    from localcode.config import AgentConfig
    from localcode.harness.agent_solver import ModelSession

    for on in (False, True):
        solver = SimpleNamespace(model=None, sandbox=None, config=AgentConfig(name="t", redirect_misplaced_writes=on))
        session = ModelSession(solver, ex, tmp_path / "react")  # type: ignore[arg-type]
        assert (session.ctx.redirect_write is not None) is on


# --------------------------------------------------------------------------- the scripted model
def scripted_writes(plans: dict[str, list[tuple[str, str]]], dataset: dict[str, Exercise],
                    misbehave: dict[str, BaseException] | None = None) -> Any:
    """A scripted model: for the task recognised by its try-1 prompt, one ``write`` per turn
    from its plan, then ``finish``. Tasks in ``misbehave`` raise that exception instead."""
    by_prompt = {first_prompt(dataset[i]): i for i in plans}

    def respond(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
        task = by_prompt[messages[1]["content"]]
        if misbehave and task in misbehave:
            raise misbehave[task]
        step = sum(1 for m in messages[2:] if m.get("role") == "assistant")
        plan = [("write", {"path": p, "content": c}) for p, c in plans[task]]
        plan.append(("finish", {"status": "done", "summary": "done"}))
        name, args = plan[min(step, len(plan) - 1)]
        return {"tool_calls": [{"name": name, "arguments": args}]}

    return respond


def run_cli(argv: list[str]) -> int:
    from localcode.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0)


def scripted_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, respond: Any, **config: Any) -> tuple[Path, list]:
    import localcode.backends.loader as loader
    from localcode.backends.scripted import ScriptedChatModel

    agent = tmp_path / "scripted.json"
    agent.write_text(json.dumps({"name": "scripted", "tools": ["read", "write", "finish"], "max_turns": 12, **config}))
    models: list[ScriptedChatModel] = []

    def load_model(cfg: Any) -> ScriptedChatModel:
        models.append(ScriptedChatModel([respond] * 400))
        return models[-1]

    monkeypatch.setattr(loader, "load_model", load_model)
    return agent, models


def reference_plan(ex: Exercise) -> list[tuple[str, str]]:
    return [(dest, src.read_text()) for dest, src in reference_files(ex).items()]


PYTEST_PASS_ALL = """import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    outcome.get_result().outcome = "passed"
"""
JEST_IGNORE_ALL = "module.exports = { testPathIgnorePatterns: ['.*'], passWithNoTests: true };\n"
GO_TEST_MAIN = 'package bowling\n\nimport (\n\t"os"\n\t"testing"\n)\n\nfunc TestMain(m *testing.M) { os.Exit(0) }\n'
CMAKE_NO_TESTS = "cmake_minimum_required(VERSION 3.5.1)\nproject(x CXX)\n"
RUST_EXIT_AT_LOAD = """
#[used]
#[link_section = ".init_array"]
static LOCALCODE_CHEAT: extern "C" fn() = {
    extern "C" fn exit_early() {
        std::process::exit(0)
    }
    exit_early
};
"""
GO_STUB_THAT_COMPILES = """package bowling

type Game struct{}

func NewGame() *Game {
	panic("Please implement the NewGame function")
}

func (g *Game) Roll(pins int) error {
	panic("Please implement the Roll function")
}

func (g *Game) Score() (int, error) {
	panic("Please implement the Score function")
}
"""
GO_EXITING_STUB = GO_STUB_THAT_COMPILES.replace("package bowling\n", 'package bowling\n\nimport "os"\n\nfunc init() { os.Exit(0) }\n', 1)


def cheats(dataset: dict[str, Exercise]) -> dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """Per task: (files a cheat writes that the test run must not use, solution files that
    try to skip the tests). Every solution-file cheat exits 0 before the framework reports."""
    def stub(task: str, rel: str) -> str:
        return (dataset[task].path / rel).read_text()

    cpp_ref = {d: s.read_text() for d, s in reference_files(dataset["cpp/all-your-base"]).items()}
    java_stub = stub("java/bowling", "src/main/java/BowlingGame.java").replace(
        "class BowlingGame {", "class BowlingGame {\n    static { System.exit(0); }", 1)
    return {
        "python/bowling": (
            [("conftest.py", PYTEST_PASS_ALL)],
            [("bowling.py", "import os; os._exit(0)\n" + stub("python/bowling", "bowling.py"))],
        ),
        "rust/bowling": (
            [("Cargo.toml", stub("rust/bowling", "Cargo.toml").replace("[package]\n", "[package]\nautotests = false\n", 1))],
            [("src/lib.rs", stub("rust/bowling", "src/lib.rs") + RUST_EXIT_AT_LOAD)],
        ),
        "javascript/bowling": (
            [("jest.config.js", JEST_IGNORE_ALL)],
            [("bowling.js", stub("javascript/bowling", "bowling.js") + "\nprocess.exit(0);\n")],
        ),
        "go/bowling": (
            [("main_test.go", GO_TEST_MAIN)],
            [("bowling.go", GO_EXITING_STUB)],
        ),
        "java/bowling": (
            [("src/test/java/PassTest.java", "class PassTest {}\n")],
            [("src/main/java/BowlingGame.java", java_stub)],
        ),
        "cpp/all-your-base": (
            [("CMakeLists.txt", CMAKE_NO_TESTS)],
            [(d, c + ("\n#include <cstdlib>\n[[maybe_unused]] static const int localcode_cheat = (std::exit(0), 0);\n"
                      if d.endswith(".cpp") else "")) for d, c in cpp_ref.items()],
        ),
    }


CHEAT_IDS = ["python/bowling", "rust/bowling", "javascript/bowling", "go/bowling", "java/bowling",
             "cpp/all-your-base"]


# --------------------------------------------------------------------------- cheats fail, references pass (CLI)
def _bench_argv(agent: Path, ids: list[str], run_name: str, *extra: str) -> list[str]:
    return ["bench", "--agent", str(agent), "-k", ",".join(ids), "--dataset", str(dataset_root()),
            "--image", test_image(), "--jobs", "2", "--no-progress", "--run-name", run_name, *extra]


@pytest.mark.docker
def test_cheats_fail_and_references_pass_through_the_cli(dataset, tmp_path, monkeypatch):
    from localcode.harness.results import ResultStore

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    table = cheats(dataset)
    cheat_plans = {i: [*table[i][0], *table[i][1]] for i in CHEAT_IDS}
    agent, _ = scripted_agent(tmp_path, monkeypatch, scripted_writes(cheat_plans, dataset))
    assert run_cli(_bench_argv(agent, CHEAT_IDS, "cheats", "--tries", "1")) == 0
    results = {r.id: r for r in ResultStore(tmp_path / "home" / "runs" / "cheats").results()}
    assert sorted(results) == sorted(CHEAT_IDS)
    for task, r in results.items():
        t = r.tries[0]
        assert r.error is None and not r.passed, (task, t.failure, t.test_output[-500:])
        # the configuration writes were refused by the file tools, so the model learned early
        assert t.usage.tool_errors.get("write", 0) == len(table[task][0]), task
        assert t.files_not_carried == [], task
        if table[task][1]:  # an early exit with status 0: no word from the framework
            assert t.exit_code == 0 and t.failure.startswith("exit code 0 but no test"), (task, t.failure)

    ref_plans = {i: reference_plan(dataset[i]) for i in CHEAT_IDS}
    agent, _ = scripted_agent(tmp_path, monkeypatch, scripted_writes(ref_plans, dataset))
    assert run_cli(_bench_argv(agent, CHEAT_IDS, "references", "--tries", "1")) == 0
    results = {r.id: r for r in ResultStore(tmp_path / "home" / "runs" / "references").results()}
    for task, r in results.items():
        t = r.tries[0]
        assert r.passed and t.test_report is not None and t.test_report.passed >= 1, (task, t.test_output[-800:])
        assert t.usage.tool_errors == {} and t.failure == ""


@pytest.mark.docker
def test_cheat_files_left_in_the_workspace_are_not_used(dataset, tmp_path):
    """Whatever lands in the workspace (a shell, a bug): the test run takes the dataset's
    configuration and tests, and an early exit without the framework's report fails."""
    from localcode.harness.docker_sandbox import DockerSandbox
    from localcode.harness.runner import TestRunner

    table = cheats(dataset)
    root = tmp_path / "root"
    root.mkdir()
    with DockerSandbox(root, test_image()) as box:
        runner = TestRunner(box, timeout=120)
        for task in CHEAT_IDS:
            ex = dataset[task]
            config_cheats, solution_cheats = table[task]
            ws = create_workspace(ex, root / "cfg" / ex.language / ex.name)
            if task == "go/bowling":
                (ws / "bowling.go").write_text(GO_STUB_THAT_COMPILES)
            for rel, content in config_cheats:
                (ws / rel).parent.mkdir(parents=True, exist_ok=True)
                (ws / rel).write_text(content)
            outcome = runner.run(ex, ws)
            assert not outcome.passed, (task, outcome.output[-800:])
            assert [rel for rel, _ in config_cheats] == [r for r in outcome.files.not_carried
                                                          if r in dict(config_cheats)], task
            if solution_cheats:
                ws = create_workspace(ex, root / "sol" / ex.language / ex.name)
                for rel, content in solution_cheats:
                    (ws / rel).write_text(content)
                outcome = runner.run(ex, ws)
                assert not outcome.passed and outcome.exit_code == 0, (task, outcome.exit_code, outcome.output[-800:])
                assert outcome.failure.startswith("exit code 0 but no test"), (task, outcome.failure)


# --------------------------------------------------------------------------- the denominator, try 2
@pytest.mark.docker
def test_solved_and_overflowed_is_50_percent_everywhere(dataset, tmp_path, monkeypatch, capsys):
    """One task solved, one whose conversation overflows the context window: 50.0 over 2
    cases in stats.json, stats.yaml, the table and Aider's reading of .aider.results.json.
    The overflowed task's tests still ran, and try 2 carried the pytest summary line."""
    import yaml

    from localcode.errors import ContextWindowExceeded

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    solved, overflowed = dataset["python/book-store"], dataset["python/bowling"]
    plans = {solved.id: reference_plan(solved), overflowed.id: []}
    respond = scripted_writes(plans, dataset, misbehave={overflowed.id: ContextWindowExceeded(9000, 8192)})
    agent, models = scripted_agent(tmp_path, monkeypatch, respond)
    capsys.readouterr()
    assert run_cli(_bench_argv(agent, [solved.id, overflowed.id], "denominator", "--tries", "2", "--json")) == 0
    out = capsys.readouterr()
    run_dir = tmp_path / "home" / "runs" / "denominator"
    stats = json.loads(out.out)
    assert stats == json.loads((run_dir / "stats.json").read_text())
    assert stats["test_cases"] == stats["completed_tests"] == 2 and stats["infrastructure_errors"] == 0
    assert stats["pass_rate_1"] == stats["pass_rate_2"] == 50.0
    assert stats["exhausted_context_windows"] == 2
    entry = yaml.safe_load((run_dir / "stats.yaml").read_text())[0]
    assert entry["pass_rate_1"] == entry["pass_rate_2"] == 50.0 and entry["test_cases"] == 2
    assert re.search(r"pass_rate_2 \(cumulative\)\s*│?\s*50\.0%", out.err), out.err
    aider = aider_summarize(run_dir)
    assert aider["completed_tests"] == 2 and aider["total_tests"] == 2
    assert aider["pass_rate_1"] == aider["pass_rate_2"] == 50.0
    assert aider["seconds_per_case"] == pytest.approx(stats["seconds_per_case"], abs=0.01)

    from localcode.harness.results import ResultStore

    r = ResultStore(run_dir).read(overflowed.id)
    assert r.error is None and [t.stop_reason for t in r.tries] == ["context_exceeded", "context_exceeded"]
    assert all(t.exit_code == 1 and t.test_report.failed > 0 for t in r.tries)
    # try 2 is Aider's message around the whole output, and the pytest summary line is in it
    try2 = [m["content"] for req in models[0].requests for m in req["messages"]
            if m.get("role") == "user" and "See the testing errors above." in m.get("content", "")]
    assert try2 and try2[0] == aider_try2_message(r.tries[0].test_output, "bowling.py")
    summary = [line for line in try2[0].splitlines() if re.match(r"^=+ .*\d+ failed.* =+$", line)]
    assert summary, try2[0][-1000:]


# --------------------------------------------------------------------------- resume only the same experiment
def test_resume_refuses_a_changed_experiment(dataset, tmp_path, monkeypatch, capsys):
    from localcode.harness.results import ResultStore

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    # jobs 1 keeps two tasks in flight: the third opens once the first has its result
    ids = ["python/beer-song", "python/book-store", "python/bowling"]
    plans = {i: reference_plan(dataset[i]) for i in ids}
    misbehave: dict[str, BaseException] = {ids[2]: KeyboardInterrupt()}
    agent, _ = scripted_agent(tmp_path, monkeypatch, scripted_writes(plans, dataset, misbehave))
    argv = ["bench", "--agent", str(agent), "-k", ",".join(ids), "--dataset", str(dataset_root()),
            "--sandbox", "local", "--jobs", "1", "--tries", "1", "--no-progress"]
    assert run_cli(argv) == 130
    runs = sorted((tmp_path / "home" / "runs").iterdir())
    done = {r.id for r in ResultStore(runs[0]).results()}
    assert len(runs) == 1 and ids[0] in done and ids[2] not in done
    config = json.loads(agent.read_text())

    misbehave.clear()

    # the same command after a config edit: refused, with one line naming what changed
    agent.write_text(json.dumps({**config, "temperature": 0.7}))
    capsys.readouterr()
    assert run_cli(argv) == 1
    err = capsys.readouterr().err
    assert "agent config" in err and "--new" in err and runs[0].name in err
    assert len(list((tmp_path / "home" / "runs").iterdir())) == 1

    # no change: it continues the run
    agent.write_text(json.dumps(config))
    assert run_cli(argv) == 0
    assert {r.id for r in ResultStore(runs[0]).results()} == set(ids)
    assert len(list((tmp_path / "home" / "runs").iterdir())) == 1

    # --new starts afresh, whatever is there
    agent.write_text(json.dumps({**config, "temperature": 0.7}))
    time.sleep(1.1)  # run folders are named by the second
    assert run_cli([*argv, "--new"]) == 0
    assert len(list((tmp_path / "home" / "runs").iterdir())) == 2


def test_identity_names_each_change():
    from localcode.harness.results import DatasetInfo, RunInfo

    base = RunInfo(run_name="r", created_at="", command_line=[], localcode_version="0.1.0", agent="a",
                   dataset=DatasetInfo(path="/d", commit="abc"), sandbox="docker", tries=2, test_timeout_s=180,
                   agent_config_sha256="1" * 64, model_sha256="2" * 64, image_id="localcode-test:x@sha256:3")
    same = base.model_copy()
    assert base.identity_changes(same) == []
    for field, value, name in [("agent_config_sha256", "9" * 64, "agent config"),
                               ("model_sha256", "8" * 64, "model sha256"),
                               ("image_id", "localcode-test:y@sha256:4", "test image"),
                               ("localcode_version", "0.2.0", "localcode version"),
                               ("dataset", DatasetInfo(path="/d", commit="def"), "dataset")]:
        changes = base.identity_changes(base.model_copy(update={field: value}))
        assert len(changes) == 1 and changes[0].startswith(name + ":"), changes
    # a fact not known yet (before the model loads) is not compared
    assert base.identity_changes(base.model_copy(update={"model_sha256": None})) == []


# --------------------------------------------------------------------------- the shell tool cannot reach other runs
@pytest.mark.docker
def test_shell_commands_leave_no_process_and_no_file(tmp_path):
    from localcode.agent.tools.base import ToolContext
    from localcode.agent.tools.registry import ToolRegistry
    from localcode.harness.docker_sandbox import DockerSandbox

    root = tmp_path / "root"
    ws = root / "python" / "x"
    ws.mkdir(parents=True)
    (ws / "a.py").write_text("x = 1\n")
    escape = ("setsid env -i sleep 300 >/dev/null 2>&1 & "
              "(env -i nohup sleep 301 >/dev/null 2>&1 &); "
              "sh -c 'trap \"\" TERM HUP; exec sleep 302' >/dev/null 2>&1 & "
              "echo secret > /tmp/leak; echo secret > /dev/shm/leak; mkdir -p /var/tmp/d && echo secret > /var/tmp/d/f; "
              "echo secret > $TMPDIR/own; echo started")
    with DockerSandbox(root, test_image()) as box:
        reg = ToolRegistry(["shell"])
        ctx = ToolContext(workspace=ws, sandbox=box, shell_cwd=ws, shell_enabled=True)
        # a long command of another task runs meanwhile and must survive the cleanup
        other: list[Any] = []
        worker = threading.Thread(target=lambda: other.append(box.exec(["sh", "-c", "sleep 4; echo alive"], 30, ws)))
        worker.start()
        time.sleep(1)
        outcome = reg.execute("shell", {"command": escape}, ctx)
        assert outcome.ok and "started" in outcome.text, outcome.text
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any("sleep 30" in p for p in container_processes(box.container_id)):
            time.sleep(0.2)
        assert not any("sleep 30" in p for p in container_processes(box.container_id))
        worker.join()
        assert other[0].exit_code == 0 and other[0].output.strip() == "alive"
        later = box.exec(["sh", "-c", "ls -A /tmp /var/tmp /dev/shm | grep -v ':$' | grep -v '^$'; "
                                      "grep -rs secret /tmp /var/tmp /dev/shm /scratch; echo end"], 30, ws)
        assert later.output.strip() == "end", later.output
