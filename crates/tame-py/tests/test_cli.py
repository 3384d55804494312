"""The `tamesdk` command of seed 001, against an embedded policy file."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from conftest import SEED_POLICY

from tame.cli import main


def run(*argv: str, stdin: str = "") -> tuple:
    out = io.StringIO()
    code = main(["--policy", str(SEED_POLICY), *argv], stdin=io.StringIO(stdin), stdout=out)
    return code, out.getvalue()


def test_status_and_policy() -> None:
    code, out = run("status")
    assert code == 0 and "embedded engine" in out and "seed-1" in out
    code, out = run("policy")
    assert code == 0 and "block_system_files" in out and "deny" in out


def test_test_and_enforce_exit_codes() -> None:
    code, out = run("test", "read_file", "--args", '{"path": "/tmp/file.txt"}')
    assert code == 0 and out.startswith("allow")
    assert run("enforce", "--tool", "read_file", "--args", '{"path": "/tmp/x"}')[0] == 0
    code, out = run("enforce", "--tool", "delete_file", "--args", '{"path": "/tmp/test"}')
    assert code == 3 and json.loads(out)["decision"] == "approve"
    assert run("enforce", "--tool", "risky_tool")[0] == 2
    assert run("enforce", "--tool", "read_file", "--args", "{not json")[0] == 1


def test_interactive() -> None:
    code, out = run(
        "interactive",
        stdin='help\nstatus\ntest read_file {"path": "/etc/passwd"}\ntest api_call url=https://example.com,method=GET\nconfig\nbogus\nquit\n',
    )
    assert code == 0
    assert "deny: System paths are off limits (/etc/passwd)" in out
    assert "allow:" in out
    assert "unknown command `bogus`" in out


def test_python_dash_m() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tamesdk.cli", "--policy", str(SEED_POLICY), "enforce", "--tool", "risky_tool"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
