"""Middleware mode under a plain `uvicorn app:app` (a real uvicorn subprocess): poolgate's log
lines, the access log included, are JSON on stderr as the README promises; a request no route
matches is logged under the route `middleware.default` (the config key that governs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from e2e.servers import ROOT, free_port

from .conftest import bearer, middleware_config, wait_until, write_config

APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import GatewayMiddleware


async def me(request):
    return JSONResponse({"sub": request.user.sub, "role": request.user.role})


app = GatewayMiddleware(Starlette(routes=[Route("/me", me)]), config=%r)
'''


def test_plain_uvicorn_gets_json_access_lines(jwks, tmp_path: Path, token) -> None:
    cfg = middleware_config(jwks[1].url + "/jwks.json", logging={"access_log": True})
    path = write_config(tmp_path, cfg)
    (tmp_path / "mwapp.py").write_text(APP % str(path))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    lines: list[str] = []

    def drain(stream) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    for _attempt in range(3):          # a free port can be taken by another process meanwhile
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "mwapp:app", "--host",
                                 "127.0.0.1", "--port", str(port), "--app-dir", str(tmp_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for s in (proc.stdout, proc.stderr):
            threading.Thread(target=drain, args=(s,), daemon=True).start()
        if not wait_until(lambda: any("address already in use" in ln for ln in lines), 3):
            break
        proc.wait(10)
        lines.clear()
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(base + "/me", timeout=1).status_code == 401
            except httpx.HTTPError:
                return False

        assert wait_until(up, 20), lines
        r = httpx.get(base + "/me", timeout=5)
        assert r.status_code == 401 and "route default" not in r.text
        assert "middleware.default" in r.text       # the config key that governs it
        assert wait_until(lambda: httpx.get(base + "/me", headers=bearer(token()),
                                            timeout=5).status_code == 200, 10)

        def access() -> list[dict]:
            out = []
            for line in list(lines):
                if '"poolgate.access"' in line:
                    out.append(json.loads(line))          # every such line is one JSON object
            return out

        assert wait_until(lambda: {a["status"] for a in access()} >= {200, 401}, 10), lines
        for rec in access():
            assert rec["logger"] == "poolgate.access" and rec["msg"] == "request"
            assert rec["route"] == "middleware.default"
            assert {"request_id", "method", "path", "decision", "code"} <= set(rec)
        for line in lines:                               # poolgate's other lines too
            if '"logger":"poolgate' in line:
                json.loads(line)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
