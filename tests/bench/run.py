"""poolgate benchmark, one command (issue 7).

    .venv/bin/python tests/bench/run.py [--quick] [--duration S] [--connections 32]
                                        [--only direct,naive,...] [--profile]

Everything runs on 127.0.0.1: a fast upstream (nginx, else tests/bench/upstream.py), the
system under test (poolgate, the naive Starlette proxy, HAProxy with jwt_verify), and a load
generator (wrk with tests/bench/targets.lua, else tests/bench/loadgen.py). Each scenario gets
a fresh process, a warm-up, then a measured run; every process is stopped by PID in
``finally``. Writes tests/bench/results/latest.json and tests/bench/RESULTS.md.

Scenarios (``--only`` names):
  direct     (a) load generator -> upstream
  poolgate   (b) poolgate, one token, route auth: authenticated, no credential, no revocation
  tokens10k  (c) as (b) with 10,000 distinct tokens
  policy     (d) auth: policy (role with statements + path variable), downstream credential on
  redis      (e) as (d) plus revocation store: redis (127.0.0.1:6379, private key prefix)
  redis_nocache (e') as (e) with `invalidation: none`: every request asks Redis (worst case)
  workers2   (d) with ``serve --workers 2``
  naive      (f) Starlette + httpx + PyJWT per request (tests/bench/naive_proxy.py)
  haproxy    (g) HAProxy >= 2.5 with native jwt_verify (RS256, PEM public key), nbthread 1
  floor      (h) poolgate's stack with no gateway logic (tests/bench/floor_proxy.py): the ceiling
  micro      in-process verify rates (cryptography, joserfc, PyJWT, poolgate Verifier), RSS
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import issuer  # noqa: E402
import procs  # noqa: E402
from procs import Proc, RssSampler  # noqa: E402

ALL = ["direct", "poolgate", "tokens10k", "policy", "redis", "redis_nocache", "workers2", "naive",
       "haproxy", "floor", "floor_h1", "floor_h1_pg", "policy_granian", "micro"]
LABELS = {
    "direct": "(a) direct upstream",
    "poolgate": "(b) poolgate, 1 token, auth: authenticated",
    "tokens10k": "(c) poolgate, 10,000 distinct tokens",
    "policy": "(d) poolgate, auth: policy + downstream credential",
    "redis": "(e) as (d) + Redis revocation",
    "redis_nocache": "(e') as (e), near-cache off (Redis per request)",
    "workers2": "(d) with --workers 2",
    "naive": "(f) naive Starlette + httpx + PyJWT",
    "haproxy": "(g) HAProxy jwt_verify (nbthread 1)",
    "floor": "(h) stack floor: uvicorn + ASGI + aiohttp, no auth",
    "floor_h1_pg": "(h1') as (h1) on poolgate's own server protocol (gateway/listen)",
    "policy_granian": "(d') as (d), the same ASGI app under granian (1 worker) instead of poolgate serve",
    "floor_h1": "(h1) stack floor: uvicorn (httptools, uvloop) + ASGI pass-through + poolgate's h1 client, no auth",
    "profile": "(d) under py-spy (not a measurement)",
}
ROUTE = "/tenants/{tenant_id}/orders/{order_id}"
MB = 1024 * 1024


# --------------------------------------------------------------------------- context

@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    key: issuer.BenchKey
    tokens: list[str]
    jwks_url: str
    upstream_url: str = ""
    upstream_kind: str = ""
    generator: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    loadavg_at_start: float = field(default_factory=procs.loadavg)
    running: list[Proc] = field(default_factory=list)

    def targets_file(self, n: int) -> Path:
        """Lines ``PATH TOKEN``: each token asks for an order of its own tenant."""
        path = self.tmp / f"targets-{n}.txt"
        if not path.exists():
            with open(path, "w") as f:
                for i, tok in enumerate(self.tokens[:n]):
                    f.write(f"/tenants/t{i % 100}/orders/{i} {tok}\n")
        return path

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        p = Proc(name, argv, self.tmp, env=env)
        self.running.append(p)
        return p

    def stop(self, p: Proc) -> None:
        p.stop()
        if p in self.running:
            self.running.remove(p)


# --------------------------------------------------------------------------- load generators

def run_load(b: Bench, url: str, targets: Path, duration: float) -> dict[str, Any]:
    if b.generator == "wrk":
        threads = max(1, min(2, b.args.connections))
        cmd = ["wrk", f"-t{threads}", f"-c{b.args.connections}", f"-d{max(1, round(duration))}s",
               "--timeout", "10s", "-s", str(HERE / "targets.lua"), url, "--", str(targets)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        m = re.search(r"BENCHJSON (\{.*\})", out.stdout)
        if not m:
            raise RuntimeError(f"wrk failed: {out.stdout[-800:]} {out.stderr[-800:]}")
        r = json.loads(m.group(1))
        secs = r["duration_us"] / 1e6
        errors = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
        ok = r["requests"] - r["status_errors"]
        return {"requests": r["requests"], "seconds": round(secs, 3),
                "rps": round(ok / secs, 1) if secs else 0.0,
                "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
                "non_2xx": r["status_errors"], "errors": errors}
    cmd = [sys.executable, str(HERE / "loadgen.py"), "--url", url, "--targets", str(targets),
           "--duration", str(duration), "--connections", str(b.args.connections)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe(port: int, path: str, token: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read()[:400]
    finally:
        conn.close()


def serial_latency(port: int, token: str, n: int = 30) -> float | None:
    """Median latency of ``n`` back-to-back requests on one keep-alive connection.

    Catches stalls that throughput under concurrency hides, such as a response written in
    two segments without TCP_NODELAY (Nagle + the client's delayed ACK: ~40 ms each).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    try:
        for i in range(n):
            t = time.perf_counter()
            conn.request("GET", "/tenants/t0/orders/0", headers={"Authorization": f"Bearer {token}"})
            conn.getresponse().read()
            times.append(time.perf_counter() - t)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    times.sort()
    return round(times[len(times) // 2] * 1000, 2)


def measure(b: Bench, name: str, port: int, proc: Proc | None, n_tokens: int,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Probe, warm up, then measure: throughput, latency, peak RSS and CPU of ``proc``."""
    url = f"http://127.0.0.1:{port}"
    targets = b.targets_file(n_tokens)
    status, body = probe(port, "/tenants/t0/orders/0", b.tokens[0])
    result: dict[str, Any] = {"label": LABELS[name], "tokens": n_tokens, **(extra or {})}
    if status != 200:
        result.update(status="failed", note=f"probe answered {status}: {body.decode(errors='replace')}")
        return result
    result["serial_p50_ms"] = serial_latency(port, b.tokens[0])
    if proc is not None:
        result["idle_rss_mb"] = round(procs.tree_rss(proc.pid) / MB, 1)
    warm = run_load(b, url, targets, b.args.warmup)
    sent = warm["requests"]
    # many tokens: keep warming until every token was presented once (bounded), so the RSS
    # measured below is the RSS with all of them cached
    give_up = time.monotonic() + 40
    while n_tokens > 1 and sent < n_tokens and time.monotonic() < give_up:
        sent += run_load(b, url, targets, 2.0)["requests"]
    user0, sys0 = procs.tree_cpu_split(proc.pid) if proc else (0.0, 0.0)
    busy0, total0 = procs.cpu_jiffies()
    runs: list[dict[str, Any]] = []
    with RssSampler(proc.pid if proc is not None else os.getpid()) as rss:
        for _ in range(b.args.repeat):
            runs.append(run_load(b, url, targets, b.args.duration))
    # the run with the median req/s stands for the scenario; CPU/request over all runs
    r = sorted(runs, key=lambda x: x["rps"])[len(runs) // 2]
    total_requests = sum(x["requests"] for x in runs)
    if proc is not None:
        user1, sys1 = procs.tree_cpu_split(proc.pid)
        cpu = (user1 - user0) + (sys1 - sys0)
        result["peak_rss_mb"] = round(rss.peak / MB, 1)
        result["cpu_seconds"] = round(cpu, 2)
        # kernel share: on loopback most of it is socket send/receive work
        result["cpu_system_pct"] = round(100 * (sys1 - sys0) / cpu, 1) if cpu > 0 else None
        if total_requests:
            result["cpu_us_per_req"] = round(cpu / total_requests * 1e6, 1)
    if len(runs) > 1:
        result["runs_rps"] = [x["rps"] for x in runs]
    busy1, total1 = procs.cpu_jiffies()
    # share of ALL cores busy during the run (SUT + generator + upstream + anything else)
    result["machine_busy_pct"] = round(100 * (busy1 - busy0) / max(1, total1 - total0), 1)
    result["loadavg_after"] = procs.loadavg()
    result.update(r)
    # distinct tokens actually presented (each generator walks the targets file in order)
    result["tokens_sent"] = min(n_tokens, sent + total_requests + 1)
    bad = sum(x["non_2xx"] + x["errors"] for x in runs)
    result["status"] = "ok" if total_requests and bad <= 0.01 * total_requests else "invalid"
    if result["status"] == "invalid":
        result["note"] = f"{bad} of {total_requests} requests failed or were not 2xx"
    return result


# --------------------------------------------------------------------------- upstream

def start_upstream(b: Bench) -> None:
    if shutil.which("nginx") and not b.args.python_upstream:
        port = procs.free_port()
        d = b.tmp / "nginx"
        d.mkdir()
        conf = d / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type application/json; return 200 '{{"ok":true}}\\n'; }}
  }}
}}
""")
        p = b.spawn("nginx", ["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)])
        procs.wait_tcp(port, 10, p)
        b.upstream_kind = subprocess.run(["nginx", "-v"], capture_output=True,
                                         text=True).stderr.strip().replace("nginx version: ", "")
    else:
        p = b.spawn("upstream", [sys.executable, str(HERE / "upstream.py"), "--port", "0"])
        port = int(p.wait_for(r"upstream listening 127\.0\.0\.1:(\d+)", 10).group(1))
        b.upstream_kind = "python asyncio (tests/bench/upstream.py)"
    b.upstream_url = f"http://127.0.0.1:{port}"
    b.upstream_proc = p  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- poolgate

def signing_key_file(b: Bench) -> Path:
    path = b.tmp / "credential-es256.pem"
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        k = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    return path


def poolgate_config(b: Bench, *, policy: bool, redis_prefix: str | None = None,
                    near_cache: bool = True) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "version": 1,
        "listen": {"host": "127.0.0.1", "port": 0},
        "admin": {"host": "127.0.0.1", "port": 0},
        "identity_sources": [{"id": "bench", "issuer": issuer.ISSUER, "jwks_uri": b.jwks_url,
                              "audiences": [issuer.AUDIENCE], "algorithms": ["RS256"]}],
        "upstreams": {"bench": {"url": b.upstream_url}},
        "routes": [{"id": "orders", "match": {"path": ROUTE, "methods": ["GET"]},
                    "upstream": "bench", "auth": "policy" if policy else "authenticated"}],
        "mappings": {"bench": {"mode": "rules", "rules": [
            {"claim": "cognito:groups", "op": "contains", "value": "admins", "role": "admin"},
            {"claim": "cognito:groups", "op": "contains", "value": "members", "role": "member"},
        ]}},
        "default_role": "member",
        "roles": {
            "admin": {"statements": [{"sid": "All", "effect": "allow", "action": ["http:*"],
                                      "resource": ["bench:/**"]}]},
            "member": {"statements": [
                {"sid": "NoAdminOrders", "effect": "deny", "action": ["http:*"],
                 "resource": ["bench:/tenants/*/orders/admin"]},
                {"sid": "OwnTenantOrders", "effect": "allow", "action": ["http:GET"],
                 "resource": ["bench:/tenants/${jwt:custom:tenant_id}/orders/*"]},
            ]},
        },
        "revocation": {"store": "none"},
        "downstream_credential": {"enabled": False},
        "logging": {"access_log": policy, "level": "warning"},   # (d)/(e): the shipped default, on
    }
    if policy:
        cfg["downstream_credential"] = {
            "enabled": True, "algorithm": "ES256", "ttl_seconds": 300,
            "signing_keys": [{"kid": "bench-k1", "private_key_file": str(signing_key_file(b))}]}
    if redis_prefix is not None:
        cfg["revocation"] = {"store": "redis", "on_error": "deny",
                             "redis": {"url": "redis://127.0.0.1:6379/0",
                                       "key_prefix": redis_prefix,
                                       "invalidation": "pubsub" if near_cache else "none"}}
    return cfg


def repo_env() -> dict[str, str]:
    """The environment for processes that import ``gateway``: the repo first on the path."""
    extra = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(REPO) + (os.pathsep + extra if extra else "")}


def start_poolgate(b: Bench, name: str, cfg: dict[str, Any], workers: int = 1) -> tuple[Proc, int, int]:
    import yaml
    path = b.tmp / f"poolgate-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(path)]
    if workers != 1:
        argv += ["--workers", str(workers)]
    p = b.spawn(f"poolgate-{name}", argv, env=repo_env())
    m = p.wait_for(r"poolgate listening proxy=[^\s:]+:(\d+) admin=[^\s:]+:(\d+)", 30)
    port, admin = int(m.group(1)), int(m.group(2))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:          # keys loaded for every identity source
        try:
            if probe(admin, "/readyz", None)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    return p, port, admin


def scenario_poolgate(b: Bench, name: str) -> dict[str, Any]:
    redis_prefix = None
    if name in ("redis", "redis_nocache"):
        err = redis_unavailable()
        if err:
            return {"label": LABELS[name], "status": "skipped", "note": err}
        redis_prefix = f"poolgate-bench-{uuid.uuid4().hex[:12]}:"
    policy = name in ("policy", "redis", "redis_nocache", "workers2", "profile")
    workers = 2 if name == "workers2" else 1
    cfg = poolgate_config(b, policy=policy, redis_prefix=redis_prefix,
                          near_cache=name != "redis_nocache")
    n = 10_000 if name == "tokens10k" else 1
    p = None
    try:
        p, port, _ = start_poolgate(b, name, cfg, workers)
        if name == "profile":
            return profile(b, p, port)
        extra = {"workers": workers, "config": {"auth": cfg["routes"][0]["auth"],
                 "credential": policy, "revocation": cfg["revocation"]["store"]}}
        result = measure(b, name, port, p, n, extra)
        if policy and result.get("status") == "ok":
            # the statements really are evaluated: another tenant's order is refused
            result["policy_enforced"] = probe(port, "/tenants/t1/orders/0", b.tokens[0])[0] == 403
            if not result["policy_enforced"]:
                result.update(status="invalid", note="another tenant's order was not refused (403)")
        if redis_prefix and result.get("status") == "ok":
            result["revocation_enforced"] = revocation_enforced(b, port, redis_prefix)
            if not result["revocation_enforced"]:
                result.update(status="invalid", note="a token revoked in Redis was still accepted")
        return result
    finally:
        if p is not None:
            b.stop(p)
        if redis_prefix:
            redis_cleanup(redis_prefix)


def revocation_enforced(b: Bench, port: int, prefix: str) -> bool:
    """Revoke a token the run did not use (documented key format + PUBLISH); 401 within 2 s?"""
    import base64

    import redis
    token = b.tokens[-1] if len(b.tokens) > 1 else issuer.BenchKey(b.key.private_pem).mint(99999)
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    jti, path = claims["jti"], f"/tenants/{claims['custom:tenant_id']}/orders/0"
    if probe(port, path, token)[0] != 200:
        return False
    r = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
    try:
        r.set(f"{prefix}jti:{jti}", "1", ex=600)
        r.publish(f"{prefix}revocations", f"jti:{jti}")
    finally:
        r.close()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if probe(port, path, token)[0] == 401:
            return True
        time.sleep(0.1)
    return False


def redis_unavailable() -> str | None:
    try:
        import redis
        r = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=0.5,
                        socket_connect_timeout=0.5)
        r.ping()
        r.close()
        return None
    except Exception as e:  # noqa: BLE001 (any failure means: skip the scenario)
        return f"no Redis on 127.0.0.1:6379 ({type(e).__name__})"


def redis_cleanup(prefix: str) -> None:
    import redis
    r = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    try:
        batch = []
        for k in r.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000):
            batch.append(k)
            if len(batch) >= 1000:
                r.unlink(*batch)
                batch = []
        if batch:
            r.unlink(*batch)
    finally:
        r.close()


# --------------------------------------------------------------------------- baselines

def scenario_direct(b: Bench) -> dict[str, Any]:
    port = int(b.upstream_url.rsplit(":", 1)[1])
    up = getattr(b, "upstream_proc", None)
    return measure(b, "direct", port, up, 1, {"server": b.upstream_kind})


def scenario_naive(b: Bench) -> dict[str, Any]:
    p = b.spawn("naive", [sys.executable, str(HERE / "naive_proxy.py"), "--port", "0",
                          "--upstream", b.upstream_url, "--jwks", b.jwks_url,
                          "--issuer", issuer.ISSUER, "--audience", issuer.AUDIENCE])
    try:
        port = int(p.wait_for(r"naive listening 127\.0\.0\.1:(\d+)", 20).group(1))
        return measure(b, "naive", port, p, 1, {"workers": 1})
    finally:
        b.stop(p)


def scenario_granian(b: Bench) -> dict[str, Any]:
    """(d') poolgate's proxy app under granian: the measurement behind `--server granian`."""
    exe = shutil.which("granian") or str(Path(sys.executable).parent / "granian")
    if not Path(exe).exists():
        return {"label": LABELS["policy_granian"], "status": "skipped",
                "note": "granian not installed (pip install granian)"}
    import yaml
    cfg = poolgate_config(b, policy=True, redis_prefix=None, near_cache=True)
    path = b.tmp / "poolgate-granian.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    port = procs.free_port()
    env = {**repo_env(), "POOLGATE_CONFIG": str(path),
           "PYTHONPATH": str(HERE) + os.pathsep + repo_env()["PYTHONPATH"]}
    p = b.spawn("granian", [exe, "--interface", "asgi", "--host", "127.0.0.1", "--port",
                            str(port), "--workers", "1", "--loop", "uvloop",
                            "--no-ws", "granian_app:app"], env=env)
    try:
        procs.wait_tcp(port, 20, p)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and probe(port, "/tenants/t0/orders/0",
                                                    b.tokens[0])[0] != 200:
            time.sleep(0.2)
        return measure(b, "policy_granian", port, p, 1, {"workers": 1, "server": "granian"})
    finally:
        b.stop(p)


def scenario_floor(b: Bench, name: str = "floor") -> dict[str, Any]:
    extra = ["--transport", "h1", "--loop", "uvloop"] if name.startswith("floor_h1") else []
    if name == "floor_h1_pg":
        extra += ["--http", "poolgate"]
    p = b.spawn(name, [sys.executable, str(HERE / "floor_proxy.py"), "--port", "0",
                       "--upstream", b.upstream_url, *extra])
    try:
        port = int(p.wait_for(r"floor listening 127\.0\.0\.1:(\d+)", 20).group(1))
        return measure(b, name, port, p, 1, {"workers": 1,
                                             "loop": "uvloop" if extra else "asyncio"})
    finally:
        b.stop(p)


def haproxy_version() -> tuple[int, ...] | None:
    exe = shutil.which("haproxy")
    if not exe:
        return None
    out = subprocess.run([exe, "-v"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(x or 0) for x in m.groups()) if m else None


def scenario_haproxy(b: Bench) -> dict[str, Any]:
    ver = haproxy_version()
    if ver is None:
        return {"label": LABELS["haproxy"], "status": "skipped", "note": "haproxy not installed"}
    if ver < (2, 5):
        return {"label": LABELS["haproxy"], "status": "skipped",
                "note": f"haproxy {'.'.join(map(str, ver))} has no jwt_verify (needs >= 2.5)"}
    d = b.tmp / "haproxy"
    d.mkdir(exist_ok=True)
    pem = d / "pubkey.pem"
    pem.write_bytes(b.key.public_pem())
    port = procs.free_port()
    up = b.upstream_url.removeprefix("http://")
    conf = d / "haproxy.cfg"
    conf.write_text(f"""
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend bench
  bind 127.0.0.1:{port}
  http-request deny deny_status 401 unless {{ req.hdr(authorization) -m found }}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request set-var(txn.jwt_iss) var(txn.bearer),jwt_payload_query('$.iss')
  http-request set-var(txn.jwt_aud) var(txn.bearer),jwt_payload_query('$.aud')
  http-request set-var(txn.jwt_exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 unless {{ var(txn.jwt_alg) -m str RS256 }}
  http-request deny deny_status 401 unless {{ var(txn.jwt_iss) -m str {issuer.ISSUER} }}
  http-request deny deny_status 401 unless {{ var(txn.jwt_aud) -m str {issuer.AUDIENCE} }}
  http-request deny deny_status 401 if {{ var(txn.jwt_exp),sub(txn.now) -m int lt 0 }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify(txn.jwt_alg,"{pem}") -m int 1 }}
  default_backend upstream
backend upstream
  http-reuse always
  server up {up}
""")
    p = b.spawn("haproxy", ["haproxy", "-db", "-f", str(conf)])
    try:
        procs.wait_tcp(port, 10, p)
        # a forged token must be refused, or the comparison would be meaningless
        forged = b.tokens[0][:-8] + ("AAAAAAAA" if not b.tokens[0].endswith("AAAAAAAA") else "BBBBBBBB")
        status, _ = probe(port, "/tenants/t0/orders/0", forged)
        if status == 200:
            return {"label": LABELS["haproxy"], "status": "failed",
                    "note": "haproxy accepted a forged signature: config not verifying"}
        return measure(b, "haproxy", port, p, 1,
                       {"version": ".".join(map(str, ver)), "threads": 1})
    finally:
        b.stop(p)


# --------------------------------------------------------------------------- micro + profile

def scenario_micro(b: Bench) -> dict[str, Any]:
    tok_file = b.targets_file(len(b.tokens))
    cmd = [sys.executable, str(HERE / "micro.py"), "--targets", str(tok_file),
           "--jwks-url", b.jwks_url, "--seconds", str(b.args.micro_seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=repo_env(), timeout=600)
    if out.returncode != 0:
        return {"status": "failed", "note": out.stderr[-1500:]}
    return {"status": "ok", **json.loads(out.stdout.strip().splitlines()[-1])}


def profile(b: Bench, p: Proc, port: int) -> dict[str, Any]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"label": LABELS["profile"], "status": "skipped", "note": "py-spy not installed"}
    raw = b.args.json.parent / f"{b.args.json.stem}-profile-policy.raw"
    raw.parent.mkdir(parents=True, exist_ok=True)
    targets = b.targets_file(1)
    run_load(b, f"http://127.0.0.1:{port}", targets, b.args.warmup)
    secs = max(3, round(b.args.duration))
    s = b.spawn("py-spy", [spy, "record", "-p", str(p.pid), "-d", str(secs), "-r", "250",
                           "-f", "raw", "-o", str(raw), "--nonblocking"])
    try:
        time.sleep(0.5)
        r = run_load(b, f"http://127.0.0.1:{port}", targets, secs)
        s.p.wait(secs + 30)
    finally:
        b.stop(s)
    if not raw.exists():
        return {"label": LABELS["profile"], "status": "failed", "note": s.tail()}
    top_self, top_incl, total, components = summarize_profile(raw)
    summary = raw.with_suffix(".txt")
    with open(summary, "w") as f:
        f.write(f"py-spy, scenario (d), {total} samples, {r['rps']} req/s under the profiler\n\n")
        f.write("component (self time by package, % of on-CPU samples)\n")
        for fn, pct in components:
            f.write(f"{pct:6.1f}  {fn}\n")
        f.write("\n")
        f.write("self %   function\n")
        for fn, pct in top_self:
            f.write(f"{pct:6.1f}  {fn}\n")
        f.write("\ninclusive %   function\n")
        for fn, pct in top_incl:
            f.write(f"{pct:6.1f}  {fn}\n")
    return {"label": LABELS["profile"], "status": "ok", "samples": total, "rps": r["rps"],
            "components": components, "top_self": top_self[:25], "top_inclusive": top_incl[:40],
            "summary_file": str(summary)}


# Leaf frames where py-spy (a wall-clock sampler) mostly sees the process *off* the CPU: a
# socket write wakes the peer (wrk, nginx) which often preempts the writer on a 2-core box, and
# select() is waiting. Component shares below leave them out; they are reported separately.
_OFF_CPU = re.compile(r"^(_SelectorSocketTransport\.write|StreamWriter\._write|"
                      r"RequestResponseCycle\.send \(uvicorn/protocols/http/httptools_impl\.py:(524|551)\)|"
                      r"EpollSelector\.select|Runner\.run)")
_COMPONENTS = [
    ("gateway/verify/", "verify (gateway/verify)"),
    ("gateway/revocation/", "revocation (gateway/revocation)"),
    ("gateway/mapping", "mapping"),
    ("gateway/policy", "policy"), ("gateway/conditions", "policy"),
    ("gateway/forward/credential", "downstream credential"),
    ("gateway/forward/proxy", "forwarding glue (gateway/forward/proxy)"),
    ("gateway/forward/h1", "upstream client (h1)"),
    ("gateway/forward/", "header rewriting (gateway/forward/headers, identity)"),
    ("gateway/", "gateway glue (middleware, app, pipeline, routes, extract, ...)"),
    ("prometheus_client/", "metrics (prometheus_client)"),
    ("logging/", "logging"),
    ("aiohttp/", "upstream client (aiohttp, yarl, multidict)"), ("yarl/", "upstream client (aiohttp, yarl, multidict)"),
    ("multidict/", "upstream client (aiohttp, yarl, multidict)"),
    ("httpx/", "upstream client (httpx)"), ("httpcore/", "upstream client (httpx)"),
    ("uvicorn/", "HTTP server (uvicorn)"), ("starlette/", "HTTP server (uvicorn)"),
    ("asyncio/", "event loop (asyncio)"), ("uvloop", "event loop (asyncio)"),
    ("cryptography/", "crypto"), ("uuid", "uuid / ids"), ("json/", "json"),
]


def _component(frame: str) -> str:
    for needle, name in _COMPONENTS:
        if needle in frame:
            return name
    return "other"


def summarize_profile(raw: Path) -> tuple[list[tuple[str, float]], list[tuple[str, float]], int,
                                          list[tuple[str, float]]]:
    """Collapsed stacks -> (top self frames, top inclusive frames, total samples, components).

    Components: self time by the leaf frame's package, as % of the on-CPU-looking samples
    (see ``_OFF_CPU``); the first entry is the off-CPU share of all samples.
    """
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    comp: dict[str, int] = {}
    total = off = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r"\s*\(.*?(site-packages/|lib/python3\.\d+/|/work/main/)", " (", f)
                  for f in stack.split(";") if f]
        if not frames:
            continue
        self_t[frames[-1]] = self_t.get(frames[-1], 0) + n
        for fr in set(frames):
            incl[fr] = incl.get(fr, 0) + n
        if _OFF_CPU.match(frames[-1]):
            off += n
        else:
            c = _component(frames[-1])
            comp[c] = comp.get(c, 0) + n

    def top(d: dict[str, int], k: int, denom: int) -> list[tuple[str, float]]:
        return [(fn, round(100 * c / denom, 1)) for fn, c in
                sorted(d.items(), key=lambda kv: -kv[1])[:k]] if denom else []
    components = ([("(socket writes / waiting: share of ALL samples)", round(100 * off / total, 1))]
                  if total else []) + top(comp, 30, total - off)
    return top(self_t, 30, total), top(incl, 50, total), total, components


