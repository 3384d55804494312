#!/usr/bin/env bash
# Builds the image of the repository's Dockerfile and checks it runs: the
# server starts as the non-root user, its health check (`tame health`)
# passes, /ready answers 200, a call is decided with the agent key, the
# logs are JSON lines; prints the image's size. Skips (exit 0) when no
# container runtime is installed.
#
#   scripts/container-test.sh
#
# CONTAINER_RUNTIME   the runtime command (default: docker, else podman),
#                     e.g. "podman --runtime runc"
# CONTAINER_FLAGS     extra flags of `build` and `run` (e.g. --ulimit ...)
# RUST_IMAGE, RUNTIME_IMAGE   the Dockerfile's base images, when the
#                     official ones cannot be pulled
# CONTEXT             the build context (default: the repository)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
context=${CONTEXT:-$repo}
if [ -n "${CONTAINER_RUNTIME:-}" ]; then
    rt=$CONTAINER_RUNTIME
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    rt=docker
elif command -v podman >/dev/null; then
    rt=podman
else
    echo "container-test: skipped: no container runtime (docker or podman) is available"
    exit 0
fi
flags=${CONTAINER_FLAGS:-}
image=tame:container-test
name=tame-container-test-$$
build_args=()
[ -n "${RUST_IMAGE:-}" ] && build_args+=(--build-arg "RUST_IMAGE=$RUST_IMAGE")
[ -n "${RUNTIME_IMAGE:-}" ] && build_args+=(--build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE")

echo "+ $rt build $flags ${build_args[*]} -t $image $context"
# shellcheck disable=SC2086
$rt build $flags "${build_args[@]}" -t "$image" -f "$repo/Dockerfile" "$context"

admin=admin-$RANDOM$RANDOM$RANDOM
agent=agent-$RANDOM$RANDOM$RANDOM
cleanup() { $rt rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
echo "+ $rt run $flags -d --name $name -p 127.0.0.1::8000 $image"
# shellcheck disable=SC2086
$rt run $flags -d --name "$name" -p 127.0.0.1::8000 \
    -e TAME_ADMIN_KEYS="$admin" -e TAME_AGENT_KEYS="$agent" "$image" >/dev/null
port=$($rt port "$name" 8000 | head -n1 | sed 's/.*://')
url=http://127.0.0.1:$port

fail() {
    echo "container-test: FAILED: $*" >&2
    $rt logs "$name" >&2 || true
    exit 1
}

for _ in $(seq 1 60); do
    if $rt exec "$name" tame health >/dev/null 2>&1; then break; fi
    sleep 0.5
done
$rt exec "$name" tame health || fail "the image's health check does not pass"
[ "$($rt exec "$name" id -u)" != 0 ] || fail "the server runs as root"
ready=$(curl -fsS "$url/ready") || fail "/ready does not answer 200"
echo "ready: $ready"
decision=$(curl -fsS -H "Authorization: Bearer $agent" -H 'Content-Type: application/json' \
    -d '{"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}}' "$url/api/v1/enforce") \
    || fail "enforce failed"
case $decision in *'"decision":"deny"'*) ;; *) fail "expected a deny: $decision" ;; esac
$rt logs "$name" 2>&1 | python3 -c '
import json, sys
# stdout (its one `listening on` line) and stderr (the logs) are merged here.
raw = [l for l in sys.stdin if l.strip()]
others = [l for l in raw if not l.startswith("{")]
assert all(l.startswith("listening on ") for l in others), others
lines = [json.loads(l) for l in raw if l.startswith("{")]
access = [l for l in lines if l.get("target") == "tame_server::access" and l.get("route") == "/api/v1/enforce"]
assert access and access[-1]["decision"] == "deny", lines
print("logs: %d JSON lines, enforce logged as %s by %s" % (len(lines), access[-1]["decision"], access[-1]["rule"]))
' || fail "the logs are not the expected JSON lines"
size=$($rt image inspect --format '{{.Size}}' "$image")
echo "container-test: passed ($rt); image $image: $size bytes"
