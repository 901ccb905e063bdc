"""TestRunner in the real Docker sandbox: for one exercise per language (plus the exercises
that need crates or extra jars) the reference solution passes and the untouched stub fails."""

from __future__ import annotations

import pytest

from localcode.harness.dataset import load_dataset
from localcode.harness.oracle import reference_files
from localcode.harness.runner import TestRunner
from localcode.harness.workspace import create_workspace
from sandbox_util import dataset_root, test_image

pytestmark = pytest.mark.docker

EXERCISES = [
    "cpp/all-your-base",
    "go/bowling",
    "java/bowling",
    "javascript/bowling",
    "python/bowling",
    "rust/bowling",
    # offline dependencies from Debian packages
    "rust/gigasecond",  # time
    "rust/simple-cipher",  # rand
    "rust/grep",  # anyhow, thiserror 1 (reference manifest)
    "java/rest-api",  # org.json
]


@pytest.fixture(scope="module")
def exercises():
    return load_dataset(dataset_root(), warn=False).by_id()


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    from localcode.harness.docker_sandbox import DockerSandbox

    root = tmp_path_factory.mktemp("runner-root")
    with DockerSandbox(root, test_image()) as box:
        yield TestRunner(box, timeout=180)


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_reference_passes_and_stub_fails(runner, exercises, exercise_id):
    ex = exercises[exercise_id]
    root = runner.sandbox.root
    ref = create_workspace(ex, root / "oracle" / ex.language / ex.name)
    for dest, src in reference_files(ex).items():
        (ref / dest).parent.mkdir(parents=True, exist_ok=True)
        (ref / dest).write_bytes(src.read_bytes())
    # as the oracle is tested: with the reference manifest where the exercise ships one
    good = TestRunner(runner.sandbox, timeout=180, reference_build=True).run(ex, ref)
    print(f"{exercise_id}: reference {good.duration_s:.1f} s")
    assert good.passed and good.exit_code == 0 and not good.timed_out, good.output
    assert good.report is not None and good.report.passed >= 1 and good.failure == ""

    stub = create_workspace(ex, root / "stub" / ex.language / ex.name)
    bad = runner.run(ex, stub)
    print(f"{exercise_id}: stub {bad.duration_s:.1f} s")
    assert not bad.passed and not bad.timed_out and bad.exit_code not in (0, None), bad.output
    assert bad.output.strip(), "a failing run must explain itself"
    assert str(root) not in bad.output


def test_edited_tests_do_not_help(runner, exercises):
    ex = exercises["python/bowling"]
    ws = create_workspace(ex, runner.sandbox.root / "cheat" / ex.name, visible_tests=True)
    test_file = ws / ex.test_files[0]
    test_file.chmod(0o644)
    test_file.write_text("def test_nothing():\n    pass\n")
    outcome = runner.run(ex, ws)
    # the dataset's tests ran (on a pristine copy), not the edited ones
    assert not outcome.passed and outcome.report is not None and outcome.report.failed > 0, outcome.output
    assert "test_nothing" not in outcome.output


def test_cpp_build_file_edits_do_not_help(runner, exercises):
    ex = exercises["cpp/all-your-base"]
    ws = create_workspace(ex, runner.sandbox.root / "cheat-cpp" / ex.name)
    (ws / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.5)\nproject(x NONE)\n")
    outcome = runner.run(ex, ws)
    assert not outcome.passed
