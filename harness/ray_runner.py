"""One benchmark run spread over a Ray cluster (``localcode bench --ray [ADDRESS]``).

The driver (the ``localcode bench`` process) keeps everything that makes a run a run: the
one run folder, its ``ResultStore`` and ``run.json``, the queue of tasks. Each worker is a
Ray actor that loads the agent's model in-process once and owns its node's test container::

    driver                                      worker (one per node, or per GPU / resource)
    ------                                      ---------------------------------------------
    run folder, ResultStore (atomic writes)     the model (ModelSolver, loaded once), the
    queue of task ids, ray.wait                 node's test container, a node-local scratch
    write try-N logs, then result.json   <----  folder (workspaces, agent logs)
                                                run_task(id): every try of one task, with the
                                                same BenchRunner as one machine

A task's tries stay on one worker because the whole task (try 1, its tests, try 2 ...) is
one actor call. A worker runs up to ``jobs + 1`` tasks at once: their model turns take
turns on the one model (a lock), their tests run meanwhile (at most ``jobs`` at a time),
as ``BenchRunner`` does on one machine.

Placement: every alive node gets workers; how many comes from the node's resources: the
custom resource ``localcode_workers`` (``ray start --resources '{"localcode_workers": 2}'``)
when the node advertises it, else one per GPU (each pinned with ``num_gpus=1``), else one.
Each node must have localcode installed, the same dataset (checked by its identity) and
Docker (or ``--sandbox local``); the model file is found or assembled there exactly as on
one machine, from the agent config that the driver resolved and sent.

Faults: a worker that cannot start (no model file, no Docker, another dataset, another
model file than the first worker's) is reported in one line and gets no tasks. A worker
that dies (its process killed, its node lost) has its unfinished tasks requeued; they run
again from try 1 on another worker, and their half-done tries are never written. A task
whose worker died ``MAX_WORKER_DEATHS`` times is recorded as an infrastructure error (for
``--retry-errors``). Nothing is written but finished tasks, each once, by the driver, so
a driver killed at any moment resumes with the same command like a one-machine run.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcode.errors import ConfigError, MissingDependency
from localcode.harness.bench import AttemptReport, BenchOptions, Solver, TaskSession
from localcode.harness.dataset import Exercise
from localcode.harness.results import ResultStore, RunInfo, TaskResult

WORKER_RESOURCE = "localcode_workers"
"""Custom Ray resource: a node advertising N of it gets N workers."""
MAX_WORKER_DEATHS = 2
"""A task whose worker died this many times is recorded as an infrastructure error."""
SETUP_NOTE_S = 120.0
"""While workers start, a line every this many seconds names those not ready yet."""
LOG_PREFIX = "try-"
"""Agent log files of a task (``try-N.jsonl/.log/.raw.json``), shipped back to the driver."""


def import_ray() -> Any:
    """The ``ray`` module; raises ``MissingDependency`` naming the extra when it is missing."""
    try:
        import ray
    except ImportError:
        raise MissingDependency("ray", "ray", "bench --ray") from None
    return ray


# --------------------------------------------------------------------------- worker side
@dataclass
class WorkerSpec:
    """What every worker needs to run tasks of one run (sent once, pickled by Ray)."""

    agent: str
    """The agent spec (``oracle``, ``none``, ``gguf/NAME``...): the solver's name in results."""
    config: Any = None
    """The validated ``AgentConfig`` the driver resolved (model agents); None for built-ins."""
    solver_factory: Callable[[], Solver] | None = None
    """Makes the solver instead of ``agent``/``config`` (tests, custom agents); must be importable on every node."""
    dataset_path: str = ""
    """The driver's dataset folder; a node without it uses its own ($LOCALCODE_DATASET, setup's)."""
    dataset_identity: tuple[str | None, str | None] = (None, None)
    """``(git commit, content hash)`` the node's dataset must match."""
    sandbox: str = "docker"
    """``docker`` or ``local``."""
    image: str | None = None
    """Test image tag (None: built or found on each node from its docker/ folder)."""
    test_timeout_s: float = 180.0
    """Timeout of one test run."""
    options: BenchOptions = field(default_factory=BenchOptions)
    """Tries, test jobs per worker, protocol, agent timeout."""
    verbose: bool = False
    """Print the agent's turns on the worker's stderr (Ray forwards it to the driver)."""


