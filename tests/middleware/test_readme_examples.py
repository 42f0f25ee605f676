"""The README's Starlette and FastAPI examples run as written (only the config path differs),
against the test config and against the shipped config/middleware.yaml (pointed at the test
pool), under a real uvicorn with lifespan on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway import GatewayMiddleware, load_config

from .conftest import CLIENT, POOL, bearer, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SHIPPED = "config/middleware.yaml"


def example(heading: str) -> str:
    section = README.split(f"### {heading}\n", 1)[1]
    code = re.match(r"\s*```python\n(.*?)```", section, re.DOTALL)
    assert code, f"no python block under {heading!r}"
    return code.group(1)


def run_example(heading: str, config: Path) -> Any:
    code = example(heading)
    assert code.count(SHIPPED) == 1, "the example should name config/middleware.yaml once"
    namespace: dict[str, Any] = {"__name__": f"readme_{heading.split('(')[1][:-1].lower()}"}
    source = compile(code.replace(SHIPPED, str(config)), f"README.md ({heading})", "exec")
    exec(source, namespace)  # noqa: S102 (the README's own code, as a reader would paste it)
    app = namespace["app"]
    assert isinstance(app, GatewayMiddleware)
    return app


def shipped_for_tests(jwks_url: str, tmp: Path) -> Path:
    """config/middleware.yaml with the test pool's id, client and JWKS URL; nothing else."""
    cfg = yaml.safe_load((ROOT / SHIPPED).read_text())
    src = cfg["identity_sources"][0]
    src["cognito"]["user_pool_id"] = POOL
    src["jwks_uri"] = jwks_url
    src["client_ids"] = [CLIENT]
    path = tmp / "shipped.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(params=["test-config", "shipped-config"])
def config(request: pytest.FixtureRequest, config_path: Path, jwks: Any, tmp_path: Path) -> Path:
    if request.param == "test-config":
        return config_path
    return shipped_for_tests(jwks[1].url + "/jwks.json", tmp_path)


def test_shipped_config_loads_and_uses_middleware_mode() -> None:
    cfg = load_config(ROOT / SHIPPED)
    assert cfg.middleware.default == "policy" and cfg.middleware.service == "api"
    assert cfg.routes == () and not cfg.downstream_credential.enabled


def test_starlette_example(config, serve, token):
    app = run_example("ASGI middleware (Starlette)", config)
    srv = serve(app)
    assert wait_until(app.engine.jwks.ready)
    tok = token(scope="aws.cognito.signin.user.admin")
    r = httpx.get(srv.url + "/me", headers=bearer(tok))
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "member"
    assert r.json()["scopes"] == ["authenticated", "member", "scope:aws.cognito.signin.user.admin"]
    admin = httpx.get(srv.url + "/admin/stats", headers=bearer(token(groups=["admins"])))
    assert admin.status_code == 200 and admin.json()["role"] == "admin"
    assert httpx.get(srv.url + "/admin/stats", headers=bearer(tok)).status_code == 403
    r = httpx.get(srv.url + "/me")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="poolgate"'


def test_fastapi_example(config, serve, token):
    app = run_example("ASGI middleware (FastAPI)", config)
    srv = serve(app)
    assert wait_until(app.engine.jwks.ready)
    tok = token(groups=["admins", "staff"], username="alice")
    r = httpx.get(srv.url + "/me", headers=bearer(tok))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["role"] == "admin" and body["groups"] == ["admins", "staff"]
    r = httpx.get(srv.url + "/me", headers=bearer("x.y.z"))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
