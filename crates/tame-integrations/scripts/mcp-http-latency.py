"""What `tame mcp-proxy` adds to an MCP tool call over Streamable HTTP.

Starts the FastMCP test server over HTTP and the proxy in front of it
(`--listen` towards the client, `--url` towards the server, the embedded
engine with tests/fixtures/policy.yml), then times `tools/call echo` with
the official `mcp` client, alternating direct and proxied calls on one
session each, and prints p50/p99 of both and of the difference.

    target/mcp-venv/bin/python crates/tame-integrations/scripts/mcp-http-latency.py \
        --proxy target/release/tame [--calls 2000]

Not run in CI: a measurement, not a test.
"""
import argparse
import contextlib
import pathlib
import re
import socket
import subprocess
import sys
import time

import anyio
from mcp import ClientSession

try:
    from mcp.client.streamable_http import streamable_http_client as http_client
except ImportError:  # older mcp releases
    from mcp.client.streamable_http import streamablehttp_client as http_client

CRATE = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = CRATE / "tests" / "fixtures"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit("nothing listens on port %d" % port)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


async def measure(direct_url, proxy_url, calls, warmup):
    direct, proxied = [], []
    async with http_client(direct_url) as (r1, w1, _), http_client(proxy_url) as (r2, w2, _):
        async with ClientSession(r1, w1) as a, ClientSession(r2, w2) as b:
            await a.initialize()
            await b.initialize()
            for i in range(warmup + calls):
                for session, into in ((a, direct), (b, proxied)):
                    start = time.perf_counter()
                    result = await session.call_tool("echo", {"text": "x%d" % i})
                    elapsed = (time.perf_counter() - start) * 1000.0
                    assert not result.isError, result
                    if i >= warmup:
                        into.append(elapsed)
    return direct, proxied


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", required=True, help="the `tame` or `tame-mcp-proxy` binary")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen([sys.executable, str(FIXTURES / "fastmcp_server.py"), "--http", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prefix = ["mcp-proxy"] if pathlib.Path(args.proxy).name == "tame" else []
    proxy = None
    try:
        wait_for_port(port)
        direct_url = "http://127.0.0.1:%d/mcp" % port
        proxy = subprocess.Popen(
            [args.proxy, *prefix, "--policy", str(FIXTURES / "policy.yml"), "--listen", "127.0.0.1:0", "--url", direct_url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        proxy_url = None
        for line in proxy.stderr:
            found = re.search(r"at (http://\S+/mcp)", line)
            if found:
                proxy_url = found.group(1)
                break
        if not proxy_url:
            raise SystemExit("the proxy did not start")
        direct, proxied = anyio.run(measure, direct_url, proxy_url, args.calls, args.warmup)
    finally:
        for proc in (proxy, server):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    added = [p - d for d, p in zip(direct, proxied)]
    print("tools/call echo over Streamable HTTP, %d calls each (after %d warm-up)" % (args.calls, args.warmup))
    for name, values in (("direct", direct), ("through the proxy", proxied), ("added by the proxy", added)):
        print("  %-20s p50 %7.2f ms   p99 %7.2f ms" % (name, percentile(values, 50), percentile(values, 99)))


if __name__ == "__main__":
    main()
