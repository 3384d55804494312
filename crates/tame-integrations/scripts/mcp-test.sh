#!/usr/bin/env bash
# End-to-end tests of the MCP proxy with the official `mcp` Python package
# (a real FastMCP server and the real stdio client), plus the framework
# examples. Creates the venv on first use (target/mcp-venv).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
python="$("$here/scripts/mcp-venv.sh")"
echo "+ cargo build -p tame-integrations --bins --examples" >&2
(cd "$root" && cargo build -p tame-integrations --bins --examples)
export TAME_MCP_PROXY_BIN="${TAME_MCP_PROXY_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/tame-mcp-proxy}"
echo "+ pytest $here/tests/py" >&2
exec "$python" -m pytest -q -p no:cacheprovider "$here/tests/py" "$@"