# --------------------------------------------------------------------------- report

def machine(b: Bench) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_v = ""
    if b.generator == "wrk":
        wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "gateway_code": gateway_revision(),
            "nproc": os.cpu_count(), "cpu_model": cpu,
            "python": platform.python_version(), "platform": platform.platform(),
            "generator": "wrk (" + wrk_v + ", 2 threads, Lua per-request headers)"
            if b.generator == "wrk" else "python asyncio+aiohttp loop (tests/bench/loadgen.py; "
                                          "competes for CPU: lower bounds)",
            "upstream": b.upstream_kind, "connections": b.args.connections,
            "duration_s": b.args.duration, "warmup_s": b.args.warmup, "quick": b.args.quick,
            "repeat": b.args.repeat,
            "loadavg_at_start": b.loadavg_at_start}


def gateway_revision() -> str:
    """The commit the gateway ran from, and whether gateway/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "gateway"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in gateway/' if dirty else ''}"


def targets(res: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    def rps(name: str) -> float | None:
        r = res.get(name, {})
        return r.get("rps") if r.get("status") == "ok" else None

    out: list[dict[str, Any]] = []

    def stall(*names: str) -> str:
        """A note when a req/s or latency figure measures a fixed stall, not the work."""
        hit = [n for n in names if (res.get(n, {}).get("serial_p50_ms") or 0) >= 20]
        return (f"stall-bound ({', '.join(hit)}: 1-conn p50 >= 20 ms): this measures the "
                "stall" if hit else "")

    def add(name: str, target: str, value: float | None, ok: Callable[[float], bool],
            fmt: str = "{:.2f}", note: str = "") -> None:
        out.append({"target": name, "goal": target,
                    "value": None if value is None else round(value, 3),
                    "shown": "n/a" if value is None else fmt.format(value),
                    "holds": None if value is None else bool(ok(value)), "note": note})

    d, f, g, e, b1 = rps("policy"), rps("naive"), rps("haproxy"), rps("redis"), rps("poolgate")
    add("poolgate(d) vs naive(f)", ">= 10x", d / f if d and f else None, lambda v: v >= 10,
        "{:.2f}x", stall("policy"))
    add("poolgate(d) vs HAProxy(g)", ">= 0.45x", d / g if d and g else None, lambda v: v >= 0.45,
        "{:.2f}x", stall("policy"))
    h1 = rps("floor_h1")
    add("poolgate(d) vs the stack floor (h1)", ">= 0.75x", d / h1 if d and h1 else None,
        lambda v: v >= 0.75, "{:.2f}x", stall("policy", "floor_h1"))

    def cpu(name: str) -> float | None:
        r = res.get(name, {})
        return r.get("cpu_us_per_req") if r.get("status") == "ok" else None
    # the same two ratios by CPU time per request of the system under test: less sensitive
    # to the load generator (and other jobs) sharing the cores
    dc, fc, gc = cpu("policy"), cpu("naive"), cpu("haproxy")
    add("poolgate(d) vs naive(f), by CPU/request", ">= 10x", fc / dc if dc and fc else None,
        lambda v: v >= 10, "{:.2f}x")
    add("poolgate(d) vs HAProxy(g), by CPU/request", ">= 0.45x",
        gc / dc if dc and gc else None, lambda v: v >= 0.45, "{:.2f}x")
    h1c = cpu("floor_h1")
    add("poolgate(d) vs the stack floor (h1), by CPU/request", ">= 0.75x",
        h1c / dc if dc and h1c else None, lambda v: v >= 0.75, "{:.2f}x")
    p99s = [res[n]["p99_ms"] for n in ("poolgate", "tokens10k", "policy", "redis")
            if res.get(n, {}).get("status") == "ok"]
    add("poolgate p99 (worst of b-e)", "<= 15 ms", max(p99s) if p99s else None,
        lambda v: v <= 15, "{:.1f} ms", stall("poolgate", "tokens10k", "policy", "redis"))
    add("revocation cost (e vs d)", "<= 5%", (1 - e / d) * 100 if e and d else None,
        lambda v: v <= 5, "{:.1f}%", stall("policy", "redis"))
    ec = cpu("redis")
    add("revocation cost (e vs d), by CPU/request", "<= 5%",
        (ec / dc - 1) * 100 if ec and dc else None, lambda v: v <= 5, "{:.1f}%")
    e2 = rps("redis_nocache")
    add("revocation cost, near-cache off (e' vs d)", "(reported)",
        (1 - e2 / d) * 100 if e2 and d else None, lambda v: True, "{:.1f}%",
        stall("policy", "redis_nocache"))
    idle = res.get("poolgate", {}).get("idle_rss_mb")
    add("RSS idle (gateway process)", "<= 64 MB", idle, lambda v: v <= 64, "{:.1f} MB")
    c_rss = res.get("tokens10k", {}).get("peak_rss_mb")
    add("RSS with 10,000 cached tokens (peak in c)", "<= 96 MB", c_rss, lambda v: v <= 96,
        "{:.1f} MB")
    m = res.get("micro", {})
    un, raw_rate, cached = (m.get("poolgate_uncached_per_s"), m.get("cryptography_rs256_per_s"),
                            m.get("poolgate_cached_per_s"))
    add("uncached verify vs raw cryptography", ">= 0.55x",
        un / raw_rate if un and raw_rate else None, lambda v: v >= 0.55, "{:.2f}x")
    add("cached verify rate", ">= 250,000/s", cached, lambda v: v >= 250_000, "{:,.0f}/s")
    hc = cpu("floor")
    add("poolgate(d) CPU/request over the stack floor (h)", "(reported)",
        dc / hc if dc and hc else None, lambda v: True, "{:.2f}x")
    w2 = rps("workers2")
    add("workers 2 vs 1 (policy)", "(reported)", w2 / d if w2 and d else None, lambda v: True,
        "{:.2f}x", stall("policy", "workers2"))
    return out


def diagnostics(meta: dict[str, Any], res: dict[str, dict[str, Any]]) -> list[str]:
    """Things that change how the numbers must be read, found in the numbers themselves."""
    out = []
    conns = meta.get("connections") or 32
    stalled = [(r.get("label", name), r["serial_p50_ms"]) for name, r in res.items()
               if r.get("status") == "ok" and (r.get("serial_p50_ms") or 0) >= 20]
    if stalled:
        stall = statistics.median(v for _, v in stalled)
        out.append(f"One request on an idle keep-alive connection takes ~{stall:.0f} ms in "
                   f"{', '.join(n for n, _ in stalled)}. That is a fixed stall (typically Nagle "
                   "+ delayed ACK: a response written in two segments on a socket without "
                   f"TCP_NODELAY), and it caps throughput near {conns} connections / "
                   f"{stall:.0f} ms = {conns / stall * 1000:,.0f} req/s whatever the CPU cost: "
                   "there, req/s and latency measure the stall, CPU µs/req still measures "
                   "the work.")
    load = meta.get("loadavg_at_start")
    if isinstance(load, (int, float)) and load >= 1.0:
        out.append(f"The machine was not idle: load average {load} at start on "
                   f"{meta.get('nproc')} cores (other jobs). Req/s and latency vary run to run; "
                   "compare CPU µs/req and in-process rates (per CPU-second) instead.")
    return out


def fmt(v: Any, spec: str = "{:,.0f}") -> str:
    return "-" if v is None else spec.format(v)


def write_markdown(path: Path, meta: dict[str, Any], res: dict[str, dict[str, Any]],
                   tgts: list[dict[str, Any]]) -> None:
    L = ["# poolgate benchmark results", "",
         "Generated by `tests/bench/run.py` (do not edit by hand; re-run to refresh).", "",
         "## Machine", "", "| | |", "|---|---|"]
    for k in ("date", "gateway_code", "nproc", "cpu_model", "python", "platform", "generator", "upstream",
              "connections", "duration_s", "warmup_s", "repeat", "loadavg_at_start"):
        L.append(f"| {k} | {meta.get(k)} |")
    L += ["", "## Scenarios", "",
          "| scenario | req/s | p50 ms | p99 ms | idle RSS MB | peak RSS MB | CPU µs/req | "
          "kernel % of CPU | 1-conn p50 ms | machine busy % | requests | status |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in ALL + ["profile"]:
        r = res.get(name)
        if not r or name in ("micro", "profile"):
            continue
        status = r.get("status", "?") + (f" ({r['note']})" if r.get("note") else "")
        L.append(f"| {r.get('label', name)} | {fmt(r.get('rps'))} | {fmt(r.get('p50_ms'), '{:.2f}')}"
                 f" | {fmt(r.get('p99_ms'), '{:.2f}')} | {fmt(r.get('idle_rss_mb'), '{:.1f}')} | "
                 f"{fmt(r.get('peak_rss_mb'), '{:.1f}')} | {fmt(r.get('cpu_us_per_req'), '{:.0f}')}"
                 f" | {fmt(r.get('cpu_system_pct'), '{:.0f}')}"
                 f" | {fmt(r.get('serial_p50_ms'), '{:.2f}')} | {fmt(r.get('machine_busy_pct'), '{:.0f}')}"
                 f" | {fmt(r.get('requests'))} | {status.replace('|', '/')} |")
    L += ["", "req/s counts 2xx answers only; p50/p99 from the generator under "
          f"{meta.get('connections')} connections; RSS and CPU are of the system under test's "
          "process tree (for (a): the upstream); *1-conn p50* is the median of 30 back-to-back "
          "requests on one connection (a ~40 ms value means a Nagle/delayed-ACK stall); "
          "*machine busy* is the share of all cores in use during the run (SUT + generator + "
          "upstream + anything else on the machine)."]
    m = res.get("micro")
    if m:
        L += ["", "## Micro-benchmarks (in-process, one core)", "", "| measure | value |",
              "|---|---:|"]
        if m.get("status") != "ok":
            L.append(f"| micro | failed: {str(m.get('note', ''))[:300]!r} |")
        for k, v in m.items():
            if k in ("status", "notes"):
                continue
            shown = (f"{v:,}" if isinstance(v, int) else f"{v:,.3g}" if isinstance(v, float)
                     else str(v))
            L.append(f"| {k} | {shown} |")
        for note in m.get("notes", []):
            L.append(f"| note | {note} |")
    notes = diagnostics(meta, res)
    if notes:
        L += ["", "## Read this first", ""] + [f"- {n}" for n in notes]
    L += ["", "## Targets", "", "| target | goal | measured | holds | note |",
          "|---|---|---|---|---|"]
    for t in tgts:
        holds = ("-" if t["goal"] == "(reported)" else
                 {True: "yes", False: "**no**", None: "n/a"}[t["holds"]])
        L.append(f"| {t['target']} | {t['goal']} | {t['shown']} | {holds} | {t['note']} |")
    prof = res.get("profile")
    if prof and prof.get("status") == "ok":
        L += ["", f"## Profile of (d) under load (py-spy, {prof['samples']} samples, "
                  f"{fmt(prof['rps'])} req/s while profiled)", "", "| self % | function |",
              "|---:|---|"]
        for fn, pct in prof["top_self"][:20]:
            L.append(f"| {pct} | `{fn}` |")
        L += ["", "py-spy samples wall-clock time. Socket writes and `select()` largely show time "
              "the gateway was off the CPU (a write wakes wrk or nginx, which on 2 cores often "
              "preempts it); the component split leaves those samples out:", "",
              "| % | component (self time) |", "|---:|---|"]
        for fn, pct in prof.get("components", []):
            L.append(f"| {pct} | {fn} |")
    path.write_text("\n".join(L) + "\n")


def print_summary(meta: dict[str, Any], res: dict[str, dict[str, Any]],
                  tgts: list[dict[str, Any]]) -> None:
    print("\nscenario                                              req/s    p50ms    p99ms  peakRSS  1conn-p50")
    for name in ALL:
        r = res.get(name)
        if not r or name == "micro":
            continue
        if r.get("status") != "ok":
            print(f"{r.get('label', name):50s}  {r.get('status')}: {r.get('note', '')[:200]}")
            continue
        print(f"{r['label']:50s} {r['rps']:9,.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{fmt(r.get('peak_rss_mb'), '{:7.1f}')} {fmt(r.get('serial_p50_ms'), '{:9.2f}')}")
    m = res.get("micro")
    if m:
        print("\nmicro:", json.dumps(m, indent=1))
    for n in diagnostics(meta, res):
        print("\nNOTE:", n)
    print("\ntargets:")
    for t in tgts:
        holds = ("" if t["goal"] == "(reported)" else
                 {True: "holds", False: "MISSES", None: "n/a"}[t["holds"]])
        print(f"  {t['target']:45s} {t['goal']:14s} {t['shown']:>14s}  {holds}"
              + (f"  [{t['note']}]" if t["note"] else ""))


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~2 s per scenario")
    ap.add_argument("--duration", type=float, help="seconds per measured run (default 8, quick 2)")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up per scenario (default 2, quick 1)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1,
                    help="measured runs per scenario; the median req/s is reported (default 1)")
    ap.add_argument("--only", help=f"comma list of: {','.join(ALL)},profile")
    ap.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--python-upstream", action="store_true", help="use upstream.py even if nginx exists")
    ap.add_argument("--profile", action="store_true", help="also profile (d) with py-spy")
    ap.add_argument("--micro-seconds", type=float, help="time per micro-benchmark (default 2, quick 0.5)")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="run nothing: rebuild targets and the markdown report from a results JSON")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "latest.json")
    ap.add_argument("--markdown", type=Path, default=HERE / "RESULTS.md")
    a = ap.parse_args(argv)
    a.duration = min(a.duration or (2.0 if a.quick else 8.0), 120.0)
    a.warmup = a.warmup if a.warmup is not None else (1.0 if a.quick else 2.0)
    a.micro_seconds = a.micro_seconds or (0.5 if a.quick else 2.0)
    a.scenarios = ALL if not a.only else [s.strip() for s in a.only.split(",") if s.strip()]
    if a.profile and "profile" not in a.scenarios:
        a.scenarios = list(a.scenarios) + ["profile"]
    unknown = set(a.scenarios) - set(ALL) - {"profile"}
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    if not 1 <= a.repeat <= 5:
        ap.error("--repeat must be 1..5")
    if a.connections < 1 or a.connections > 1024:
        ap.error("--connections must be 1..1024")
    return a


def render(source: Path, markdown: Path) -> int:
    """Re-derive targets, diagnostics and the markdown from a run's JSON (no measuring)."""
    data = json.loads(source.read_text())
    data["targets"] = targets(data["scenarios"])
    data["diagnostics"] = diagnostics(data["meta"], data["scenarios"])
    source.write_text(json.dumps(data, indent=2) + "\n")
    write_markdown(markdown, data["meta"], data["scenarios"], data["targets"])
    print_summary(data["meta"], data["scenarios"], data["targets"])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render(args.render, args.markdown)
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so the finally blocks stop every process
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n_tokens = 10_000 if {"tokens10k", "micro"} & set(args.scenarios) else 1
    t0 = time.monotonic()
    key, tokens = issuer.load_or_create(n_tokens)
    print(f"bench: {len(tokens)} tokens ready in {time.monotonic() - t0:.1f}s", flush=True)
    gen = args.generator
    if gen == "auto":
        gen = "wrk" if shutil.which("wrk") else "python"
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="poolgate-bench-") as tmp, \
            issuer.JwksServer(key.jwks()) as jwks:
        b = Bench(args, Path(tmp), key, tokens, jwks.url, generator=gen, results=results)
        try:
            start_upstream(b)
            for name in args.scenarios:
                print(f"bench: {LABELS.get(name, name)} ...", flush=True)
                t1 = time.monotonic()
                try:
                    if name == "direct":
                        r = scenario_direct(b)
                    elif name == "naive":
                        r = scenario_naive(b)
                    elif name == "haproxy":
                        r = scenario_haproxy(b)
                    elif name == "policy_granian":
                        r = scenario_granian(b)
                    elif name in ("floor", "floor_h1", "floor_h1_pg"):
                        r = scenario_floor(b, name)
                    elif name == "micro":
                        r = scenario_micro(b)
                    else:
                        r = scenario_poolgate(b, name)
                except Exception as e:  # noqa: BLE001 (one broken scenario must not stop the rest)
                    r = {"label": LABELS.get(name, name), "status": "failed",
                         "note": f"{type(e).__name__}: {e}"[:1500]}
                r["wall_seconds"] = round(time.monotonic() - t1, 1)
                results[name] = r
                print(f"bench:   -> {r.get('status')} {r.get('rps', '')} "
                      f"{r.get('note', '')[:300]}", flush=True)
            meta = machine(b)
        finally:
            for p in list(b.running):
                b.stop(p)
    tgts = targets(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "scenarios": results, "targets": tgts,
                                     "diagnostics": diagnostics(meta, results)},
                                    indent=2) + "\n")
    write_markdown(args.markdown, meta, results, tgts)
    print_summary(meta, results, tgts)
    print(f"\nbench: wrote {args.json} and {args.markdown} in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
