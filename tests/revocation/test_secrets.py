"""LIMITS "Secrets": a Redis password holding `@` and `/` works (a real redis-server with
requirepass, a real `poolgate revoke`, a real `poolgate serve`) and never shows, whole or in
part, in output, logs, errors or reprs; config errors print no secret and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from e2e.servers import ROOT
from redis_helpers import RedisProc, need_redis

PASSWORD = "s3cr@t/pa@ss/w0rd"
FRAGMENTS = ("s3cr", "pa@ss", "w0rd", "t/pa", "@t/")


@pytest.fixture
def locked_redis(tmp_path: Path):
    need_redis()
    proc = RedisProc(tmp_path, args=("--requirepass", PASSWORD))
    proc.start(wait=False)
    client = redis.Redis(port=proc.port, password=PASSWORD, socket_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "redis with requirepass did not start"
            time.sleep(0.05)
        yield proc, client
    finally:
        client.close()
        proc.stop()


def _config(tmp: Path, url: str, prefix: str = "sec:") -> Path:
    path = tmp / "poolgate.yaml"
    path.write_text(f"""
version: 1
listen: {{host: 127.0.0.1, port: 0}}
admin: {{host: 127.0.0.1, port: 0}}
identity_sources:
  - {{id: s, issuer: "http://127.0.0.1:9/", jwks_uri: "http://127.0.0.1:9/jwks", audiences: any}}
revocation:
  store: redis
  redis: {{url: "{url}", key_prefix: "{prefix}", timeout_ms: 300, connect_timeout_ms: 300}}
""")
    return path


def _poolgate(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def _clean(text: str) -> None:
    assert "Traceback" not in text
    for f in FRAGMENTS:
        assert f not in text, f"{f!r} leaked in: {text[-800:]}"


def test_revoke_with_at_and_slash_in_the_password(locked_redis, tmp_path: Path) -> None:
    proc, client = locked_redis
    path = _config(tmp_path, f"redis://:{PASSWORD}@127.0.0.1:{proc.port}/0")
    res = _poolgate("revoke", "--config", str(path), "--jti", "sec-j1")
    assert res.returncode == 0, res.stderr
    _clean(res.stdout + res.stderr)
    assert client.get("sec:jti:sec-j1") == b"1" and client.ttl("sec:jti:sec-j1") > 0
    audit = [ln for ln in res.stderr.splitlines() if '"logger":"poolgate.audit"' in ln]
    assert len(audit) == 1 and '"via":"cli"' in audit[0] and '"value":"sec-j1"' in audit[0]


def test_wrong_password_fails_cleanly(locked_redis, tmp_path: Path) -> None:
    proc, _ = locked_redis
    wrong = PASSWORD.replace("w0rd", "w0rdX")
    path = _config(tmp_path, f"redis://:{wrong}@127.0.0.1:{proc.port}/0")
    res = _poolgate("revoke", "--config", str(path), "--jti", "sec-j2")
    assert res.returncode == 1
    assert "cannot write to redis" in res.stderr and "***@127.0.0.1" in res.stderr
    _clean(res.stdout + res.stderr)


def test_serve_logs_never_show_the_password(locked_redis, tmp_path: Path) -> None:
    proc, _ = locked_redis
    wrong = PASSWORD + "x"                    # the store stays down: errors get logged
    path = _config(tmp_path, f"redis://:{wrong}@127.0.0.1:{proc.port}/0")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          cwd=ROOT)
    try:
        time.sleep(3)
    finally:
        gw.terminate()
        out, err = gw.communicate(timeout=20)
    assert "poolgate listening" in out
    _clean(out + err)


@pytest.mark.parametrize("url", [f"http://:{PASSWORD}@127.0.0.1:1/0",
                                 f"redis://:{PASSWORD}@127.0.0.1:1/0"])
def test_config_errors_print_no_secret(tmp_path: Path, url: str) -> None:
    path = _config(tmp_path, url)
    text = path.read_text().replace("redis: {", "redis: {mode: bogus, ") \
        if url.startswith("redis") else path.read_text()
    path.write_text(text)
    for cmd in ("check", "serve"):
        res = _poolgate(cmd, "--config", str(path))
        assert res.returncode == 2 and "config error" in res.stderr, res.stderr
        _clean(res.stdout + res.stderr)
