"""``localcode report`` on hand-made result folders with known answers: intervals, the exact
McNemar test, flips, repeats, time split, unusual endings, and the agreement of --json,
--markdown and --yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from localcode.harness import compare
from localcode.harness.report import build_report, load_runs, resolve_run_dirs, to_markdown
from report_util import (
    AGENT_S,
    CACHED_TOKENS,
    COMPLETION_TOKENS,
    DECODE_MS,
    PROMPT_MS,
    PROMPT_TOKENS,
    RUN_A,
    RUN_B,
    TEST_S,
    make_repeat_run,
    make_run,
)



# --------------------------------------------------------------------------- pure statistics
def test_wilson_interval_known_values():
    lo, hi = compare.wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = compare.wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    lo, hi = compare.wilson_interval(10, 10)
    assert round(lo, 4) == 0.7225 and hi == 1.0
    lo, hi = compare.wilson_interval(3, 6)
    assert (round(lo, 4), round(hi, 4)) == (0.1876, 0.8124)
    assert compare.wilson_interval(0, 0) == (0.0, 1.0)
    lo90, hi90 = compare.wilson_interval(8, 10, confidence=0.90)
    assert 0.4902 < lo90 and hi90 < 0.9433  # a lower confidence gives a narrower interval
    with pytest.raises(ValueError):
        compare.wilson_interval(11, 10)


def test_exact_mcnemar_on_known_tables():
    # b=10, c=2: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert compare.mcnemar_exact(10, 2) == pytest.approx(2 * 79 / 4096)
    assert round(compare.mcnemar_exact(10, 2), 4) == 0.0386
    assert compare.mcnemar_exact(2, 10) == compare.mcnemar_exact(10, 2)
    assert compare.mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert compare.mcnemar_exact(3, 3) == 1.0
    assert compare.mcnemar_exact(0, 0) == 1.0


def test_paired_test_counts_and_bootstrap():
    a = {"t1": True, "t2": True, "t3": False, "t4": False, "t5": True}
    b = {"t1": True, "t2": False, "t3": True, "t4": False, "t6": True}  # t5, t6 not common
    p = compare.paired_test("A", "B", a, b)
    assert (p.common, p.both, p.a_only, p.b_only, p.neither) == (4, 1, 1, 1, 1)
    assert (p.rate_a, p.rate_b, p.diff) == (50.0, 50.0, 0.0)
    assert p.p_value == 1.0 and p.diff_low <= 0.0 <= p.diff_high
    # every task flips the same way: the bootstrap interval is that one value
    lo, hi = compare.paired_bootstrap_diff([0, 0, 0], [1, 1, 1])
    assert (lo, hi) == (1.0, 1.0)
    assert compare.bootstrap_interval([1.0] * 5) == (1.0, 1.0)
    # 5 of 10 solved: the resampled count is Binomial(10, 1/2); P(K <= 1) = 0.011 < 0.025 <= P(K <= 2) = 0.055
    assert compare.bootstrap_interval([0.0] * 5 + [1.0] * 5) == (0.2, 0.8)
    # the exact distribution agrees with drawn resamples (more than three distinct values are drawn)
    lo, hi = compare.bootstrap_interval([0.0] * 30 + [1.0] * 70)
    mc_lo, mc_hi = compare.bootstrap_interval([0.0] * 30 + [1.0] * 69 + [1.0 + 1e-9], samples=4000, seed=3)
    assert (lo, hi) == (0.61, 0.79) and abs(mc_lo - lo) <= 0.011 and abs(mc_hi - hi) <= 0.011
    assert compare.bootstrap_interval([0.5, 0.25, 1.0, 0.0] * 5, seed=1) == \
        compare.bootstrap_interval([0.5, 0.25, 1.0, 0.0] * 5, seed=1)  # drawn resamples are seeded
    # paired differences -1, 0, 0, +1: P(mean <= -1) = 1/256, P(mean <= -0.75) = 1/256 + 4 * (1/4)^3 * (1/2)
    # = 0.035 >= 0.025, so the interval is [-0.75, 0.75]
    lo, hi = compare.paired_bootstrap_diff([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
    assert (lo, hi) == (-0.75, 0.75)


def test_flips_mean_sd_and_frequency():
    solved = {"A": {"x": True, "y": False, "z": True}, "B": {"x": True, "y": True}, "C": {"z": False, "w": True}}
    assert compare.flips(solved) == ["y", "z"]
    mean, sd = compare.mean_sd([50.0, 60.0, 70.0])
    assert (mean, sd) == (60.0, 10.0)
    assert compare.mean_sd([42.0]) == (42.0, 0.0)
    assert compare.solve_frequency([{"x": True, "y": False}, {"x": True, "y": True}, {"x": False}]) == \
        {"x": (2, 3), "y": (1, 2)}


# --------------------------------------------------------------------------- runs on disk
def _report(tmp_path: Path, *specs: str):
    runs, groups = load_runs(resolve_run_dirs(list(specs), tmp_path))
    return runs, build_report(runs, groups)


def test_two_runs_side_by_side(tmp_path):
    make_run(tmp_path / "A", RUN_A)
    make_run(tmp_path / "B", RUN_B)
    runs, report = _report(tmp_path, "A", "B")
    a, b = report["runs"]
    assert (a["label"], b["label"]) == ("A", "B")
    # bench's statistics are the source: A finished 6 (go/g errored), 3 solved on try 1, 4 by try 2
    assert (a["completed"], a["errors"]) == (6, 1)
    assert (a["stats"]["pass_num_1"], a["stats"]["pass_num_2"]) == (3, 4)
    lo, hi = compare.wilson_interval(3, 6)
    assert a["pass_at"]["1"] == {"k": 3, "n": 6, "rate": 50.0, "low": round(100 * lo, 1), "high": round(100 * hi, 1),
                                 "bootstrap_low": a["pass_at"]["1"]["bootstrap_low"],
                                 "bootstrap_high": a["pass_at"]["1"]["bootstrap_high"]}
    assert a["pass_at"]["2"]["rate"] == 66.7
    py = a["per_language"]["python"]["pass_at"]
    assert (py["1"]["k"], py["1"]["n"], py["2"]["k"]) == (2, 4, 3)
    # different task sets: compared on the 7 common tasks, and the report says so
    assert report["task_sets_differ"] and report["common_tasks"] == 7 and report["all_tasks"] == 8
    # pairs on the tasks both finished (go/g errored in A): 6 tasks
    p1 = next(p for p in report["pairs"] if p["k"] == 1)
    assert (p1["common"], p1["both"], p1["a_only"], p1["b_only"], p1["neither"]) == (6, 2, 1, 1, 2)
    assert p1["p_value"] == 1.0
    p2 = next(p for p in report["pairs"] if p["k"] == 2)
    assert (p2["both"], p2["a_only"], p2["b_only"], p2["neither"]) == (3, 1, 1, 1)
    # flips: b (A solved, B not) and d (the reverse); g errored in A, h ran only in B
    assert [f["task"] for f in report["flips"]] == ["python/b", "python/d"]
    assert report["matrix"]["go/g"] == {"A": "error", "B": "pass@1"}
    assert report["matrix"]["go/h"] == {"B": "pass@1"}
    assert report["matrix"]["python/c"] == {"A": "pass@2", "B": "pass@1"}
    assert (a["facts"]["model"], a["facts"]["tries"], a["facts"]["sandbox"]) == ("gguf/x", 2, "local")
    md = to_markdown(report)
    assert "different task sets (8 tasks in all, 7 common to all)" in md
    assert "## Configurations\n\n|  | A | B |\n|---|---|---|\n| model | gguf/x | gguf/x |" in md


def test_mcnemar_on_runs_with_a_known_table(tmp_path):
    # 12 discordant tasks: A alone solved 10, B alone 2; 5 both, 3 neither
    a, b = {}, {}
    for i in range(10):
        a[f"python/a{i}"], b[f"python/a{i}"] = "1", "fail"
    for i in range(2):
        a[f"python/b{i}"], b[f"python/b{i}"] = "fail", "1"
    for i in range(5):
        a[f"go/c{i}"] = b[f"go/c{i}"] = "1"
    for i in range(3):
        a[f"go/d{i}"] = b[f"go/d{i}"] = "fail"
    make_run(tmp_path / "A", a, tries=1, logs=False)
    make_run(tmp_path / "B", b, tries=1, logs=False)
    _, report = _report(tmp_path, "A", "B")
    (p,) = report["pairs"]
    assert (p["common"], p["both"], p["a_only"], p["b_only"], p["neither"]) == (20, 5, 10, 2, 3)
    assert p["p_value"] == pytest.approx(2 * 79 / 4096)
    assert (p["rate_a"], p["rate_b"], p["diff"]) == (75.0, 35.0, -40.0)
    assert p["diff_low"] < p["diff"] < p["diff_high"] < 0
    assert not report["task_sets_differ"] and len(report["flips"]) == 12


def test_one_run_tasks_endings_and_time(tmp_path):
    make_run(tmp_path / "A", RUN_A)
    runs, report = _report(tmp_path, "A")
    (b,) = report["runs"]
    tasks = {t["id"]: t for t in b["tasks"]}
    c = tasks["python/c"]
    assert c["outcome"] == "pass@2" and [t["passed"] for t in c["tries"]] == [False, True]
    assert c["turns"] == 6 and c["tokens"] == 2 * (PROMPT_TOKENS + COMPLETION_TOKENS)
    assert c["seconds"] == 2 * (AGENT_S + TEST_S)
    assert [t["stop_reason"] for t in tasks["go/f"]["tries"]] == ["stuck", "stuck"]
    endings = {(e["task"], e["try"]): e for e in b["unusual_endings"]}
    assert endings[("go/f", 1)]["kind"] == "stuck" and endings[("go/f", 1)]["reason"] == "same failing call 3 times"
    assert endings[("go/g", 1)]["kind"] == "error" and "DockerException" in endings[("go/g", 1)]["reason"]
    assert endings[("python/d", 2)]["kind"] == "max_turns"
    assert ("python/a", 1) not in endings
    # time split: per finished case; the four parts add up to bench's seconds_per_case
    t = b["time"]
    finished = [r for r in runs[0].results.values() if r.finished]
    n_tries = sum(len(r.tries) for r in finished)
    assert t["cases"] == 6
    assert t["prefill_seconds_per_case"] == round(n_tries * PROMPT_MS / 1000 / 6, 2)
    assert t["decode_seconds_per_case"] == round(n_tries * DECODE_MS / 1000 / 6, 2)
    assert t["test_seconds_per_case"] == round(n_tries * TEST_S / 6, 2)
    # the hand-made logs hold one write call per try, from t=0.6 to its result at t=0.7
    assert t["tools_seconds_per_case"] == round(n_tries * 0.1 / 6, 2)
    parts = sum(t[k] for k in ("prefill_seconds_per_case", "decode_seconds_per_case", "tools_seconds_per_case",
                               "other_seconds_per_case", "test_seconds_per_case"))
    assert parts == pytest.approx(t["total_seconds_per_case"], abs=0.03)
    assert t["total_seconds_per_case"] == pytest.approx(
        b["stats"]["agent_seconds_per_case"] + b["stats"]["test_seconds_per_case"], abs=0.02)
    assert t["agent_seconds_per_case"] == b["stats"]["agent_seconds_per_case"]
    assert t["cached_token_share"] == round(100 * CACHED_TOKENS / PROMPT_TOKENS, 1)
    assert t["decode_tokens_per_s"] == b["stats"]["decode_tokens_per_s"] == round(COMPLETION_TOKENS / (DECODE_MS / 1000), 1)


def test_repeats_mean_sd_and_frequency(tmp_path):
    reps = [
        {"python/a": "1", "python/b": "fail", "python/c": "fail", "python/d": "fail"},
        {"python/a": "1", "python/b": "2", "python/c": "fail", "python/d": "fail"},
        {"python/a": "1", "python/b": "1", "python/c": "2", "python/d": "fail"},
    ]
    make_repeat_run(tmp_path / "R", reps, seeds=[0, 1, 2], logs=False)
    runs, report = _report(tmp_path, "R")
    assert [r.label for r in runs] == ["R#1", "R#2", "R#3"] and [r.seed for r in runs] == [0, 1, 2]
    (g,) = report["repeats"]
    assert g["seeds"] == [0, 1, 2] and g["finished_repeats"] == 3
    assert g["pass_at"]["2"] == {"mean": 50.0, "sd": 25.0, "values": [25.0, 50.0, 75.0]}
    assert g["pass_at"]["1"]["mean"] == 33.3 and g["pass_at"]["1"]["sd"] == 14.4
    assert g["solve_frequency"] == {"python/a": {"solved": 3, "runs": 3}, "python/b": {"solved": 2, "runs": 3},
                                    "python/c": {"solved": 1, "runs": 3}, "python/d": {"solved": 0, "runs": 3}}
    md = to_markdown(report)
    assert "## Repeats: R" in md and "| 2 | 50.0 | 25.0 |" in md


def test_resolve_run_specs(tmp_path, monkeypatch):
    make_run(tmp_path / "runs" / "2026-a", {"python/a": "1"}, logs=False)
    make_run(tmp_path / "runs" / "2026-b", {"python/a": "fail"}, logs=False)
    (tmp_path / "runs" / "not-a-run").mkdir()
    runs_dir = tmp_path / "runs"
    assert [p.name for p in resolve_run_dirs(["2026-*"], runs_dir)] == ["2026-a", "2026-b"]
    assert [p.name for p in resolve_run_dirs([str(runs_dir / "2026-b"), "2026-a"], runs_dir)] == ["2026-b", "2026-a"]
    # a folder of the same name in the working directory that is not a run does not hide the run
    (tmp_path / "2026-a").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_run_dirs(["2026-a"], runs_dir) == [(runs_dir / "2026-a").resolve()]
    from localcode.errors import ConfigError

    with pytest.raises(ConfigError, match="no run matches 'nope'"):
        resolve_run_dirs(["nope"], runs_dir)
    with pytest.raises(ConfigError, match="not a run folder"):
        resolve_run_dirs(["not-a-run"], runs_dir)


# --------------------------------------------------------------------------- the command
def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LOCALCODE_HOME=str(home), COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "localcode", "report", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=home)


def _md_rows(md: str, heading: str) -> list[list[str]]:
    """The rows of the first table under ``## heading``."""
    lines = md.split(f"## {heading}\n", 1)[1].splitlines()
    end = next((i for i, ln in enumerate(lines) if ln.startswith("## ")), len(lines))
    rows = [ln for ln in lines[:end] if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in rows[2:]]


