"""The CLI's contract: fast start (heavy modules import lazily), exit codes, LOCALCODE_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("llama_cpp", "docker", "fastapi", "uvicorn", "mlx", "mlx_lm", "openai", "huggingface_hub")


def _run(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess:
    e = dict(os.environ, LOCALCODE_HOME=str(home), **env)
    return subprocess.run([sys.executable, "-m", "localcode", *args], capture_output=True, text=True,
                          env=e, timeout=120, cwd=home)


def test_help_imports_no_heavy_module(tmp_path: Path) -> None:
    code = ("import sys\nfrom localcode.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    for args in ([], ["bench", "--help"], ["serve", "--help"], ["solve", "--help"]):
        c = code.replace("['--help']", repr(args + ["--help"] if args else ["--help"]))
        out = subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == "[]", (args, out.stdout[-300:])


def test_exit_codes_and_one_line_errors(tmp_path: Path) -> None:
    assert _run(["--version"], tmp_path).returncode == 0
    usage = _run(["bench", "--agent", "oracle", "--tries", "0"], tmp_path)
    assert usage.returncode == 2 and "--tries" in usage.stderr
    missing = _run(["bench", "--agent", "gguf/no-such-model", "-k", "bowling"], tmp_path,
                   LOCALCODE_DATASET=str(tmp_path / "nothing"))
    assert missing.returncode == 1
    lines = [ln for ln in missing.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "localcode setup" in lines[0], missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"max_turns": 3, "no_such_field": 1}))
    broken = _run(["solve", "--agent", str(bad), "hello"], tmp_path)
    assert broken.returncode == 1 and "no_such_field" in broken.stderr and str(bad) in broken.stderr


def test_localcode_home_relocates_user_agents(tmp_path: Path) -> None:
    (tmp_path / "agents" / "gguf").mkdir(parents=True)
    (tmp_path / "agents" / "gguf" / "mine.json").write_text(json.dumps({"description": "my own"}))
    out = _run(["agents", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["agent"]: r for r in json.loads(out.stdout)}
    assert rows["gguf/mine"]["path"] == str(tmp_path / "agents" / "gguf" / "mine.json")
    assert "gguf/gemma-3-270m" in rows and "oracle" in rows