@dataclass
class TaskOutput:
    """What a worker returns for one task: its result and its agent logs (file name -> bytes)."""

    result: TaskResult
    logs: dict[str, bytes]
    peak_memory_mb: float | None = None
    worker_s: float = 0.0
    """Seconds the worker spent in ``run_task`` (the driver's round trip minus this is Ray's share)."""


class _SerialSession:
    """A task session whose model turns wait for the worker's one model."""

    def __init__(self, session: TaskSession, lock: threading.Lock) -> None:
        self._session = session
        self._lock = lock

    def attempt(self, prompt: str, try_index: int, deadline: float | None) -> AttemptReport:
        with self._lock:
            return self._session.attempt(prompt, try_index, deadline)

    def close(self) -> None:
        with self._lock:
            self._session.close()


class _SerialSolver:
    """The worker's solver shared by its concurrent tasks, one model turn at a time."""

    def __init__(self, solver: Solver) -> None:
        self.solver = solver
        self.name = solver.name
        self._lock = threading.Lock()

    def start(self, exercise: Exercise, workspace: Path) -> TaskSession:
        with self._lock:
            return _SerialSession(self.solver.start(exercise, workspace), self._lock)

    def info(self) -> dict[str, Any]:
        return self.solver.info()

    def close(self) -> None:
        self.solver.close()


class _LimitedRunner:
    """A test runner that lets at most ``jobs`` test runs of this worker go at once."""

    def __init__(self, runner: Any, jobs: int) -> None:
        self._runner = runner
        self._slots = threading.BoundedSemaphore(max(1, jobs))

    @property
    def reference_build(self) -> bool:
        """Passed through: the oracle tests with the exercises' reference manifests."""
        return bool(getattr(self._runner, "reference_build", False))

    @reference_build.setter
    def reference_build(self, value: bool) -> None:
        self._runner.reference_build = value

    def run(self, exercise: Exercise, workspace: Path) -> Any:
        with self._slots:
            return self._runner.run(exercise, workspace)


class _NodeStore(ResultStore):
    """The worker's scratch folder: workspaces and agent logs; results go to the driver, not here."""

    def write(self, result: TaskResult, run_info: RunInfo | None = None) -> None:
        pass


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] if text else type(exc).__name__


