"""The ``localcode`` command line.

Subcommands live in ``localcode.commands.<name>`` and are imported only when used, so
``localcode --help`` stays fast: no llama_cpp, docker or fastapi at start-up.

Exit codes: 0 ok, 1 error (a ``LocalcodeError``: one line saying what to do), 2 usage,
130 interrupted (Ctrl-C; a second Ctrl-C exits at once, see ``localcode.interrupt``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys

import click

from localcode import __version__
from localcode.errors import LocalcodeError

# name -> (module, one-line help). The help is here so that listing commands imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("localcode.commands.bench", "Benchmark an agent on the Aider polyglot exercises."),
    "solve": ("localcode.commands.solve", "Run the agent on a directory with a prompt."),
    "serve": ("localcode.commands.serve", "Serve the loaded model as an OpenAI-compatible API."),
    "setup": ("localcode.commands.setup", "Fetch the dataset and build the test image."),
    "agents": ("localcode.commands.agents", "List the agent configs localcode can find."),
    "report": ("localcode.commands.report", "Report on runs: one in detail, or several side by side."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (mod, _) in COMMANDS.items() if importlib.util.find_spec(mod))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "LOCALCODE"})
@click.version_option(__version__, prog_name="localcode")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def cli(verbose: int, quiet: bool) -> None:
    """Benchmark and run local LLMs as coding agents, in-process.

    The model is loaded into this process (GGUF through llama-cpp-python, MLX through
    mlx-lm); the agent edits files on the host and the tests run in a Docker container.

    User data (datasets, runs, sessions, downloaded models) lives under $LOCALCODE_HOME,
    or the platform's data folder when it is not set.
    """
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def run() -> None:
    """The console script and ``python -m localcode``: ``main``, and after Ctrl-C the process ends
    at once, skipping the interpreter's teardown (what had to be written and closed already was;
    unloading a model's libraries and freeing its memory would take another second or more)."""
    from localcode import interrupt

    try:
        main()
    except SystemExit as e:
        if e.code == interrupt.EXIT_CODE:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(interrupt.EXIT_CODE)
        raise


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to exit codes."""
    from localcode import interrupt

    try:
        # Ctrl-C: the first stops what runs (native work included) and unwinds, a second exits at once.
        with interrupt.handling():
            # Without standalone mode click returns the code of a ``ctx.exit(code)`` instead of exiting.
            code = cli.main(args=argv, prog_name="localcode", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except LocalcodeError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
