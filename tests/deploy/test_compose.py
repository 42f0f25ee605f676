"""deploy/docker-compose.yml (DEV-ONLY local stack): parsed, every repo path it names exists,
the poolgate config it mounts loads and points at the stack's own services.

No Docker engine here: the compose file is parsed with yaml; the helper scripts it mounts run
for real on loopback (the echo upstream, and bootstrap.py against a local moto server, which
proves that the deterministic pool/client ids written into compose/poolgate.yaml are the ones
moto hands out and that moto's tokens match the config's derived issuer).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import Config, load_config

from . import DEPLOY, REPO

COMPOSE = DEPLOY / "docker-compose.yml"
GATEWAY_CONFIG_IN_CONTAINER = "/etc/poolgate/poolgate.yaml"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _argv(value: Any) -> list[str]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else str(value).split()


def _volumes(svc: dict[str, Any]) -> dict[str, Path]:
    """container path -> repo path, for bind mounts of repo files (relative to deploy/)."""
    out = {}
    for v in svc.get("volumes", []):
        src, target = (v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2]
        if src.startswith("."):
            out[target] = (COMPOSE.parent / src).resolve()
    return out


def _env_default(value: str) -> str:
    """${NAME:-default} as compose would expand it with NAME unset."""
    return re.sub(r"\$\{[A-Z_][A-Z0-9_]*:-([^}]*)\}", r"\1", value)


def _gateway_config_path() -> Path:
    return _volumes(_services()["poolgate"])[GATEWAY_CONFIG_IN_CONTAINER]


def _gateway_config(**kw: Any) -> Config:
    return load_config(_gateway_config_path(), **kw)


def _port_of(argv: list[str], default: int) -> int:
    return int(argv[argv.index("--port") + 1]) if "--port" in argv else default


# --------------------------------------------------------------------------- the file

def test_compose_file_parses_and_has_the_whole_stack() -> None:
    services = _services()
    assert {"poolgate", "redis", "echo", "moto", "bootstrap"} <= set(services)
    assert services["moto"]["image"].startswith("motoserver/moto:")
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        image = svc.get("image", "")
        assert not image.endswith(":latest"), f"{name}: pin a tag"


def test_the_stack_is_marked_dev_only() -> None:
    assert "DEV-ONLY" in COMPOSE.read_text(encoding="utf-8").split("services:")[0]
    assert "DEV-ONLY" in _gateway_config_path().read_text(encoding="utf-8").splitlines()[0]
    for script in ("bootstrap.py", "echo.py"):
        assert "DEV-ONLY" in (DEPLOY / "compose" / script).read_text(encoding="utf-8")[:200]


def test_build_context_and_dockerfile_exist() -> None:
    build = _services()["poolgate"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO, "the image build context is the repository root"
    assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert (context / "pyproject.toml").exists()


@pytest.mark.parametrize("name", sorted(yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]))
def test_every_repo_path_a_service_names_exists(name: str) -> None:
    svc = _services()[name]
    mounts = _volumes(svc)
    for target, source in mounts.items():
        assert source.exists(), f"{name}: volume source {source} does not exist"
        assert REPO in source.parents, f"{name}: {source} is outside the repo"
    argv = _argv(svc.get("entrypoint")) + _argv(svc.get("command"))
    for arg in argv:
        if arg.startswith("/") and PurePosixPath(arg).suffix in (".py", ".yaml", ".yml"):
            assert arg in mounts, f"{name}: {arg} is not mounted from the repo"
    for value in svc.get("environment", {}).values():
        if isinstance(value, str) and value.startswith("/etc/poolgate"):
            assert value in mounts, f"{name}: {value} is not mounted"


def test_poolgate_command_is_the_console_script() -> None:
    svc = _services()["poolgate"]
    argv = _argv(svc.get("entrypoint")) + _argv(svc.get("command"))
    assert argv[:2] == ["poolgate", "serve"]
    assert argv[argv.index("--config") + 1] == GATEWAY_CONFIG_IN_CONTAINER
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    module = scripts["poolgate"].split(":")[0]
    assert '"serve"' in (REPO / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")


def test_gateway_listeners_are_published_on_loopback_only() -> None:
    ports = _services()["poolgate"]["ports"]
    cfg = _gateway_config(strict_env=False)
    published = {}
    for p in ports:
        host, hport, cport = p.split(":")
        assert host == "127.0.0.1", f"{p}: DEV-ONLY stack, keep it off other interfaces"
        published[int(cport)] = int(hport)
    assert {cfg.listen.port, cfg.admin.port} <= set(published)


# --------------------------------------------------------------------------- the config

def test_gateway_config_loads() -> None:
    cfg = _gateway_config(strict_env=False)
    assert cfg.revocation.store == "redis"
    src = cfg.identity_sources[0]
    assert src.cognito and src.allow_insecure_http


def test_gateway_config_loads_with_the_compose_environment() -> None:
    env = {k: _env_default(v) for k, v in _services()["poolgate"]["environment"].items()}
    cfg = _gateway_config(strict_env=True, env=env)
    assert cfg.admin.token and cfg.admin.host == "0.0.0.0"


def test_gateway_config_points_at_the_stack_services() -> None:
    services = _services()
    cfg = _gateway_config(strict_env=False)
    src = cfg.identity_sources[0]
    jwks = urlsplit(src.jwks_uri or "")
    assert (jwks.hostname, jwks.port) == ("moto", 5000)
    assert jwks.path == f"/{src.user_pool_id}/.well-known/jwks.json"
    redis = urlsplit(cfg.revocation.redis.url)
    assert redis.hostname in services and redis.hostname == "redis"
    for up in cfg.upstreams.values():
        host, _, port = up.authority.rpartition(":")
        assert host in services, f"upstream {up.id}: no service {host!r}"
        argv = _argv(services[host].get("entrypoint")) + _argv(services[host].get("command"))
        assert _port_of(argv, -1) == int(port)
    depends = services["poolgate"]["depends_on"]
    assert {"moto", "redis"} <= set(depends)


def test_moto_ids_are_deterministic() -> None:
    env = _services()["moto"]["environment"]
    assert env["MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY"] == "HASH"
    assert env["MOTO_COGNITO_IDP_USER_POOL_CLIENT_ID_STRATEGY"] == "HASH"


def test_stop_grace_covers_the_drain() -> None:
    cfg = _gateway_config(strict_env=False)
    grace = _services()["poolgate"]["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace[:-1]) > cfg.listen.drain_delay_seconds + cfg.listen.grace_seconds


# --------------------------------------------------------------------------- the helper scripts

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.e2e
def test_echo_upstream_echoes_headers() -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(DEPLOY / "compose" / "echo.py"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/orders/1?x=1", method="POST",
                                     data=b"hello", headers={"X-Auth-Sub": "alice"})
        req.add_header("X-Auth-Role", "admin")
        doc = json.loads(urllib.request.urlopen(req, timeout=5).read())
        assert doc["method"] == "POST" and doc["path"] == "/orders/1?x=1"
        assert ["X-Auth-Sub", "alice"] in doc["headers"]
        assert ["X-Auth-Role", "admin"] in doc["headers"]
        assert doc["body"] == "hello"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists() and not shutil.which("moto_server"):
        pytest.skip("moto[server] not installed")
    port = _free_port()
    env = dict(os.environ, **{k: str(v) for k, v in _services()["moto"]["environment"].items()})
    proc = subprocess.Popen([str(exe if exe.exists() else shutil.which("moto_server")),
                             "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the compose healthcheck's URL, on this port
        _wait_http(f"http://127.0.0.1:{port}/moto-api/", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _b64json(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@pytest.mark.e2e
@pytest.mark.parametrize("user, groups", [("alice", ["admins"]), ("bob", None)])
def test_bootstrap_creates_the_configured_pool_and_prints_a_matching_token(
        moto_endpoint: str, user: str, groups: list[str] | None) -> None:
    config_path = _gateway_config_path()
    res = subprocess.run([sys.executable, str(DEPLOY / "compose" / "bootstrap.py"),
                          "--user", user, "--config", str(config_path)],
                         env=dict(os.environ, MOTO_ENDPOINT=moto_endpoint),
                         capture_output=True, text=True, timeout=60)
    # exit 0 also means: the pool and client ids moto returned are the ones in the config
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip()
    header, payload, _ = token.split(".")
    claims = _b64json(payload)
    cfg = _gateway_config(strict_env=False)
    src = cfg.identity_sources[0]
    assert claims["iss"] in src.issuers
    assert claims["client_id"] in (src.client_ids or ())
    assert claims["token_use"] in src.token_use
    assert claims.get("cognito:groups") == groups
    assert _b64json(header)["alg"] in src.algorithms

    # The key the gateway would fetch (jwks_uri with moto's host swapped for this one).
    jwks_path = urlsplit(src.jwks_uri or "").path
    jwks = json.loads(urllib.request.urlopen(moto_endpoint + jwks_path, timeout=5).read())
    from joserfc import jwt
    from joserfc.jwk import KeySet
    verified = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=list(src.algorithms))
    assert verified.claims["sub"] == claims["sub"]


@pytest.mark.e2e
def test_bootstrap_reports_a_pool_id_mismatch(moto_endpoint: str, tmp_path: Path) -> None:
    pool_id = _gateway_config(strict_env=False).identity_sources[0].user_pool_id or ""
    assert pool_id
    wrong = tmp_path / "poolgate.yaml"
    wrong.write_text(_gateway_config_path().read_text(encoding="utf-8")
                     .replace(pool_id, "us-east-1_0000000000"), encoding="utf-8")
    res = subprocess.run([sys.executable, str(DEPLOY / "compose" / "bootstrap.py"),
                          "--config", str(wrong)],
                         env=dict(os.environ, MOTO_ENDPOINT=moto_endpoint),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "MISMATCH" in res.stderr
