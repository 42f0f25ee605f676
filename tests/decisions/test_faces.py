"""The decision app's faces in-process (real engine, real JWKS server): each proxy's protocol."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from e2e.conftest import CLIENT, ISSUER, base_config
from e2e.servers import cognito_claims
from gateway.config import parse_config
from gateway.decisions.app import DecisionApp
from gateway.engine import Engine


def _config(jwks_url: str, **over):
    raw = base_config(jwks_url, "http://127.0.0.1:9", **over)
    raw["routes"].insert(0, {"id": "admin", "match": {"path": "/admin/**"}, "upstream": "app",
                             "auth": "policy"})
    raw["routes"][-1]["match"]["path"] = "/api/**"
    raw["roles"]["member"]["statements"][0]["resource"] = ["app:/api/**"]
    raw["decisions"] = {"listen": {"port": 0}, "trusted_proxies": ["127.0.0.1/32"]}
    return parse_config(raw)


@pytest.fixture
async def client(jwks):
    _, srv = jwks
    engine = Engine(_config(srv.url))
    await engine.start()
    deadline = time.monotonic() + 10
    while not engine.jwks.ready():
        assert time.monotonic() < deadline, "JWKS not loaded"
        await asyncio.sleep(0.02)
    app = DecisionApp(lambda: engine)

    def make(peer: str = "127.0.0.1") -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 5555)),
                                 base_url="http://decisions")
    try:
        yield make
    finally:
        await engine.aclose()


def _token(signer, **over) -> str:
    return signer.token(cognito_claims(ISSUER, CLIENT, **over))


def _nginx(method: str, uri: str, **headers: str) -> dict[str, str]:
    return {"X-Original-Method": method, "X-Original-URI": uri, "Host": "site.example",
            **headers}


async def test_untrusted_peer_gets_403_and_nothing_is_decided(client, signer):
    async with client("10.1.2.3") as c:
        r = await c.get("/auth/nginx", headers=_nginx("GET", "/api/x", Authorization="Bearer "
                                                      + _token(signer)))
    assert r.status_code == 403
    assert r.json()["reason"] == "untrusted_peer"
    assert "x-gateway-credential" not in r.headers and "x-auth-sub" not in r.headers


async def test_nginx_allow_carries_identity_and_credential(client, signer):
    async with client() as c:
        r = await c.get("/auth/nginx", headers=_nginx("GET", "/api/orders?x=1",
                        Authorization="Bearer " + _token(signer, sub="alice-sub")))
    assert r.status_code == 200, r.text
    assert r.headers["x-auth-sub"] == "alice-sub" and r.headers["x-auth-role"] == "member"
    assert r.headers["x-gateway-credential"].count(".") == 2
    assert r.headers["x-request-id"]


@pytest.mark.parametrize("uri, status, real, reason", [
    ("/api/x", 401, "401", "missing_token"),
    ("/nowhere", 403, "404", "no_route"),              # nginx only understands 401/403
    ("/api/%2e%2e/%2fadmin", 403, "400", "bad_path"),
    ("http://other.example/api/x", 403, "400", "bad_host"),   # authority differs from Host
])
async def test_nginx_refusals(client, uri, status, real, reason):
    async with client() as c:
        r = await c.get("/auth/nginx", headers=_nginx("GET", uri))
    assert r.status_code == status
    assert r.headers["x-poolgate-status"] == real
    assert r.json()["reason"] == reason and r.json()["request_id"] == r.headers["x-request-id"]
    if status == 401:
        assert r.headers["www-authenticate"] == 'Bearer realm="poolgate"'


async def test_nginx_needs_the_original_request(client):
    async with client() as c:
        r = await c.get("/auth/nginx", headers={"X-Original-Method": "GET"})
    assert r.status_code == 400 and r.json()["reason"] == "bad_subrequest"


async def test_policy_403_has_insufficient_scope_challenge(client, signer):
    async with client() as c:
        r = await c.get("/auth/traefik", headers={
            "X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/admin/users",
            "X-Forwarded-Host": "site.example", "X-Forwarded-Proto": "https",
            "Authorization": "Bearer " + _token(signer)})
    assert r.status_code == 403
    assert r.headers["www-authenticate"].startswith('Bearer realm="poolgate", error="insufficient_scope"')
    assert r.json()["error"] == "insufficient_scope"


async def test_traefik_refusal_is_the_proxy_modes_and_bad_host_is_refused(client, signer):
    async with client() as c:
        r = await c.get("/auth/traefik", headers={
            "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/x",
            "X-Forwarded-Host": "site.example",
            "Authorization": "Bearer " + _token(signer, exp=int(time.time()) - 600)})
        assert r.status_code == 401 and r.json()["reason"] == "token_expired"
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        assert "x-poolgate-status" not in r.headers
        r = await c.get("/auth/traefik", headers={
            "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/public/x",
            "X-Forwarded-Host": "user@evil.example"})
        assert r.status_code == 400 and r.json()["reason"] == "bad_host"
        r = await c.get("/auth/traefik", headers={
            "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/public/x?access_token=abc",
            "X-Forwarded-Host": "site.example"})
        assert r.status_code == 200          # public: a token, even in the query, is ignored


async def test_envoy_takes_method_and_path_from_the_check_request(client, signer):
    async with client() as c:
        r = await c.post("/auth/envoy/api/orders?q=1",
                         headers={"Authorization": "Bearer " + _token(signer, sub="s1")})
        assert r.status_code == 200 and r.headers["x-auth-sub"] == "s1"
        assert "x-envoy-auth-headers-to-remove" not in r.headers
        r = await c.get("/auth/envoy/public/page")
        assert r.status_code == 200
        # nothing set on a public route: Envoy is told to drop the client's copies
        removed = set(r.headers["x-envoy-auth-headers-to-remove"].split(","))
        assert removed == {"x-auth-sub", "x-auth-role", "x-gateway-credential"}
        r = await c.get("/auth/envoy/api/orders")
        assert r.status_code == 401


async def test_jwks_outage_is_503_so_the_proxy_fails_closed(jwks, signer):
    control, srv = jwks
    control.keys = []                           # the IdP publishes nothing usable
    engine = Engine(_config(srv.url))
    await engine.start()
    try:
        app = DecisionApp(lambda: engine)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://d") as c:
            for path in ("/auth/nginx", "/auth/traefik"):
                r = await c.get(path, headers={**_nginx("GET", "/api/x"),
                                               "X-Forwarded-Method": "GET",
                                               "X-Forwarded-Uri": "/api/x",
                                               "Authorization": "Bearer " + _token(signer)})
                assert r.status_code == 503, (path, r.text)
                assert r.headers["retry-after"] and json.loads(r.text)["error"] == "unavailable"
    finally:
        await engine.aclose()


async def test_trusted_peers_follow_a_reload(jwks):
    _, srv = jwks
    first = Engine(_config(srv.url))
    raw = _config(srv.url)
    second = Engine(parse_config({**_raw_with_peers(srv.url, ["10.0.0.0/8"])}))
    current = [first]
    app = DecisionApp(lambda: current[0])
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://d") as c:
            r = await c.get("/auth/nginx", headers=_nginx("GET", "/public/x"))
            assert r.status_code == 200 and raw.decisions is not None
            current[0] = second                  # what a SIGHUP swap does to proxy_app.engine
            r = await c.get("/auth/nginx", headers=_nginx("GET", "/public/x"))
            assert r.status_code == 403 and r.json()["reason"] == "untrusted_peer"
    finally:
        await first.aclose()
        await second.aclose()


def _raw_with_peers(jwks_url: str, peers: list[str]) -> dict:
    raw = base_config(jwks_url, "http://127.0.0.1:9")
    raw["decisions"] = {"trusted_proxies": peers}
    return raw


async def test_unknown_endpoint_is_404(client):
    async with client() as c:
        r = await c.get("/auth/other", headers=_nginx("GET", "/public/x"))
    assert r.status_code == 404 and r.json()["reason"] == "no_endpoint"


async def test_each_decision_is_counted_with_the_proxy_modes_reason(client, signer):
    async with client() as c:
        r = await c.get("/auth/nginx", headers=_nginx("GET", "/api/x",
                        Authorization="Bearer " + _token(signer)))
        assert r.status_code == 200
        r = await c.get("/auth/nginx", headers=_nginx("GET", "/api/x"))
        assert r.status_code == 401
    from prometheus_client import generate_latest
    text = generate_latest(c._transport.app.engine().metrics.registry).decode()
    assert 'poolgate_decisions_total{code="authenticated",decision="allow"} 1.0' in text
    assert 'poolgate_decisions_total{code="missing_token",decision="deny"} 1.0' in text
