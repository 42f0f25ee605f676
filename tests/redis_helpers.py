"""Private redis-server processes on free loopback ports: standalone, 3-master cluster, sentinel.

Shared by tests/revocation (via its conftest) and tests/e2e/test_revocation.py (imported as
``redis_helpers``: tests/ is on sys.path, as for ``e2e.servers``). Every process is stopped
by PID in teardown; every wait is bounded. Without `redis-server` on PATH the tests skip,
unless POOLGATE_REQUIRE_REDIS=1, which turns that into a failure.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gateway.principal import VerifiedToken

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def need_redis() -> None:
    if REDIS_SERVER and REDIS_CLI:
        return
    msg = "redis-server / redis-cli not on PATH"
    if os.environ.get("POOLGATE_REQUIRE_REDIS") == "1":
        pytest.fail(msg + " (POOLGATE_REQUIRE_REDIS=1)", pytrace=False)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port p <= 55535 whose cluster bus port p + 10000 is free too."""
    for _ in range(200):
        p = random.randint(20000, 45000)
        if _bindable(p) and _bindable(p + 10000):
            return p
    raise RuntimeError("no free port pair for a cluster node")


def cli(port: int, *args: str, timeout: float = 5) -> str:
    assert REDIS_CLI
    out = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args],
                         capture_output=True, text=True, timeout=timeout)
    return out.stdout.strip()


def wait_for(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.05,
             reraise: type[Exception] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception as e:  # noqa: BLE001 - not ready yet
            if reraise is not None and isinstance(e, reraise):
                raise
            pass
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisProc:
    """One redis-server (or sentinel) we started; stop() / kill() act on our PID only."""

    def __init__(self, workdir: Path, port: int | None = None, args: tuple[str, ...] = (),
                 config_text: str | None = None) -> None:
        self.port = port or free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.config_text = config_text
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> "RedisProc":
        assert REDIS_SERVER
        if self.config_text is not None:          # sentinel: needs a writable config file
            conf = self.dir / "sentinel.conf"
            conf.write_text(self.config_text)
            cmd = [REDIS_SERVER, str(conf), "--sentinel"]
        else:
            cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                   "--protected-mode", "no", *self.args]
        log = open(self.dir / "log.txt", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            def up() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    tail = (self.dir / "log.txt").read_text(errors="replace")[-600:]
                    raise RuntimeError(f"redis-server on {self.port} exited:\n{tail}")
                return cli(self.port, "PING") == "PONG"
            wait_for(up, 10, f"redis on {self.port}", reraise=RuntimeError)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with _suppress():
                os.kill(self.proc.pid, signal.SIGCONT)    # in case a test froze it
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError)


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProc]:
    """A private redis-server for this test only (fault tests may kill / restart it)."""
    need_redis()
    proc = RedisProc(tmp_path)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProc]:
    """A private redis-server shared by a module's tests (each test uses its own key prefix)."""
    need_redis()
    proc = RedisProc(tmp_path_factory.mktemp("redis"))
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisProc]]:
    """Three masters with cluster-enabled yes on loopback, slots assigned, cluster_state:ok."""
    need_redis()
    work = tmp_path_factory.mktemp("cluster")
    nodes = [RedisProc(work, port=free_cluster_port(),
                       args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                             "--cluster-node-timeout", "2000"))
             for _ in range(3)]
    try:
        for n in nodes:
            n.start()
        assert REDIS_CLI
        out = subprocess.run([REDIS_CLI, "--cluster", "create",
                              *[f"127.0.0.1:{n.port}" for n in nodes],
                              "--cluster-replicas", "0", "--cluster-yes"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        for n in nodes:
            wait_for(lambda n=n: "cluster_state:ok" in cli(n.port, "CLUSTER", "INFO"), 15,
                     f"cluster_state:ok on {n.port}", step=0.1)
        yield nodes
    finally:
        for n in nodes:
            n.stop()


@pytest.fixture(scope="module")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One master, one replica, one sentinel monitoring them as `poolgate-test`."""
    need_redis()
    work = tmp_path_factory.mktemp("sentinel")
    master = RedisProc(work)
    replica = RedisProc(work, args=("--replicaof", "127.0.0.1", str(master.port)))
    sport = free_port()
    sentinel = RedisProc(work, port=sport, config_text=(
        f"port {sport}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n"
        f"dir {work}\n"
        f"sentinel monitor poolgate-test 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds poolgate-test 2000\n"
        "sentinel failover-timeout poolgate-test 10000\n"))
    procs = [master, replica, sentinel]
    try:
        master.start()
        replica.start()
        wait_for(lambda: "master_link_status:up" in cli(replica.port, "INFO", "replication"),
                 10, "replica link up")
        sentinel.start()
        wait_for(lambda: cli(sport, "SENTINEL", "get-master-addr-by-name", "poolgate-test")
                 .split() == ["127.0.0.1", str(master.port)], 10, "sentinel knows the master")
        yield {"master": master, "replica": replica, "sentinel": sentinel,
               "service_name": "poolgate-test"}
    finally:
        for p in reversed(procs):
            p.stop()


@pytest.fixture
def prefix() -> str:
    return f"pgt-{uuid.uuid4().hex[:8]}:"


def make_token(*, jti: str | None = None, sub: str | None = "user-1",
               origin_jti: str | None = None, iat: float | None = None,
               exp: float | None = None) -> VerifiedToken:
    now = time.time()
    claims: dict[str, Any] = {"exp": exp if exp is not None else now + 3600}
    for k, v in (("jti", jti), ("sub", sub), ("origin_jti", origin_jti), ("iat", iat)):
        if v is not None:
            claims[k] = v
    return VerifiedToken(raw="x.y.z", source_id="pool-test", issuer="https://issuer.test",
                         header={"alg": "RS256", "kid": "k"}, claims=claims,
                         token_hash=uuid.uuid4().bytes)
