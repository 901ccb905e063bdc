"""glob, grep and search: .gitignore honoured; ripgrep and the Python fallback agree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localcode.agent.tools.base import ToolContext
from localcode.agent.tools.registry import ToolOutcome, ToolRegistry
from localcode.agent.tools.search import ripgrep, run_search


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src" / "deep").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def handler(event):\n    return event['Body']\n")
    (root / "src" / "deep" / "util.py").write_text("def helper():\n    return 42  # handler\n")
    (root / "src" / "deep" / "notes.md").write_text("Handler notes\n")
    (root / "src" / ".gitignore").write_text("generated_*\n!generated_keep.py\n")
    (root / "src" / "generated_x.py").write_text("def handler(): pass\n")
    (root / "src" / "generated_keep.py").write_text("def handler(): pass\n")
    (root / ".gitignore").write_text("node_modules/\n*.min.js\n")
    (root / "node_modules" / "lib").mkdir(parents=True)
    (root / "node_modules" / "lib" / "index.js").write_text("function handler() {}\n")
    (root / "bundle.min.js").write_text("function handler(){}\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("handler = 1\n")
    (root / ".hidden.py").write_text("handler = 2\n")
    (root / "blob.bin").write_bytes(b"handler\x00\x01")
    return root


@pytest.fixture
def ctx(ws: Path) -> ToolContext:
    return ToolContext(workspace=ws)


def call(ctx: ToolContext, tool: str, **args: object) -> ToolOutcome:
    return ToolRegistry(["glob", "grep", "search"]).execute(tool, args, ctx)


def test_ripgrep_is_available() -> None:
    assert ripgrep() is not None, "rg is missing: pip install ripgrep (a dependency of localcode)"


def test_glob_honours_gitignore_at_every_level(ctx: ToolContext) -> None:
    out = call(ctx, "glob", pattern="*.py")
    assert out.text.splitlines() == [
        "ok: 4 files match '*.py' in the workspace",
        ".hidden.py", "src/app.py", "src/deep/util.py", "src/generated_keep.py",
    ]
    assert call(ctx, "find_files", pattern="*.js").text == "ok: no files match '*.js' in the workspace"


def test_glob_path_and_anchored_patterns(ctx: ToolContext) -> None:
    out = call(ctx, "glob", pattern="deep/*", path="src")
    assert out.text.splitlines()[1:] == ["src/deep/notes.md", "src/deep/util.py"]
    out = call(ctx, "glob", pattern="src/**/*.md")
    assert out.text.splitlines()[1:] == ["src/deep/notes.md"]
    assert "not a folder" in call(ctx, "glob", pattern="*", path="src/app.py").text
    assert "outside the workspace" in call(ctx, "glob", pattern="*", path="..").text


def test_glob_caps_results(ctx: ToolContext, ws: Path) -> None:
    (ws / "many").mkdir()
    for i in range(230):
        (ws / "many" / f"m{i:03}.txt").write_text("")
    out = call(ctx, "glob", pattern="*.txt")
    assert out.text.startswith("ok: 230 files match")
    assert out.text.endswith("[... 30 more; use a narrower pattern or path]")


EXPECTED_GREP = [
    ".hidden.py:1:handler = 2",
    "src/app.py:1:def handler(event):",
    "src/deep/util.py:2:    return 42  # handler",
    "src/generated_keep.py:1:def handler(): pass",
]


@pytest.mark.parametrize("use_rg", [True, False], ids=["ripgrep", "python"])
def test_grep_honours_gitignore_and_skips_binary_and_git(ctx: ToolContext, use_rg: bool) -> None:
    out = run_search(ctx, r"handl\w+", ".", literal=False, ignore_case=False, include=None, use_rg=use_rg)
    assert out.splitlines() == ["ok: 4 matches for pattern 'handl\\\\w+' in 4 files", *EXPECTED_GREP]


@pytest.mark.parametrize("use_rg", [True, False], ids=["ripgrep", "python"])
def test_grep_options_agree(ctx: ToolContext, use_rg: bool) -> None:
    def lines(pattern: str = "handler", path: str = ".", literal: bool = False,
              ignore_case: bool = False, include: str | None = None) -> list[str]:
        out = run_search(ctx, pattern, path, literal=literal, ignore_case=ignore_case, include=include, use_rg=use_rg)
        return out.splitlines()[1:]

    assert lines(ignore_case=True) == sorted([*EXPECTED_GREP, "src/deep/notes.md:1:Handler notes"])
    assert lines(include="*.md", ignore_case=True) == ["src/deep/notes.md:1:Handler notes"]
    assert lines(path="src/deep") == ["src/deep/util.py:2:    return 42  # handler"]
    assert lines(path="src/app.py") == ["src/app.py:1:def handler(event):"]
    assert lines(pattern="event['Body']", literal=True) == ["src/app.py:2:    return event['Body']"]
    assert lines(pattern="nothing-here") == []


def test_grep_and_search_through_the_registry(ctx: ToolContext) -> None:
    out = call(ctx, "grep", pattern="return \\d+", include="*.py")
    assert out.text.splitlines() == ["ok: 1 match for pattern 'return \\\\d+' in 1 file", "src/deep/util.py:2:    return 42  # handler"]
    out = call(ctx, "search_text", query="event['Body']")
    assert out.text.splitlines()[1:] == ["src/app.py:2:    return event['Body']"]
    out = call(ctx, "search", query="(", path="src/deep")
    assert out.text.splitlines()[1:] == ["src/deep/util.py:1:def helper():"]
    assert call(ctx, "grep", pattern="zzz").text == "ok: no matches for pattern 'zzz'"


@pytest.mark.parametrize("use_rg", [True, False], ids=["ripgrep", "python"])
def test_bad_regex_is_a_tool_error(ctx: ToolContext, use_rg: bool) -> None:
    from localcode.agent.tools.base import ToolError

    with pytest.raises(ToolError, match="bad regex"):
        run_search(ctx, "(unclosed", ".", literal=False, ignore_case=False, include=None, use_rg=use_rg)
    assert call(ctx, "grep", pattern="(unclosed").error_kind == "tool_error"


def test_grep_caps_matches(ctx: ToolContext, ws: Path) -> None:
    (ws / "big.txt").write_text("hit\n" * 250)
    out = call(ctx, "grep", pattern="hit", path="big.txt")
    assert out.text.startswith("ok: 250 matches for pattern 'hit' in 1 file")
    assert out.text.endswith("[... 150 more matches; narrow the search with path or include]")


@pytest.mark.parametrize("use_rg", [True, False], ids=["ripgrep", "python"])
def test_search_skips_symlinks_fifos_and_oversized_files(ws: Path, tmp_path: Path, use_rg: bool) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("handler secret\n")
    os.symlink(outside, ws / "src" / "leak.txt")
    os.symlink(tmp_path, ws / "src" / "leakdir")
    os.mkfifo(ws / "src" / "pipe")
    (ws / "src" / "huge.txt").write_text("handler\n" * 1000)
    ctx = ToolContext(workspace=ws, max_read_bytes=4000)
    out = run_search(ctx, "handler", "src", literal=True, ignore_case=False, include=None, use_rg=use_rg)
    assert "secret" not in out and "huge.txt" not in out and "pipe" not in out
    assert out.splitlines()[1:] == [
        "src/app.py:1:def handler(event):",
        "src/deep/util.py:2:    return 42  # handler",
        "src/generated_keep.py:1:def handler(): pass",
    ]