class BenchWorker:
    """A Ray actor (``ray.remote(BenchWorker)``): one model, one test container, one scratch folder.

    ``setup`` does the slow work (dataset check, sandbox, model load) and raises a
    ``LocalcodeError`` with one line when this node cannot run the agent; ``run_task`` runs
    every try of one task; ``close`` releases everything.
    """

    def __init__(self, spec: WorkerSpec, name: str) -> None:
        self.spec = spec
        self.name = name
        self.scratch: Path | None = None
        self.box: Any = None
        self.solver: _SerialSolver | None = None
        self.runner: _LimitedRunner | None = None
        self.exercises: dict[str, Exercise] = {}

    def setup(self) -> dict[str, Any]:
        """Check the dataset, start the test container, load the model; return facts for run.json.

        On failure what was started is released again and the error is raised.
        """
        try:
            return self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> dict[str, Any]:
        from localcode.harness.dataset import dataset_identity, load_dataset, resolve_dataset_dir

        spec = self.spec
        t0 = time.perf_counter()
        root = Path(spec.dataset_path)
        if not root.is_dir():
            root = resolve_dataset_dir(None)
        if dataset_identity(root) != tuple(spec.dataset_identity):
            raise ConfigError(f"the dataset at {root} on {socket.gethostname()} differs from the driver's: "
                              "give every node the same dataset (localcode setup, or $LOCALCODE_DATASET)")
        self.exercises = load_dataset(root, warn=False).by_id()
        self.scratch = Path(tempfile.mkdtemp(prefix="localcode-ray-"))
        store = _NodeStore(self.scratch)
        store.workspaces_dir.mkdir(parents=True)
        from localcode.commands.bench import open_sandbox
        from localcode.harness.runner import TestRunner

        self.box, image_id = open_sandbox(spec.sandbox, store.workspaces_dir, image=spec.image)
        if spec.solver_factory is not None:
            solver = spec.solver_factory()
        elif spec.config is None:
            from localcode.harness.bench import make_solver

            solver = make_solver(spec.agent)
        else:
            from localcode.harness.agent_solver import ModelSolver

            solver = ModelSolver.load(spec.agent, spec.config, verbose=spec.verbose)
        bind = getattr(solver, "bind", None)
        if callable(bind):
            bind(self.box, self.scratch)
        self.solver = _SerialSolver(solver)
        self.runner = _LimitedRunner(TestRunner(self.box, timeout=spec.test_timeout_s), spec.options.jobs)
        return {
            "name": self.name,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "dataset": str(root),
            "image_id": image_id,
            "setup_seconds": round(time.perf_counter() - t0, 2),
            "agent_info": solver.info(),
        }

    def run_task(self, task_id: str) -> TaskOutput:
        """Every try of one task, from try 1; the result and the agent logs go back to the driver."""
        from localcode.commands.bench import peak_memory_mb
        from localcode.harness.bench import BenchRunner

        if self.solver is None or self.runner is None or self.scratch is None:
            raise RuntimeError("BenchWorker.run_task before setup")
        t0 = time.monotonic()
        exercise = self.exercises[task_id]
        store = _NodeStore(self.scratch)
        results = BenchRunner(solver=self.solver, runner=self.runner, store=store,
                              options=self.spec.options).run([exercise])
        logs: dict[str, bytes] = {}
        folder = store.task_dir(task_id)
        if folder.is_dir():
            for path in sorted(folder.glob(LOG_PREFIX + "*")):
                if path.is_file():
                    logs[path.name] = path.read_bytes()
                    path.unlink()
        return TaskOutput(result=results[0], logs=logs, peak_memory_mb=peak_memory_mb(), worker_s=time.monotonic() - t0)

    def pid(self) -> int:
        """The worker's process id (tests kill it to prove the fault handling)."""
        return os.getpid()

    def close(self) -> None:
        """Release the model and the container, remove the scratch folder. Never raises."""
        for release in (getattr(self.solver, "close", None), getattr(self.box, "close", None)):
            if release is None:
                continue
            try:
                release()
            except Exception:  # noqa: BLE001 - closing must release the rest too
                pass
        self.solver = self.box = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


# --------------------------------------------------------------------------- driver side
@dataclass
class _Worker:
    name: str
    node_id: str
    node_ip: str
    handle: Any
    facts: dict[str, Any] = field(default_factory=dict)
    inflight: set[str] = field(default_factory=set)
    done: list[str] = field(default_factory=list)
    alive: bool = True
    busy_s: float = 0.0

    @property
    def where(self) -> str:
        """``ip/node-id-prefix``: several nodes may share one machine's address."""
        return f"{self.node_ip}/{self.node_id[:6]}"


@dataclass
class ClusterReport:
    """What a cluster run did: the results it wrote and each worker's share."""

    results: list[TaskResult]
    workers: list[dict[str, Any]]
    wall_s: float
    """Seconds from joining the cluster to the last result (worker start-up and model loads included)."""
    schedule_s: float
    """Seconds from the first task handed out to the last result: what throughput is measured over."""
    lost_tasks: int
    """Task runs lost to dead workers and run again (each from try 1)."""
    task_overhead_s: list[float] = field(default_factory=list)
    """Per finished task: the driver's round trip (hand-out to result) minus the worker's time in
    ``run_task``, i.e. what Ray's call, the shipping of the result and logs, and the wait for the
    driver to notice add to each task."""


