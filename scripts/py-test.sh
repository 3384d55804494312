#!/usr/bin/env bash
# Builds the `tame` Python package (crates/tame-py, maturin) into a venv
# under target/py-venv and runs its pytest suite.
#
# Needs only python3 (3.9+, with venv and pip) and cargo. Extra arguments go
# to pytest. Environment:
#   PYTHON=python3.11       interpreter to create the venv with
#   TAME_PY_VENV=DIR        venv location (default: target/py-venv)
#   TAME_PY_RELEASE=1       build the extension in release mode (benchmarks)
#   TAME_PY_NO_SERVER=1     do not build the `tame` binary for the server tests
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TAME_PY_VENV:-$root/target/py-venv}"
python="${PYTHON:-python3}"

step() { printf '==> %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
    step "creating venv $venv"
    "$python" -m venv "$venv"
fi

py="$venv/bin/python"
if ! "$py" -c 'import maturin, httpx, pytest, pytest_asyncio, yaml, jsonschema' 2>/dev/null \
    || [ ! -x "$venv/bin/maturin" ]; then
    step "installing build and test dependencies into the venv"
    "$py" -m pip install --quiet --disable-pip-version-check \
        'maturin>=1.5,<2' 'httpx>=0.24' 'pytest>=7' 'pytest-asyncio>=0.23' 'pyyaml>=6' 'jsonschema>=4.17'
fi
# The agent frameworks the adapters (tame.integrations) are tested with.
if ! "$py" -c 'import langchain_core, langgraph.prebuilt, agents' 2>/dev/null; then
    step "installing the agent frameworks of tame.integrations' tests"
    "$py" -m pip install --quiet --disable-pip-version-check \
        'langchain-core>=0.3,<2' 'langgraph>=0.2,<2' 'openai-agents>=0.3,<1'
fi

profile=()
if [ "${TAME_PY_RELEASE:-0}" = "1" ]; then
    profile=(--release)
fi

step "building and installing the tame package (maturin develop ${profile[*]:-})"
(
    cd "$root/crates/tame-py"
    VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --quiet "${profile[@]}"
)

if [ "${TAME_PY_NO_SERVER:-0}" != "1" ] && [ -z "${TAME_BIN:-}" ]; then
    step "building the tame binary for the server tests (cargo build -p tame-cli)"
    if cargo build --quiet -p tame-cli --manifest-path "$root/Cargo.toml"; then
        export TAME_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/tame"
    else
        step "warning: the tame binary did not build; tests against a server will be skipped"
    fi
fi

step "running pytest"
cd "$root/crates/tame-py"
exec "$py" -m pytest -q tests "$@"