def test_json_markdown_yaml_parse_and_agree(tmp_path):
    home = tmp_path
    make_run(home / "runs" / "A", RUN_A)
    make_run(home / "runs" / "B", RUN_B)
    out = {fmt: _cli(["A", "B", f"--{fmt}", "-q"], home) for fmt in ("json", "markdown", "yaml")}
    for fmt, proc in out.items():
        assert proc.returncode == 0, (fmt, proc.stderr)
    data = json.loads(out["json"].stdout)
    entries = yaml.safe_load(out["yaml"].stdout)
    md = out["markdown"].stdout
    assert [e["dirname"] for e in entries] == ["A", "B"]
    runs_rows = _md_rows(md, "Runs")
    assert [r[0] for r in runs_rows] == ["A", "B"]
    for block, entry, row in zip(data["runs"], entries, runs_rows):
        for k in (1, 2):
            p = block["pass_at"][str(k)]
            assert entry[f"pass_rate_{k}"] == block["stats"][f"pass_rate_{k}"] == p["rate"]
            assert entry[f"pass_num_{k}"] == p["k"]
            assert row[4 + k] == f"{p['rate']:.1f}% [{p['low']:.1f}, {p['high']:.1f}]"
        assert entry["total_tests"] == int(row[2]) == block["task_count"]
        assert float(row[-1]) == entry["seconds_per_case"]
    pair_rows = _md_rows(md, "Paired tests")
    assert len(pair_rows) == len(data["pairs"]) == 2
    for row, p in zip(pair_rows, data["pairs"]):
        assert [int(row[0]), row[1], row[2], int(row[3]), int(row[5]), int(row[6])] == \
            [p["k"], p["a"], p["b"], p["common"], p["a_only"], p["b_only"]]
        assert float(row[-1]) == pytest.approx(p["p_value"], rel=1e-3)
    flip_rows = _md_rows(md, "Flips")
    assert [r[0] for r in flip_rows] == [f["task"] for f in data["flips"]]
    matrix_rows = _md_rows(md, "Tasks")
    assert {r[0]: r[1:] for r in matrix_rows} == {t: [c.get("A", ""), c.get("B", "")] for t, c in data["matrix"].items()}
    # the rich table goes to stderr, stdout holds only the chosen format
    both = _cli(["A", "B", "--json"], home)
    assert json.loads(both.stdout) == data  # the bootstrap is seeded: the same report twice
    assert "pass rates" in both.stderr and "paired tests" in both.stderr and "per language" in both.stderr


def test_errors_are_one_line(tmp_path):
    make_run(tmp_path / "runs" / "A", {"python/a": "1"}, logs=False)
    missing = _cli(["no-such-run"], tmp_path)
    lines = [ln for ln in missing.stderr.splitlines() if ln.strip()]
    assert missing.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: no run matches")
    usage = _cli(["A", "--json", "--yaml"], tmp_path)
    assert usage.returncode == 2 and "choose one of" in usage.stderr


def test_report_help_imports_nothing_heavy(tmp_path):
    heavy = ("llama_cpp", "docker", "fastapi", "matplotlib", "numpy", "playwright", "localcode.harness.report",
             "localcode.harness.report_html", "localcode.harness.compare")
    code = ("import sys\nfrom localcode.cli import main\n"
            "try:\n    main(['report', '--help'])\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "RUN is a run folder" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_html_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    from localcode.errors import MissingDependency
    from localcode.harness.report_html import render_html

    make_run(tmp_path / "A", {"python/a": "1"}, logs=False)
    runs, report = _report(tmp_path, "A")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    with pytest.raises(MissingDependency, match=r"pip install 'localcode\[report\]'"):
        render_html(report, runs)
