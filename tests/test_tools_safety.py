"""Workspace safety: every rule with a hostile example, then property-based attacks.

The property tests throw random and hostile tool names and arguments at every tool
through ``ToolRegistry.execute`` and check that only ``ok:``/``error:`` text comes back
and that nothing outside the workspace (a sibling folder, the parent folder, the
targets of symlinks) and no protected file changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from localcode.agent.tools.base import ToolContext
from localcode.agent.tools.registry import ToolRegistry, all_tools
from localcode.agent.tools.repair import ArgumentError, parse_arguments

TOOLS = ["ls", "read", "batch_read", "write", "edit", "apply_patch", "glob", "grep", "search", "shell"]
SECRET = "top secret\n"
TEST_FILE = "def test_it():\n    assert solve() == 42\n"


def build_world(root: Path) -> tuple[Path, Path]:
    """A workspace with every kind of trap, and a sibling folder that must never change."""
    ws = root / "ws"
    outside = root / "outside"
    ws.mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (outside / "sub").mkdir()
    (outside / "sub" / "deep.txt").write_text(SECRET)
    (root / "beside.txt").write_text(SECRET)
    (ws / "solution.py").write_text("def solve():\n    return 41\n")
    (ws / "tests").mkdir()
    (ws / "tests" / "test_solution.py").write_text(TEST_FILE)
    (ws / "solution_test.py").write_text(TEST_FILE)
    os.symlink(outside / "secret.txt", ws / "out_link")
    os.symlink(outside, ws / "out_dir")
    os.symlink(outside / "missing.txt", ws / "dangling_out")
    os.symlink("../outside/secret.txt", ws / "relative_out")
    os.symlink("solution.py", ws / "in_link")
    os.symlink("solution_test.py", ws / "test_link")
    os.symlink("/dev/null", ws / "devnull_link")
    os.symlink("loop", ws / "loop")
    os.link(outside / "sub" / "deep.txt", ws / "hardlink.txt")
    os.mkfifo(ws / "pipe")
    os.mknod(ws / "device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ws / "sock"))
    sock.close()
    return ws, outside


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Everything under ``root`` except ``skip``: file hashes, link targets, special files."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if p == skip:
                continue
            rel = p.relative_to(root).as_posix()
            st_ = os.lstat(p)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISREG(st_.st_mode):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + f":{stat.S_IMODE(st_.st_mode):o}"
            else:
                out[rel] = f"mode:{st_.st_mode:o}"
    return out


def protected_state(ws: Path) -> dict[str, str]:
    return {
        rel: hashlib.sha256((ws / rel).read_bytes()).hexdigest()
        for rel in ("tests/test_solution.py", "solution_test.py")
    } | {"links": os.readlink(ws / "test_link")}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, Path, ToolContext, ToolRegistry]]:
    ws, outside = build_world(tmp_path)
    ctx = ToolContext(
        workspace=ws,
        protected=frozenset({"tests", "solution_test.py"}),
        max_read_bytes=5_000,
        max_write_bytes=5_000,
    )
    before = snapshot(tmp_path, ws)
    yield ws, outside, ctx, ToolRegistry(TOOLS)
    assert snapshot(tmp_path, ws) == before


HOSTILE_PATHS = [
    "../outside/secret.txt", "../beside.txt", "..", "../", "a/../../outside/secret.txt",
    "/etc/passwd", "/etc", "/dev/zero", "/dev/null", "/proc/self/environ",
    "out_link", "out_dir", "out_dir/secret.txt", "out_dir/sub/deep.txt", "out_dir/new.txt",
    "out_dir/newdir/new.txt", "dangling_out", "relative_out", "devnull_link", "pipe", "device", "sock",
    "pipe/x", "solution.py/x", "solution\x00.py", "\x00", "tests/test_solution.py", "solution_test.py",
    "test_link", "./tests/../tests/test_solution.py", "tests", "tests/new_test.py", "~", "~/x",
    "loop", "loop/x", "hardlink.txt",
]


# --- every rule, one by one ------------------------------------------------------

def test_reads_are_refused_outside_and_for_special_files(world) -> None:
    ws, outside, ctx, reg = world
    expectations = {
        "../outside/secret.txt": "outside the workspace",
        "a/../../outside/secret.txt": "outside the workspace",
        "/etc/passwd": "outside the workspace",
        str(outside / "secret.txt"): "outside the workspace",
        "out_link": "symlink that leads outside",
        "relative_out": "symlink that leads outside",
        "out_dir/secret.txt": "symlink that leads outside",
        "devnull_link": "symlink that leads outside",
        "pipe": "not a regular file or folder",
        "device": "not a regular file or folder",
        "sock": "not a regular file or folder",
        "solution\x00.py": "NUL byte",
        "": "path is empty",
        "x" * 5000: "too long",
    }
    for path, message in expectations.items():
        out = reg.execute("read", {"path": path}, ctx)
        assert not out.ok and message in out.text, (path, out.text)
        assert "top secret" not in out.text
    # Absolute paths inside the workspace and symlinks that stay inside are fine.
    assert reg.execute("read", {"path": str(ws / "solution.py")}, ctx).ok
    assert "return 41" in reg.execute("read", {"path": "in_link"}, ctx).text


def test_a_fifo_is_never_opened(world) -> None:
    ws, _, ctx, reg = world
    for tool, args in [
        ("read", {"path": "pipe"}), ("batch_read", {"paths": ["pipe", "solution.py"]}),
        ("edit", {"path": "pipe", "old": "a", "new": "b"}), ("write", {"path": "pipe", "content": "x"}),
        ("grep", {"pattern": "x", "path": "pipe"}), ("search", {"query": "x"}), ("grep", {"pattern": "x"}),
        ("apply_patch", {"patch": "*** Begin Patch\n*** Update File: pipe\n@@\n-a\n+b\n*** End Patch"}),
    ]:
        out = reg.execute(tool, args, ctx)  # would hang forever if the FIFO were opened
        assert out.text.startswith(("ok:", "error:")), out.text
    assert stat.S_ISFIFO(os.lstat(ws / "pipe").st_mode)


def test_writes_are_refused_outside(world) -> None:
    _, outside, ctx, reg = world
    for path in ["../evil.txt", "../outside/secret.txt", str(outside / "new.txt"), "out_link", "relative_out",
                 "dangling_out", "out_dir/new.txt", "out_dir/newdir/new.txt", "/tmp/evil.txt", "devnull_link"]:
        out = reg.execute("write", {"path": path, "content": "pwned"}, ctx)
        assert not out.ok and "outside the workspace" in out.text, (path, out.text)
        out = reg.execute("edit", {"path": path, "old": "top secret", "new": "pwned"}, ctx)
        assert not out.ok, (path, out.text)
        out = reg.execute("apply_patch", {"patch": f"*** Begin Patch\n*** Add File: {path}\n+pwned\n*** End Patch"}, ctx)
        assert not out.ok, (path, out.text)
    assert ctx.changed_files == set()
    assert not Path("/tmp/evil.txt").exists()


def test_a_symlink_loop_is_an_error(world) -> None:
    _, _, ctx, reg = world
    for tool, args in [("read", {"path": "loop"}), ("write", {"path": "loop", "content": "x"}), ("ls", {"path": "loop"})]:
        out = reg.execute(tool, args, ctx)
        assert out.error_kind == "tool_error" and "symbolic links" in out.text, out.text


def test_writing_a_hard_link_replaces_it_and_leaves_the_outside_file_alone(world) -> None:
    ws, outside, ctx, reg = world
    assert reg.execute("edit", {"path": "hardlink.txt", "old": "top secret", "new": "changed"}, ctx).ok
    assert (ws / "hardlink.txt").read_text() == "changed\n"
    assert (outside / "sub" / "deep.txt").read_text() == SECRET
    assert reg.execute("write", {"path": "hardlink.txt", "content": "again"}, ctx).ok
    assert (outside / "sub" / "deep.txt").read_text() == SECRET


def test_special_files_cannot_be_written(world) -> None:
    ws, _, ctx, reg = world
    for path in ["pipe", "device", "sock"]:
        out = reg.execute("write", {"path": path, "content": "x"}, ctx)
        assert not out.ok and "not a regular file" in out.text
    assert stat.S_ISCHR(os.lstat(ws / "device").st_mode)


def test_protected_files_cannot_be_changed(world) -> None:
    ws, _, ctx, reg = world
    before = protected_state(ws)
    attempts = [
        ("write", {"path": "tests/test_solution.py", "content": "def test_it(): pass\n"}),
        ("write", {"path": "tests/new_test.py", "content": "x"}),
        ("write", {"path": "./tests/../tests/test_solution.py", "content": "x"}),
        ("write", {"path": str(ws / "solution_test.py"), "content": "x"}),
        ("write", {"path": "test_link", "content": "x"}),
        ("edit", {"path": "solution_test.py", "old": "42", "new": "41"}),
        ("edit", {"path": "test_link", "old": "42", "new": "41"}),
        ("apply_patch", {"patch": "*** Begin Patch\n*** Update File: solution_test.py\n@@\n-    assert solve() == 42\n+    pass\n*** End Patch"}),
        ("apply_patch", {"patch": "*** Begin Patch\n*** Delete File: tests/test_solution.py\n*** End Patch"}),
        ("apply_patch", {"patch": "--- a/solution_test.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-def test_it():\n-    assert solve() == 42\n"}),
        ("apply_patch", {"patch": "*** Begin Patch\n*** Update File: solution.py\n*** Move to: tests/x.py\n@@\n-    return 41\n+    return 42\n*** End Patch"}),
    ]
    for tool, args in attempts:
        out = reg.execute(tool, args, ctx)
        assert not out.ok and "protected" in out.text, (tool, args, out.text)
    assert protected_state(ws) == before
    assert (ws / "solution.py").read_text() == "def solve():\n    return 41\n"
    # Reading them is fine.
    assert reg.execute("read", {"path": "tests/test_solution.py"}, ctx).ok


def test_size_limits(world) -> None:
    ws, _, ctx, reg = world
    (ws / "big.txt").write_text("y" * 6000)
    out = reg.execute("read", {"path": "big.txt"}, ctx)
    assert "over the 5000-byte read limit" in out.text
    out = reg.execute("write", {"path": "huge.txt", "content": "z" * 6000}, ctx)
    assert "over the 5000-byte write limit" in out.text and not (ws / "huge.txt").exists()
    (ws / "mid.txt").write_text("abc\n" * 1000)
    out = reg.execute("edit", {"path": "mid.txt", "old": "abc", "new": "abcdef", "all": True}, ctx)
    assert "write limit" in out.text
    assert (ws / "mid.txt").read_text() == "abc\n" * 1000


def test_ls_and_glob_do_not_follow_symlinks_out(world) -> None:
    _, _, ctx, reg = world
    out = reg.execute("ls", {"depth": 5, "all": True}, ctx)
    assert "out_dir@  (symlink)" in out.text
    assert "deep.txt" not in out.text and "secret" not in out.text
    assert "outside the workspace" in reg.execute("ls", {"path": "out_dir"}, ctx).text
    out = reg.execute("glob", {"pattern": "*.txt"}, ctx)
    assert "deep.txt" not in out.text and "secret.txt" not in out.text
    out = reg.execute("grep", {"pattern": "secret"}, ctx)
    # Only the hard link, which is a file of the workspace like any other.
    assert out.text == "ok: 1 match for pattern 'secret' in 1 file\nhardlink.txt:1:top secret"


# --- property-based attacks -------------------------------------------------------

ALL_NAMES = sorted({n for name in TOOLS for n in (name, *all_tools()[name].aliases)})
FIELD_NAMES = sorted({f for name in TOOLS for f in all_tools()[name].Params.model_fields} | {
    "file_path", "old_str", "new_str", "content", "contents", "files", "cmd", "input", "end_line", "start_line",
})

hostile_path = st.one_of(
    st.sampled_from(HOSTILE_PATHS),
    st.lists(st.sampled_from(["..", ".", "out_dir", "out_link", "pipe", "tests", "a", "", "/", "\x00", "solution.py"]),
             min_size=1, max_size=6).map("/".join),
    st.text(alphabet=st.sampled_from("./a\x00~\\-*?[]\n "), max_size=30),
    st.text(max_size=40),
)
huge_text = st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "\n", "\x00", "\ud800"]), st.integers(0, 12_000))
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_path, huge_text)
json_value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=12)
_patch_lines = st.sampled_from(["    return 41", "    return 42", "def solve():", "def test_it():",
                                 "    assert solve() == 42", "top secret", "x", ""])
_patch_file = st.one_of(
    st.builds(lambda p, lines: f"*** Add File: {p}\n" + "".join(f"+{ln}\n" for ln in lines),
              hostile_path, st.lists(_patch_lines, max_size=3)),
    st.builds(lambda p: f"*** Delete File: {p}\n", hostile_path),
    st.builds(lambda p, old, new, mv: f"*** Update File: {p}\n" + (f"*** Move to: {mv}\n" if mv else "")
              + f"@@\n-{old}\n+{new}\n", hostile_path, _patch_lines, _patch_lines, st.none() | hostile_path),
)
patch_text = st.one_of(
    st.lists(_patch_file, min_size=1, max_size=3).map(lambda fs: "*** Begin Patch\n" + "".join(fs) + "*** End Patch"),
    st.builds(lambda a, b, old, new: f"--- {a}\n+++ {b}\n@@ -1,1 +1,1 @@\n-{old}\n+{new}\n",
              st.one_of(st.just("/dev/null"), hostile_path.map(lambda p: "a/" + p)),
              st.one_of(st.just("/dev/null"), hostile_path.map(lambda p: "b/" + p)), _patch_lines, _patch_lines),
    st.text(alphabet=st.sampled_from(" +-@*\nabcEFPU:/."), max_size=60),
)
text_value = st.one_of(st.text(max_size=60), huge_text, hostile_path, _patch_lines)


def field_strategy(fname: str, annotation: object) -> st.SearchStrategy[object]:
    """Mostly well-typed hostile values for one parameter, sometimes junk of any type."""
    if fname == "path":
        base: st.SearchStrategy[object] = hostile_path
    elif fname == "paths":
        base = st.lists(hostile_path, max_size=4)
    elif fname == "patch":
        base = patch_text
    elif annotation is int:
        base = st.one_of(st.integers(-5, 2000), st.integers())
    elif annotation is bool:
        base = st.booleans()
    elif annotation in (float, float | None):
        base = st.floats()
    else:
        base = text_value
    return st.one_of(base, base, base, json_value)


arguments = st.dictionaries(
    st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10)),
    st.one_of(json_value, patch_text, text_value),
    max_size=5,
)


def _encode(args: object, style: int) -> object:
    """Send arguments as a dict, as JSON text, or as broken JSON text."""
    if style == 0:
        return args
    try:
        text = json.dumps(args)
    except (ValueError, TypeError):
        return args
    if style == 1:
        return text
    return text[: len(text) // 2] if style == 2 else text.replace('"', "'")


PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class HostileWorld:
    """One trap-filled world shared by the examples of the property tests: hypothesis runs
    the test body many times; the world may change inside ``ws`` but never outside."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ws, _ = build_world(root)
        self.before = snapshot(root, self.ws)
        self.tests_before = protected_state(self.ws)
        self.registry = ToolRegistry(TOOLS)

    def call(self, name: str, args: object) -> None:
        ctx = ToolContext(workspace=self.ws, protected=frozenset({"tests", "solution_test.py"}),
                          max_read_bytes=5_000, max_write_bytes=5_000)
        out = self.registry.execute(name, args, ctx)
        event(f"{out.tool if out.error_kind != 'unknown_tool' else '?'}: {out.error_kind or 'ok'}")
        assert isinstance(out.text, str)
        assert out.text.startswith("ok:" if out.ok else "error:"), out.text[:200]
        assert snapshot(self.root, self.ws) == self.before, (name, args)
        assert protected_state(self.ws) == self.tests_before, (name, args)
        for rel in ctx.changed_files:
            assert not rel.startswith("tests/") and rel != "solution_test.py"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> HostileWorld:
    return HostileWorld(tmp_path_factory.mktemp("hostile"))


