#!/usr/bin/env python
"""Run the ``oracle`` and ``none`` agents over a selection and print what the harness does.

For each language: how many exercises pass with the reference solution (should be all)
and with no change (should be none), the median and total seconds per test run, and the
median sandbox overhead per test run (a no-op ``docker exec`` round trip, measured in the
same container, side by side with the test runs). Exceptions are listed with the tail of
their test output, so each can be explained.

    python benchmarks/oracle_sweep.py                      # --full, both agents, docker
    python benchmarks/oracle_sweep.py -l python,go --jobs 2
    python benchmarks/oracle_sweep.py -k bowling --agents oracle --sandbox local

Results (the usual run folders) are kept under --out (default: a temp folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from localcode.harness.bench import BenchOptions, BenchRunner, make_solver
from localcode.harness.dataset import load_dataset, resolve_dataset_dir
from localcode.harness.results import ResultStore, TaskResult
from localcode.harness.selection import Selection, select, split_csv


def _overhead(box: Any, root: Path, n: int) -> list[float]:
    """Seconds of ``n`` no-op round trips through the sandbox."""
    if hasattr(box, "ping"):
        return [box.ping() for _ in range(n)]
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        box.exec(["true"], timeout=30, cwd=root)
        out.append(time.monotonic() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", dest="keywords", action="append", default=[])
    ap.add_argument("-l", "--languages", action="append", default=[])
    ap.add_argument("-n", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--agents", default="oracle,none", help="comma-separated (default oracle,none)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--tries", type=int, default=1, help="tries per task (1 suffices for oracle/none)")
    ap.add_argument("--test-timeout", type=float, default=180.0)
    ap.add_argument("--sandbox", choices=["docker", "local"], default="docker")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--image", default=os.environ.get("LOCALCODE_IMAGE"), help="test image (default: built from docker/)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the run folders (default: a temp folder)")
    ap.add_argument("--pings", type=int, default=20, help="no-op round trips per overhead sample")
    ap.add_argument("--json", action="store_true", help="also print the table as JSON on stdout")
    args = ap.parse_args(argv)

    root = resolve_dataset_dir(args.dataset)
    load = load_dataset(root)
    sel = Selection(keywords=split_csv(args.keywords), languages=split_csv(args.languages), n=args.n, seed=args.seed)
    if sel.empty:
        sel.full = True
    exercises = select(load.exercises, sel)
    agents = split_csv(args.agents)
    out = args.out or Path(tempfile.mkdtemp(prefix="oracle-sweep-"))
    out.mkdir(parents=True, exist_ok=True)
    for agent in agents:
        (out / agent / "workspaces").mkdir(parents=True, exist_ok=True)

    from localcode.harness.runner import TestRunner

    if args.sandbox == "docker":
        from localcode.harness.docker_sandbox import DockerSandbox
        from localcode.harness.image import ensure_image

        image = args.image or ensure_image()
        box: Any = DockerSandbox(out.resolve(), image)
    else:
        from localcode.harness.sandbox import LocalSandbox

        box = LocalSandbox(out.resolve())
    print(f"sweep of {len(exercises)} exercises with {', '.join(agents)}, sandbox {args.sandbox}, "
          f"jobs {args.jobs}; runs in {out}", file=sys.stderr)
    results: dict[str, list[TaskResult]] = {}
    pings: list[float] = []
    wall: dict[str, float] = {}
    try:
        pings += _overhead(box, out.resolve(), args.pings)
        for agent in agents:
            store = ResultStore(out / agent)
            t0 = time.monotonic()
            done = 0

            class Progress:
                def task_started(self, task_id: str, try_index: int) -> None:
                    pass

                def task_finished(self, result: TaskResult) -> None:
                    nonlocal done
                    done += 1
                    mark = "ERROR" if result.error else ("pass" if result.passed else "fail")
                    print(f"[{agent} {done}/{len(exercises)}] {result.id}: {mark} "
                          f"({result.test_duration_s:.1f}s)", file=sys.stderr, flush=True)

            BenchRunner(solver=make_solver(agent), runner=TestRunner(box, timeout=args.test_timeout), store=store,
                        options=BenchOptions(tries=args.tries, jobs=args.jobs), progress=Progress()).run(exercises)
            wall[agent] = time.monotonic() - t0
            results[agent] = list(store.results())
            pings += _overhead(box, out.resolve(), args.pings)
    finally:
        box.close()

    languages = sorted({e.language for e in exercises})
    rows: list[dict[str, Any]] = []
    for lang in [*languages, "total"]:
        row: dict[str, Any] = {"language": lang,
                               "exercises": sum(1 for e in exercises if lang in ("total", e.language))}
        for agent in agents:
            rs = [r for r in results[agent] if lang in ("total", r.language)]
            secs = [t.test_duration_s for r in rs for t in r.tries if t.error is None]
            row[f"{agent}_passed"] = sum(1 for r in rs if r.passed)
            row[f"{agent}_errors"] = sum(1 for r in rs if r.error)
            row[f"{agent}_median_s"] = round(statistics.median(secs), 2) if secs else 0.0
            row[f"{agent}_total_s"] = round(sum(secs), 1)
        rows.append(row)
    overhead = statistics.median(pings) if pings else 0.0

    head = ["language", "exercises"]
    for agent in agents:
        head += [f"{agent} passed", f"{agent} median s", f"{agent} total s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [row["language"], str(row["exercises"])]
        for agent in agents:
            err = f" ({row[f'{agent}_errors']} errors)" if row[f"{agent}_errors"] else ""
            cells += [f"{row[f'{agent}_passed']}/{row['exercises']}{err}", f"{row[f'{agent}_median_s']:.2f}",
                      f"{row[f'{agent}_total_s']:.1f}"]
        print("| " + " | ".join(cells) + " |")
    print()
    print(f"median sandbox overhead per test run (no-op exec round trip, {len(pings)} samples): "
          f"{overhead * 1000:.1f} ms")
    for agent in agents:
        print(f"{agent}: wall {wall[agent]:.1f} s for {len(exercises)} exercises with --jobs {args.jobs}")

    exceptions = []
    for agent in agents:
        for r in results[agent]:
            wrong = r.error or (agent == "oracle" and not r.passed) or (agent == "none" and r.passed)
            if wrong:
                last = r.tries[-1] if r.tries else None
                tail = (last.test_output if last else "").strip().splitlines()[-12:]
                exceptions.append({"agent": agent, "id": r.id, "error": r.error, "passed": r.passed,
                                   "timed_out": bool(last and last.timed_out),
                                   "failure": last.failure if last else "", "tail": tail})
    if exceptions:
        print()
        print("exceptions:")
        for x in exceptions:
            what = f"error: {x['error']}" if x["error"] else ("passed" if x["passed"] else
                                                                f"failed ({x['failure'] or 'no reason'})")
            print(f"- {x['agent']} {x['id']}: {what}")
            for line in x["tail"]:
                print(f"    {line}")
    if args.json:
        print(json.dumps({"rows": rows, "median_overhead_s": overhead, "wall_s": wall, "exceptions": exceptions},
                         indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
