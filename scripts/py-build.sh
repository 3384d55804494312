#!/usr/bin/env bash
# Builds the `tame` Python wheel (abi3, CPython 3.9+) into target/wheels,
# with maturin from the venv under target/py-venv (created if missing).
# Install it with: pip install target/wheels/tame-*.whl
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TAME_PY_VENV:-$root/target/py-venv}"
python="${PYTHON:-python3}"

step() { printf '==> %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
    step "creating venv $venv"
    "$python" -m venv "$venv"
fi
if [ ! -x "$venv/bin/maturin" ]; then
    step "installing maturin into the venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'maturin>=1.5,<2'
fi

step "building the wheel (maturin build --release)"
"$venv/bin/maturin" build --release \
    --manifest-path "$root/crates/tame-py/Cargo.toml" \
    --out "$root/target/wheels" \
    --interpreter "$venv/bin/python"
ls -1 "$root"/target/wheels/tame-*.whl >&2
