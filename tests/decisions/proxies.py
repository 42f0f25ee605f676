"""Real edge proxies on 127.0.0.1 for the decision-service tests: nginx, Traefik, Caddy, Envoy,
each from its shipped config in deploy/forward-auth/ (placeholders rendered), stopped by PID."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from e2e.servers import ROOT, free_port

DEPLOY = ROOT / "deploy" / "forward-auth"
BIN = Path(sys.executable).parent           # the venv's bin: traefik, caddy, envoy wheels
PROXIES = ("nginx", "traefik", "caddy", "envoy", "envoy-grpc")


def render(template: Path, out: Path, values: dict[str, str]) -> Path:
    text = template.read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", v)
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    assert not left, f"unrendered placeholder(s) {left} in {template}"
    out.write_text(text)
    return out


def binary(name: str) -> str | None:
    if name == "nginx":
        return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                         else None)
    p = BIN / name
    return str(p) if p.exists() else shutil.which(name)


class Proxy:
    """One proxy process in front of ``decisions`` (host:port) and ``upstream`` (host:port)."""

    def __init__(self, kind: str, workdir: Path, decisions: str, upstream: str) -> None:
        self.kind, self.dir = kind, workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "proxy.log"
        dh, dp = decisions.rsplit(":", 1)
        uh, up = upstream.rsplit(":", 1)
        values = {"LISTEN": f"127.0.0.1:{self.port}", "LISTEN_HOST": "127.0.0.1",
                  "LISTEN_PORT": str(self.port), "DECISIONS": decisions, "DECISIONS_HOST": dh,
                  "DECISIONS_PORT": dp, "UPSTREAM": upstream, "UPSTREAM_HOST": uh,
                  "UPSTREAM_PORT": up, "DYNAMIC": str(self.dir / "dynamic.yml")}
        exe = binary("envoy" if kind == "envoy-grpc" else kind)
        assert exe, f"{kind} is not installed"
        if kind == "nginx":
            render(DEPLOY / "nginx" / "poolgate.conf", self.dir / "poolgate.conf", values)
            (self.dir / "nginx.conf").write_text(_NGINX_MAIN.replace("@DIR@", str(self.dir)))
            self.cmd = [exe, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]
        elif kind == "traefik":
            render(DEPLOY / "traefik" / "dynamic.yml", self.dir / "dynamic.yml", values)
            static = render(DEPLOY / "traefik" / "traefik.yml", self.dir / "traefik.yml", values)
            self.cmd = [exe, f"--configFile={static}"]
        elif kind == "caddy":
            conf = render(DEPLOY / "caddy" / "Caddyfile", self.dir / "Caddyfile", values)
            self.cmd = [exe, "run", "--config", str(conf), "--adapter", "caddyfile"]
        elif kind in ("envoy", "envoy-grpc"):
            name = "envoy-grpc.yaml" if kind == "envoy-grpc" else "envoy-http.yaml"
            conf = render(DEPLOY / "envoy" / name, self.dir / "envoy.yaml", values)
            self.cmd = [exe, "--disable-hot-restart", "--concurrency", "1", "-l", "error",
                        "-c", str(conf)]
        else:
            raise ValueError(kind)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str = "/public/ready", timeout: float = 30) -> "Proxy":
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.dir, env={"HOME": str(self.dir),
                                                            "PATH": "/usr/sbin:/usr/bin:/bin"})
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log.read_text()[-2000:]}")
            try:
                last = httpx.get(self.url + ready_path, timeout=2).status_code
                if last != 404 or self.kind == "nginx":   # traefik: 404 until routers load
                    return self
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} not ready ({last!r}): {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


_NGINX_MAIN = """
daemon off;
master_process off;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log warn;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path @DIR@/client_body;
    proxy_temp_path @DIR@/proxy;
    fastcgi_temp_path @DIR@/fastcgi;
    uwsgi_temp_path @DIR@/uwsgi;
    scgi_temp_path @DIR@/scgi;
    include @DIR@/poolgate.conf;
}
"""
