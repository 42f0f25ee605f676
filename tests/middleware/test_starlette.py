"""GatewayMiddleware around a Starlette app, under a real uvicorn with lifespan on."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import GatewayMiddleware, Principal, load_config

from .conftest import bearer, middleware_config, wait_until, write_config


async def me(request: Request) -> JSONResponse:
    user = request.user
    assert isinstance(user, Principal)
    return JSONResponse({"sub": user.sub, "role": user.role, "name": user.display_name,
                         "authenticated": user.is_authenticated,
                         "scopes": list(request.auth.scopes),
                         "headers": sorted({k.decode().lower()
                                            for k, _ in request.scope["headers"]})})


@requires("admin")
async def admin_only(request: Request) -> JSONResponse:
    return JSONResponse({"role": request.user.role})


@requires("authenticated")
async def signed_in_only(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.sub})


@requires("scope:aws.cognito.signin.user.admin")
async def needs_token_scope(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def starlette_app() -> Starlette:
    return Starlette(routes=[
        Route("/me", me), Route("/public/me", me),
        Route("/items/{id}", me, methods=["GET", "DELETE"]),
        Route("/admin/stats", admin_only), Route("/dashboard/admin", admin_only),
        Route("/public/private", signed_in_only), Route("/profile", needs_token_scope),
        Route("/reports/{id}", me, methods=["GET", "POST"]), Route("/other", me),
    ])


@pytest.fixture
def server(config_path: Path, serve: Any) -> Any:
    return serve(GatewayMiddleware(starlette_app(), config=config_path))


def test_valid_token_handler_sees_the_principal(server, token):
    tok = token(username="alice", scope="aws.cognito.signin.user.admin orders/read")
    r = httpx.get(server.url + "/me", headers=bearer(tok))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["role"] == "member" and body["authenticated"] is True and body["name"] == "alice"
    assert body["scopes"] == ["authenticated", "member", "scope:aws.cognito.signin.user.admin",
                              "scope:orders/read"]
    assert len(r.headers["x-request-id"]) == 32


@pytest.mark.parametrize("headers,reason,challenge", [
    ({}, "missing_token", 'Bearer realm="poolgate"'),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_token", 'Bearer realm="poolgate"'),
    ({"Authorization": "Bearer not-a-jwt"}, None, 'Bearer error="invalid_token"'),
])
def test_missing_or_invalid_token_is_401_with_the_rfc6750_header(server, headers, reason,
                                                                   challenge):
    r = httpx.get(server.url + "/me", headers=headers)
    assert r.status_code == 401
    assert challenge.split(" ", 1)[1] in r.headers["www-authenticate"]
    assert r.headers["www-authenticate"].startswith("Bearer ")
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    if reason:
        assert body["reason"] == reason


def test_expired_and_foreign_tokens_are_invalid_token(server, token, signer):
    import time

    from e2e.servers import Signer, cognito_claims

    from .conftest import CLIENT, ISSUER
    r = httpx.get(server.url + "/me", headers=bearer(token(exp=int(time.time()) - 120)))
    assert r.status_code == 401 and r.json()["reason"] == "token_expired"
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    other = Signer(kid=signer.kid).token(cognito_claims(ISSUER, CLIENT))   # same kid, other key
    r = httpx.get(server.url + "/me", headers=bearer(other))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


def test_malformed_authorization_is_400_invalid_request(server, token):
    tok = token()
    r = httpx.get(server.url + "/me", headers=[("Authorization", f"Bearer {tok}"),
                                               ("Authorization", f"Bearer {tok}")])
    assert r.status_code == 400 and r.json()["reason"] == "multiple_authorization"
    assert 'error="invalid_request"' in r.headers["www-authenticate"]


def test_requires_with_mapped_roles(server, token):
    admin, member = token(groups=["admins"]), token(groups=["readers"])
    # /dashboard/admin falls to middleware.default (authenticated): the app's requires() decides
    r = httpx.get(server.url + "/dashboard/admin", headers=bearer(admin))
    assert r.status_code == 200 and r.json() == {"role": "admin"}
    r = httpx.get(server.url + "/dashboard/admin", headers=bearer(member))
    assert r.status_code == 403 and "www-authenticate" not in r.headers   # Starlette's own 403
    # /admin/** is a policy route: the gateway refuses the member before the app runs
    r = httpx.get(server.url + "/admin/stats", headers=bearer(admin))
    assert r.status_code == 200 and r.json() == {"role": "admin"}
    r = httpx.get(server.url + "/admin/stats", headers=bearer(member))
    assert r.status_code == 403 and 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_token_scopes_are_prefixed_and_cannot_pose_as_a_role(server, token):
    r = httpx.get(server.url + "/profile", headers=bearer(token()))
    assert r.status_code == 200
    r = httpx.get(server.url + "/profile", headers=bearer(token(scope="openid")))
    assert r.status_code == 403
    r = httpx.get(server.url + "/dashboard/admin", headers=bearer(token(scope="admin")))
    assert r.status_code == 403                    # scope "admin" is "scope:admin", not the role


def test_route_policy_with_path_statements(server, token):
    member = token()
    assert httpx.get(server.url + "/items/7", headers=bearer(member)).status_code == 200
    r = httpx.delete(server.url + "/items/7", headers=bearer(member))
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert httpx.delete(server.url + "/items/7",
                        headers=bearer(token(groups=["admins"]))).status_code == 200


def test_public_route_publishes_an_unauthenticated_user(server, token):
    r = httpx.get(server.url + "/public/me")
    assert r.status_code == 200
    assert r.json()["authenticated"] is False and r.json()["sub"] is None
    assert r.json()["scopes"] == []
    # requires() answers 403 (not a 500 for a missing scope["user"])
    assert httpx.get(server.url + "/public/private").status_code == 403
    # a token on a public route is ignored, even a bad one
    assert httpx.get(server.url + "/public/me",
                     headers=bearer("not-a-jwt")).json()["authenticated"] is False


def test_client_copies_of_gateway_headers_never_reach_the_app(server, token):
    r = httpx.get(server.url + "/me", headers={
        **bearer(token()), "X-Auth-Sub": "admin", "X_Auth_Role": "admin",
        "x.auth.role": "admin", "X-Gateway-Credential": "forged"})
    seen = r.json()["headers"]
    assert "x-auth-sub" not in seen and "x-gateway-credential" not in seen
    assert not any(h.replace("_", "-").replace(".", "-") == "x-auth-role" for h in seen)
    assert "authorization" in seen                 # the app may still read the token itself
    r = httpx.get(server.url + "/public/me", headers={"X-Auth-Sub": "admin"})
    assert "x-auth-sub" not in r.json()["headers"]


def test_middleware_default_policy_uses_the_service_as_resource(jwks, tmp_path, serve, token):
    """No route matches: `middleware.default: policy` evaluates statements `svc:/...`; a
    matching route's own upstream names the resource instead (middleware.service does not)."""
    cfg = middleware_config(jwks[1].url + "/jwks.json",
                            middleware={"default": "policy", "service": "svc"})
    cfg["roles"]["member"]["statements"].append(
        {"sid": "Reports", "effect": "allow", "action": ["http:GET"],
         "resource": ["svc:/reports/**"]})
    cfg["roles"]["admin"]["statements"].append(
        {"sid": "Svc", "effect": "allow", "action": ["http:*"], "resource": ["svc:/**"]})
    srv = serve(GatewayMiddleware(starlette_app(), config=load_config(write_config(tmp_path, cfg))))
    member, admin = bearer(token()), bearer(token(groups=["admins"]))
    assert httpx.get(srv.url + "/reports/1", headers=member).status_code == 200
    r = httpx.post(srv.url + "/reports/1", headers=member)
    assert r.status_code == 403 and r.json()["reason"] in ("no_allow", "implicit_deny")
    assert httpx.get(srv.url + "/other", headers=member).status_code == 403
    assert httpx.post(srv.url + "/reports/1", headers=admin).status_code == 200
    assert httpx.get(srv.url + "/other", headers=admin).status_code == 200
    assert httpx.get(srv.url + "/other").status_code == 401
    # /items/{id} is a route with upstream app: statements on app:/items/* decide
    assert httpx.get(srv.url + "/items/3", headers=member).status_code == 200