@PROPERTY_SETTINGS
@given(name=st.one_of(st.sampled_from(ALL_NAMES), st.text(max_size=20)), args=arguments, style=st.integers(0, 3))
def test_random_calls_never_escape(hostile: HostileWorld, name: str, args: dict, style: int) -> None:
    hostile.call(name, _encode(args, style))


@PROPERTY_SETTINGS
@given(data=st.data())
def test_each_tool_with_hostile_fields(hostile: HostileWorld, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(TOOLS))
    model_fields = all_tools()[name].Params.model_fields
    args = data.draw(st.fixed_dictionaries(
        {f: field_strategy(f, info.annotation) for f, info in model_fields.items() if info.is_required()},
        optional={f: field_strategy(f, info.annotation) for f, info in model_fields.items() if not info.is_required()},
    ))
    hostile.call(name, args)


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.text(alphabet=st.sampled_from("{}[]\"':,\\ntTfFN0123 ue`#/"), max_size=200)))
def test_parse_arguments_only_raises_argument_error(text: str) -> None:
    try:
        parse_arguments(text)
    except ArgumentError:
        pass


def test_deep_nesting_is_an_argument_error_not_a_crash(world) -> None:
    _, _, ctx, reg = world
    out = reg.execute("read", "[" * 100_000, ctx)
    assert out.error_kind == "bad_arguments"
    out = reg.execute("read", "{\"path\": " + "[" * 100_000, ctx)
    assert out.error_kind == "bad_arguments"
