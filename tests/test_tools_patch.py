"""apply_patch: the codex '*** Begin Patch' format and unified diffs, all files or none."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from localcode.agent.tools.base import ToolContext
from localcode.agent.tools.patch import PatchError, apply_hunks, parse_patch
from localcode.agent.tools.registry import ToolOutcome, ToolRegistry

APP = "import sys\n\n\ndef add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\nif __name__ == '__main__':\n    print(add(1, 2))\n"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "app.py").write_text(APP)
    (root / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_app.py").write_text("def test(): pass\n")
    return root


@pytest.fixture
def ctx(ws: Path) -> ToolContext:
    return ToolContext(workspace=ws, protected=frozenset({"tests"}))


def patch(ctx: ToolContext, text: str, tool: str = "apply_patch") -> ToolOutcome:
    return ToolRegistry(["apply_patch"]).execute(tool, {"patch": text}, ctx)


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- codex format -----------------------------------------------------------------

def test_codex_update_add_delete(ctx: ToolContext, ws: Path) -> None:
    out = patch(ctx, """*** Begin Patch
*** Update File: app.py
@@ def add(a, b):
-    return a + b
+    return int(a) + int(b)
@@
 def sub(a, b):
-    return a - b
+    return int(a) - int(b)
*** Add File: lib/util.py
+def twice(x):
+    return 2 * x
*** Delete File: notes.txt
*** End Patch
""")
    assert out.text == "ok: applied patch: updated app.py (2 hunks), added lib/util.py, deleted notes.txt"
    text = (ws / "app.py").read_text()
    assert "return int(a) + int(b)" in text and "return int(a) - int(b)" in text
    assert (ws / "lib/util.py").read_text() == "def twice(x):\n    return 2 * x\n"
    assert not (ws / "notes.txt").exists()
    assert ctx.changed_files == {"app.py", "lib/util.py", "notes.txt"}


def test_codex_move_and_end_of_file(ctx: ToolContext, ws: Path) -> None:
    out = patch(ctx, """*** Begin Patch
*** Update File: notes.txt
*** Move to: docs/notes.md
@@
 beta
-gamma
+delta
*** End of File
*** End Patch""", tool="patch_files")
    assert out.ok, out.text
    assert "moved notes.txt to docs/notes.md" in out.text
    assert not (ws / "notes.txt").exists()
    assert (ws / "docs/notes.md").read_text() == "alpha\nbeta\ndelta\n"


def test_codex_tolerates_fences_missing_envelope_and_whitespace_drift(ctx: ToolContext, ws: Path) -> None:
    out = patch(ctx, """```diff
*** Update File: app.py
@@
 def add(a, b):
-  return a + b
+    return a + b + 0
```""")
    assert out.ok, out.text
    assert "    return a + b + 0\n" in (ws / "app.py").read_text()


def test_codex_pure_insertion_after_header_and_at_end(ctx: ToolContext, ws: Path) -> None:
    out = patch(ctx, "*** Begin Patch\n*** Update File: notes.txt\n@@ alpha\n+after-alpha\n*** End Patch")
    assert out.ok, out.text
    assert (ws / "notes.txt").read_text() == "alpha\nafter-alpha\nbeta\ngamma\n"
    out = patch(ctx, "*** Begin Patch\n*** Update File: notes.txt\n@@\n+omega\n*** End Patch")
    assert out.ok and (ws / "notes.txt").read_text().endswith("gamma\nomega\n")


def test_add_file_replaces_existing(ctx: ToolContext, ws: Path) -> None:
    out = patch(ctx, "*** Begin Patch\n*** Add File: notes.txt\n+new\n*** End Patch")
    assert out.text == "ok: applied patch: replaced notes.txt"
    assert (ws / "notes.txt").read_text() == "new\n"


# --- unified diffs ------------------------------------------------------------------

def _git_diff(tmp_path: Path, before: str, after: str, name: str = "app.py") -> str:
    """What ``git diff`` prints after changing ``name`` from ``before`` to ``after`` in a repo."""
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=repo, capture_output=True, text=True, check=True)
        return proc.stdout

    (repo / name).write_text(before)
    git("init", "-q")
    git("add", name)
    git("commit", "-q", "-m", "before")
    (repo / name).write_text(after)
    return git("diff", "--no-color")


def test_unified_diff_from_git(ctx: ToolContext, ws: Path, tmp_path: Path) -> None:
    after = APP.replace("return a + b", "return a + b  # sum").replace("print(add(1, 2))", "print(sub(3, 1))")
    diff = _git_diff(tmp_path, APP, after)
    assert diff.startswith("diff --git")
    out = patch(ctx, diff)
    assert out.text == "ok: applied patch: updated app.py (2 hunks)"
    assert (ws / "app.py").read_text() == after


def test_unified_diff_plain_paths_add_and_delete(ctx: ToolContext, ws: Path) -> None:
    out = patch(ctx, """--- notes.txt
+++ notes.txt
@@ -1,3 +1,3 @@
 alpha
-beta
+BETA
 gamma