def plan_workers(nodes: Sequence[dict[str, Any]], max_workers: int | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(node, actor options)`` for each worker to start on the alive ``nodes`` (``ray.nodes()``).

    The head node comes first, so ``max_workers=1`` uses the head.
    """
    alive = [n for n in nodes if n.get("Alive")]
    alive.sort(key=lambda n: (0 if "node:__internal_head__" in n.get("Resources", {}) else 1, n.get("NodeManagerAddress", ""), n["NodeID"]))
    plan: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for node in alive:
        res = node.get("Resources", {})
        if res.get(WORKER_RESOURCE):
            count, extra = int(res[WORKER_RESOURCE]), {"resources": {WORKER_RESOURCE: 1}}
        elif res.get("GPU"):
            count, extra = int(res["GPU"]), {"num_gpus": 1}
        else:
            count, extra = 1, {}
        plan.extend((node, extra) for _ in range(count))
    return plan[:max_workers] if max_workers else plan


class ClusterProgress:
    """Progress on stderr: the run's tasks, cluster throughput, and one row per worker."""

    def __init__(self, *, total: int, prior: Sequence[TaskResult], tries: int, enabled: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled
        self.tries = tries
        self.results: list[TaskResult] = list(prior)
        self.session_done = 0
        self.t0 = time.monotonic()
        self.rows: dict[str, Any] = {}
        self.progress: Any = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console)
            self.overall = self.progress.add_task("cluster", total=total, completed=len(prior), info="")

    def __enter__(self) -> ClusterProgress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def note(self, line: str) -> None:
        """One line above the bars (a worker that failed or died)."""
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)  # one line, also in logs

    def add_worker(self, worker: _Worker) -> None:
        if self.progress is not None:
            self.rows[worker.name] = self.progress.add_task(f"  {worker.name}", total=None, info=worker.where)

    def update(self, worker: _Worker, finished: TaskResult | None = None) -> None:
        if finished is not None:
            self.results.append(finished)
            self.session_done += 1
        if self.progress is None:
            return
        now = ", ".join(sorted(worker.inflight)) or "idle"
        state = now if worker.alive else "dead"
        self.progress.update(self.rows[worker.name], completed=len(worker.done), info=f"{worker.where} {state}")
        if finished is not None:
            self.progress.update(self.overall, advance=1, info=self._rate())

    def throughput(self) -> float:
        """Tasks finished per minute in this session, over the whole cluster."""
        minutes = (time.monotonic() - self.t0) / 60.0
        return self.session_done / minutes if minutes > 0 else 0.0

    def _rate(self) -> str:
        done = [r for r in self.results if r.finished]
        parts = [f"{self.throughput():.1f} tasks/min"]
        for i in sorted({1, self.tries}):
            n = sum(1 for r in done if r.passed_on_try is not None and r.passed_on_try <= i)
            parts.append(f"pass@{i} {100.0 * n / len(done) if done else 0.0:.1f}%")
        errors = len(self.results) - len(done)
        if errors:
            parts.append(f"errors {errors}")
        return " ".join(parts)


def connect(address: str | None, *, verbose: bool = False, init_kwargs: dict[str, Any] | None = None) -> Any:
    """Join the cluster at ``address`` (``auto``, ``host:port``, ``ray://...``), or start a local
    one when it is None (``init_kwargs`` then go to ``ray.init``: ``num_cpus``, ``resources``...).
    Returns the ``ray`` module. Raises ``ConfigError`` when the cluster cannot be reached."""
    import logging

    ray = import_ray()
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": verbose}
    if address is None:
        # "local": a new cluster of its own, even where another one runs on this machine
        # (ray.init() without an address would join that one).
        kwargs.update({"address": "local", "include_dashboard": False, **(init_kwargs or {})})
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        target = address or "a local cluster"
        raise ConfigError(f"could not join the Ray cluster at {target}: {_one_line(e)} "
                          "(start one with 'ray start --head', or drop the address to start a local one)") from None
    return ray


