"""shell: run a command in the benchmark's sandbox, or (``localcode solve`` with shell
enabled) in the workspace on the host. Timeout; output capped, keeping its end.

In a sandbox the command runs in a throw-away copy of the workspace (see
``localcode.harness.sandbox``): it can build and test, but files it writes are
discarded, so the model changes files with the file tools.
"""

from __future__ import annotations

import os
from pathlib import Path

from localcode.agent.tools.base import Tool, ToolContext, ToolError, ToolParams, cap_head_tail
from localcode.harness.sandbox import ExecResult, run_process_group


def run_on_host(command: str, cwd: Path, timeout: float, env: dict[str, str] | None = None,
                output_limit: int = 1 << 20) -> ExecResult:
    """Run ``bash -c command`` in ``cwd`` in its own process group; kill the group at ``timeout``."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return run_process_group(["bash", "-c", command], timeout, cwd, full_env, output_limit=output_limit)


class Shell(Tool):
    name = "shell"
    aliases = ("bash", "run_command", "execute_command", "run_shell")
    description = (
        "Run a shell command (bash) in the workspace folder, e.g. to build or run the tests. "
        "Output is cut when long. Change files with the file tools, not with the shell."
    )

    class Params(ToolParams):
        command: str
        """The command line, run with bash -c."""
        timeout: float | None = None
        """Seconds before the command is killed (at most the configured limit)."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        if ctx.sandbox is None and not ctx.shell_enabled:
            raise ToolError("shell is disabled for this run; use the file tools (read, write, edit)")
        command = params.command
        if not command.strip():
            raise ToolError("command is empty")
        if "\x00" in command:
            raise ToolError("command contains a NUL byte")
        try:
            command.encode("utf-8")
        except UnicodeEncodeError:
            raise ToolError("command is not valid UTF-8 text (a lone surrogate)") from None
        timeout = ctx.shell_timeout
        if params.timeout is not None and params.timeout == params.timeout and params.timeout > 0:
            timeout = min(timeout, params.timeout)
        if ctx.sandbox is not None:
            result = ctx.sandbox.exec(
                ["bash", "-c", command], timeout=timeout, cwd=ctx.shell_cwd or ctx.workspace, env=ctx.shell_env,
            )
        else:
            result = run_on_host(command, ctx.shell_cwd or ctx.workspace, timeout, ctx.shell_env)
        output = cap_head_tail(result.output.rstrip("\n"), ctx.max_output_chars)
        if result.timed_out:
            raise ToolError(f"timed out after {timeout:g}s and was killed; output so far:\n{output or '(none)'}")
        head = f"ok: exit code {result.exit_code} ({result.duration_s:.1f}s)"
        return f"{head}\n{output}" if output else f"{head}, no output"


TOOLS: tuple[type[Tool], ...] = (Shell,)
