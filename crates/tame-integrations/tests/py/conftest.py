"""Shared fixtures of tame-integrations' Python end-to-end tests."""
import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
CRATE = HERE.parent.parent
ROOT = CRATE.parent.parent
FIXTURES = CRATE / "tests" / "fixtures"


@pytest.fixture(scope="session")
def proxy_bin():
    path = pathlib.Path(os.environ.get("TAME_MCP_PROXY_BIN", ROOT / "target" / "debug" / "tame-mcp-proxy"))
    if not path.exists():
        pytest.fail("tame-mcp-proxy is not built (%s): run crates/tame-integrations/scripts/mcp-test.sh" % path)
    return str(path)


@pytest.fixture(scope="session")
def policy_file():
    return str(FIXTURES / "policy.yml")


@pytest.fixture(scope="session")
def server_cmd():
    """The real MCP server (FastMCP) run by this venv's python."""
    return [sys.executable, str(FIXTURES / "fastmcp_server.py")]
