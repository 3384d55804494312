"""Shared fixtures: example policies, embedded engines, a clean global
configuration per test, and a real `tame serve` process for server tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import tame

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"
EXAMPLE_POLICY = POLICIES / "example.yml"


@pytest.fixture(autouse=True)
def clean_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from defaults: no TAME_*/tame_* variables."""
    for name in list(os.environ):
        if name.upper().startswith("TAME_") and name not in ("TAME_BIN",):
            monkeypatch.delenv(name)
    tame.config.forget_config()
    yield
    tame.config.forget_config()


@pytest.fixture
def example_policy() -> Path:
    return EXAMPLE_POLICY


@pytest.fixture
def engine() -> tame.Engine:
    return tame.Engine.from_file(EXAMPLE_POLICY)


@pytest.fixture
def client(engine: tame.Engine) -> Iterator[tame.Client]:
    with tame.Client(engine=engine, session_id="test-session") as c:
        yield c


def _tame_binary() -> str | None:
    explicit = os.environ.get("TAME_BIN")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "tame"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("tame")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running `tame serve`: its URL and keys."""

    def __init__(self, url: str, agent_key: str, admin_key: str, policy: Path) -> None:
        self.url = url
        self.agent_key = agent_key
        self.admin_key = admin_key
        self.policy = policy


SEED_POLICY = Path(__file__).resolve().parent / "data" / "seed_policy.yml"


@contextlib.contextmanager
def running_server(tmp: Path, policy_text: str) -> Iterator[Server]:
    """Starts `tame serve` on a free port with a temporary database."""
    binary = _tame_binary()
    if binary is None:
        message = "the `tame` binary is not built (cargo build -p tame-cli, or set TAME_BIN)"
        if os.environ.get("CI"):
            # In CI a missing binary is a failure, never a silent skip.
            pytest.fail(message)
        pytest.skip(message)
    policy = tmp / "policies.yml"
    policy.write_text(policy_text)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TAME_")}
    env.update(
        TAME_AGENT_KEYS="agent-key",
        TAME_ADMIN_KEYS="admin-key",
        TAME_AUDIT_SECRET="pytest-audit-secret-0123456789abcdef",
    )
    log_path = tmp / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [binary, "serve", "--policy", str(policy), "--addr", f"127.0.0.1:{port}", "--db", str(tmp / "tame.db")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"`tame serve` exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`tame serve` did not answer within 30 s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield Server(url, "agent-key", "admin-key", policy)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`tame serve` with the example policy."""
    with running_server(tmp_path_factory.mktemp("server"), EXAMPLE_POLICY.read_text()) as s:
        yield s


@pytest.fixture(scope="session")
def seed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`tame serve` with the seed examples' policy."""
    with running_server(tmp_path_factory.mktemp("seed-server"), SEED_POLICY.read_text()) as s:
        yield s
