"""GatewayMiddleware around a FastAPI app: dependencies read the principal; real uvicorn."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.authentication import requires

from gateway import GatewayMiddleware, Principal

from .conftest import bearer, wait_until


def principal(request: Request) -> Principal:
    return request.user


User = Annotated[Principal, Depends(principal)]


def role(*allowed: str) -> Any:
    """A dependency that admits only the mapped roles given (403 otherwise)."""

    def check(user: User) -> Principal:
        if user.role not in allowed:
            raise HTTPException(status_code=403, detail=f"role {user.role} not allowed")
        return user

    return check


Admin = Annotated[Principal, Depends(role("admin"))]


def fastapi_app(events: list[str] | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if events is not None:
            events.append("startup")
        yield
        if events is not None:
            events.append("shutdown")

    api = FastAPI(lifespan=lifespan)

    @api.get("/me")
    async def me(request: Request, user: User) -> dict:
        return {"sub": user.sub, "role": user.role, "authenticated": user.is_authenticated,
                "groups": user.claims.get("cognito:groups", []),
                "scopes": list(request.auth.scopes)}

    @api.get("/public/me")
    async def public_me(user: User) -> dict:
        return {"authenticated": user.is_authenticated, "role": user.role}

    @api.get("/dashboard/admin")
    async def admin(user: Admin) -> dict:
        return {"role": user.role}

    @api.get("/dashboard/requires")
    @requires("admin")
    async def admin_requires(request: Request) -> dict:
        return {"role": request.user.role}

    return api


@pytest.fixture
def server(config_path: Path, serve: Any) -> Any:
    return serve(GatewayMiddleware(fastapi_app(), config=config_path))


def test_dependency_sees_the_principal(server, token):
    r = httpx.get(server.url + "/me", headers=bearer(token(groups=["admins", "x"])))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["role"] == "admin" and body["authenticated"] is True
    assert body["groups"] == ["admins", "x"]
    assert body["scopes"][:2] == ["authenticated", "admin"]


def test_invalid_token_is_401_before_fastapi_runs(server):
    r = httpx.get(server.url + "/me", headers=bearer("a.b.c"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.json()["error"] == "invalid_token"
    r = httpx.get(server.url + "/me")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="poolgate"'


def test_role_dependency_and_requires(server, token):
    admin, member = bearer(token(groups=["admins"])), bearer(token())
    assert httpx.get(server.url + "/dashboard/admin", headers=admin).json() == {"role": "admin"}
    assert httpx.get(server.url + "/dashboard/admin", headers=member).status_code == 403
    assert httpx.get(server.url + "/dashboard/requires", headers=admin).status_code == 200
    assert httpx.get(server.url + "/dashboard/requires", headers=member).status_code == 403


def test_public_route_dependency_gets_an_unauthenticated_user(server):
    r = httpx.get(server.url + "/public/me")
    assert r.status_code == 200 and r.json() == {"authenticated": False, "role": None}


def test_fastapi_lifespan_runs_inside_the_engine_lifespan(config_path, serve, jwks):
    control, _ = jwks
    events: list[str] = []
    mw = GatewayMiddleware(fastapi_app(events), config=config_path)
    srv = serve(mw)
    assert events == ["startup"] and mw.engine.started
    assert wait_until(lambda: control.fetches >= 1 and mw.engine.jwks.ready())
    srv.stop()
    assert events == ["startup", "shutdown"] and not mw.engine.started
