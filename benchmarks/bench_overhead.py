#!/usr/bin/env python
"""Harness overhead of ``localcode bench``: time per task spent outside the model and the tests.

A scripted model (``ScriptedChatModel``) solves each task through real tool calls: it
``read``s every solution file, ``write``s each reference file (one call per turn, the
content from ``localcode.harness.oracle.reference_files``) and calls ``finish``. The
agent loop, tools, logs, the real Docker sandbox, the real ``TestRunner`` and
``BenchRunner`` with ``jobs=1`` do everything else, as in a real run. Nothing in the
production code changes: the model, the sandbox and ``BenchRunner``'s steps are wrapped.

What is measured, per task:

- model s: time inside the model's ``stream`` iterator (each ``next()``), i.e. generation;
  for the scripted model that is its own bookkeeping (copying the request), about zero;
- tests s: time inside ``sandbox.exec`` (the ``docker exec`` that copies the workspace into
  the container and runs the test command); ``TestRunner``'s own work around it (copying
  the tests in, cleaning the output) counts as overhead, so overhead is not understated;
- task s: the time the harness worked on the task, on either thread: the main thread
  (workspace, prompt, agent loop, tools, logs, result files) plus the test thread
  (restore tests, ``TestRunner.run``, strip tests), plus an equal share of the main
  thread's scheduling time that belongs to no task. Time a thread spends waiting is not
  counted: with ``jobs=1`` a task's test waits for the previous task's, and counting that
  wait (as ``TaskResult.duration_s`` does) would charge one task's tests to the next;
- overhead s = task s - model s - tests s, and its share of task s;
- overhead CPU ms: the same, in CPU time of the two threads (``time.thread_time``): the
  work itself, without the time a thread waited for a CPU on a busy machine.

Overlap (the next task's agent runs while a test runs) can only hide overhead from the
wall clock, so the per-task figure is an upper bound; the run-level line shows the wall
clock time during which neither the model nor a test was running. A real model takes
seconds to minutes per task where the scripted one takes about zero, so with a real model
the same absolute overhead is a smaller percentage: the ms per task is the figure to keep.

    python benchmarks/bench_overhead.py                      # 3 exercises per language
    python benchmarks/bench_overhead.py --per-language 2 --profile
    python benchmarks/bench_overhead.py -k python/bowling,go/bowling --image localcode-test:dev
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import localcode.harness.bench as bench_mod
from localcode.backends.scripted import ScriptedChatModel
from localcode.config import parse_agent
from localcode.harness.agent_solver import ModelSolver
from localcode.harness.bench import BenchOptions, BenchRunner, first_prompt
from localcode.harness.dataset import Exercise, load_dataset, resolve_dataset_dir
from localcode.harness.oracle import reference_files
from localcode.harness.results import ResultStore
from localcode.harness.runner import TestRunner
from localcode.harness.workspace import create_workspace, remove_tree

# Exercises the oracle passes, three per language (docs/oracle-sweep.md).
DEFAULT_EXERCISES = {
    "cpp": ["all-your-base", "allergies", "clock"],
    "go": ["beer-song", "book-store", "bowling"],
    "java": ["affine-cipher", "all-your-base", "book-store"],
    "javascript": ["affine-cipher", "beer-song", "book-store"],
    "python": ["beer-song", "book-store", "bowling"],
    "rust": ["acronym", "book-store", "bowling"],
}


def reference_policy(exercises: list[Exercise]) -> Callable[[list[dict[str, Any]], Any], dict[str, Any]]:
    """The scripted model's answer as a function of the conversation (the task is recognised
    by its try-1 prompt): read each solution file, write each reference file, finish."""
    plans: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for ex in exercises:
        plan: list[tuple[str, dict[str, Any]]] = [("read", {"path": p}) for p in ex.solution_files]
        plan += [("write", {"path": d, "content": s.read_text()}) for d, s in reference_files(ex).items()]
        plan.append(("finish", {"status": "done", "summary": "wrote the solution"}))
        plans[first_prompt(ex)] = plan

    def respond(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
        plan = plans[messages[1]["content"]]
        step = sum(1 for m in messages[2:] if m.get("role") == "assistant")
        name, args = plan[step]
        return {"tool_calls": [{"name": name, "arguments": args}]}

    return respond


class Clock:
    """Per-task seconds by category, and the intervals the model or a test was running."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.intervals: list[tuple[float, float]] = []
        self.current: dict[int, str] = {}  # thread id -> task id
        self.depth: dict[int, int] = defaultdict(int)
        self.lock = threading.Lock()

    def add(self, task: str, kind: str, seconds: float) -> None:
        with self.lock:
            self.seconds[task][kind] += seconds

    def busy(self, kind: str, interval: tuple[float, float], cpu: float) -> None:
        """The model or a test ran during ``interval`` (wall), using ``cpu`` s of this thread."""
        task = self.current.get(threading.get_ident(), "?")
        self.add(task, kind, interval[1] - interval[0])
        self.add(task, f"cpu:{kind}", cpu)
        with self.lock:
            self.intervals.append(interval)

    def section(self, task: str, kind: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` as work on ``task`` by this thread; nested sections count once (outermost)."""
        me = threading.get_ident()
        outer = self.depth[me] == 0
        previous = self.current.get(me)
        self.current[me] = task
        self.depth[me] += 1
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn()
        finally:
            elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
            self.depth[me] -= 1
            if outer:
                self.add(task, kind, elapsed)
                self.add(task, f"cpu:{kind}", cpu)
            if previous is None:
                self.current.pop(me, None)
            else:
                self.current[me] = previous


class TimedModel:
    """The model, with the time inside its stream's ``next()`` calls (and ``chat``) recorded."""

    def __init__(self, model: Any, clock: Clock) -> None:
        self.model, self.clock, self.info = model, clock, model.info

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return self.model.chat(*args, **kwargs)
        finally:
            self.clock.busy("model", (t0, time.perf_counter()), time.thread_time() - c0)

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        inner = self.model.stream(*args, **kwargs)
        while True:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                event = next(inner)
            except StopIteration:
                self.clock.busy("model", (t0, time.perf_counter()), time.thread_time() - c0)
                return
            self.clock.busy("model", (t0, time.perf_counter()), time.thread_time() - c0)
            yield event

    def close(self) -> None:
        self.model.close()


class InstrumentedRunner(BenchRunner):
    """``BenchRunner`` whose steps record the thread time they spend on each task."""

    meter: Clock
    profiles: list[cProfile.Profile] | None = None

    def _open(self, exercise: Exercise, done: list[Any]) -> Any:
        return self.meter.section(exercise.id, "main", lambda: self._step("open", exercise.id,
                                  lambda: super(InstrumentedRunner, self)._open(exercise, done)))

    def _attempt(self, task: Any, *args: Any) -> None:
        self.meter.section(task.exercise.id, "main", lambda: self._step("attempt", task.exercise.id,
                           lambda: super(InstrumentedRunner, self)._attempt(task, *args)))

    def _finish(self, task: Any, *args: Any, **kwargs: Any) -> None:
        self.meter.section(task.exercise.id, "main", lambda: self._step("finish", task.exercise.id,
                           lambda: super(InstrumentedRunner, self)._finish(task, *args, **kwargs)))

    def _step(self, name: str, task: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.meter.add(task, f"step:{name}", time.perf_counter() - t0)



class MeteredTests:
    """The test runner, with each run charged to its task as ``test_thread`` (optionally profiled)."""

    def __init__(self, runner: TestRunner, meter: Clock, profiles: list[cProfile.Profile] | None) -> None:
        self.runner, self.meter, self.profiles = runner, meter, profiles

    def run(self, exercise: Exercise, workspace: Path) -> Any:
        def run() -> Any:
            if self.profiles is None:
                return self.runner.run(exercise, workspace)
            profile = cProfile.Profile()
            try:
                return profile.runcall(self.runner.run, exercise, workspace)
            finally:
                self.profiles.append(profile)

        return self.meter.section(exercise.id, "test_thread", run)


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one interval."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def pick(dataset: Path, keywords: list[str], per_language: int) -> list[Exercise]:
    by_id = {e.id: e for e in load_dataset(dataset).exercises}
    ids = keywords or [f"{lang}/{name}" for lang, names in DEFAULT_EXERCISES.items() for name in names[:per_language]]
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise SystemExit(f"not in the dataset: {', '.join(missing)}")
    return [by_id[i] for i in ids]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", dest="keywords", default="", help="comma-separated lang/name (default: 3 per language)")
    ap.add_argument("--per-language", type=int, default=3, help="exercises per language from the default list")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--image", default=os.environ.get("LOCALCODE_IMAGE"), help="test image (default: built from docker/)")
    ap.add_argument("--profile", action="store_true", help="cProfile both threads; print the top functions on stderr")
    ap.add_argument("--per-task", action="store_true", help="print each task's seconds by category and step")
    ap.add_argument("--out", type=Path, default=None, help="keep the run folder here (default: a temp folder, removed)")
    args = ap.parse_args(argv)

    from localcode.harness.docker_sandbox import DockerSandbox
    from localcode.harness.image import ensure_image

    dataset = resolve_dataset_dir(Path(args.dataset) if args.dataset else None)
    exercises = pick(dataset, [k for k in args.keywords.split(",") if k], args.per_language)
    image = args.image or ensure_image()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    store = ResultStore(out / "run")
    store.workspaces_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    clock = Clock()
    config = parse_agent({"name": "scripted-oracle", "tools": ["read", "write", "finish"], "max_turns": 40},
                         "bench_overhead")

    model = TimedModel(ScriptedChatModel([reference_policy(exercises)] * 100_000), clock)
    solver = ModelSolver("scripted-oracle", config, model)  # type: ignore[arg-type]

    # One-time costs on first use (imports of the tool modules, compiled templates, pydantic's
    # validators): a per-run cost, paid here by one untimed agent attempt in a scratch folder
    # so that a short selection does not charge it to its first task. Reported below.
    t0 = time.perf_counter()
    warm = ModelSolver("warm-up", config, ScriptedChatModel([reference_policy(exercises[:1])] * 100))
    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-warm-"))
    session = warm.start(exercises[0], create_workspace(exercises[0], scratch / "ws"))
    session.attempt(first_prompt(exercises[0]), 1, None)
    session.close()
    remove_tree(scratch)
    first_use = time.perf_counter() - t0

    t0 = time.perf_counter()
    box = DockerSandbox(store.workspaces_dir, image)
    sandbox_start = time.perf_counter() - t0
    real_exec = box.exec

    def timed_exec(*a: Any, **kw: Any) -> Any:
        s, c = time.perf_counter(), time.thread_time()
        try:
            return real_exec(*a, **kw)
        finally:
            clock.busy("tests", (s, time.perf_counter()), time.thread_time() - c)

    box.exec = timed_exec  # type: ignore[method-assign]

    # Main-thread time blocked in `wait` is idle time, not work.
    real_wait = bench_mod.wait
    waited = [0.0]

    def timed_wait(*a: Any, **kw: Any) -> Any:
        s = time.perf_counter()
        try:
            return real_wait(*a, **kw)
        finally:
            waited[0] += time.perf_counter() - s

    bench_mod.wait = timed_wait  # type: ignore[assignment]
    profiles: list[cProfile.Profile] | None = [] if args.profile else None
    try:
        solver.bind(box, store.run_dir)
        runner = InstrumentedRunner(solver=solver, runner=MeteredTests(TestRunner(box), clock, profiles), store=store,
                                    options=BenchOptions(tries=2, jobs=1))
        runner.meter, runner.profiles = clock, profiles
        main_profile = cProfile.Profile() if profiles is not None else None
        t0 = time.perf_counter()
        if main_profile is not None:
            results = main_profile.runcall(runner.run, exercises)
            profiles.append(main_profile)  # type: ignore[union-attr]
        else:
            results = runner.run(exercises)
        wall = time.perf_counter() - t0
        pings = [box.ping() for _ in range(20)]
    finally:
        bench_mod.wait = real_wait  # type: ignore[assignment]
        box.close()
        if args.out is None:
            remove_tree(out)

    failed = [r.id for r in results if not r.passed or r.error]
    if failed:
        print(f"warning: not passed (the model time and tests still count): {', '.join(failed)}", file=sys.stderr)

    # Main-thread work that belongs to no task (the scheduling loop, collecting): shared equally.
    main_busy = wall - waited[0]
    attributed = sum(s.get("main", 0.0) for tid, s in clock.seconds.items() if tid != "?")
    sched_share = max(0.0, main_busy - attributed) / len(exercises)

    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    for ex in exercises:
        s = clock.seconds[ex.id]
        task = s["main"] + s["test_thread"] + sched_share
        cpu = s["cpu:main"] - s["cpu:model"] + s["cpu:test_thread"] - s["cpu:tests"]
        rows[ex.language].append({"task": task, "model": s["model"], "tests": s["tests"],
                                  "overhead": task - s["model"] - s["tests"], "cpu": cpu})

    def line(name: str, rs: list[dict[str, float]]) -> str:
        task = sum(r["task"] for r in rs)
        model_s = sum(r["model"] for r in rs)
        tests = sum(r["tests"] for r in rs)
        over = sum(r["overhead"] for r in rs)
        cpu = sum(r["cpu"] for r in rs)
        return (f"| {name} | {len(rs)} | {task:.2f} | {model_s:.3f} | {tests:.2f} | {over:.3f} | "
                f"{100 * over / task:.2f}% | {1000 * over / len(rs):.0f} | {1000 * cpu / len(rs):.0f} |")

    print(f"harness overhead, scripted model solving through tool calls, Docker sandbox, jobs 1 "
          f"({len(exercises)} tasks, {len(exercises) - len(failed)} passed; "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after)\n")
    print("| language | tasks | task s | model s | tests s | overhead s | overhead % | overhead ms/task "
          "| overhead CPU ms/task |")
    print("|---|---|---|---|---|---|---|---|---|")
    for lang in sorted(rows):
        print(line(lang, rows[lang]))
    print(line("total", [r for rs in rows.values() for r in rs]))
    covered = union_seconds(clock.intervals)
    print(f"\nrun wall {wall:.2f} s; model or a test running {covered:.2f} s; neither {wall - covered:.2f} s "
          f"({100 * (wall - covered) / wall:.2f}% of wall)")
    steps = sorted({k for v in clock.seconds.values() for k in v if k.startswith("step:")})
    n = len(exercises)
    parts = {k[5:]: 1000 * sum(clock.seconds[e.id].get(k, 0.0) for e in exercises) / n for k in steps}
    parts["attempt outside the model"] = parts.get("attempt", 0.0) - 1000 * sum(r["model"] for rs in rows.values() for r in rs) / n
    parts["test thread outside exec"] = 1000 * sum(clock.seconds[e.id]["test_thread"] - clock.seconds[e.id]["tests"]
                                                   for e in exercises) / n
    print("mean ms per task by step: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    if args.per_task:
        for e in exercises:
            print(f"  {e.id}: " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in sorted(clock.seconds[e.id].items())))
    print(f"main-thread scheduling outside any task step: {1000 * sched_share:.1f} ms per task (included above)")
    print(f"per run, not per task: first agent attempt's one-time costs {first_use:.2f} s; sandbox start {sandbox_start:.2f} s; "
          f"no-op docker exec round trip (inside tests s) median {1000 * statistics.median(pings):.0f} ms")
    print("a real model spends seconds to minutes per task where this one spends ~0 s: "
          "the same absolute overhead is then a smaller share")
    if profiles:
        buf = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=buf)
        for p in profiles[1:]:
            stats.add(p)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(30)
        print(buf.getvalue(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
