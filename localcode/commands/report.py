"""``localcode report``: one run, or several side by side, from their result files."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("report")
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@click.option("--json", "as_json", is_flag=True, help="The whole report as JSON on stdout.")
@click.option("--markdown", "as_markdown", is_flag=True,
              help="The report as Markdown on stdout (for a README or a PR).")
@click.option("--yaml", "as_yaml", is_flag=True,
              help="One entry per run in the format of Aider's leaderboard YAML, on stdout.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              metavar="FILE", help="Write one self-contained HTML page (tables, plots, sortable and filterable "
                                   "task matrix, each task's conversation); it opens from file:// with no network.")
@click.option("-q", "--quiet", is_flag=True, help="No table on stderr.")
def command(runs: tuple[str, ...], as_json: bool, as_markdown: bool, as_yaml: bool, html_file: Path | None,
            quiet: bool) -> None:
    """Report on benchmark runs: one run in detail, or several side by side.

    RUN is a run folder, a run name under the runs folder ($LOCALCODE_HOME/runs), or a
    glob over either (quote it: 'runs/*qwen*'). Only result files are read, never the model.

    \b
    One run: bench's statistics table per language, then every task with its outcome per
    try, stop reason, turns, tokens and seconds; errors and unusual endings (stuck,
    context overflow, max_turns, ...) with their reasons.
    Several runs: pass@k per run with 95% Wilson intervals (and a bootstrap over tasks),
    per language; the task x run matrix; the tasks that flipped; for each pair of runs an
    exact McNemar test and a paired bootstrap interval of the difference, on the tasks both
    finished (runs over different task sets are compared on their common tasks, and the
    report says so). A 'bench --repeat N' run shows mean +- sd and each task's solve frequency.
    Time per case split into prefill, decode, tools and tests; tokens/s; cached-token share.

    \b
    The table goes to stderr; --json, --markdown and --yaml print on stdout (one of them).
    Examples:
      localcode report 2026-11-25T10-00-00Z--gguf-qwen3
      localcode report runs/a runs/b --markdown > comparison.md
      localcode report 'runs/*' --html report.html
    """
    from localcode import paths
    from localcode.harness.report import build_report, load_runs, render_rich, resolve_run_dirs, to_markdown, to_yaml

    if sum((as_json, as_markdown, as_yaml)) > 1:
        raise click.UsageError("choose one of --json, --markdown and --yaml (stdout holds one format)")
    loaded, groups = load_runs(resolve_run_dirs(runs, paths.runs_dir()))
    report = build_report(loaded, groups)
    if not quiet:
        from rich.console import Console

        Console(stderr=True).print(render_rich(report, loaded))
    if html_file is not None:
        from localcode.harness.report_html import render_html

        html_file.parent.mkdir(parents=True, exist_ok=True)
        html_file.write_text(render_html(report, loaded), encoding="utf-8")
        click.echo(f"report: {html_file.resolve()}", err=True)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif as_markdown:
        click.echo(to_markdown(report), nl=False)
    elif as_yaml:
        click.echo(to_yaml(report), nl=False)
