"""The tool registry: names, aliases, schemas, argument repair and aliases, error kinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcode.agent.tools.base import Tool, ToolContext, ToolError, ToolParams
from localcode.agent.tools.registry import ToolRegistry, all_tools, find_tool
from localcode.agent.tools.repair import ArgumentError, normalize_arguments, normalize_key, parse_arguments
from localcode.config import AgentConfig
from localcode.errors import ConfigError

FILE_TOOLS = ["ls", "read", "batch_read", "write", "edit", "apply_patch", "glob", "grep", "search", "shell"]

# Every workspace tool with the aliases the issue's table requires.
REQUIRED_ALIASES = {
    "ls": ["list_dir"],
    "read": ["read_file"],
    "batch_read": ["read_files", "read_multiple"],
    "write": ["write_file"],
    "edit": ["replace_in_file"],
    "apply_patch": ["patch_files"],
    "glob": ["find_files"],
    "grep": [],
    "search": ["search_text"],
    "shell": [],
}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.py").write_text("def f():\n    return 1\n")
    return root


@pytest.fixture
def ctx(ws: Path) -> ToolContext:
    return ToolContext(workspace=ws)


@pytest.fixture
def reg() -> ToolRegistry:
    return ToolRegistry(FILE_TOOLS)


# --- the catalog -----------------------------------------------------------

def test_catalog_holds_every_workspace_tool_with_its_aliases() -> None:
    tools = all_tools()
    for name, aliases in REQUIRED_ALIASES.items():
        assert name in tools, name
        for alias in aliases:
            assert alias in tools[name].aliases
            assert find_tool(alias) is tools[name]


def test_every_tool_has_description_and_field_docs() -> None:
    for name in FILE_TOOLS:
        tool = all_tools()[name]
        assert tool.description.strip()
        schema = tool.schema()
        assert schema["type"] == "function"
        assert schema["function"]["name"] == name
        params = schema["function"]["parameters"]
        assert params["type"] == "object"
        assert params["additionalProperties"] is False
        assert "title" not in params
        for fname, prop in params["properties"].items():
            assert prop.get("description"), f"{name}.{fname} has no docstring"
            assert "title" not in prop


# --- names -------------------------------------------------------------------

def test_resolve_is_tolerant_of_case_hyphens_and_prefixes(reg: ToolRegistry) -> None:
    for name in ["read", "READ", "read_file", "Read-File", "readFile", "functions.read_file", " read "]:
        tool = reg.resolve(name)
        assert tool is not None and tool.name == "read", name
    assert reg.resolve("reed") is None


def test_name_styles() -> None:
    tools = ["read_file", "ls", "grep"]
    assert ToolRegistry(tools, tool_name_style="as_configured").names() == ["read_file", "ls", "grep"]
    assert ToolRegistry(tools, tool_name_style="canonical").names() == ["read", "ls", "grep"]
    # grep has no required alias; the alias style uses the first alias where there is one.
    alias_names = ToolRegistry(tools, tool_name_style="alias").names()
    assert alias_names[:2] == ["read_file", "list_dir"]
    assert alias_names[2] == all_tools()["grep"].aliases[0]
    schemas = ToolRegistry(tools, tool_name_style="canonical").schemas()
    assert [s["function"]["name"] for s in schemas] == ["read", "ls", "grep"]


def test_duplicates_collapse_and_unknown_config_tool_is_a_config_error() -> None:
    assert ToolRegistry(["read", "read_file", "ls"]).names() == ["read", "ls"]
    with pytest.raises(ConfigError, match="unknown tool 'frobnicate'"):
        ToolRegistry(["read", "frobnicate"])
    with pytest.raises(ConfigError, match="tool_aliases"):
        ToolRegistry(["read"], tool_aliases={"cat_file": "write"})


def test_from_config_uses_tools_aliases_and_style(ctx: ToolContext) -> None:
    cfg = AgentConfig(tools=["read_file", "write"], tool_aliases={"open_it": "read"}, tool_name_style="canonical")
    reg = ToolRegistry.from_config(cfg)
    assert reg.names() == ["read", "write"]
    out = reg.execute("open_it", {"path": "a.py"}, ctx)
    assert out.ok and out.tool == "read", out.text
    assert reg.exposed_name("read_file") == "read"
    assert "- read: " in reg.describe()


def test_unknown_tool_lists_allowed_tools(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = reg.execute("make_coffee", {}, ctx)
    assert not out.ok and out.error_kind == "unknown_tool" and out.tool == "make_coffee"
    assert out.text.startswith("error: unknown tool 'make_coffee'; allowed tools: ls, read, batch_read")
    # A real tool that this agent was not given is unknown too.
    small = ToolRegistry(["read"])
    out = small.execute("write", {"path": "x", "content": "y"}, ctx)
    assert out.error_kind == "unknown_tool" and "allowed tools: read" in out.text
    assert not (ctx.workspace / "x").exists()


def test_allowed_restricts_tools(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = reg.execute("write", {"path": "x.py", "content": ""}, ctx, allowed={"read", "ls"})
    assert out.error_kind == "not_allowed"
    assert "allowed tools: ls, read" in out.text
    assert not (ctx.workspace / "x.py").exists()
    assert reg.execute("read", {"path": "a.py"}, ctx, allowed={"read"}).ok


# --- arguments -----------------------------------------------------------------

def test_plain_json_and_dict_arguments_are_not_repairs(reg: ToolRegistry, ctx: ToolContext) -> None:
    for args in ('{"path": "a.py"}', {"path": "a.py"}):
        out = reg.execute("read", args, ctx)
        assert out.ok and not out.repaired and out.repairs == []
        assert out.arguments == {"path": "a.py", "offset": 1, "limit": 500}


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ('{"path": "a.py",}', "trailing_comma"),
        ("{'path': 'a.py'}", "single_quotes"),
        ('{path: "a.py"}', "unquoted_key"),
        ('{"path": "a.py", "offset": None}', "python_literal"),
        ('```json\n{"path": "a.py"}\n```', "code_fence"),
        ('Here you go: {"path": "a.py"}', "code_fence"),
        ('{"path": "a.py"', "unclosed"),
        ('{"path": "a.py} ', "unclosed"),
        (json.dumps(json.dumps({"path": "a.py"})), "nested_json"),
        ('{"path": "a.py"} <|call_end|>', "trailing_text"),
        ('{"path": "a.py" "limit": 5}', "missing_comma"),
        ("a.py", "bare_value"),
    ],
)
def test_each_repair_kind(reg: ToolRegistry, ctx: ToolContext, raw: str, kind: str) -> None:
    out = reg.execute("read", raw, ctx)
    assert out.repaired and kind in out.repairs, (out.repairs, out.text)
    if kind == "python_literal":
        # offset=None is not an int: the repair worked, validation names the field.
        assert out.error_kind == "bad_arguments" and "'offset'" in out.text
    elif kind == "unclosed" and "a.py}" in raw:
        assert not out.ok  # the path became 'a.py} ', which does not exist
    else:
        assert out.ok, out.text
        assert "a.py lines 1-2 of 2" in out.text


def test_raw_newlines_and_regex_escapes_in_strings(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = reg.execute("write", '{"path": "b.py", "content": "x = 1\ny = 2\n"}', ctx)
    assert out.ok and "raw_control" in out.repairs
    assert (ctx.workspace / "b.py").read_text() == "x = 1\ny = 2\n"
    out = reg.execute("grep", '{"pattern": "return \\d"}', ctx)
    assert out.ok and "bad_escape" in out.repairs
    assert "a.py:2:    return 1" in out.text


def test_unreadable_arguments(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = reg.execute("read", "{path: ???}", ctx)
    assert out.error_kind == "bad_arguments" and out.text.startswith("error: arguments for read are not JSON")
    out = reg.execute("edit", "just some words", ctx)
    assert out.error_kind == "bad_arguments" and "must be a JSON object" in out.text
    out = reg.execute("read", "", ctx)
    assert out.error_kind == "bad_arguments" and "missing 'path'" in out.text


@pytest.mark.parametrize(
    ("tool", "args", "expect"),
    [
        ("read", {"file_path": "a.py"}, {"path": "a.py"}),
        ("read", {"filePath": "a.py", "start_line": 2}, {"path": "a.py", "offset": 2}),
        ("read", {"filename": "a.py", "start_line": 1, "end_line": 1}, {"path": "a.py", "offset": 1, "limit": 1}),
        ("edit", {"file": "a.py", "old_str": "1", "new_str": "2"}, {"path": "a.py", "old": "1", "new": "2"}),
        ("edit", {"path": "a.py", "old_string": "1", "new_string": "2", "replace_all": True},
         {"old": "1", "new": "2", "all": True}),
        ("edit", {"path": "a.py", "search": "1", "replace": "2"}, {"old": "1", "new": "2"}),
        ("write", {"file_path": "c.py", "contents": "x"}, {"path": "c.py", "content": "x"}),
        ("write", {"filepath": "c.py", "text": "x"}, {"path": "c.py", "content": "x"}),
        ("batch_read", {"files": ["a.py"]}, {"paths": ["a.py"]}),
        ("batch_read", {"path": "a.py"}, {"paths": ["a.py"]}),
        ("grep", {"regex": "def", "glob": "*.py"}, {"pattern": "def", "include": "*.py"}),
        ("search", {"text": "def"}, {"query": "def"}),
        ("glob", {"pattern": "*.py", "directory": "."}, {"pattern": "*.py", "path": "."}),
        ("apply_patch", {"input": "*** Begin Patch\n*** Add File: n.txt\n+x\n*** End Patch"}, {}),
        ("ls", {"dir_path": "."}, {"path": "."}),
    ],
)
def test_argument_aliases(reg: ToolRegistry, ctx: ToolContext, tool: str, args: dict, expect: dict) -> None:
    out = reg.execute(tool, args, ctx)
    assert out.ok, out.text
    assert "arg_alias" in out.repairs
    assert out.arguments is not None
    for key, value in expect.items():
        assert out.arguments[key] == value


def test_own_name_wins_over_alias_and_unknown_arguments_are_reported(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = reg.execute("read", {"path": "a.py", "file_path": "nope.py", "colour": "red"}, ctx)
    assert out.ok
    assert out.arguments["path"] == "a.py"
    assert "note: ignored unknown argument(s) file_path, colour" in out.text


def test_validation_errors_name_fields(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = reg.execute("read", {"path": "a.py", "limit": "lots"}, ctx)
    assert out.error_kind == "bad_arguments"
    assert "'limit'" in out.text and '"path": string' in out.text
    out = reg.execute("write", {"path": "a.py"}, ctx)
    assert "missing 'content'" in out.text
    out = reg.execute("write", {"content": "x", "bogus": 1}, ctx)
    assert "missing 'path'" in out.text and "unknown argument(s) bogus" in out.text


def test_lax_types(reg: ToolRegistry, ctx: ToolContext) -> None:
    out = reg.execute("read", {"path": "a.py", "offset": "2", "limit": 1.0}, ctx)
    assert out.ok and "lines 2-2 of 2" in out.text
    out = reg.execute("write", {"path": "n.txt", "content": 42}, ctx)
    assert out.ok and (ctx.workspace / "n.txt").read_text() == "42"


def test_parse_arguments_units() -> None:
    assert parse_arguments(None).value == {}
    assert parse_arguments("  ").value == {}
    p = parse_arguments("{'a': [1, 2,], 'b': {'c': True,},}")
    assert p.value == {"a": [1, 2], "b": {"c": True}}
    assert p.repairs == ["single_quotes", "trailing_comma", "python_literal"]
    p = parse_arguments("{'code': '''line1\nline2'''}")
    assert p.value == {"code": "line1\nline2"}
    p = parse_arguments('{"a": "\\u00e9\\n"}')
    assert p.value == {"a": "é\n"} and p.repairs == []
    p = parse_arguments('{"a": 1} // done')
    assert p.value == {"a": 1}
    with pytest.raises(ArgumentError):
        parse_arguments("{: 1}")
    assert parse_arguments("[1, 2]").value == [1, 2]


def test_normalize_arguments_units() -> None:
    assert normalize_key("File-Path") == "file_path"
    assert normalize_key("oldString") == "old_string"
    args, renamed, unknown = normalize_arguments({"old_str": "a", "new": "b", "x": 1}, ["path", "old", "new"])
    assert args == {"old": "a", "new": "b"} and renamed == ["old_str→old"] and unknown == ["x"]
    # A tool's own aliases win over the shared table.
    args, _, _ = normalize_arguments({"glob": "*.py"}, ["pattern", "include"], {"glob": "include"})
    assert args == {"include": "*.py"}


# --- errors from tools --------------------------------------------------------

class _Boom(Tool):
    name = "boom"
    description = "Raises what it is told to."

    class Params(ToolParams):
        what: str
        """tool_error, os_error, bug, plain or error_text."""

    def run(self, params: Params, ctx: ToolContext) -> str:
        if params.what == "tool_error":
            raise ToolError("it broke; try again")
        if params.what == "os_error":
            raise PermissionError(13, "Permission denied")
        if params.what == "plain":
            return "done"
        if params.what == "error_text":
            return "error: reported as text"
        raise TypeError("a bug")


def test_tool_errors_become_text_and_bugs_propagate(ctx: ToolContext) -> None:
    reg = ToolRegistry(["boom"], catalog={"boom": _Boom})
    out = reg.execute("boom", {"what": "tool_error"}, ctx)
    assert (out.ok, out.error_kind, out.text) == (False, "tool_error", "error: it broke; try again")
    out = reg.execute("boom", {"what": "os_error"}, ctx)
    assert out.error_kind == "tool_error" and out.text == "error: boom failed: Permission denied"
    out = reg.execute("boom", {"what": "plain"}, ctx)
    assert out.ok and out.text == "ok: done"
    out = reg.execute("boom", {"what": "error_text"}, ctx)
    assert not out.ok and out.error_kind == "tool_error"
    with pytest.raises(TypeError, match="a bug"):
        reg.execute("boom", {"what": "bug"}, ctx)
    assert ctx.registry is reg
