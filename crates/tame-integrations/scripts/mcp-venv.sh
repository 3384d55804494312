#!/usr/bin/env bash
# Creates (once) the Python venv used by tame-integrations' end-to-end tests:
# the official `mcp` package (real MCP server + client, stdio and Streamable
# HTTP) and pytest.
# Prints the venv's python path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${TAME_MCP_VENV:-$root/target/mcp-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import mcp.client.streamable_http, pytest" 2>/dev/null; then
  echo "creating $venv (mcp, pytest)" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mcp>=1.10,<2" "pytest>=8" >&2
fi
echo "$venv/bin/python"
