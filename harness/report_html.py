"""The self-contained HTML page of ``localcode report --html``.

One file, no network: the tables are rendered by a jinja2 template shipped with the
package (``harness/templates/report.html.j2``); the plots are matplotlib figures inlined
as SVG; the task matrix's sorting and filtering and the drill-down into a task's
conversation are a few lines of inline JavaScript; the conversations are embedded as
gzipped JSON in base64 and unpacked by the browser on the first drill-down. Nothing is
fetched when the page opens (it works from ``file://``).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from localcode.errors import MissingDependency
from localcode.harness.report import FACT_KEYS, Run, fact_text, max_tries, try_log
from localcode.harness.results import cap_text

TEMPLATE = "report.html.j2"
EVENT_TEXT_CAP = 3000
"""Characters kept per text field of a log event in the page (the logs keep more)."""
TEST_OUTPUT_CAP = 6000
"""Characters of test output kept per try in the page (head and tail)."""

_EVENT_FIELDS = {
    "session_start": ("task", "continued"),
    "response": ("content", "reasoning", "tool_calls", "malformed", "finish_reason"),
    "tool_call": ("name", "arguments"),
    "tool_result": ("ok", "skipped", "error_kind", "text"),
    "format_error": ("problems",),
    "nudge": ("why", "text"),
    "auto_tool_call": ("calls",),
    "history": ("why", "shortened", "dropped"),
    "context_exceeded": ("error",),
    "stuck": ("call", "repeats"),
    "phase": ("from", "to", "by", "reason"),
    "flow_stage": ("done", "to", "summary"),
    "end": ("reason", "detail", "final_answer", "turns", "seconds"),
}


def _clip(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) <= EVENT_TEXT_CAP:
            return value
        return value[:EVENT_TEXT_CAP] + f"... [{len(value) - EVENT_TEXT_CAP} more]"
    if isinstance(value, list):
        return [_clip(v) for v in value]
    if isinstance(value, dict):
        return {k: _clip(v) for k, v in value.items()}
    return value


def _sub_agent(event: dict[str, Any]) -> bool:
    """A sub-agent's event: the log tags those with ``agent`` (the main agent's ``session_start``
    also names its agent, at depth 0)."""
    if event.get("kind") == "session_start":
        return bool(event.get("depth"))
    return bool(event.get("agent"))


def _events(run: Run, task_id: str, index: int) -> list[dict[str, Any]]:
    """The events of one try's log that a reader needs, with long texts clipped."""
    out = []
    for event in try_log(run.path, task_id, index):
        kind = event.get("kind")
        if kind not in _EVENT_FIELDS or _sub_agent(event):
            continue  # sub-agents' events stay in the log file
        out.append({"kind": kind, "t": event.get("t"),
                    **{k: _clip(event[k]) for k in _EVENT_FIELDS[kind] if k in event}})
    return out


def conversations(run: Run) -> dict[str, list[dict[str, Any]]]:
    """Task id -> its tries as the drill-down shows them: outcome, log events, test output."""
    out: dict[str, list[dict[str, Any]]] = {}
    for tid in sorted(run.results):
        r = run.results[tid]
        out[tid] = [{
            "index": t.index, "passed": t.passed, "failure": getattr(t, "failure", ""),
            "stop_reason": t.stop_reason, "error": t.error, "timed_out": t.timed_out, "exit_code": t.exit_code,
            "test_command": t.test_command,
            "test_output": cap_text(t.test_output, TEST_OUTPUT_CAP),
            "agent_seconds": round(t.agent_duration_s, 2), "test_seconds": round(t.test_duration_s, 2),
            "events": _events(run, tid, t.index),
        } for t in r.tries]
        if r.error and not any(t.error for t in r.tries):
            out[tid].append({"index": None, "passed": False, "failure": "", "stop_reason": "", "error": r.error,
                             "timed_out": False, "exit_code": None, "test_command": "", "test_output": "",
                             "agent_seconds": 0, "test_seconds": 0, "events": []})
    return out


def pack(data: Any) -> str:
    """``data`` as gzipped JSON in base64: the page unpacks it with the browser's DecompressionStream.

    The conversations are most of a page's weight (every try of every task of every run) and
    compress about tenfold; base64 keeps them inert text inside the HTML.
    """
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def unpack(text: str) -> Any:
    """The inverse of ``pack`` (for tests and tools that read a page's data)."""
    return json.loads(gzip.decompress(base64.b64decode(text)).decode("utf-8"))


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML


def plots(report: dict[str, Any]) -> dict[str, str]:
    """Inline SVGs: pass rate against seconds per case (with 95% intervals), and the time split.

    Raises MissingDependency when matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependency("matplotlib", "report", "the plots of --html") from None
    runs = report["runs"]
    k = str(max_tries(report))
    out: dict[str, str] = {}

    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.subplots()
    for b in runs:
        block = b["pass_at"].get(k) or b["pass_at"][str(b["tries"])]
        x, y = b["time"]["total_seconds_per_case"], block["rate"]
        ax.errorbar([x], [y], yerr=[[y - block["low"]], [block["high"] - y]], fmt="o", capsize=4, label=b["label"])
        ax.annotate(b["label"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("seconds per case (agent and tests)")
    ax.set_ylabel(f"pass@{k} (%), 95% interval")
    ax.set_ylim(-3, 110)  # room for the labels of points at 0 and 100
    ax.set_xlim(0, max((b["time"]["total_seconds_per_case"] for b in runs), default=0) * 1.2 or 1)
    ax.grid(alpha=0.3)
    out["pass_vs_time"] = _svg(fig)

    fig = Figure(figsize=(6.4, 0.6 + 0.45 * len(runs)))
    ax = fig.subplots()
    parts = (("prefill_seconds_per_case", "prefill"), ("decode_seconds_per_case", "decode"),
             ("tools_seconds_per_case", "tools"), ("other_seconds_per_case", "other"),
             ("test_seconds_per_case", "tests"))
    labels = [b["label"] for b in runs]
    left = [0.0] * len(runs)
    for key, name in parts:
        values = [b["time"][key] for b in runs]
        ax.barh(labels, values, left=left, label=name)
        left = [a + v for a, v in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("seconds per case")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, ncols=5, frameon=False)
    out["time_split"] = _svg(fig)
    return out


def render_html(report: dict[str, Any], runs: list[Run]) -> str:
    """The page: the report's tables and plots, the sortable and filterable task matrix, and the
    drill-down data of every task of every run."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fact"] = fact_text
    flipped = {f["task"] for f in report["flips"]}
    facts = [k for k in FACT_KEYS if any(b["facts"].get(k) not in (None, "", [], {}) for b in report["runs"])]
    return env.get_template(TEMPLATE).render(
        facts=facts,
        report=report, tries=max_tries(report), plots=plots(report), flipped=flipped,
        conversations=pack({run.label: conversations(run) for run in runs}),
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        languages=sorted({tid.split("/", 1)[0] for tid in report["matrix"]}),
    )