def _is_worker_loss(ray: Any, exc: BaseException) -> bool:
    """True when ``exc`` says the worker (or its node) is gone, not that the task raised."""
    return isinstance(exc, ray.exceptions.RayError) and not isinstance(exc, ray.exceptions.RayTaskError)


def _cause(ray: Any, exc: BaseException) -> BaseException:
    if isinstance(exc, ray.exceptions.RayTaskError) and getattr(exc, "cause", None) is not None:
        return exc.cause
    return exc


def write_task(store: ResultStore, run_info: RunInfo | None, output: TaskOutput) -> None:
    """Write one finished task into the run folder: its agent logs first, ``result.json`` last."""
    folder = store.task_dir(output.result.id)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(LOG_PREFIX + "*"):
        if stale.is_file():
            stale.unlink()  # left by an earlier run of this task (--retry-errors)
    for name, data in output.logs.items():
        if Path(name).name == name and name.startswith(LOG_PREFIX):
            (folder / name).write_bytes(data)
    store.write(output.result, run_info)


def _start_workers(ray: Any, spec: WorkerSpec, progress: ClusterProgress,
                   max_workers: int | None) -> list[_Worker]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(BenchWorker)
    capacity = max(1, spec.options.jobs) + 1
    workers: list[_Worker] = []
    for node, extra in plan_workers(ray.nodes(), max_workers):
        node_id = node["NodeID"]
        name = f"w{len(workers) + 1}"
        handle = actor.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            max_restarts=0, max_task_retries=0, max_concurrency=capacity, num_cpus=0, **extra,
        ).remote(spec, name)
        workers.append(_Worker(name=name, node_id=node_id, node_ip=node.get("NodeManagerAddress", "?"), handle=handle))
    if not workers:
        raise ConfigError("the Ray cluster has no alive node: start one with 'ray start'")
    setups = {w.handle.setup.remote(): w for w in workers}
    waiting = dict(setups)
    while waiting:
        done, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=SETUP_NOTE_S)
        for ref in done:
            waiting.pop(ref)
        if waiting:
            names = ", ".join(f"{w.name} on {w.where}" for w in waiting.values())
            progress.note(f"still starting: {names} (placement on its node, the test image or the model load)")
    ready: list[_Worker] = []
    for ref, w in setups.items():
        try:
            w.facts = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - one node's failure must not stop the others
            cause = _cause(ray, e)
            progress.note(f"worker {w.name} on {w.where} cannot run {spec.agent}: "
                          f"{_one_line(cause)}; its tasks go to the other workers")
            ray.kill(w.handle, no_restart=True)
            continue
        ready.append(w)
    if ready:
        first = (ready[0].facts.get("agent_info") or {}).get("model") or {}
        for w in list(ready[1:]):
            model = (w.facts.get("agent_info") or {}).get("model") or {}
            if first.get("sha256") and model.get("sha256") != first.get("sha256"):
                progress.note(f"worker {w.name} on {w.where} loaded another model file "
                              f"(sha256 {str(model.get('sha256'))[:12]} vs {first['sha256'][:12]}); it gets no tasks")
                _close(ray, w)
                ready.remove(w)
    if not ready:
        raise ConfigError(f"no Ray worker could run {spec.agent} (see the lines above): fix the nodes and rerun "
                          "the same command to resume")
    return ready


def _close(ray: Any, worker: _Worker) -> None:
    if worker.alive:
        try:
            ray.get(worker.handle.close.remote(), timeout=120)
        except Exception:  # noqa: BLE001 - the worker may be gone already
            pass
    ray.kill(worker.handle, no_restart=True)
    worker.alive = False


