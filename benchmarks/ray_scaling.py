#!/usr/bin/env python
"""Throughput of ``bench --ray`` with 1 and 2 workers, and the time per task Ray adds.

The same selection, agent and model (the demo GGUF, 1 thread per model) run three ways,
side by side in one process, each mode once per round (the order rotates per round):

- ``one process``: ``BenchRunner`` with the model loaded in this process and one Docker
  test container (what ``localcode bench`` does without ``--ray``);
- ``ray, 1 worker`` and ``ray, 2 workers``: ``run_on_cluster`` on a local Ray cluster whose
  node advertises ``localcode_workers: 2``; each worker loads its own copy of the model
  and starts its own test container.

Throughput is tasks per minute over the scheduling phase (first task handed out to last
result); worker start-up (model load, container start) is reported apart. The figures:

- scaling: tasks/min with 2 workers / tasks/min with 1 worker (ideal 2.0 when the
  machine has a free core per worker);
- Ray's own time per task: for each task, the driver's round trip (task handed out to
  result received) minus the time the worker spent in ``run_task``: the actor call, the
  shipping of the result and the agent logs, and the driver noticing. It does not depend on
  how fast the model or the tests are, so it holds on a loaded machine too;
- the wall-clock difference per task, (ray 1 worker - one process) / tasks: same model,
  threads and test jobs, so on a quiet machine it is Ray's overhead plus the model load's
  effects; on a loaded machine it is dominated by noise (read it only next to the above).

Outcomes of every task must agree across the modes (printed). With ``--agent oracle`` the
model is left out, which isolates the overhead from generation noise.

    python benchmarks/ray_scaling.py                         # demo GGUF, 6 python tasks, 1 round
    python benchmarks/ray_scaling.py --rounds 2 -k python/bowling,python/wordy
    python benchmarks/ray_scaling.py --agent oracle -n 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_IDS = ["python/bowling", "python/wordy", "python/transpose", "python/beer-song", "python/book-store",
               "python/phone-number"]


def _config(agent: str, agent_args: str, threads: int) -> Any:
    from localcode.config import merge_overrides, parse_agent_args
    from localcode.harness.bench import agent_config

    if agent in ("oracle", "none"):
        return None
    cfg = agent_config(agent, overrides=parse_agent_args(agent_args) if agent_args else None, seed=0)
    extra = list(cfg.server_config.extra_args or []) + ["--threads", str(threads), "--threads-batch", str(threads)]
    return merge_overrides(cfg, {"server_config.extra_args": extra}, source="ray_scaling")


def _run_info(name: str, agent: str, root: Path, ids: list[str], tries: int) -> Any:
    from localcode.harness.dataset import dataset_identity
    from localcode.harness.results import DatasetInfo, RunInfo

    commit, chash = dataset_identity(root)
    return RunInfo(run_name=name, created_at="", command_line=sys.argv, localcode_version="", agent=agent,
                   dataset=DatasetInfo(path=str(root), commit=commit, content_hash=chash), sandbox="docker",
                   tries=tries, test_timeout_s=180, task_ids=ids)


def one_process(agent: str, config: Any, exercises: list[Any], image: str, options: Any, out: Path) -> dict[str, Any]:
    from localcode.harness.agent_solver import ModelSolver
    from localcode.harness.bench import BenchRunner, make_solver
    from localcode.harness.docker_sandbox import DockerSandbox
    from localcode.harness.results import ResultStore
    from localcode.harness.runner import TestRunner

    store = ResultStore(out)
    store.workspaces_dir.mkdir(parents=True)
    t0 = time.monotonic()
    with DockerSandbox(store.workspaces_dir, image) as box:
        solver: Any = make_solver(agent) if config is None else ModelSolver.load(agent, config)
        try:
            if hasattr(solver, "bind"):
                solver.bind(box, out)
            t1 = time.monotonic()
            BenchRunner(solver=solver, runner=TestRunner(box, timeout=180), store=store, options=options).run(exercises)
            t2 = time.monotonic()
        finally:
            solver.close()
    return {"seconds": t2 - t1, "startup": t1 - t0, "outcomes": {r.id: (r.error, r.outcomes) for r in store.results()}}


def on_ray(workers: int, agent: str, config: Any, exercises: list[Any], image: str, options: Any, out: Path,
           root: Path) -> dict[str, Any]:
    from localcode.harness.dataset import dataset_identity
    from localcode.harness.ray_runner import WORKER_RESOURCE, WorkerSpec, run_on_cluster
    from localcode.harness.results import ResultStore

    ids = [e.id for e in exercises]
    spec = WorkerSpec(agent=agent, config=config, dataset_path=str(root), dataset_identity=dataset_identity(root),
                      image=image, options=options)
    report = run_on_cluster(address=None, store=ResultStore(out), run_info=_run_info(out.name, agent, root, ids,
                                                                                        options.tries),
                            exercises=exercises, spec=spec, show_progress=False, max_workers=workers,
                            init_kwargs={"num_cpus": 2, "resources": {WORKER_RESOURCE: 2}})
    per_worker = [w["tasks"] for w in report.workers]
    return {"seconds": report.schedule_s, "startup": report.wall_s - report.schedule_s, "per_worker": per_worker,
            "overheads": report.task_overhead_s, "outcomes": {r.id: (r.error, r.outcomes) for r in ResultStore(out).results()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", default="gguf/gemma-3-270m")
    parser.add_argument("--agent-args", default="max_turns=3 max_tokens=96",
                        help="config overrides (the demo model is a base model: short turns keep it quick)")
    parser.add_argument("-k", "--ids", default=",".join(DEFAULT_IDS))
    parser.add_argument("-n", type=int, default=None, help="the first N python exercises instead of -k")
    parser.add_argument("--tries", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="test runs in flight per worker (and in the one process)")
    parser.add_argument("--threads", type=int, default=1, help="model threads per worker")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--image", default=os.environ.get("LOCALCODE_IMAGE"))
    args = parser.parse_args()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from localcode.harness.bench import BenchOptions
    from localcode.harness.dataset import load_dataset, resolve_dataset_dir
    from localcode.harness.image import ensure_image

    root = resolve_dataset_dir(None)
    by_id = load_dataset(root, warn=False).by_id()
    ids = sorted(i for i in by_id if i.startswith("python/"))[: args.n] if args.n else args.ids.split(",")
    exercises = [by_id[i] for i in ids]
    image = args.image or ensure_image()
    config = _config(args.agent, args.agent_args, args.threads)
    options = BenchOptions(tries=args.tries, jobs=args.jobs)
    modes = ["one process", "ray, 1 worker", "ray, 2 workers"]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    print(f"{args.agent} ({args.agent_args}, {args.threads} thread(s) per model), {len(ids)} tasks, "
          f"{args.tries} tries, {args.rounds} round(s), {os.cpu_count()} cpus", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as tmp:
        for r in range(args.rounds):
            order = modes[r % 3:] + modes[: r % 3]
            for mode in order:
                out = Path(tmp) / f"r{r}-{mode.replace(' ', '').replace(',', '-')}"
                if mode == "one process":
                    res = one_process(args.agent, config, exercises, image, options, out)
                else:
                    res = on_ray(1 if "1 worker" in mode else 2, args.agent, config, exercises, image, options, out, root)
                runs[mode].append(res)
                print(f"round {r + 1} {mode}: {res['seconds']:.1f} s for {len(ids)} tasks "
                      f"(start-up {res['startup']:.1f} s){' per worker ' + str(res['per_worker']) if 'per_worker' in res else ''}",
                      file=sys.stderr)

    def med(mode: str) -> float:
        return statistics.median(x["seconds"] for x in runs[mode])

    print(f"\n| mode | seconds (median of {args.rounds}) | tasks/min | start-up s |")
    print("|---|---|---|---|")
    for mode in modes:
        startup = statistics.median(x["startup"] for x in runs[mode])
        print(f"| {mode} | {med(mode):.1f} | {len(ids) * 60 / med(mode):.2f} | {startup:.1f} |")
    scaling = med("ray, 1 worker") / med("ray, 2 workers")
    overhead = (med("ray, 1 worker") - med("one process")) / len(ids)
    print(f"\nthroughput 2 workers / 1 worker: {scaling:.2f}x")
    print(f"wall-clock difference per task (1 worker vs one process): {overhead * 1000:+.0f} ms "
          f"({100 * overhead * len(ids) / med('one process'):+.1f}% of the one-process time)")
    trips = sorted(x for mode in modes[1:] for run in runs[mode] for x in run["overheads"])
    task_s = statistics.median(r["seconds"] * (len(r["per_worker"]) if "per_worker" in r else 1) / len(ids)
                               for mode in modes[1:] for r in runs[mode])
    print(f"Ray's own time per task (driver round trip - worker time, {len(trips)} tasks): median "
          f"{statistics.median(trips) * 1000:.0f} ms, max {trips[-1] * 1000:.0f} ms "
          f"({100 * statistics.median(trips) / task_s:.2f}% of a task's {task_s:.1f} s)")
    reference = runs["one process"][0]["outcomes"]
    same = all(x["outcomes"] == reference for mode in modes for x in runs[mode])
    print(f"same outcome for every task in every mode: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
