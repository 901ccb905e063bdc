"""``localcode bench``: benchmark an agent on the Aider polyglot exercises."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from localcode import __version__
from localcode.errors import ConfigError


def _slug(agent: str) -> str:
    base = Path(agent).stem if agent.endswith(".json") else agent
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") or "agent"


def localcode_commit() -> str | None:
    """Git commit of the localcode checkout this code runs from (``+dirty`` if changed), or None."""
    here = Path(__file__).resolve().parent.parent.parent
    if not (here / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def peak_memory_mb() -> float | None:
    """Peak resident memory of this process so far (the model included), in MB."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def machine_facts() -> dict[str, str]:
    """python, platform and machine strings for run.json."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": f"{platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()}".replace("  ", " "),
    }


def find_run_dir(runs: Path, key: dict[str, Any], retry_errors: bool) -> Path | None:
    """The newest run under ``runs`` with the same resume key that still has work to do."""
    from localcode.harness.results import ResultStore

    if not runs.is_dir():
        return None
    for run_dir in sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        store = ResultStore(run_dir)
        info = store.read_run_info()
        if info is None or info.resume_key() != key:
            continue
        have = {r.id: r for r in store.results()}
        missing = [t for t in info.task_ids if t not in have]
        errored = [t for t in info.task_ids if t in have and not have[t].finished]
        if missing or (retry_errors and errored):
            return run_dir
    return None


def check_same_experiment(run_dir: Path, previous: Any, info: Any) -> None:
    """Refuse to continue ``run_dir`` when the rerun's experiment differs from the run's
    (agent config, model file, dataset content, test image, localcode version).

    Raises:
        ConfigError: one line naming what changed and what to do.
    """
    changes = previous.identity_changes(info)
    if changes:
        raise ConfigError(
            f"{run_dir} was run with a different experiment ({'; '.join(changes)}): "
            "continuing would mix two configurations in one run; pass --new to start afresh"
        )


class _Progress:
    """A rich progress bar on stderr: task and try, ETA, running pass rates, decode tokens/s."""

    def __init__(self, prior: list[Any], total: int, tries: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.tries = tries
        self.results: list[Any] = []
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        for r in prior:
            self.results.append(r)
        self.task = self.progress.add_task("starting", total=total, completed=len(prior), rate=self._rate())

    def _rate(self) -> str:
        done = [r for r in self.results if r.finished]
        errors = len(self.results) - len(done)
        parts = []
        for i in sorted({1, self.tries}):
            n = sum(1 for r in done if r.passed_on_try is not None and r.passed_on_try <= i)
            parts.append(f"pass@{i} {100.0 * n / len(done) if done else 0.0:.1f}%")
        tokens = sum(r.usage.decode_tokens for r in self.results)
        ms = sum(r.usage.decode_ms for r in self.results)
        if ms > 0:
            parts.append(f"{tokens * 1000.0 / ms:.1f} tok/s")
        if errors:
            parts.append(f"errors {errors}")
        return " ".join(parts)

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.update(self.task, description="done" if exc[0] is None else "stopped")
        self.progress.stop()

    def task_started(self, task_id: str, try_index: int) -> None:
        self.progress.update(self.task, description=f"{task_id} try {try_index}/{self.tries}")

    def task_finished(self, result: Any) -> None:
        self.results.append(result)
        self.progress.update(self.task, advance=1, rate=self._rate())


class _Quiet:
    def task_started(self, task_id: str, try_index: int) -> None:
        pass

    def task_finished(self, result: Any) -> None:
        pass


def open_sandbox(kind: str, root: Path, *, ca_bundle: Path | None = None,
                 image: str | None = None) -> tuple[Any, str | None]:
    """The test sandbox for a run rooted at ``root``, and ``tag@image id`` of the test image (docker)."""
    if kind == "local":
        from localcode.harness.sandbox import LocalSandbox

        return LocalSandbox(root), None
    from localcode.harness.docker_sandbox import DockerSandbox
    from localcode.harness.image import ensure_image

    if not image:
        image = ensure_image(ca_bundle=ca_bundle) if ca_bundle else ensure_image()
    box = DockerSandbox(root, image)
    try:
        from localcode.harness.docker_sandbox import docker_client

        image_id = f"{image}@{docker_client().images.get(image).id}"
    except Exception:  # the tag is still a faithful record when the id lookup fails
        image_id = image
    return box, image_id


@click.command("bench")
@click.option("--agent", "agents", multiple=True, metavar="NAME",
              help="oracle | none | gguf/NAME | mlx/NAME | path/to/agent.json. "
                   "'oracle' writes the reference solution (should pass all); 'none' changes nothing (should fail all). "
                   "Several --agent: a sweep, one run folder per agent.")
@click.option("--sweep", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="YAML file listing agents to run one after the other (entries: NAME or {agent, agent_args}).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Spread the run over a Ray cluster, one in-process model per worker: 'auto' joins the running "
                   "cluster, host:port or ray://... a given one; no address starts a local one. Needs localcode[ray].")
@click.option("-k", "keywords", multiple=True, metavar="NAMES",
              help="Exercises by name, lang/name or glob, comma-separated (e.g. -k bowling,python/*-cipher).")
@click.option("-l", "--languages", "languages", multiple=True, metavar="LANGS",
              help="Only these languages, comma-separated (cpp, go, java, javascript, python, rust).")
@click.option("--all", "all_", is_flag=True, help="The 49 JavaScript exercises (the original tool's 'all').")
@click.option("--full", is_flag=True, help="All 225 exercises.")
@click.option("-n", "n", type=click.IntRange(min=1), default=None, help="A random sample of N of the selected exercises.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the -n sample (and of model agents).")
@click.option("--tries", type=click.IntRange(min=1), default=2, show_default=True,
              help="Tries per task; try 2+ sees the failing test output.")
@click.option("--jobs", type=click.IntRange(min=1), default=max(1, min(4, (os.cpu_count() or 2))), show_default=True,
              help="Test runs in flight at once (the agent does not wait for them).")
@click.option("--test-timeout", type=click.FloatRange(min=1), default=180.0, show_default=True,
              help="Seconds per test run before it is killed and recorded as timed out.")
@click.option("--agent-timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds per try for the agent; on expiry the tests run on what was written.")
@click.option("--sandbox", type=click.Choice(["docker", "local"]), default="docker", show_default=True,
              help="Run tests in the Docker test image, or with the host's toolchains.")
@click.option("--visible-tests", is_flag=True,
              help="Show the test files to the agent (read-only). Default hides them, as Aider's protocol.")
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Dataset folder (default: $LOCALCODE_DATASET, else the one 'localcode setup' cloned).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Use exactly this run folder (resumed when it holds the same run).")
@click.option("--run-name", default=None, help="Name of the run folder under the runs dir (resumed when it exists).")
@click.option("--new", "new_run", is_flag=True, help="Always start a new run instead of resuming a matching one.")
@click.option("--retry-errors", is_flag=True, help="Rerun only the tasks whose result holds an infrastructure error.")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="CA bundle to trust while building the test image (TLS proxies).")
@click.option("--image", envvar="LOCALCODE_IMAGE", default=None, metavar="TAG",
              help="Run tests in this Docker image instead of the one built from docker/ ($LOCALCODE_IMAGE).")
@click.option("--agent-args", default=None, metavar='"KEY=VALUE ..."',
              help="Override agent config fields for this run, e.g. \"max_turns=8 temperature=0 "
                   "server_config.context_window=8192\" (values are JSON when they parse).")
@click.option("--url", default=None, help="Use an OpenAI-compatible endpoint (llama-server, LM Studio, ...) instead of loading the model.")
@click.option("--model", "model_path", default=None, metavar="PATH", help="Model file (GGUF) or folder (MLX) instead of the config's.")
@click.option("--agent-log", is_flag=True, help="Print the agent's turns and tool calls on stderr (they are always in the run's logs).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run the selection N times into one run folder (repeat-1/ ... repeat-N/, resumable); "
                   "repeat k uses model seed --seed + k - 1. 'localcode report' shows mean +- sd.")
@click.option("--from-run", "--select-from", "from_run", default=None, metavar="RUN",
              help="Select the tasks of an earlier run (folder, or name under the runs dir); -k/-l/-n narrow it.")
@click.option("--failed", is_flag=True, help="With --from-run: only the tasks that failed or errored in that run.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON on stdout.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.pass_context
def command(ctx: click.Context, agents: tuple[str, ...], sweep: Path | None, ray_address: str | None, keywords: tuple[str, ...], languages: tuple[str, ...], all_: bool, full: bool,
            n: int | None, seed: int, tries: int, jobs: int, test_timeout: float, agent_timeout: float | None,
            sandbox: str, visible_tests: bool, dataset: Path | None, results_dir: Path | None,
            run_name: str | None, new_run: bool, retry_errors: bool, ca_bundle: Path | None,
            image: str | None, agent_args: str | None, url: str | None, model_path: str | None,
            agent_log: bool, repeat: int, from_run: str | None, failed: bool, as_json: bool,
            no_progress: bool) -> Path:
    """Benchmark an agent on the Aider polyglot exercises.

    Each selected exercise gets a fresh workspace with the solution stubs and build files
    (no tests, no reference solution). The agent works on it, then the tests run in the
    sandbox on a pristine copy of the exercise plus the solution's source files (never a
    build or test configuration from the workspace); a pass needs exit 0 and the test
    framework's report of tests run, none failed. A failing try is followed by another
    (up to --tries) that sees the whole test output, as in Aider. Choose exercises with -k, -l, --all, --full and/or -n; with none
    of them nothing runs.

    \b
    Results go to a run folder ($LOCALCODE_HOME/runs/<UTC time>--<agent>/, or --run-name,
    or --results-dir): run.json, <lang>/<name>/result.json per task (plus Aider's
    .aider.results.json) and stats.json.

    \b
    Resuming: running the same command again continues the newest run with the same
    agent, selection, tries, protocol, sandbox, timeout and dataset that still has tasks
    without a result (use --new for a fresh run). A run made with another agent config,
    model file, dataset content, test image or localcode version is not continued: the
    command stops with one line naming what changed. Tasks with a result are skipped;
    tasks that ended in an infrastructure error are rerun only with --retry-errors.

    \b
    Sweep: several --agent (or --sweep FILE) run one after the other over the same
    selection, each into its own run folder (--results-dir DIR: DIR/<agent>;
    --run-name NAME: NAME--<agent>); --json then prints a list.

    \b
    Ray: --ray [ADDRESS] starts one worker per node (per GPU, or per unit of the node's
    'localcode_workers' resource); each loads the model once and runs its node's test
    container; results land in this run folder as on one machine.

    \b
    Examples:
      localcode bench --agent oracle -k bowling          # every language's bowling
      localcode bench --agent none --full --jobs 2
      localcode bench --agent gguf/qwen3 --all --tries 2
      localcode bench --agent gguf/a --agent gguf/b --full --ray auto
    """
    from localcode.harness.sweep import sweep_entries

    entries = sweep_entries(agents, sweep)
    if len(entries) > 1:
        return _sweep(ctx, entries)
    agent, agent_args = entries[0].agent, _join_args(agent_args, entries[0].agent_args)
    from localcode import paths
    from localcode.harness.bench import (
        BenchOptions,
        BenchRunner,
        agent_config_hash,
        agent_overrides,
        check_agent,
        make_solver,
    )
    from localcode.harness.dataset import dataset_identity, load_dataset, resolve_dataset_dir
    from localcode.harness.results import DatasetInfo, ResultStore, RunInfo
    from localcode.harness.selection import Selection, SelectionError, select, split_csv
    from localcode.harness.stats import compute_stats, render_stats

    selection = Selection(keywords=split_csv(keywords), languages=split_csv(languages), all=all_, full=full,
                          n=n, seed=seed)
    root = resolve_dataset_dir(dataset)
    load = load_dataset(root)
    if failed and from_run is None:
        raise click.UsageError("--failed needs --from-run RUN (the run whose failed tasks to rerun)")
    try:
        if from_run is not None:
            from_dir, chosen = _select_from_run(load.exercises, selection, from_run, failed)
        else:
            chosen = select(load.exercises, selection)
    except SelectionError as e:
        raise click.UsageError(str(e)) from None

    overrides = agent_overrides(agent_args, url, model_path)
    check_agent(agent, overrides)  # a broken config fails now, not after the image build
    if ray_address is not None:
        from localcode.harness.ray_runner import import_ray

        import_ray()  # a missing extra is one line before any work
    commit, chash = dataset_identity(root)
    facts = machine_facts()
    now = datetime.now(timezone.utc)
    info = RunInfo(
        run_name="", created_at=now.isoformat(timespec="seconds"), command_line=["localcode", *sys.argv[1:]],
        localcode_version=__version__, localcode_commit=localcode_commit(), agent=agent,
        agent_overrides=overrides, model=agent, dataset=DatasetInfo(path=str(root), commit=commit, content_hash=chash),
        sandbox=sandbox, visible_tests=visible_tests, tries=tries, test_timeout_s=test_timeout,
        agent_timeout_s=agent_timeout, jobs=jobs, selection=selection.model_dump(),
        task_ids=[e.id for e in chosen], **facts,
    )
    info.agent_config_sha256 = agent_config_hash(agent, overrides, seed)
    if from_run is not None:
        info.selection.update(from_run=str(from_dir), failed=failed)
    if repeat > 1:
        return _repeat(ctx, info, agent, agent_args, repeat)

    if results_dir is not None:
        run_dir = results_dir.expanduser().resolve()
    elif run_name:
        run_dir = paths.runs_dir() / run_name
    else:
        found = None if new_run else find_run_dir(paths.runs_dir(), info.resume_key(), retry_errors)
        run_dir = found or paths.runs_dir() / f"{now.strftime('%Y-%m-%dT%H-%M-%SZ')}--{_slug(agent)}"
    store = ResultStore(run_dir)
    previous = store.read_run_info()
    if previous is not None:
        if previous.resume_key() != info.resume_key():
            raise ConfigError(
                f"{run_dir} holds a different run (agent, selection, tries, protocol, sandbox, timeout or "
                "dataset differ): pick another --run-name/--results-dir, or pass --new"
            )
        check_same_experiment(run_dir, previous, info)
        info.created_at = previous.created_at
        store.remove_temp_files()  # left by a process killed mid-write
    info.run_name = run_dir.name

    existing = {r.id: r for r in store.results()}
    if retry_errors:
        todo = [e for e in chosen if e.id in existing and not existing[e.id].finished]
    else:
        todo = [e for e in chosen if e.id not in existing]
    click.echo(f"run {run_dir}: {len(chosen)} tasks selected, {len(todo)} to run "
               f"({len(chosen) - len(todo)} already have results)", err=True)

    with ExitStack() as stack:
        if todo and ray_address is not None:
            from localcode.harness.ray_runner import bench_on_ray

            prior = [existing[e.id] for e in chosen if e.id in existing and (existing[e.id].finished or not retry_errors)]
            run_dir.mkdir(parents=True, exist_ok=True)
            if previous is None:
                store.write_run_info(info)
            info.peak_memory_mb = previous.peak_memory_mb if previous else None

            def same_experiment(facts: Any) -> None:  # once the workers know the image and the model
                facts.model_sha256 = (facts.agent_info.get("model") or {}).get("sha256")
                if previous is not None:
                    check_same_experiment(run_dir, previous, facts)

            bench_on_ray(None if ray_address == "local" else ray_address, store=store, run_info=info, exercises=todo,
                         prior=prior, total=len(chosen), agent=agent, overrides=overrides, seed=seed,
                         sandbox=sandbox, image=image, test_timeout=test_timeout,
                         options=BenchOptions(tries=tries, jobs=jobs, visible_tests=visible_tests,
                                              agent_timeout_s=agent_timeout),
                         verbose=agent_log, show_progress=not no_progress, before_tasks=same_experiment)
        elif todo:
            run_dir.mkdir(parents=True, exist_ok=True)
            store.workspaces_dir.mkdir(parents=True, exist_ok=True)
            if previous is None:
                # Written before anything slow, so a run killed during start-up is found and resumed;
                # rewritten below once the image id and the model facts are known.
                store.write_run_info(info)
            box, image_id = open_sandbox(sandbox, store.workspaces_dir, ca_bundle=ca_bundle, image=image)
            stack.callback(box.close)
            info.image_id = image_id
            if previous is not None:
                check_same_experiment(run_dir, previous, info)
            # The model loads once, after the sandbox is up (a Docker problem shows in seconds).
            solver = _solver(ctx, stack, agent, overrides, seed, agent_log)
            if hasattr(solver, "bind"):
                solver.bind(box, run_dir)
            info.agent_info = solver.info()
            info.model = str(info.agent_info.get("model", {}).get("model") or agent)
            info.model_sha256 = (info.agent_info.get("model") or {}).get("sha256")
            if previous is not None:
                check_same_experiment(run_dir, previous, info)
            store.write_run_info(info)
            from localcode.harness.runner import TestRunner

            runner = TestRunner(box, timeout=test_timeout)
            prior = [existing[e.id] for e in chosen if e.id in existing and (existing[e.id].finished or not retry_errors)]
            progress = _Quiet() if no_progress else _Progress(prior, total=len(chosen), tries=tries)
            if isinstance(progress, _Progress):
                stack.enter_context(progress)
            BenchRunner(solver=solver, runner=runner, store=store,
                        options=BenchOptions(tries=tries, jobs=jobs, visible_tests=visible_tests,
                                             agent_timeout_s=agent_timeout),
                        run_info=info, progress=progress).run(todo)
            peaks = [p for p in (previous.peak_memory_mb if previous else None, peak_memory_mb()) if p is not None]
            info.peak_memory_mb = max(peaks) if peaks else None
            store.write_run_info(info)
        elif previous is None:
            run_dir.mkdir(parents=True, exist_ok=True)
            store.write_run_info(info)

    wanted = set(info.task_ids)
    stats = compute_stats([r for r in store.results() if r.id in wanted], run_info=info)
    store.write_stats(stats)
    from rich.console import Console

    Console(stderr=True).print(render_stats(stats))
    click.echo(f"results: {run_dir}", err=True)
    if as_json:
        click.echo(json.dumps(stats, indent=2))
    return run_dir


def _join_args(*parts: str | None) -> str | None:
    """``--agent-args`` strings joined, later ones winning."""
    joined = " ".join(p for p in parts if p)
    return joined or None


def _sweep(ctx: click.Context, entries: list[Any]) -> Path:
    """Run ``bench`` once per sweep entry (same selection and flags), one run folder each."""
    from localcode.harness.bench import agent_overrides, check_agent
    from localcode.harness.results import STATS_FILE

    params = dict(ctx.params)
    slugs = [_slug(e.agent) for e in entries]
    names = [s if slugs.count(s) == 1 else f"{s}-{i + 1}" for i, s in enumerate(slugs)]
    for e in entries:  # every config is checked before the first run starts
        check_agent(e.agent, agent_overrides(_join_args(params["agent_args"], e.agent_args), params["url"],
                                             params["model_path"]))
    summary: list[dict[str, Any]] = []
    for i, (e, name) in enumerate(zip(entries, names), 1):
        click.echo(f"sweep {i}/{len(entries)}: {e.agent}" + (f" ({e.agent_args})" if e.agent_args else ""), err=True)
        run_dir = ctx.invoke(command, **{
            **params, "agents": (e.agent,), "sweep": None, "as_json": False,
            "agent_args": _join_args(params["agent_args"], e.agent_args),
            "results_dir": params["results_dir"] / name if params["results_dir"] else None,
            "run_name": f"{params['run_name']}--{name}" if params["run_name"] else None,
        })
        stats = json.loads((run_dir / STATS_FILE).read_text(encoding="utf-8"))
        summary.append({"agent": e.agent, "agent_args": e.agent_args, "run_dir": str(run_dir), "stats": stats})
    for row in summary:
        rates = " ".join(f"{k} {v}" for k, v in row["stats"].items() if k.startswith("pass_rate_"))
        click.echo(f"{row['agent']}{' (' + row['agent_args'] + ')' if row['agent_args'] else ''}: {rates}  "
                   f"{row['run_dir']}", err=True)
    if params["as_json"]:
        click.echo(json.dumps(summary, indent=2))
    return Path(summary[-1]["run_dir"])


def _select_from_run(exercises: list[Any], selection: Any, spec: str, failed: bool) -> tuple[Path, list[Any]]:
    """``--from-run RUN [--failed]``: the run's tasks (or those that failed or errored), narrowed by
    -k/-l/-n when given. Raises SelectionError (usage) or ConfigError (no such run)."""
    from localcode import paths
    from localcode.harness.report import tasks_from_run
    from localcode.harness.selection import SelectionError, select

    if selection.all or selection.full:
        raise SelectionError("--from-run selects the tasks of that run: it cannot be combined with --all or --full")
    run_dir, ids = tasks_from_run(spec, paths.runs_dir(), failed)
    by_id = {e.id: e for e in exercises}
    missing = [t for t in ids if t not in by_id]
    if missing:
        raise SelectionError(f"{len(missing)} task(s) of {run_dir} are not in this dataset (e.g. {missing[0]}): "
                             "pass the --dataset that run used")
    if not ids:
        raise SelectionError(f"no task {'failed or errored' if failed else 'was selected'} in {run_dir}: nothing to run")
    pool = [by_id[t] for t in ids]
    return run_dir, (select(pool, selection) if not selection.empty else pool)


_SHARED_SOLVERS = "localcode.bench.shared_solvers"
"""``ctx.meta`` key: solvers kept loaded across the repeats of ``--repeat`` (by agent and overrides)."""


def _solver(ctx: click.Context, stack: ExitStack, agent: str, overrides: dict[str, Any], seed: int,
            verbose: bool) -> Any:
    """The run's solver: loaded now (closed with ``stack``), or within ``--repeat`` the one an earlier
    repeat loaded, given this repeat's sampler seed (the model loads once for all repeats)."""
    from localcode.harness.bench import make_solver

    shared = ctx.meta.get(_SHARED_SOLVERS)
    if shared is None:
        solver = make_solver(agent, overrides=overrides, seed=seed, verbose=verbose)
        stack.callback(solver.close)
        return solver
    key = json.dumps([agent, {k: v for k, v in overrides.items() if k != "seed"}], sort_keys=True, default=str)
    if key not in shared:
        shared[key] = make_solver(agent, overrides=overrides, seed=seed, verbose=verbose)
    elif "seed" in overrides and getattr(shared[key], "config", None) is not None:
        from localcode.config import merge_overrides

        shared[key].config = merge_overrides(shared[key].config, {"seed": overrides["seed"]}, source="--repeat")
    return shared[key]


