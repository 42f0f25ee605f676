"""Operating a running gateway, end to end with real ``poolgate serve`` processes: SIGHUP hot
reload (and refusal of a broken config), SIGTERM drain with a delay and a grace period,
signing-key rotation without downtime, and ``--workers 2``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from prometheus_client.parser import text_string_to_metric_families

from gateway.forward.credential import generate_key_pem

from .conftest import CLIENT, ISSUER, base_config
from .servers import Gateway, cognito_claims

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "operations-admin-token-0123456789"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _rewrite(gw: Gateway, config: dict[str, Any] | str) -> None:
    """Replace the gateway's config file (same listeners) as an operator would."""
    if isinstance(config, str):
        gw.path.write_text(config)
        return
    config = json.loads(json.dumps(config))
    config.setdefault("listen", {}).update(host="127.0.0.1", port=0)
    config.setdefault("admin", {}).update(host="127.0.0.1", port=0)
    gw.path.write_text(yaml.safe_dump(config, sort_keys=False))


def _until(check: Callable[[], bool], timeout: float = 10) -> float:
    """Seconds until ``check()`` held (bounded), else fail."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def _metric(admin: str, name: str, **labels: str) -> float:
    text = httpx.get(admin + "/metrics").text
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def _logged(gw: Gateway, **fields: Any) -> list[dict[str, Any]]:
    out = []
    for line in list(gw.lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if all(rec.get(k) == v for k, v in fields.items()):
            out.append(rec)
    return out


def _keys(tmp: Path, *kids: str) -> dict[str, str]:
    paths = {}
    for kid in kids:
        p = tmp / f"{kid}.pem"
        p.write_bytes(generate_key_pem())
        paths[kid] = str(p)
    return paths


def _signing(paths: dict[str, str], *kids: str) -> dict[str, Any]:
    return {"signing_keys": [{"kid": k, "private_key_file": paths[k]} for k in kids]}


# --------------------------------------------------------------------------- SIGHUP

def test_sighup_applies_a_new_config_and_refuses_a_broken_one(
        jwks, upstream, gateway_factory, signer):
    _, jsrv = jwks
    _, usrv = upstream
    routes = [{"id": "public", "match": {"path": "/public/**"}, "upstream": "app",
               "auth": "public"},
              {"id": "orders", "match": {"path": "/orders/**"}, "upstream": "app",
               "auth": "authenticated"}]
    cfg = base_config(jsrv.url + "/jwks.json", usrv.url, routes=routes,
                      admin={"token": ADMIN_TOKEN})
    gw = gateway_factory(cfg)
    tok = signer.token(cognito_claims(ISSUER, CLIENT))
    revoked_claims = cognito_claims(ISSUER, CLIENT)
    revoked = signer.token(revoked_claims)
    assert httpx.post(gw.admin + "/revocations", headers=_auth(ADMIN_TOKEN),
                      json={"jti": revoked_claims["jti"]}).status_code == 201
    assert httpx.get(gw.proxy + "/public/a").status_code == 200
    assert httpx.get(gw.proxy + "/billing/1", headers=_auth(tok)).status_code == 404
    assert httpx.get(gw.proxy + "/orders/1", headers=_auth(revoked)).status_code == 401

    # a route appears (404 -> routed) and an allowed route becomes denied (200 -> 401)
    new = json.loads(json.dumps(cfg))
    new["routes"] = [{**routes[0], "auth": "authenticated"}, routes[1],
                     {"id": "billing", "match": {"path": "/billing/**"}, "upstream": "app",
                      "auth": "authenticated"}]
    _rewrite(gw, new)
    gw.signal(signal.SIGHUP)
    took = _until(lambda: httpx.get(gw.proxy + "/billing/1", headers=_auth(tok)).status_code
                  == 200, timeout=5)
    print(f"\nreload: new behaviour {took:.3f} s after SIGHUP")
    assert httpx.get(gw.proxy + "/public/a").status_code == 401
    assert httpx.get(gw.proxy + "/public/a", headers=_auth(tok)).status_code == 200
    # revocations in the memory store survive the reload
    r = httpx.get(gw.proxy + "/orders/1", headers=_auth(revoked))
    assert r.status_code == 401 and r.json()["reason"] == "token_revoked"
    assert _logged(gw, event="reload", result="ok")

    # broken configs: invalid YAML, then a bad value; each is logged and the old one serves
    for broken, why in (("version: 1\nroutes: [\n", "not valid YAML"),
                        (yaml.safe_dump({**new, "routes": [{**routes[1], "auth": "bogus"}]}),
                         "routes[0].auth")):
        _rewrite(gw, broken)
        before = len(_logged(gw, event="reload", result="error"))
        gw.signal(signal.SIGHUP)
        _until(lambda n=before: len(_logged(gw, event="reload", result="error")) > n,
               timeout=5)
        rec = _logged(gw, event="reload", result="error")[-1]
        assert rec["level"] == "error" and why in rec["error"], rec
        assert "the old config keeps serving" in rec["msg"]
        assert httpx.get(gw.proxy + "/billing/1", headers=_auth(tok)).status_code == 200
        assert httpx.get(gw.proxy + "/public/a").status_code == 401
    assert _metric(gw.admin, "poolgate_config_reloads_total", result="ok") == 1
    assert _metric(gw.admin, "poolgate_config_reloads_total", result="error") == 2
    assert gw.proc.poll() is None


# --------------------------------------------------------------------------- SIGTERM

def _get_later(url: str, headers: dict[str, str], out: dict[str, Any],
               key: str) -> threading.Thread:
    def run() -> None:
        t0 = time.monotonic()
        try:
            out[key] = httpx.get(url, headers=headers, timeout=15).status_code
        except httpx.HTTPError as e:
            out[key] = type(e).__name__
        out[key + "_s"] = time.monotonic() - t0
    t = threading.Thread(target=run)
    t.start()
    return t


def test_sigterm_drain_delay_keeps_accepting_then_in_flight_requests_finish(
        jwks, upstream, gateway_factory, signer):
    _, jsrv = jwks
    app, usrv = upstream
    app.delay = 1.5
    cfg = base_config(jsrv.url + "/jwks.json", usrv.url,
                      listen={"drain_delay_seconds": 1, "grace_seconds": 10})
    gw = gateway_factory(cfg)
    tok = signer.token(cognito_claims(ISSUER, CLIENT))
    out: dict[str, Any] = {}
    first = _get_later(gw.proxy + "/slow/1", _auth(tok), out, "first")
    time.sleep(0.3)
    t_term = time.monotonic()
    gw.signal(signal.SIGTERM)
    time.sleep(0.3)
    # inside the drain delay: the listener still accepts, readiness already says no
    assert httpx.get(gw.admin + "/readyz").status_code == 503
    second = _get_later(gw.proxy + "/slow/2", _auth(tok), out, "second")
    time.sleep(1.2)               # past the delay: the listener is closed
    with pytest.raises(httpx.ConnectError):
        httpx.get(gw.proxy + "/public/x", timeout=2)
    first.join(15)
    second.join(15)
    assert out["first"] == 200 and out["second"] == 200, out
    assert gw.proc.wait(15) == 0
    took = time.monotonic() - t_term
    print(f"\ndrain: exit {took:.2f} s after SIGTERM (delay 1 s, second request in flight "
          f"{out['second_s']:.2f} s)")
    assert 1.5 < took < 4.5
    assert _logged(gw, event="drain", drain_delay_seconds=1.0, grace_seconds=10.0)


def test_sigterm_grace_period_bounds_the_drain(jwks, upstream, gateway_factory, signer):
    _, jsrv = jwks
    app, usrv = upstream
    app.delay = 5
    cfg = base_config(jsrv.url + "/jwks.json", usrv.url, listen={"grace_seconds": 1})
    gw = gateway_factory(cfg)
    out: dict[str, Any] = {}
    t = _get_later(gw.proxy + "/stuck", _auth(signer.token(cognito_claims(ISSUER, CLIENT))),
                   out, "stuck")
    time.sleep(0.3)
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert gw.proc.wait(10) == 0
    took = time.monotonic() - t0
    print(f"\ngrace: exit {took:.2f} s after SIGTERM with grace_seconds: 1 and a 5 s request")
    assert took < 3.5
    t.join(10)
    assert out["stuck"] != 200                       # cut at the end of the grace period


# --------------------------------------------------------------------------- key rotation

def test_signing_key_rotation_without_downtime(jwks, upstream, gateway_factory, signer,
                                               tmp_path):
    _, jsrv = jwks
    app, usrv = upstream
    keys = _keys(tmp_path, "k1", "k2")
    cfg = base_config(jsrv.url + "/jwks.json", usrv.url,
                      downstream_credential=_signing(keys, "k1"))
    gw = gateway_factory(cfg)

    def credential() -> str:
        tok = signer.token(cognito_claims(ISSUER, CLIENT))
        assert httpx.get(gw.proxy + "/rotate", headers=_auth(tok)).status_code == 200
        return app.seen[-1].header("x-gateway-credential")[0]

    def published() -> dict[str, Any]:
        return httpx.get(gw.admin + "/.well-known/jwks.json").json()

    def kid(cred: str) -> str:
        return jwt.decode(cred, KeySet.import_key_set(published()), algorithms=["ES256"]) \
            .header["kid"]

    old = credential()
    assert kid(old) == "k1" and [k["kid"] for k in published()["keys"]] == ["k1"]

    # traffic keeps flowing while the gateway reloads, twice
    failures: list[Any] = []
    stop = threading.Event()

    def traffic() -> None:
        tok = signer.token(cognito_claims(ISSUER, CLIENT))
        with httpx.Client() as c:
            while not stop.is_set():
                try:
                    s = c.get(gw.proxy + "/traffic", headers=_auth(tok)).status_code
                except httpx.HTTPError as e:
                    s = type(e).__name__
                if s != 200:
                    failures.append(s)
    t = threading.Thread(target=traffic)
    t.start()
    try:
        _rewrite(gw, {**cfg, "downstream_credential": _signing(keys, "k2", "k1")})
        gw.signal(signal.SIGHUP)
        _until(lambda: [k["kid"] for k in published()["keys"]] == ["k2", "k1"], timeout=5)
        new = credential()
        assert kid(new) == "k2"                      # new credentials: the new key
        assert kid(old) == "k1"                      # the old one still verifies
        assert all("d" not in k for k in published()["keys"])

        _rewrite(gw, {**cfg, "downstream_credential": _signing(keys, "k2")})
        gw.signal(signal.SIGHUP)
        _until(lambda: [k["kid"] for k in published()["keys"]] == ["k2"], timeout=5)
        time.sleep(0.2)
    finally:
        stop.set()
        t.join(10)
    assert failures == []
    assert kid(new) == "k2"
    with pytest.raises((JoseError, ValueError)):     # k1 retired: no longer verifiable
        kid(old)


# --------------------------------------------------------------------------- --workers 2

def _stale_counter(directory: Path, value: float) -> None:
    """A counter file as a previous run of the gateway would have left it."""
    code = ("from prometheus_client import Counter; Counter('poolgate_requests_total', 'x', "
            f"['route', 'method', 'status']).labels('orders', 'GET', '200').inc({value!r})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30,
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)})
    assert list(directory.glob("counter_*.db"))


def _requests_in(db: Path, tmp: Path) -> float:
    """poolgate_requests_total in ONE process's multiprocess file."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    alone = tmp / f"alone-{db.stem}-{time.monotonic_ns()}"
    alone.mkdir()
    shutil.copy(db, alone / db.name)
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=str(alone))
    return sum(s.value for m in reg.collect() for s in m.samples
               if s.name == "poolgate_requests_total")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_share_listeners_metrics_reload_and_stop(jwks, upstream, gateway_factory,
                                                         signer, tmp_path):
    control, jsrv = jwks
    _, usrv = upstream
    keys = _keys(tmp_path, "k1")
    routes = [{"id": "orders", "match": {"path": "/orders/**"}, "upstream": "app",
               "auth": "authenticated"}]
    cfg = base_config(jsrv.url + "/jwks.json", usrv.url, routes=routes,
                      revocation={"store": "none"},
                      downstream_credential=_signing(keys, "k1"))
    prom = tmp_path / "prometheus"
    prom.mkdir()
    _stale_counter(prom, 1000)                        # a file left by an earlier run
    gw = gateway_factory(cfg, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(prom)})
    tok = signer.token(cognito_claims(ISSUER, CLIENT))
    n = 40
    for i in range(n):                                # a new connection each
        assert httpx.get(gw.proxy + f"/orders/{i}", headers=_auth(tok)).status_code == 200
    (started,) = _logged(gw, event="workers")
    pids = set(started["pids"])
    assert len(pids) == 2 and started["pid"] not in pids
    # both workers accept on the shared listener: each one's own file counts requests
    # (request metrics are applied in batches, at most FLUSH_SECONDS after the request)
    deadline = time.monotonic() + 5
    while True:
        served = {pid: _requests_in(prom / f"counter_{pid}.db", tmp_path) for pid in pids}
        if sum(served.values()) >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sum(served.values()) == n and all(served.values()), served
    # /metrics, whichever worker answers, sums every worker's samples (and not the stale
    # file's): each worker fetched the JWKS at start, the requests add up whoever served them
    for _ in range(4):
        assert _metric(gw.admin, "poolgate_requests_total", route="orders", status="200") == n
        assert _metric(gw.admin, "poolgate_jwks_fetches_total", result="ok") == control.fetches
    assert control.fetches >= 2
    assert _metric(gw.admin, "poolgate_jwks_keys", source="pool") == 1   # gauge, max mode

    # a broken config (its key file is missing) is refused by the parent; workers keep serving
    _rewrite(gw, {**cfg, "downstream_credential": {"signing_keys": [
        {"kid": "k9", "private_key_file": str(tmp_path / "missing.pem")}]}})
    gw.signal(signal.SIGHUP)
    _until(lambda: bool(_logged(gw, event="reload", result="error")), timeout=5)
    rec = _logged(gw, event="reload", result="error")[0]
    assert "refused by the parent" in rec["msg"] and "missing.pem" in rec["error"]
    assert rec["pid"] not in pids                     # the parent said so, not a worker
    assert httpx.get(gw.proxy + "/orders/x", headers=_auth(tok)).status_code == 200
    assert _metric(gw.admin, "poolgate_config_reloads_total", result="error") == 1

    # a valid change reaches both workers
    _rewrite(gw, {**cfg, "routes": [*routes, {"id": "billing", "match": {"path": "/billing/**"},
                                              "upstream": "app", "auth": "authenticated"}]})
    t0 = time.monotonic()
    gw.signal(signal.SIGHUP)
    _until(lambda: {r["pid"] for r in _logged(gw, event="reload", result="ok")} == pids,
           timeout=10)
    print(f"\nworkers: both reloaded {time.monotonic() - t0:.3f} s after SIGHUP")
    for _ in range(10):
        assert httpx.get(gw.proxy + "/billing/1", headers=_auth(tok)).status_code == 200
    assert _metric(gw.admin, "poolgate_config_reloads_total", result="ok") == 2  # per worker

    # SIGTERM to the parent stops every worker; the parent exits 0
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert gw.proc.wait(10) == 0
    print(f"workers: parent exited {time.monotonic() - t0:.2f} s after SIGTERM")
    assert not any(_alive(p) for p in pids)
    # one access line per proxied request, none lost when the workers exit
    _until(lambda: len(_logged(gw, logger="poolgate.access")) >= n + 11, timeout=5)
    assert len(_logged(gw, logger="poolgate.access")) == n + 11