# --------------------------------------------------------------------------- lifespan

def test_lifespan_with_a_host_handler(config_path, serve, jwks):
    control, _ = jwks
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        events.append(f"app startup, engine started={mw.engine.started}")
        yield
        events.append("app shutdown")

    mw = GatewayMiddleware(Starlette(routes=[Route("/me", me)], lifespan=lifespan),
                           config=config_path)
    assert not mw.engine.started and control.fetches == 0
    srv = serve(mw)
    assert mw.engine.started
    assert events == ["app startup, engine started=True"]
    # keys are fetched during start-up, before (and without) any request
    assert wait_until(lambda: control.fetches >= 1 and mw.engine.jwks.ready())
    srv.stop()
    assert events[-1] == "app shutdown" and not mw.engine.started


@pytest.mark.parametrize("style", ["raises", "returns"])
def test_lifespan_without_a_host_handler(config_path, serve, jwks, token, style):
    control, _ = jwks

    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if style == "raises":
                raise RuntimeError(f"unsupported scope {scope['type']}")
            return
        body = f"{scope['user'].role}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    mw = GatewayMiddleware(bare, config=config_path)
    srv = serve(mw)
    assert mw.engine.started
    assert wait_until(lambda: control.fetches >= 1 and mw.engine.jwks.ready())
    r = httpx.get(srv.url + "/anything", headers=bearer(token()))
    assert r.status_code == 200 and r.text == "member"
    srv.stop()
    assert not mw.engine.started


def test_lifespan_off_starts_the_engine_on_the_first_request(config_path, serve, token):
    mw = GatewayMiddleware(starlette_app(), config=config_path)
    srv = serve(mw, lifespan="off")
    assert not mw.engine.started
    r = httpx.get(srv.url + "/me", headers=bearer(token()))
    assert mw.engine.started
    assert r.status_code in (200, 503)          # keys may still be loading: never a 401
    assert wait_until(
        lambda: httpx.get(srv.url + "/me", headers=bearer(token())).status_code == 200)


def test_a_failed_host_startup_stops_the_engine_too(config_path):
    from .conftest import LiveServer

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        raise RuntimeError("database unreachable")
        yield

    mw = GatewayMiddleware(Starlette(routes=[Route("/me", me)], lifespan=lifespan),
                           config=config_path)
    srv = LiveServer(mw)
    with pytest.raises(RuntimeError, match="exited during start-up"):
        srv.start()
    srv.thread.join(10)
    assert not srv.thread.is_alive() and srv.exit_code == 3
    assert not mw.engine.started