def run_on_cluster(
    *,
    address: str | None,
    store: ResultStore,
    run_info: RunInfo,
    exercises: Sequence[Exercise],
    spec: WorkerSpec,
    prior: Sequence[TaskResult] = (),
    total: int | None = None,
    show_progress: bool = True,
    max_workers: int | None = None,
    init_kwargs: dict[str, Any] | None = None,
    before_tasks: Callable[[RunInfo], None] | None = None,
) -> ClusterReport:
    """Run ``exercises`` on the Ray cluster at ``address`` (None: a local one), writing into ``store``.

    ``run_info`` gets the workers' facts (``agent_info`` of the first worker, with
    ``agent_info["ray"]`` listing every worker, ``image_id``, ``peak_memory_mb``) and is
    written to ``run.json`` once the workers are up and again at the end. ``max_workers``
    caps the workers started (benchmarks). ``before_tasks(run_info)`` runs once the workers'
    facts are in ``run_info`` and before any task starts (the CLI's same-experiment check);
    what it raises stops the run. Raises ``ConfigError`` when no worker can run the agent,
    and ``KeyboardInterrupt`` after stopping the workers.
    """
    ray = connect(address, verbose=spec.verbose, init_kwargs=init_kwargs)
    progress = ClusterProgress(total=total if total is not None else len(exercises), prior=prior,
                               tries=spec.options.tries, enabled=show_progress)
    workers: list[_Worker] = []
    t0 = time.monotonic()
    try:
        with progress:
            workers = _start_workers(ray, spec, progress, max_workers)
            _record_workers(run_info, workers, address)
            if before_tasks is not None:
                before_tasks(run_info)
            store.write_run_info(run_info)
            for w in workers:
                progress.add_worker(w)
            t_schedule = progress.t0 = time.monotonic()
            results, lost, peak, overheads = _schedule(ray, store, run_info, [e.id for e in exercises], workers,
                                                       progress, spec)
        wall = time.monotonic() - t0
        schedule_s = time.monotonic() - t_schedule
        peaks = [p for p in (run_info.peak_memory_mb, peak) if p is not None]
        run_info.peak_memory_mb = max(peaks) if peaks else None
        _record_workers(run_info, workers, address)
        store.write_run_info(run_info)
        for w in workers:
            progress.note(f"{w.name} on {w.where}: {len(w.done)} tasks" + ("" if w.alive else " (died)"))
        progress.note(f"cluster: {progress.session_done} tasks in {schedule_s:.1f} s on {len(workers)} workers "
                      f"= {progress.session_done * 60.0 / schedule_s if schedule_s else 0.0:.2f} tasks/min "
                      f"(start-up {wall - schedule_s:.1f} s)")
        return ClusterReport(results=results, workers=run_info.agent_info.get("ray", {}).get("workers", []),
                             wall_s=wall, schedule_s=schedule_s, lost_tasks=lost, task_overhead_s=overheads)
    finally:
        for w in workers:
            try:
                _close(ray, w)
            except Exception:  # noqa: BLE001 - shut the rest down too
                pass
        ray.shutdown()


def _record_workers(run_info: RunInfo, workers: Sequence[_Worker], address: str | None) -> None:
    first = workers[0].facts
    agent_info = dict(first.get("agent_info") or {})
    agent_info["ray"] = {
        "address": address or "local",
        "workers": [{**{k: v for k, v in w.facts.items() if k != "agent_info"}, "node_id": w.node_id,
                     "node_ip": w.node_ip, "tasks": len(w.done), "died": not w.alive} for w in workers],
    }
    run_info.agent_info = agent_info
    run_info.image_id = first.get("image_id")
    model = (agent_info.get("model") or {}).get("model")
    if model:
        run_info.model = str(model)


def _error_result(task_id: str, spec: WorkerSpec, error: str) -> TaskResult:
    from datetime import datetime, timezone

    language, name = task_id.split("/", 1)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return TaskResult(id=task_id, language=language, name=name, agent=spec.agent, max_tries=spec.options.tries,
                      error=error, started_at=now, finished_at=now)


