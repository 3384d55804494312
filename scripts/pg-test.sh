#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL server: finds (or installs)
# PostgreSQL, creates a cluster in target/pg, starts it on a free loopback
# port (fsync on), exports TAME_TEST_DATABASE_URL and runs the command, then
# stops the server whatever happened.
#
# usage: scripts/pg-test.sh [COMMAND ARGS...]
# default command: the PostgreSQL tests of tame-store and tame-server
# (every test whose path holds `pg::`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

find_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

if ! bindir="$(find_bindir)"; then
    echo "pg-test: PostgreSQL not found; installing it (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bindir="$(find_bindir)" || { echo "pg-test: no initdb/pg_ctl after installing postgresql" >&2; exit 1; }
fi

# PostgreSQL refuses to run as root: run its programs as `postgres` then.
as_pg=()
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    as_pg=(runuser -u postgres --)
fi

target="${CARGO_TARGET_DIR:-$root/target}"
pgdir="$target/pg"
rm -rf "$pgdir"
mkdir -p "$pgdir"
if [ "${#as_pg[@]}" -gt 0 ]; then
    chown postgres "$pgdir"
    # The server must reach its own directory.
    dir="$pgdir"
    while [ "$dir" != "/" ]; do
        dir="$(dirname "$dir")"
        chmod o+x "$dir" 2>/dev/null || true
    done
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)))"

"${as_pg[@]}" "$bindir/initdb" -D "$pgdir/data" -U tame --auth=trust -E UTF8 --no-sync >"$pgdir/initdb.log" 2>&1 \
    || { cat "$pgdir/initdb.log" >&2; exit 1; }

stop() {
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 || true
}
trap stop EXIT

# TLS as production runs it: a throwaway CA signs the server's certificate
# (for 127.0.0.1), and the tests trust that CA through SSL_CERT_FILE, so
# the store's connections (sslmode=prefer by default) are encrypted and
# verified. Without openssl the server runs without TLS and the TLS tests
# say so (and fail in CI).
ssl_opts=""
if ! command -v openssl >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "pg-test: openssl not found; installing it (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null 2>&1 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; } || true
fi
if command -v openssl >/dev/null; then
    (
        cd "$pgdir"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tame test CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem
    ) >"$pgdir/openssl.log" 2>&1 || { cat "$pgdir/openssl.log" >&2; exit 1; }
    chmod 600 "$pgdir/server.key"
    [ "${#as_pg[@]}" -gt 0 ] && chown postgres "$pgdir/server.key" "$pgdir/server.pem"
    ssl_opts="-c ssl=on -c ssl_cert_file=$pgdir/server.pem -c ssl_key_file=$pgdir/server.key"
    export SSL_CERT_FILE="$pgdir/ca.pem"
    export TAME_TEST_PG_TLS=1
fi

# fsync stays on (the default): commits are as durable as in production.
"${as_pg[@]}" "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $pgdir -c fsync=on -c synchronous_commit=on -c max_connections=300 $ssl_opts" \
    start >/dev/null || { cat "$pgdir/server.log" >&2; exit 1; }

"${as_pg[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U tame tame_test
export TAME_TEST_DATABASE_URL="postgres://tame@127.0.0.1:$port/tame_test"
echo "pg-test: PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') at $TAME_TEST_DATABASE_URL" >&2

if [ "$#" -eq 0 ]; then
    if cargo nextest --version >/dev/null 2>&1; then
        set -- cargo nextest run --workspace --no-fail-fast -E 'test(/(^|::)pg::/)'
    else
        set -- cargo test --workspace --no-fail-fast -- pg::
    fi
fi
echo "+ $*" >&2
"$@"
