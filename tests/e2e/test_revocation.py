"""Revocation end to end: running `poolgate serve` subprocesses against real redis-server
processes (private, on free loopback ports; never an in-memory fake).

Entry kinds through the admin API, `poolgate revoke` and direct Redis writes in the documented
key format; two replicas sharing Redis (propagation delay measured and printed); every key has a
TTL; Redis killed mid-traffic (503 + Retry-After, readiness, recovery without a restart);
``on_error: allow``; a 3-master Cluster and a Sentinel setup; ``--workers 2`` with the memory
store refused at start-up. With POOLGATE_REQUIRE_REDIS=1 a missing redis-server is a failure,
not a skip (see ``redis_helpers.need_redis``).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml

from redis_helpers import (RedisProc, cli, free_port, need_redis, redis_cluster,  # noqa: F401
                           redis_proc, redis_sentinel, shared_redis)

from .conftest import CLIENT, ISSUER, base_config
from .servers import ROOT, Gateway, Signer, cognito_claims

ADMIN_TOKEN = "e2e-admin-token-" + uuid.uuid4().hex[:16]
ENV = {"POOLGATE_ADMIN_TOKEN": ADMIN_TOKEN}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# --------------------------------------------------------------------------- helpers

@pytest.fixture
def prefix() -> str:
    return f"pge2e-{uuid.uuid4().hex[:8]}:"


def redis_revocation(port: int, prefix: str, **over: Any) -> dict[str, Any]:
    redis: dict[str, Any] = {"url": f"redis://127.0.0.1:{port}/0", "key_prefix": prefix}
    on_error = over.pop("on_error", None)
    redis.update(over)
    rev: dict[str, Any] = {"store": "redis", "redis": redis}
    if on_error:
        rev["on_error"] = on_error
    return rev


def config(jwks: Any, upstream: Any, revocation: dict[str, Any]) -> dict[str, Any]:
    _, jsrv = jwks
    _, usrv = upstream
    return base_config(jsrv.url + "/jwks.json", usrv.url, revocation=revocation,
                       admin={"token": "${POOLGATE_ADMIN_TOKEN}"})


def mint(signer: Signer, **over: Any) -> str:
    return signer.token(cognito_claims(ISSUER, CLIENT, **over))


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def call(gw: Gateway, tok: str, client: httpx.Client | None = None) -> httpx.Response:
    if client is None:
        return httpx.get(gw.proxy + "/api/thing", headers=bearer(tok), timeout=5)
    return client.get(gw.proxy + "/api/thing", headers=bearer(tok), timeout=5)


def status(gw: Gateway, tok: str, client: httpx.Client | None = None) -> int:
    return call(gw, tok, client).status_code


def assert_revoked(gw: Gateway, tok: str, client: httpx.Client | None = None) -> None:
    r = call(gw, tok, client)
    assert r.status_code == 401, r.text
    assert r.json()["reason"] == "token_revoked", r.text
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def wait_status(gw: Gateway, tok: str, want: int, timeout: float = 1.0,
                client: httpx.Client | None = None) -> float:
    """Seconds until the gateway answers ``want`` for ``tok`` (bounded; asserts)."""
    t0 = time.perf_counter()
    last = None
    while time.perf_counter() - t0 < timeout:
        last = status(gw, tok, client)
        if last == want:
            return time.perf_counter() - t0
        time.sleep(0.002)
    raise AssertionError(f"{gw.proxy}: still {last}, not {want}, after {timeout}s")


def admin(gw: Gateway) -> httpx.Client:
    return httpx.Client(base_url=gw.admin, headers=ADMIN, timeout=5)


def keys_under(port: int, prefix: str) -> list[str]:
    out = cli(port, "--scan", "--pattern", prefix + "*")
    return [k for k in out.splitlines() if k]


def assert_every_key_has_ttl(ports: list[int], prefix: str, at_least: int) -> int:
    n = 0
    for port in ports:
        for key in keys_under(port, prefix):
            ttl = int(cli(port, "TTL", key))
            assert ttl > 0, f"{key} on {port} has TTL {ttl}"
            n += 1
    assert n >= at_least, f"only {n} keys under {prefix}"
    return n


def revoke_cli(cfg_file: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "revoke", "--config", str(cfg_file),
                           *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **ENV})


def cli_config(gw: Gateway, tmp: Path) -> Path:
    """The gateway's own config file, with the admin port it actually bound (the test gateway
    listens on port 0; a deployment names a fixed port, which `poolgate revoke` uses)."""
    data = yaml.safe_load(gw.path.read_text())
    data["admin"]["port"] = int(gw.admin.rsplit(":", 1)[1])
    path = tmp / f"revoke-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- entry kinds, admin API

@pytest.mark.parametrize("store", ["memory", "redis"])
def test_admin_api_each_kind_get_delete_auth_and_validation(store, request, jwks, upstream,
                                                            signer, gateway_factory, prefix):
    port = None
    if store == "redis":
        port = request.getfixturevalue("shared_redis").port
        rev = redis_revocation(port, prefix)
    else:
        rev = {"store": "memory"}
    gw = gateway_factory(config(jwks, upstream, rev), env=ENV)
    now = int(time.time())
    exp = now + 3600
    api = admin(gw)

    # jti: one token revoked, another of the same user passes
    user = str(uuid.uuid4())
    a = mint(signer, sub=user, jti="jti-a-" + prefix)
    b = mint(signer, sub=user, jti="jti-b-" + prefix)
    assert status(gw, a) == 200 and status(gw, b) == 200
    r = api.post("/revocations", json={"jti": "jti-a-" + prefix, "exp": exp})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "jti" and r.json()["jti"] == "jti-a-" + prefix
    assert 0 < r.json()["ttl"] <= 3600 + 60 + 1
    wait_status(gw, a, 401)
    assert_revoked(gw, a)
    assert status(gw, b) == 200

    # origin_jti: every token of the family revoked, another family passes
    fam, other_fam = "fam-" + uuid.uuid4().hex, "fam-" + uuid.uuid4().hex
    f1 = mint(signer, sub=user, origin_jti=fam)
    f2 = mint(signer, sub=user, origin_jti=fam)
    g1 = mint(signer, sub=user, origin_jti=other_fam)
    assert [status(gw, t) for t in (f1, f2, g1)] == [200, 200, 200]
    r = api.post("/revocations", json={"origin_jti": fam, "exp": exp})
    assert r.status_code == 201 and r.json()["kind"] == "origin_jti", r.text
    wait_status(gw, f1, 401)
    assert_revoked(gw, f1)
    assert_revoked(gw, f2)
    assert status(gw, g1) == 200

    # sub + not_before: tokens with iat < not_before revoked, later ones pass
    signed_out = str(uuid.uuid4())
    old = mint(signer, sub=signed_out, iat=now - 120)
    boundary = mint(signer, sub=signed_out, iat=now - 60)   # iat == not_before: not revoked
    new = mint(signer, sub=signed_out, iat=now - 10)
    assert [status(gw, t) for t in (old, boundary, new)] == [200, 200, 200]
    r = api.post("/revocations", json={"sub": signed_out, "not_before": now - 60})
    assert r.status_code == 201 and r.json()["not_before"] == now - 60, r.text
    wait_status(gw, old, 401)
    assert_revoked(gw, old)
    assert status(gw, boundary) == 200 and status(gw, new) == 200

    # {"token": JWT}: revokes that token's jti (verified by the gateway); a sibling passes
    t_user = str(uuid.uuid4())
    t1, t2 = mint(signer, sub=t_user), mint(signer, sub=t_user)
    r = api.post("/revocations", json={"token": t1})
    assert r.status_code == 201 and r.json()["kind"] == "jti", r.text
    wait_status(gw, t1, 401)
    assert status(gw, t2) == 200
    # a token without jti: its sub with not_before = iat + 1 (it and earlier ones revoked)
    n_user = str(uuid.uuid4())
    nojti, later = mint(signer, sub=n_user, jti=None, iat=now - 30), mint(signer, sub=n_user)
    r = api.post("/revocations", json={"token": nojti})
    assert r.status_code == 201 and r.json()["kind"] == "sub", r.text
    assert r.json()["not_before"] == now - 29, r.text
    wait_status(gw, nojti, 401)
    assert status(gw, later) == 200
    # a token the gateway would not accept anyway is refused, nothing written
    forged = Signer().token(cognito_claims(ISSUER, CLIENT, jti="forged-" + prefix))
    r = api.post("/revocations", json={"token": forged})
    assert r.status_code == 400 and r.json()["reason"] == "token_not_accepted", r.text
    assert api.get("/revocations", params={"jti": "forged-" + prefix}).status_code == 404

    # GET 200 / 404
    r = api.get("/revocations", params={"jti": "jti-a-" + prefix})
    assert r.status_code == 200 and r.json()["kind"] == "jti" and r.json()["ttl"] > 0, r.text
    r = api.get("/revocations", params={"origin_jti": fam})
    assert r.status_code == 200 and r.json()["kind"] == "origin_jti", r.text
    r = api.get("/revocations", params={"sub": signed_out})
    assert r.status_code == 200 and r.json()["not_before"] == now - 60, r.text
    assert api.get("/revocations", params={"jti": "never-" + prefix}).status_code == 404

    # DELETE 204, then the token passes again; a second DELETE is 404
    r = api.delete("/revocations", params={"jti": "jti-a-" + prefix})
    assert r.status_code == 204, r.text
    wait_status(gw, a, 200)
    assert api.get("/revocations", params={"jti": "jti-a-" + prefix}).status_code == 404
    assert api.delete("/revocations", params={"jti": "jti-a-" + prefix}).status_code == 404
    assert api.delete("/revocations", params={"sub": signed_out}).status_code == 204
    wait_status(gw, old, 200)

    # 401 without / with a wrong admin token: nothing written
    victim = mint(signer, jti="victim-" + prefix)
    for headers in ({}, {"Authorization": "Bearer wrong-admin-token-0000000000"},
                    {"Authorization": "Basic " + ADMIN_TOKEN},
                    {"Authorization": f"Bearer {ADMIN_TOKEN}x"}):
        r = httpx.post(gw.admin + "/revocations", json={"jti": "victim-" + prefix},
                       headers=headers, timeout=5)
        assert r.status_code == 401, (headers, r.text)
        assert httpx.get(gw.admin + "/revocations", params={"jti": "victim-" + prefix},
                         headers=headers, timeout=5).status_code == 401
        assert httpx.delete(gw.admin + "/revocations", params={"jti": "jti-b-" + prefix},
                            headers=headers, timeout=5).status_code == 401
    # 400: bad JSON, unknown fields, two kinds, not_before with jti: nothing written
    for body in (b'{"jti": "victim-' + prefix.encode() + b'"', b"not json",
                 json.dumps({"jti": "victim-" + prefix, "colour": "red"}).encode(),
                 json.dumps({"jti": "victim-" + prefix, "sub": "victim-" + prefix}).encode(),
                 json.dumps({"jti": "victim-" + prefix, "not_before": now}).encode(),
                 json.dumps({"jti": "victim-" + prefix, "exp": "tomorrow"}).encode(),
                 json.dumps(["jti", "victim-" + prefix]).encode()):
        r = api.post("/revocations", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"] == "invalid_request", r.text
    assert api.get("/revocations", params={"jti": "victim-" + prefix}).status_code == 404
    assert api.get("/revocations", params={"sub": "victim-" + prefix}).status_code == 404
    assert status(gw, victim) == 200

    if port is not None:
        keys = keys_under(port, prefix)
        assert not any("victim" in k for k in keys), keys
        # left: the origin_jti family, t1's jti and n_user's sub (jti-a and the signed_out
        # sub entry were deleted); TTL = (exp, or max(not_before, now) + the longest token
        # lifetime (86400 + 2 x skew: see entries.entry_lifetime)) + skew - now
        n = assert_every_key_has_ttl([port], prefix, at_least=3)
        elapsed = int(time.time()) - now
        ttl = int(cli(port, "TTL", f"{prefix}ojti:{fam}"))
        assert 3600 + 60 - elapsed - 2 <= ttl <= 3600 + 60, ttl
        ttl = int(cli(port, "TTL", f"{prefix}sub:{n_user}"))
        assert 86400 + 3 * 60 - elapsed - 2 <= ttl <= 86400 + 3 * 60, ttl
        assert cli(port, "GET", f"{prefix}sub:{n_user}") == str(now - 29)
        print(f"\nadmin API ({store}): {n} keys under {prefix}, every one with a TTL")
    api.close()


# --------------------------------------------------------------------------- poolgate revoke

@pytest.mark.parametrize("store", ["memory", "redis"])
def test_poolgate_revoke_command_each_kind(store, request, jwks, upstream, signer,
                                           gateway_factory, prefix, tmp_path):
    port = None
    if store == "redis":
        port = request.getfixturevalue("shared_redis").port
        rev = redis_revocation(port, prefix)
    else:
        rev = {"store": "memory"}
    gw = gateway_factory(config(jwks, upstream, rev), env=ENV)
    # redis: the very file the gateway runs with (revoke writes Redis directly);
    # memory: the same config with the bound admin port (revoke posts to that admin API)
    cfg_file = gw.path if store == "redis" else cli_config(gw, tmp_path)
    now = int(time.time())
    client = httpx.Client(timeout=5)
    delays: dict[str, float] = {}

    user, a_jti = str(uuid.uuid4()), "cli-" + uuid.uuid4().hex
    a, b = mint(signer, sub=user, jti=a_jti), mint(signer, sub=user)
    fam = "fam-" + uuid.uuid4().hex
    f1, f2, g = (mint(signer, sub=user, origin_jti=fam), mint(signer, sub=user, origin_jti=fam),
                 mint(signer, sub=user))
    gone = str(uuid.uuid4())
    old, new = mint(signer, sub=gone, iat=now - 120), mint(signer, sub=gone, iat=now - 5)
    tu = str(uuid.uuid4())
    t1, t2 = mint(signer, sub=tu), mint(signer, sub=tu)
    every = (a, b, f1, f2, g, old, new, t1, t2)
    assert [status(gw, t, client) for t in every] == [200] * len(every)   # near-cache warm

    steps = [("jti", ["--jti", a_jti], a, [b]),
             ("origin_jti", ["--origin-jti", fam], f1, [g, f2]),
             ("sub", ["--sub", gone, "--not-before", str(now - 60)], old, [new]),
             ("token", ["--token", t1], t1, [t2])]
    if store == "memory":         # the same code path for every kind: two are enough here
        steps = [steps[0], steps[3]]
    for kind, args, revoked, passing in steps:
        out = revoke_cli(cfg_file, *args)
        assert out.returncode == 0, out.stderr
        entry = json.loads(out.stdout)
        assert entry["kind"] == ("jti" if kind == "token" else kind) and entry["ttl"] > 0, entry
        delays[kind] = wait_status(gw, revoked, 401, timeout=1.0, client=client)
        assert_revoked(gw, revoked, client)
        for t in passing:
            assert status(gw, t, client) == (401 if t is f2 else 200)
    print(f"\npoolgate revoke ({store}) -> enforced after the command returned: "
          + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in delays.items()))

    # GET through the admin API sees what the command wrote
    with admin(gw) as api:
        assert api.get("/revocations", params={"jti": a_jti}).status_code == 200
        if store == "redis":
            assert api.get("/revocations", params={"origin_jti": fam}).status_code == 200
            assert api.get("/revocations", params={"sub": gone}).json()["not_before"] == now - 60
    if port is not None:
        assert_every_key_has_ttl([port], prefix, at_least=4)
    else:
        # memory store with no gateway answering: a clear message, exit 1, no traceback
        dead = yaml.safe_load(cfg_file.read_text())
        dead["admin"]["port"] = free_port()
        dead_file = tmp_path / "dead.yaml"
        dead_file.write_text(yaml.safe_dump(dead))
        out = revoke_cli(dead_file, "--jti", "x")
        assert out.returncode == 1 and "no gateway answering" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    client.close()


# --------------------------------------------------------------------------- direct Redis writes

def test_direct_redis_writes_in_the_documented_key_format(shared_redis, jwks, upstream, signer,
                                                          gateway_factory, prefix):
    port = shared_redis.port
    gw = gateway_factory(config(jwks, upstream, redis_revocation(port, prefix)), env=ENV)
    now = int(time.time())
    client = httpx.Client(timeout=5)
    user, gone, fam = str(uuid.uuid4()), str(uuid.uuid4()), "fam-" + uuid.uuid4().hex
    j = "direct-" + uuid.uuid4().hex
    a, b = mint(signer, sub=user, jti=j), mint(signer, sub=user)
    f, g = mint(signer, sub=user, origin_jti=fam), mint(signer, sub=user)
    old, new = mint(signer, sub=gone, iat=now - 100), mint(signer, sub=gone, iat=now - 5)
    every = (a, b, f, g, old, new)
    assert [status(gw, t, client) for t in every] == [200] * len(every)   # cached negatives

    delays = {}
    for key, value, revoked, passing in ((f"{prefix}jti:{j}", "1", a, b),
                                         (f"{prefix}ojti:{fam}", "1", f, g),
                                         (f"{prefix}sub:{gone}", str(now - 50), old, new)):
        assert cli(port, "SET", key, value, "EX", "600") == "OK"
        assert int(cli(port, "PUBLISH", prefix + "revocations", key[len(prefix):])) >= 1
        delays[key[len(prefix):].split(":")[0]] = wait_status(gw, revoked, 401, 1.0, client)
        assert_revoked(gw, revoked, client)
        assert status(gw, passing, client) == 200
    print("\nredis-cli SET EX + PUBLISH -> enforced: "
          + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in delays.items()))
    # and the admin API reads them back
    with admin(gw) as api:
        r = api.get("/revocations", params={"sub": gone})
        assert r.status_code == 200 and r.json()["not_before"] == now - 50, r.text
    # deleting in Redis (DEL + PUBLISH) lifts it
    cli(port, "DEL", f"{prefix}jti:{j}")
    cli(port, "PUBLISH", prefix + "revocations", f"jti:{j}")
    wait_status(gw, a, 200, 1.0, client)
    assert_every_key_has_ttl([port], prefix, at_least=2)
    client.close()


# --------------------------------------------------------------------------- replicas

def test_two_replicas_share_redis_propagation_delay(shared_redis, jwks, upstream, signer,
                                                    gateway_factory, prefix):
    port = shared_redis.port
    cfg = config(jwks, upstream, redis_revocation(port, prefix))
    gw_a = gateway_factory(cfg, env=ENV)
    gw_b = gateway_factory(cfg, env=ENV)
    ca, cb = httpx.Client(timeout=5), httpx.Client(timeout=5)
    api_a, api_b = admin(gw_a), admin(gw_b)
    delays, probe = [], []
    for i in range(5):
        jti = f"rep-{i}-{uuid.uuid4().hex}"
        tok = mint(signer, jti=jti)
        for _ in range(3):            # B has a cached "not revoked" answer for it
            assert status(gw_b, tok, cb) == 200 and status(gw_a, tok, ca) == 200
        t0 = time.perf_counter()
        assert status(gw_b, tok, cb) == 200
        probe.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = api_a.post("/revocations", json={"jti": jti})
        assert r.status_code == 201, r.text
        while status(gw_b, tok, cb) != 401:
            assert time.perf_counter() - t0 < 2.0, "replica B never saw the revocation"
        delays.append(time.perf_counter() - t0)
        assert_revoked(gw_b, tok, cb)
        assert_revoked(gw_a, tok, ca)
    ms = [d * 1000 for d in delays]
    print(f"\nreplica A admin POST -> replica B 401: median {statistics.median(ms):.1f} ms, "
          f"max {max(ms):.1f} ms (n={len(ms)}: {', '.join(f'{m:.1f}' for m in ms)}); "
          f"one warm request to B alone takes {statistics.median(probe) * 1000:.1f} ms")
    assert max(delays) < 1.0

    # a sub entry through B, enforced by A; a DELETE through B lifts it on A
    user = str(uuid.uuid4())
    tok = mint(signer, sub=user, iat=int(time.time()) - 30)
    assert status(gw_a, tok, ca) == 200
    assert api_b.post("/revocations", json={"sub": user}).status_code == 201
    wait_status(gw_a, tok, 401, 1.0, ca)
    assert api_b.delete("/revocations", params={"sub": user}).status_code == 204
    wait_status(gw_a, tok, 200, 1.0, ca)

    # the near-cache is what serves B (hits counted), not a Redis read per request
    text = httpx.get(gw_b.admin + "/metrics", timeout=5).text
    hits = [ln for ln in text.splitlines()
            if ln.startswith('poolgate_revocation_lookups_total{result="cache_hit"}')]
    assert hits and float(hits[0].split()[-1]) > 0, hits
    assert_every_key_has_ttl([port], prefix, at_least=5)
    for c in (ca, cb, api_a, api_b):
        c.close()


# --------------------------------------------------------------------------- outage

class Traffic:
    """A background loop of requests recording (sent-at, latency, status, Retry-After)."""

    def __init__(self, gw: Gateway, tok: str) -> None:
        self.gw, self.tok = gw, tok
        self.rows: list[tuple[float, float, int, str | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as c:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    r = call(self.gw, self.tok, c)
                    row = (t0, time.monotonic() - t0, r.status_code, r.headers.get("retry-after"))
                except httpx.HTTPError:
                    row = (t0, time.monotonic() - t0, 0, None)
                self.rows.append(row)
                time.sleep(0.01)

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(10)

    def since(self, t: float) -> list[tuple[float, float, int, str | None]]:
        return [r for r in list(self.rows) if r[0] >= t]


def _until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


def _readyz(gw: Gateway) -> tuple[int, dict[str, Any]]:
    r = httpx.get(gw.admin + "/readyz", timeout=5)
    return r.status_code, r.json()


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_redis_outage_mid_traffic_fails_closed_then_recovers(fault, redis_proc, jwks, upstream,
                                                             signer, gateway_factory, prefix):
    """kill: SIGKILL, then a new redis-server on the same port (empty: no persistence);
    freeze: SIGSTOP (a Redis that accepts nothing and answers nothing: timeouts), then SIGCONT."""
    gw = gateway_factory(config(jwks, upstream, redis_revocation(redis_proc.port, prefix)),
                         env=ENV)
    if fault == "kill":
        break_it, heal = redis_proc.kill, redis_proc.start        # by PID; same port
    else:
        def break_it() -> None:
            os.kill(redis_proc.pid, signal.SIGSTOP)

        def heal() -> None:
            os.kill(redis_proc.pid, signal.SIGCONT)
    tok = mint(signer)
    expired = mint(signer, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    forged = Signer().token(cognito_claims(ISSUER, CLIENT))
    with Traffic(gw, tok) as traffic:
        _until(lambda: len(traffic.rows) >= 20, 5, "warm-up traffic")
        assert {r[2] for r in traffic.rows} == {200}

        t_kill = time.monotonic()
        break_it()
        _until(lambda: any(r[2] == 503 for r in traffic.since(t_kill)), 2.0,
               "a 503 within 2 s of the fault")
        _until(lambda: _readyz(gw)[0] == 503, 5.0, "/readyz reporting the store down")
        down = time.monotonic() - t_kill
        assert down < 5.0
        code, body = _readyz(gw)
        assert code == 503 and body["revocation"]["healthy"] is False, body
        # invalid tokens are still 401 (rejected before any revocation lookup)
        assert httpx.get(gw.proxy + "/x", headers=bearer(expired), timeout=5).status_code == 401
        assert httpx.get(gw.proxy + "/x", headers=bearer(forged), timeout=5).status_code == 401
        # `poolgate revoke` cannot write: a clear message, exit 1, bounded, no traceback
        t0 = time.monotonic()
        out = revoke_cli(gw.path, "--jti", "during-outage")
        revoke_s = time.monotonic() - t0
        assert out.returncode == 1 and "cannot write to redis" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
        time.sleep(max(0.0, t_kill + 2.5 - time.monotonic()))   # a sustained outage
        outage = traffic.since(t_kill)

        t_up = time.monotonic()
        heal()                                              # same gateway process throughout
        back = _until(lambda: any(r[2] == 200 for r in traffic.since(t_up)), 10.0,
                      "requests answered 200 again")
        ready = _until(lambda: _readyz(gw)[0] == 200, 10.0 - back, "/readyz 200 again")
        t_ok = time.monotonic()
        time.sleep(0.5)
        after = traffic.since(t_ok + 0.1)

    assert outage and all(r[2] in (200, 503) for r in outage), {r[2] for r in outage}
    slowest = max(r[1] for r in outage)
    assert slowest < 2.0, f"an answer took {slowest:.2f}s during the outage"
    late = [r for r in outage if r[0] > t_kill + 2.0]
    assert late and all(r[2] == 503 for r in late), {r[2] for r in late}
    assert all(r[3] is not None and int(r[3]) > 0 for r in outage if r[2] == 503)
    assert after and {r[2] for r in after} == {200}, {r[2] for r in after}
    first_503 = min(r[0] + r[1] for r in outage if r[2] == 503) - t_kill
    assert first_503 < 2.0
    print(f"\nredis {fault}: first 503 after {first_503 * 1000:.0f} ms, /readyz down after "
          f"{down * 1000:.0f} ms, slowest answer {slowest * 1000:.0f} ms "
          f"({len(outage)} requests during the outage, "
          f"{sum(r[2] == 503 for r in outage)} answered 503); healed: 200 after "
          f"{back * 1000:.0f} ms, /readyz 200 after {(back + ready) * 1000:.0f} ms; "
          f"poolgate revoke failed in {revoke_s:.2f} s")

    # the store works again without a gateway restart: writes, reads and invalidation
    j = "after-" + uuid.uuid4().hex
    victim = mint(signer, jti=j)
    assert status(gw, victim) == 200
    cli(redis_proc.port, "SET", f"{prefix}jti:{j}", "1", "EX", "600")
    cli(redis_proc.port, "PUBLISH", prefix + "revocations", f"jti:{j}")
    wait_status(gw, victim, 401, 1.0)
    with admin(gw) as api:
        assert api.post("/revocations", json={"jti": "after2-" + j}).status_code == 201
    assert_every_key_has_ttl([redis_proc.port], prefix, at_least=2)


def test_on_error_allow_lets_valid_tokens_through_while_redis_is_down(
        redis_proc, jwks, upstream, signer, gateway_factory, prefix):
    gw = gateway_factory(config(jwks, upstream,
                                redis_revocation(redis_proc.port, prefix, on_error="allow")),
                         env=ENV)
    tok = mint(signer)
    assert status(gw, tok) == 200
    redis_proc.kill()
    # the body says the store is down (whether an opted-out gateway should also answer 503
    # there, taking every replica out of rotation, is engine.readiness()'s call)
    _until(lambda: _readyz(gw)[1]["revocation"]["healthy"] is False, 5.0,
           "/readyz reporting the store down")
    now = int(time.time())
    invalid = {
        "expired": mint(signer, iat=now - 7200, exp=now - 3600),
        "bad signature": Signer(kid=signer.kid).token(cognito_claims(ISSUER, CLIENT)),
        "wrong client": mint(signer, client_id="someone-else"),
        "garbage": "not.a.jwt",
    }
    with httpx.Client(timeout=5) as c:
        for _ in range(5):
            t0 = time.monotonic()
            assert status(gw, mint(signer), c) == 200
            assert status(gw, tok, c) == 200
            assert time.monotonic() - t0 < 2.0
        for name, bad in invalid.items():
            t0 = time.monotonic()
            r = call(gw, bad, c)
            assert r.status_code == 401, (name, r.text)
            assert time.monotonic() - t0 < 2.0
        assert c.get(gw.proxy + "/x", timeout=5).status_code == 401     # no token at all
    # the admin API cannot write while the store is down: 503, not a silent success
    with admin(gw) as api:
        r = api.post("/revocations", json={"jti": "nope"})
        assert r.status_code == 503 and r.headers.get("retry-after"), r.text


# --------------------------------------------------------------------------- cluster, sentinel

def test_cluster_three_masters(redis_cluster, jwks, upstream, signer, gateway_factory, prefix):
    seed = redis_cluster[0]
    rev = redis_revocation(seed.port, prefix, mode="cluster")
    cfg = config(jwks, upstream, rev)
    gw_a = gateway_factory(cfg, env=ENV)
    gw_b = gateway_factory(cfg, env=ENV)
    cb = httpx.Client(timeout=5)
    toks = {f"cl-{i}-{uuid.uuid4().hex[:6]}": None for i in range(6)}
    for j in toks:
        toks[j] = mint(signer, jti=j)
        assert status(gw_b, toks[j], cb) == 200
    delays = []
    with admin(gw_a) as api:
        for j, tok in toks.items():
            t0 = time.perf_counter()
            assert api.post("/revocations", json={"jti": j}).status_code == 201
            while status(gw_b, tok, cb) != 401:
                assert time.perf_counter() - t0 < 2.0
            delays.append(time.perf_counter() - t0)
        user = str(uuid.uuid4())
        old = mint(signer, sub=user, iat=int(time.time()) - 60)
        assert status(gw_b, old, cb) == 200
        assert api.post("/revocations", json={"sub": user}).status_code == 201
        wait_status(gw_b, old, 401, 1.0, cb)
        assert api.get("/revocations", params={"sub": user}).status_code == 200
    # poolgate revoke against the cluster, enforced by both replicas
    fam = "fam-" + uuid.uuid4().hex
    f = mint(signer, origin_jti=fam)
    assert status(gw_b, f, cb) == 200
    out = revoke_cli(gw_a.path, "--origin-jti", fam)
    assert out.returncode == 0, out.stderr
    wait_status(gw_b, f, 401, 1.0, cb)
    wait_status(gw_a, f, 401, 1.0)
    # keys landed on more than one master, every one with a TTL
    per_node = {n.port: len(keys_under(n.port, prefix)) for n in redis_cluster}
    assert sum(1 for v in per_node.values() if v) >= 2, per_node
    assert_every_key_has_ttl([n.port for n in redis_cluster], prefix, at_least=8)
    ms = [d * 1000 for d in delays]
    print(f"\ncluster: A -> B {statistics.median(ms):.1f} ms median, {max(ms):.1f} ms max; "
          f"keys per master {per_node}")
    assert max(delays) < 1.0
    cb.close()


def test_sentinel_one_master_one_replica(redis_sentinel, jwks, upstream, signer, gateway_factory,
                                         prefix):
    sentinel = redis_sentinel["sentinel"]
    rev = {"store": "redis", "redis": {
        "mode": "sentinel", "sentinels": [f"127.0.0.1:{sentinel.port}"],
        "service_name": redis_sentinel["service_name"], "key_prefix": prefix}}
    cfg = config(jwks, upstream, rev)
    gw_a = gateway_factory(cfg, env=ENV)
    gw_b = gateway_factory(cfg, env=ENV)
    cb = httpx.Client(timeout=5)
    j = "sen-" + uuid.uuid4().hex
    tok, sibling = mint(signer, jti=j, sub="sentinel-user"), mint(signer, sub="sentinel-user")
    assert status(gw_b, tok, cb) == 200
    with admin(gw_a) as api:
        t0 = time.perf_counter()
        assert api.post("/revocations", json={"jti": j}).status_code == 201
        while status(gw_b, tok, cb) != 401:
            assert time.perf_counter() - t0 < 1.0
        delay = time.perf_counter() - t0
        assert api.get("/revocations", params={"jti": j}).status_code == 200
    assert status(gw_b, sibling, cb) == 200
    out = revoke_cli(gw_b.path, "--token", sibling)
    assert out.returncode == 0, out.stderr
    wait_status(gw_a, sibling, 401, 1.0)
    master, replica = redis_sentinel["master"], redis_sentinel["replica"]
    assert_every_key_has_ttl([master.port], prefix, at_least=2)
    _until(lambda: cli(replica.port, "GET", f"{prefix}jti:{j}") == "1", 5, "replicated")
    print(f"\nsentinel: A -> B {delay * 1000:.1f} ms")
    cb.close()


# --------------------------------------------------------------------------- process model

def test_workers_with_memory_store_is_a_startup_error(jwks, upstream, tmp_path):
    gw = Gateway(config(jwks, upstream, {"store": "memory"}), tmp_path, env=ENV, workers=2)
    with pytest.raises(RuntimeError) as e:
        gw.start(timeout=15)
    assert gw.proc is not None and gw.proc.wait(5) != 0
    assert "revocation.store" in str(e.value) and "--workers" in str(e.value), str(e.value)
    assert "Traceback" not in str(e.value)


def test_require_redis_fails_rather_than_skips(monkeypatch):
    import redis_helpers
    monkeypatch.setattr(redis_helpers, "REDIS_SERVER", None)
    monkeypatch.setenv("POOLGATE_REQUIRE_REDIS", "1")
    with pytest.raises(pytest.fail.Exception):
        need_redis()


# --------------------------------------------------------------------------- per-request cost

@pytest.mark.skipif(os.environ.get("POOLGATE_BENCH_REVOCATION") != "1",
                    reason="opt-in measurement: POOLGATE_BENCH_REVOCATION=1 (about 1 minute)")
def test_measure_revocation_check_cost(shared_redis, jwks, signer, tmp_path, prefix):
    """req/s through a running gateway for one token: store none vs redis (near-cache) vs
    redis with invalidation: none (a Redis read per request). Printed, not asserted.

        POOLGATE_BENCH_REVOCATION=1 .venv/bin/python -m pytest tests/e2e/test_revocation.py \\
            -k measure -s   [POOLGATE_BENCH_SECONDS=5 POOLGATE_BENCH_CONNECTIONS=16]
    """
    import asyncio

    import aiohttp

    seconds = float(os.environ.get("POOLGATE_BENCH_SECONDS", "5"))
    conns = int(os.environ.get("POOLGATE_BENCH_CONNECTIONS", "16"))
    up = subprocess.Popen([sys.executable, str(ROOT / "tests/bench/upstream.py"), "--port", "0"],
                          stdout=subprocess.PIPE, text=True)
    try:
        assert up.stdout is not None
        line = up.stdout.readline()           # "upstream listening 127.0.0.1:PORT"
        assert "listening" in line, line
        upstream_url = "http://" + line.split()[-1]
        _, jsrv = jwks
        tok = mint(signer)
        scenarios = [
            ("store none", {"store": "none"}),
            ("store memory", {"store": "memory"}),
            ("store redis, near-cache (pubsub)", redis_revocation(shared_redis.port, prefix)),
            ("store redis, invalidation none", redis_revocation(shared_redis.port, prefix,
                                                                invalidation="none")),
        ]

        async def load(url: str, duration: float) -> tuple[int, int, list[float]]:
            ok = bad = 0
            lat: list[float] = []
            deadline = time.monotonic() + duration
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conns),
                                             timeout=timeout) as s:
                async def worker() -> None:
                    nonlocal ok, bad
                    while time.monotonic() < deadline:
                        t0 = time.perf_counter()
                        async with s.get(url, headers=bearer(tok)) as r:
                            await r.read()
                            if r.status == 200:
                                ok += 1
                            else:
                                bad += 1
                        lat.append(time.perf_counter() - t0)
                await asyncio.gather(*(worker() for _ in range(conns)))
            return ok, bad, lat

        def lookup_mean_us(admin_url: str) -> float | None:
            """Mean of poolgate_revocation_lookup_seconds (the check alone, inside the gateway)."""
            total = count = 0.0
            for ln in httpx.get(admin_url + "/metrics", timeout=5).text.splitlines():
                if ln.startswith("poolgate_revocation_lookup_seconds_sum"):
                    total += float(ln.split()[-1])
                elif ln.startswith("poolgate_revocation_lookup_seconds_count"):
                    count += float(ln.split()[-1])
            return total / count * 1e6 if count else None

        rounds = int(os.environ.get("POOLGATE_BENCH_ROUNDS", "2"))
        results: dict[str, list[tuple[float, float, float]]] = {n: [] for n, _ in scenarios}
        lookup: dict[str, list[float]] = {n: [] for n, _ in scenarios}
        serial: dict[str, list[float]] = {n: [] for n, _ in scenarios}
        for _round in range(rounds):
            for name, rev in scenarios:
                cfg = base_config(jsrv.url + "/jwks.json", upstream_url, revocation=rev)
                gw = Gateway(cfg, tmp_path, env=ENV).start()
                try:
                    gw.wait_ready()
                    url = gw.proxy + "/api/thing"
                    asyncio.run(load(url, 1.0))                       # warm-up
                    t0 = time.monotonic()
                    ok, bad, lat = asyncio.run(load(url, seconds))
                    wall = time.monotonic() - t0
                    mean = lookup_mean_us(gw.admin)
                    if mean is not None:
                        lookup[name].append(mean)
                    with httpx.Client(timeout=5) as c:        # one connection, back to back
                        one = []
                        for _ in range(300):
                            t1 = time.perf_counter()
                            assert c.get(url, headers=bearer(tok)).status_code == 200
                            one.append(time.perf_counter() - t1)
                    serial[name].append(statistics.median(one) * 1000)
                finally:
                    gw.stop()
                assert bad == 0
                lat.sort()
                results[name].append((ok / wall, lat[len(lat) // 2] * 1000,
                                      lat[int(len(lat) * 0.99)] * 1000))
        print(f"\nper-request cost, one token, {conns} connections, {seconds:.0f} s x {rounds} "
              f"rounds (aiohttp client in-process, on the same machine)")
        base = statistics.median(r[0] for r in results["store none"])
        for name, rows in results.items():
            rps = statistics.median(r[0] for r in rows)
            p50 = statistics.median(r[1] for r in rows)
            p99 = statistics.median(r[2] for r in rows)
            cost = (1 / rps - 1 / base) * 1e6 if rps else float("nan")
            check = (f"lookup {statistics.median(lookup[name]):6.1f} µs"
                     if lookup[name] else "no lookup     ")
            print(f"  {name:34s} {rps:6.0f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                  f"1-conn p50 {statistics.median(serial[name]):5.2f} ms  {check}  "
                  f"({'+' if cost >= 0 else ''}{cost:.0f} µs/req vs none; runs "
                  f"{', '.join(f'{r[0]:.0f}' for r in rows)})")
    finally:
        up.terminate()
        try:
            up.wait(5)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait(5)
