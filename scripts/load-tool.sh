#!/usr/bin/env bash
# Installs the external load generator of `cargo xtask load --external`:
# wrk (HTTP benchmarking tool with Lua scripting), from the distribution's
# packages when it is missing, and prints its path.
#
# usage: scripts/load-tool.sh
set -euo pipefail

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "load-tool: wrk not found; install it (e.g. apt-get install wrk) and retry" >&2
        exit 1
    fi
    echo "load-tool: wrk not found; installing it (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
command -v wrk