def _schedule(ray: Any, store: ResultStore, run_info: RunInfo, task_ids: list[str], workers: list[_Worker],
              progress: ClusterProgress, spec: WorkerSpec) -> tuple[list[TaskResult], int, float | None, list[float]]:
    capacity = max(1, spec.options.jobs) + 1
    pending: deque[str] = deque(task_ids)
    inflight: dict[Any, tuple[_Worker, str, float]] = {}
    deaths: Counter[str] = Counter()
    results: list[TaskResult] = []
    lost = 0
    peak: float | None = None
    overheads: list[float] = []
    while pending or inflight:
        while pending:  # one task at a time to the least busy worker, so the work spreads evenly
            free = [w for w in workers if w.alive and len(w.inflight) < capacity]
            if not free:
                break
            w = min(free, key=lambda w: len(w.inflight))
            task_id = pending.popleft()
            inflight[w.handle.run_task.remote(task_id)] = (w, task_id, time.monotonic())
            w.inflight.add(task_id)
            progress.update(w)
        if not inflight:
            raise ConfigError(f"every Ray worker is gone with {len(pending)} tasks left: rerun the same "
                              "command to resume")
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for ref in ready:
            w, task_id, started = inflight.pop(ref)
            w.inflight.discard(task_id)
            w.busy_s += time.monotonic() - started
            try:
                output: TaskOutput = ray.get(ref)
                overheads.append(time.monotonic() - started - output.worker_s)
            except Exception as e:  # noqa: BLE001 - sorted below: lost worker vs. a failing task
                if not _is_worker_loss(ray, e):
                    output = TaskOutput(result=_error_result(task_id, spec, f"worker failed: {_one_line(_cause(ray, e))}"),
                                        logs={})
                else:
                    lost += 1
                    deaths[task_id] += 1
                    if w.alive:
                        w.alive = False
                        progress.note(f"worker {w.name} on {w.where} died; its unfinished tasks start over "
                                      "on the other workers")
                        ray.kill(w.handle, no_restart=True)
                    progress.update(w)
                    if deaths[task_id] < MAX_WORKER_DEATHS:
                        pending.appendleft(task_id)
                        continue
                    output = TaskOutput(result=_error_result(
                        task_id, spec, f"the worker died {deaths[task_id]} times while running this task"), logs={})
            write_task(store, run_info, output)
            results.append(output.result)
            if output.peak_memory_mb is not None:
                peak = max(peak or 0.0, output.peak_memory_mb)
            if w.alive:
                w.done.append(task_id)
            progress.update(w, output.result)
    return results, lost, peak, overheads


def bench_on_ray(address: str | None, *, store: ResultStore, run_info: RunInfo, exercises: Sequence[Exercise],
                 prior: Sequence[TaskResult], total: int, agent: str, overrides: dict[str, Any], seed: int | None,
                 sandbox: str, image: str | None, test_timeout: float, options: BenchOptions,
                 verbose: bool = False, show_progress: bool = True,
                 before_tasks: Callable[[RunInfo], None] | None = None) -> ClusterReport:
    """``localcode bench --ray``: resolve the agent's config here once, then ``run_on_cluster``.

    The dataset identity comes from ``run_info`` (each node must hold the same dataset).
    """
    import_ray()  # a missing extra fails before anything else
    config = None
    if agent not in ("oracle", "none"):
        from localcode.harness.bench import agent_config

        config = agent_config(agent, overrides=overrides, seed=seed)
    spec = WorkerSpec(agent=agent, config=config, dataset_path=run_info.dataset.path,
                      dataset_identity=(run_info.dataset.commit, run_info.dataset.content_hash),
                      sandbox=sandbox, image=image, test_timeout_s=test_timeout, options=options, verbose=verbose)
    return run_on_cluster(address=address, store=store, run_info=run_info, exercises=exercises, spec=spec,
                          prior=prior, total=total, show_progress=show_progress, before_tasks=before_tasks)


__all__ = ["MAX_WORKER_DEATHS", "WORKER_RESOURCE", "BenchWorker", "ClusterProgress", "ClusterReport", "TaskOutput",
           "WorkerSpec", "bench_on_ray", "connect", "import_ray", "plan_workers", "run_on_cluster", "write_task"]
