"""Decision-service throughput next to the proxy mode, one worker, one run (issue 16).

    nice .venv/bin/python tests/bench/decisions.py [--duration 8] [--connections 32]

On 127.0.0.1: an nginx upstream (``return 200``), ``poolgate serve`` (one worker, route
``auth: authenticated``, downstream credential on, revocation off) with a decisions listener,
and nginx in front of the decision service (deploy/forward-auth/nginx/poolgate.conf). wrk
(Debian ``wrk``) measures, with one valid token:

  proxy      client -> poolgate proxy mode -> upstream
  decisions  client -> poolgate /auth/nginx (X-Original-Method/-URI; no upstream hop)
  nginx+dec  client -> nginx auth_request -> poolgate /auth/nginx, then nginx -> upstream

and prints req/s and the two ratios the issue asks for (decisions/proxy >= 1.5,
nginx+dec/proxy >= 0.8). Every process is stopped by PID. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path.insert(0, str(TESTS))

from decisions.proxies import Proxy  # noqa: E402
from e2e.conftest import CLIENT, ISSUER, base_config  # noqa: E402
from e2e.servers import (Gateway, JwksControl, Signer, ThreadServer, cognito_claims,  # noqa: E402
                         free_port)

import httpx  # noqa: E402


def upstream_nginx(d: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    d.mkdir(parents=True, exist_ok=True)
    (d / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type application/json; return 200 '{{"ok":true}}\\n'; }}
  }}
}}
""")
    p = subprocess.Popen(["nginx", "-p", str(d), "-c", str(d / "nginx.conf")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return p, port
        except httpx.HTTPError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("upstream nginx did not start")


def wrk(url: str, headers: dict[str, str], duration: float, connections: int) -> float:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration:.0f}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 30).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} non-2xx responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is not installed (apt-get install {tool})")
    tmp = Path(tempfile.mkdtemp(prefix="poolgate-decisions-bench-"))
    signer = Signer()
    control = JwksControl()
    control.keys = [signer.public_jwk()]
    jwks = ThreadServer(control).start()
    up, up_port = upstream_nginx(tmp / "upstream")
    cfg = base_config(jwks.url + "/jwks", f"http://127.0.0.1:{up_port}",
                      revocation={"store": "none"},
                      logging={"access_log": False, "level": "warning"},
                      decisions={"listen": {"port": 0}})
    gw = Gateway(cfg, tmp)
    front = None
    try:
        gw.start()
        gw.wait_ready()
        token = signer.token(cognito_claims(ISSUER, CLIENT))
        auth = {"Authorization": f"Bearer {token}"}
        front = Proxy("nginx", tmp / "front", gw.listening["decisions"],
                      f"127.0.0.1:{up_port}").start()
        dec = "http://" + gw.listening["decisions"]
        nginx_headers = {**auth, "X-Original-Method": "GET", "X-Original-URI": "/api/orders",
                         "Host": "bench.example"}
        runs = {"proxy": (gw.proxy + "/api/orders", auth),
                "decisions": (dec + "/auth/nginx", nginx_headers),
                "nginx+dec": (front.url + "/api/orders", auth)}
        results = {}
        for name, (url, headers) in runs.items():
            wrk(url, headers, 2, args.connections)                   # warm-up
            results[name] = wrk(url, headers, args.duration, args.connections)
            print(f"{name:10s} {results[name]:10,.0f} req/s", flush=True)
        print(f"decisions / proxy  = {results['decisions'] / results['proxy']:.2f}x "
              f"(issue: >= 1.5x)")
        print(f"nginx+dec / proxy  = {results['nginx+dec'] / results['proxy']:.2f}x "
              f"(issue: >= 0.8x)")
    finally:
        if front is not None:
            front.stop()
        gw.stop()
        up.terminate()
        up.wait(10)
        jwks.stop()


if __name__ == "__main__":
    main()