--- /dev/null
+++ b/new.txt
@@ -0,0 +1,2 @@
+one
+two
--- a/app.py
+++ /dev/null
@@ -1,1 +0,0 @@
-import sys
""")
    assert out.ok, out.text
    assert (ws / "notes.txt").read_text() == "alpha\nBETA\ngamma\n"
    assert (ws / "new.txt").read_text() == "one\ntwo\n"
    assert not (ws / "app.py").exists()


def test_unified_diff_with_wrong_line_numbers_still_applies(ctx: ToolContext, ws: Path) -> None:
    out = patch(ctx, "--- a/notes.txt\n+++ b/notes.txt\n@@ -40,2 +40,2 @@\n beta\n-gamma\n+GAMMA\n")
    assert out.ok, out.text
    assert (ws / "notes.txt").read_text() == "alpha\nbeta\nGAMMA\n"


def test_unified_diff_prefers_the_occurrence_near_the_line_number(ctx: ToolContext, ws: Path) -> None:
    (ws / "rep.txt").write_text("x\ny\nx\ny\nx\ny\n")
    out = patch(ctx, "--- a/rep.txt\n+++ b/rep.txt\n@@ -5,2 +5,2 @@\n x\n-y\n+Y\n")
    assert out.ok, out.text
    assert (ws / "rep.txt").read_text() == "x\ny\nx\ny\nx\nY\n"


# --- all or nothing ---------------------------------------------------------------

def test_a_failing_hunk_changes_no_file(ctx: ToolContext, ws: Path) -> None:
    before = snapshot(ws)
    out = patch(ctx, """*** Begin Patch
*** Update File: notes.txt
@@
-alpha
+ALPHA
*** Add File: new.py
+x = 1
*** Update File: app.py
@@
-def mul(a, b):
+def times(a, b):
*** End Patch""")
    assert out.error_kind == "tool_error"
    assert out.text.startswith("error: patch not applied (no file changed): app.py: hunk 1 does not match the file")
    assert "  def mul(a, b):" in out.text
    assert snapshot(ws) == before
    assert ctx.changed_files == set()


def test_a_protected_file_blocks_the_whole_patch(ctx: ToolContext, ws: Path) -> None:
    before = snapshot(ws)
    out = patch(ctx, """*** Begin Patch
*** Update File: notes.txt
@@
-alpha
+ALPHA
*** Update File: tests/test_app.py
@@
-def test(): pass
+def test(): assert True
*** End Patch""")
    assert "protected" in out.text and not out.ok
    assert snapshot(ws) == before
    out = patch(ctx, "*** Begin Patch\n*** Delete File: tests/test_app.py\n*** End Patch")
    assert "protected" in out.text
    assert snapshot(ws) == before


def test_a_path_outside_blocks_the_whole_patch(ctx: ToolContext, ws: Path, tmp_path: Path) -> None:
    before = snapshot(ws)
    out = patch(ctx, "*** Begin Patch\n*** Add File: ok.txt\n+x\n*** Add File: ../evil.txt\n+x\n*** End Patch")
    assert "outside the workspace" in out.text
    assert snapshot(ws) == before
    assert not (tmp_path / "evil.txt").exists()


def test_oversized_result_blocks_the_patch(ws: Path) -> None:
    ctx = ToolContext(workspace=ws, max_write_bytes=10)
    before = snapshot(ws)
    out = patch(ctx, "*** Begin Patch\n*** Add File: a.txt\n+short\n*** Add File: b.txt\n+" + "x" * 50 + "\n*** End Patch")
    assert "write limit" in out.text
    assert snapshot(ws) == before


def test_errors_for_malformed_patches(ctx: ToolContext) -> None:
    assert "not a patch" in patch(ctx, "please change app.py").text
    assert "the patch is empty" in patch(ctx, "   ").text
    assert "cannot update missing.py: it does not exist" in patch(
        ctx, "*** Begin Patch\n*** Update File: missing.py\n@@\n-a\n+b\n*** End Patch").text
    assert "cannot delete gone.txt" in patch(ctx, "*** Begin Patch\n*** Delete File: gone.txt\n*** End Patch").text
    out = patch(ctx, "*** Begin Patch\n*** Update File: app.py\n@@\n?? what\n*** End Patch")
    assert "a hunk line starts with" in out.text
    out = patch(ctx, "*** Begin Patch\n*** Update File: app.py\n@@ def nowhere():\n-x\n+y\n*** End Patch")
    assert "the @@ line 'def nowhere():' is not in the file" in out.text


def test_parse_and_apply_units() -> None:
    ops = parse_patch("*** Begin Patch\n*** Update File: a\n@@\n a\n-b\n+c\n\n*** End Patch")
    assert [(o.kind, o.path) for o in ops] == [("update", "a")]
    assert ops[0].hunks[0].old == ["a", "b"] and ops[0].hunks[0].new == ["a", "c"]
    assert apply_hunks("a\nb\n", ops[0].hunks, "a") == "a\nc\n"
    assert apply_hunks("a\nb", ops[0].hunks, "a") == "a\nc"
    with pytest.raises(PatchError):
        parse_patch("*** Begin Patch\n*** End Patch")