def _repeat(ctx: click.Context, info: Any, agent: str, agent_args: str | None, repeats: int) -> Path:
    """``--repeat N``: the same selection N times, repeat k into <run>/repeat-k/ with model seed
    --seed + k - 1 (``repeats.json`` records the seeds); the model loads once for all repeats;
    rerunning the command resumes."""
    from localcode import paths
    from localcode.harness.report import (
        build_report,
        find_repeat_run,
        load_runs,
        read_repeats_manifest,
        repeat_dir_name,
        write_repeats_manifest,
    )
    from localcode.harness.results import RUN_FILE

    params = dict(ctx.params)
    key = info.resume_key()
    if params["results_dir"] is not None:
        top = params["results_dir"].expanduser().resolve()
    elif params["run_name"]:
        top = paths.runs_dir() / params["run_name"]
    else:
        found = None if params["new_run"] else find_repeat_run(paths.runs_dir(), key, repeats, params["retry_errors"])
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
        top = found or paths.runs_dir() / f"{stamp}--{_slug(agent)}--x{repeats}"
    manifest = read_repeats_manifest(top)
    if (top / RUN_FILE).is_file() or (manifest is not None and (
            manifest.get("repeats") != repeats or manifest.get("key") != json.loads(json.dumps(key)))):
        raise ConfigError(f"{top} holds a different run (not these {repeats} repeats of this selection): "
                          "pick another --run-name/--results-dir, or pass --new")
    # Built-in agents have no sampler: their repeats differ only by the machine's noise.
    seeds = [None if agent in ("oracle", "none") else params["seed"] + k for k in range(repeats)]
    top.mkdir(parents=True, exist_ok=True)
    write_repeats_manifest(top, repeats, seeds, key=key)
    shared: dict[str, Any] = {}
    ctx.meta[_SHARED_SOLVERS] = shared
    try:
        for k, seed in enumerate(seeds, start=1):
            click.echo(f"repeat {k}/{repeats}" + (f" (model seed {seed})" if seed is not None else ""), err=True)
            ctx.invoke(command, **{
                **params, "agents": (agent,), "sweep": None, "repeat": 1, "as_json": False, "new_run": False,
                "results_dir": top / repeat_dir_name(k), "run_name": None,
                "agent_args": _join_args(agent_args, f"seed={seed}" if seed is not None else None),
            })
    finally:
        ctx.meta.pop(_SHARED_SOLVERS, None)
        for solver in shared.values():
            solver.close()
    runs, groups = load_runs([top])
    report = build_report(runs, groups)
    for g in report["repeats"]:
        for k, v in g["pass_at"].items():
            click.echo(f"pass_rate_{k} over {g['finished_repeats']} repeats: {v['mean']:.1f} +- {v['sd']:.1f} "
                       f"({', '.join(f'{x:.1f}' for x in v['values'])})", err=True)
    click.echo(f"results: {top}  (localcode report {top})", err=True)
    if params["as_json"]:
        click.echo(json.dumps(report["repeats"], indent=2))
    return top