@pytest.mark.parametrize("over,message", [
    ({"revocation": {"store": "memory"}}, "revocation.store"),
    ({"revocation": {"store": "none"}}, "downstream_credential.signing_keys"),
])
def test_workers_need_shared_state(jwks, upstream, tmp_path, over, message):
    _, jsrv = jwks
    _, usrv = upstream
    cfg = base_config(jsrv.url + "/jwks.json", usrv.url, **over)
    if "signing_keys" not in message:
        cfg["downstream_credential"] = _signing(_keys(tmp_path, "k1"), "k1")
    gw = Gateway(cfg, tmp_path, workers=2)
    with pytest.raises(RuntimeError) as e:
        gw.start(timeout=15)
    assert gw.proc is not None and gw.proc.wait(5) != 0
    assert message in str(e.value) and "--workers" in str(e.value), str(e.value)


@pytest.mark.parametrize("workers", [1, 2])
def test_signals_during_start_up_neither_kill_nor_get_lost(jwks, upstream, gateway_factory,
                                                            tmp_path, workers):
    _, jsrv = jwks
    _, usrv = upstream
    cfg = base_config(jsrv.url + "/jwks.json", usrv.url, revocation={"store": "none"},
                      downstream_credential=_signing(_keys(tmp_path, "k1"), "k1"))
    # SIGHUP right after the listeners are bound (the default action would kill the process)
    gw = gateway_factory(cfg, ready=False, workers=workers)
    gw.signal(signal.SIGHUP)
    gw.wait_ready()
    assert gw.proc.poll() is None
    # SIGTERM right after the listeners are bound: a clean stop, exit 0
    gw2 = gateway_factory(cfg, ready=False, workers=workers)
    gw2.signal(signal.SIGTERM)
    assert gw2.proc.wait(10) == 0, "".join(gw2.lines)
