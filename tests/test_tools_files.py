"""ls, read, batch_read, write, edit — through the registry, as the agent calls them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localcode.agent.tools.base import ToolContext
from localcode.agent.tools.files import find_edit
from localcode.agent.tools.registry import ToolOutcome, ToolRegistry

TOOLS = ["ls", "read", "batch_read", "write", "edit"]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "main.py").write_text("import pkg\n\n\ndef main():\n    print('hi')\n")
    (root / "src" / "pkg" / "__init__.py").write_text("")
    (root / "README.md").write_text("# demo\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_bytes(b"\x00\x01")
    (root / "run.log").write_text("log\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


@pytest.fixture
def ctx(ws: Path) -> ToolContext:
    return ToolContext(workspace=ws, protected=frozenset({"tests", "src/main_test.py"}))


@pytest.fixture
def reg() -> ToolRegistry:
    return ToolRegistry(TOOLS)


def call(reg: ToolRegistry, ctx: ToolContext, tool: str, **args: object) -> ToolOutcome:
    return reg.execute(tool, args, ctx)


# --- ls -------------------------------------------------------------------------

def test_ls_marks_folders_shows_sizes_and_honours_gitignore(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = call(reg, ctx, "ls")
    assert out.ok, out.text
    lines = out.text.splitlines()
    assert lines[0] == "ok: . — 1 folder, 2 files"
    assert "src/" in lines and ".gitignore  13 B" in lines and "README.md  7 B" in lines
    assert not any("build" in ln or "run.log" in ln or ".git/" in ln for ln in lines)
    every = call(reg, ctx, "list_dir", all=True)
    assert "build/" in every.text and "run.log  4 B" in every.text
    assert ".git/" not in every.text


def test_ls_depth_and_subfolder(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = call(reg, ctx, "ls", path="src", depth=2)
    assert out.text.splitlines() == [
        "ok: src/ — 1 folder, 2 files", "src/main.py  41 B", "src/pkg/", "src/pkg/__init__.py  0 B",
    ]
    assert call(reg, ctx, "ls", path="src/main.py").error_kind == "tool_error"
    assert "does not exist" in call(reg, ctx, "ls", path="nope").text


def test_ls_caps_long_listings(reg: ToolRegistry, ctx: ToolContext) -> None:
    many = ctx.workspace / "many"
    many.mkdir()
    for i in range(350):
        (many / f"f{i:03}.txt").write_text("")
    out = call(reg, ctx, "ls", path="many")
    assert out.ok
    assert "[... 50 more entries; ls a sub-folder to see them]" in out.text
    assert len(out.text.splitlines()) == 302


# --- read -----------------------------------------------------------------------

def test_read_numbers_lines_and_records_the_read(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = call(reg, ctx, "read", path="src/main.py")
    assert out.text.splitlines() == [
        "ok: src/main.py lines 1-5 of 5",
        "     1\timport pkg", "     2\t", "     3\t", "     4\tdef main():", "     5\t    print('hi')",
    ]
    assert ctx.files_read == {"src/main.py"}


def test_read_offset_limit_and_more_lines_hint(reg: ToolRegistry, ctx: ToolContext) -> None:
    (ctx.workspace / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 1001)))
    out = call(reg, ctx, "read", path="long.txt")
    assert out.text.startswith("ok: long.txt lines 1-500 of 1000")
    assert out.text.endswith("[500 more lines; read with offset=501]")
    out = call(reg, ctx, "read_file", path="long.txt", offset=998, limit=10)
    assert out.text.splitlines() == ["ok: long.txt lines 998-1000 of 1000", "   998\tline 998", "   999\tline 999", "  1000\tline 1000"]
    out = call(reg, ctx, "read", path="long.txt", offset=1001)
    assert out.text == "error: offset 1001 is past the end of 'long.txt' (1000 lines)"
    # offset 0 (a zero-based habit) reads from the start.
    assert "lines 1-2 of 1000" in call(reg, ctx, "read", path="long.txt", offset=0, limit=2).text


def test_read_output_cap_points_to_the_next_offset(reg: ToolRegistry, ws: Path) -> None:
    ctx = ToolContext(workspace=ws, max_output_chars=2000)
    (ws / "wide.txt").write_text("".join(f"{i:04} " + "x" * 95 + "\n" for i in range(1, 101)))
    out = call(reg, ctx, "read", path="wide.txt")
    assert len(out.text) < 2300
    shown = out.text.splitlines()[-2]
    last = int(shown.split("\t")[0])
    assert out.text.endswith(f"[{100 - last} more lines; read with offset={last + 1}]")


def test_read_refusals(reg: ToolRegistry, ctx: ToolContext) -> None:
    assert "does not exist" in call(reg, ctx, "read", path="nope.py").text
    assert "is a folder" in call(reg, ctx, "read", path="src").text
    (ctx.workspace / "bin.dat").write_bytes(b"abc\x00def")
    assert "binary file" in call(reg, ctx, "read", path="bin.dat").text
    (ctx.workspace / "empty.txt").write_text("")
    assert call(reg, ctx, "read", path="empty.txt").text == "ok: empty.txt is empty (0 lines)"


def test_read_undecodable_bytes_are_replaced(reg: ToolRegistry, ctx: ToolContext) -> None:
    (ctx.workspace / "latin.txt").write_bytes(b"caf\xe9\n")
    out = call(reg, ctx, "read", path="latin.txt")
    assert out.ok and "caf\ufffd" in out.text


# --- batch_read -----------------------------------------------------------------

def test_batch_read_several_files_with_per_file_errors(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = call(reg, ctx, "read_multiple", paths=["README.md", "nope.txt", "src/main.py"])
    assert out.ok
    assert out.text.startswith("ok: read 2 of 3 files")
    assert "=== README.md lines 1-1 of 1\n     1\t# demo" in out.text
    assert "=== nope.txt: error: 'nope.txt' does not exist" in out.text
    assert "=== src/main.py lines 1-5 of 5" in out.text
    assert ctx.files_read == {"README.md", "src/main.py"}
    out = call(reg, ctx, "read_files", paths="README.md, src/main.py")
    assert out.text.startswith("ok: read 2 of 2 files")
    out = call(reg, ctx, "batch_read", paths=["x", "y"])
    assert out.error_kind == "tool_error" and out.text.startswith("error: no file could be read")
    assert "read at most 20" in call(reg, ctx, "batch_read", paths=[f"f{i}" for i in range(21)]).text


# --- write ----------------------------------------------------------------------

def test_write_creates_folders_overwrites_and_records(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = call(reg, ctx, "write", path="new/deep/x.py", content="a\nb\n")
    assert out.text == "ok: created new/deep/x.py (2 lines, 4 bytes)"
    assert (ctx.workspace / "new/deep/x.py").read_text() == "a\nb\n"
    out = call(reg, ctx, "write_file", path="new/deep/x.py", content="c\n")
    assert out.text == "ok: wrote new/deep/x.py (1 lines, 2 bytes)"
    assert ctx.changed_files == {"new/deep/x.py"}
    leftovers = [p for p in (ctx.workspace / "new/deep").iterdir() if p.name != "x.py"]
    assert leftovers == []  # the temp file was renamed, not left behind


def test_write_keeps_permissions(reg: ToolRegistry, ctx: ToolContext) -> None:
    script = ctx.workspace / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert call(reg, ctx, "write", path="run.sh", content="#!/bin/sh\necho hi\n").ok
    assert script.stat().st_mode & 0o777 == 0o755


def test_write_refusals(reg: ToolRegistry, ctx: ToolContext) -> None:
    assert "is a folder" in call(reg, ctx, "write", path="src", content="x").text
    assert "cannot write the workspace root" in call(reg, ctx, "write", path=".", content="x").text
    assert "folder is needed" in call(reg, ctx, "write", path="README.md/x", content="x").text or \
        "goes through a file" in call(reg, ctx, "write", path="README.md/x", content="x").text
    assert ctx.changed_files == set()


# --- edit -----------------------------------------------------------------------

SRC = "def greet(name):\n    msg = \"Hello, \" + name\n    return msg\n\n\ndef bye():\n    return 'bye'\n"


@pytest.fixture
def src(ctx: ToolContext) -> Path:
    p = ctx.workspace / "g.py"
    p.write_text(SRC)
    return p


def test_edit_exact(reg: ToolRegistry, ctx: ToolContext, src: Path) -> None:
    out = call(reg, ctx, "edit", path="g.py", old="return msg", new="return msg.upper()")
    assert out.text == "ok: edited g.py: 1 replacement at line 3"
    assert src.read_text() == SRC.replace("return msg", "return msg.upper()")
    assert ctx.changed_files == {"g.py"}


def test_edit_tolerates_curly_quotes(reg: ToolRegistry, ctx: ToolContext, src: Path) -> None:
    out = call(reg, ctx, "replace_in_file", path="g.py", old="return \u2018bye\u2019", new="return 'ciao'")
    assert out.ok and out.text.endswith("matched ignoring quote style")
    assert "return 'ciao'" in src.read_text()


def test_edit_tolerates_trailing_whitespace(reg: ToolRegistry, ctx: ToolContext, src: Path) -> None:
    out = call(reg, ctx, "edit", path="g.py", old="def bye():   \n    return 'bye'  ", new="def bye():\n    return 'au revoir'")
    assert out.ok and out.text.endswith("matched ignoring trailing whitespace"), out.text
    assert src.read_text().endswith("def bye():\n    return 'au revoir'\n")


def test_edit_tolerates_indentation_and_reindents_new(reg: ToolRegistry, ctx: ToolContext, src: Path) -> None:
    old = "msg = \"Hello, \" + name\nreturn msg"
    new = "msg = \"Hi, \" + name\nif not name:\n    msg = \"Hi\"\nreturn msg"
    out = call(reg, ctx, "edit", path="g.py", old=old, new=new)
    assert out.ok and out.text.endswith("matched ignoring indentation"), out.text
    assert src.read_text().startswith(
        "def greet(name):\n    msg = \"Hi, \" + name\n    if not name:\n        msg = \"Hi\"\n    return msg\n\n"
    )


def test_edit_tolerates_inner_whitespace(reg: ToolRegistry, ctx: ToolContext, src: Path) -> None:
    out = call(reg, ctx, "edit", path="g.py", old="msg  =  \"Hello, \"  +  name", new="    msg = name")
    assert out.ok and out.text.endswith("matched ignoring whitespace"), out.text
    assert "    msg = name\n" in src.read_text()


def test_edit_uniqueness_rule(reg: ToolRegistry, ctx: ToolContext) -> None:
    p = ctx.workspace / "d.py"
    p.write_text("x = 1\ny = 2\nx = 1\n")
    out = call(reg, ctx, "edit", path="d.py", old="x = 1", new="x = 3")
    assert out.text.startswith("error: old text occurs 2 times (lines 1, 3)")
    assert p.read_text() == "x = 1\ny = 2\nx = 1\n"
    out = call(reg, ctx, "edit", path="d.py", old="x = 1", new="x = 3", all=True)
    assert out.text == "ok: edited d.py: 2 replacements at line 1"
    assert p.read_text() == "x = 3\ny = 2\nx = 3\n"
    # Ambiguity is checked at the tolerant levels too.
    p.write_text("    a()\n  a()\n")
    out = call(reg, ctx, "edit", path="d.py", old="a()", new="b()")
    assert "occurs 2 times" in out.text


def test_edit_not_found_hints_at_the_closest_line(reg: ToolRegistry, ctx: ToolContext, src: Path) -> None:
    out = call(reg, ctx, "edit", path="g.py", old="def greet(nme):", new="def greet(n):")
    assert out.error_kind == "tool_error"
    assert "old text not found in 'g.py'; the closest line is 1: 'def greet(name):'" in out.text
    assert src.read_text() == SRC


def test_edit_other_cases(reg: ToolRegistry, ctx: ToolContext, src: Path) -> None:
    assert "old and new are the same" in call(reg, ctx, "edit", path="g.py", old="bye", new="bye").text
    assert "does not exist; use write" in call(reg, ctx, "edit", path="none.py", old="a", new="b").text
    assert "old is empty" in call(reg, ctx, "edit", path="g.py", old="", new="x").text
    out = call(reg, ctx, "edit", path="fresh.py", old="", new="print(1)\n")
    assert out.ok and (ctx.workspace / "fresh.py").read_text() == "print(1)\n"


def test_find_edit_levels() -> None:
    text = "a = \u201cq\u201d\n  b = 1  \n"
    assert find_edit(text, "a = \u201cq\u201d", False)[1] == "exactly"
    assert find_edit(text, 'a = "q"', False)[1] == "ignoring quote style"
    assert find_edit(text, "  b = 1\n", False)[1] == "ignoring trailing whitespace"
    assert find_edit(text, "b = 1", False)[1] == "exactly"
    assert find_edit(text, "b =   1", False)[1] == "ignoring whitespace"
    assert find_edit(text, "c = 1", False)[0] == []


def test_crlf_file_edit(reg: ToolRegistry, ctx: ToolContext) -> None:
    p = ctx.workspace / "w.txt"
    p.write_bytes(b"one\r\ntwo\r\nthree\r\n")
    out = call(reg, ctx, "edit", path="w.txt", old="two", new="2")
    assert out.ok and p.read_bytes() == b"one\r\n2\r\nthree\r\n"


def test_write_and_edit_through_a_symlink_inside_the_workspace(reg: ToolRegistry, ctx: ToolContext, src: Path) -> None:
    os.symlink("g.py", ctx.workspace / "alias.py")
    out = call(reg, ctx, "edit", path="alias.py", old="return msg", new="return 1")
    assert out.ok
    assert (ctx.workspace / "alias.py").is_symlink()
    assert "return 1" in src.read_text()
    assert ctx.changed_files == {"g.py"}
