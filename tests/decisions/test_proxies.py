"""nginx, Traefik, Caddy and Envoy in front of ``poolgate serve``'s decision service, for real.

One gateway (proxy mode and decisions listener), one recording upstream; each proxy runs from
its shipped config in deploy/forward-auth/. Per proxy: allowed (identity headers and a
credential that verifies against the admin JWKS), 401 and 403 as the client sees them, spoofed
identity headers never reaching the upstream, an unreachable decision service failing closed,
and a table of 20 requests answering the same statuses as the proxy mode.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from e2e.conftest import CLIENT, ISSUER, base_config
from e2e.servers import (Gateway, JwksControl, Signer, ThreadServer, Upstream, cognito_claims,
                         free_port)
from e2e.verifying_upstream import VerifyingUpstream

from .proxies import PROXIES, Proxy, binary

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SPOOF = {"X-Auth-Sub": "evil", "X-Auth-Role": "admin", "X-Gateway-Credential": "a.b.c"}


def _config(jwks_url: str, upstream_url: str) -> dict[str, Any]:
    cfg = base_config(jwks_url, upstream_url)
    cfg["routes"] = [
        {"id": "public", "match": {"path": "/public/**"}, "upstream": "app", "auth": "public"},
        {"id": "admin", "match": {"path": "/admin/**"}, "upstream": "app", "auth": "policy"},
        {"id": "api", "match": {"path": "/api/**"}, "upstream": "app", "auth": "policy"},
        {"id": "tenant", "match": {"path": "/tenants/{tenant}/**", "methods": ["GET"]},
         "upstream": "app", "auth": "policy"},
    ]
    cfg["roles"] = {"member": {"statements": [
        {"sid": "Api", "effect": "allow", "action": ["http:GET", "http:POST"],
         "resource": ["app:/api/**"]},
        {"sid": "OwnTenant", "effect": "allow", "action": ["http:GET"],
         "resource": ["app:/tenants/${jwt:custom:tenant}/**"]}]}}
    cfg["decisions"] = {"listen": {"host": "127.0.0.1", "port": 0},
                        "trusted_proxies": ["127.0.0.1/32"],
                        "grpc": {"enabled": True, "port": 0}}
    return cfg


class Stack:
    def __init__(self, signer: Signer, upstream: Upstream, gateway: Gateway,
                 upstream_srv: ThreadServer) -> None:
        self.signer, self.upstream, self.gateway = signer, upstream, gateway
        self.decisions = gateway.listening["decisions"]
        self.decisions_grpc = gateway.listening["decisions_grpc"]
        self.upstream_addr = f"127.0.0.1:{upstream_srv.port}"
        self.verifier = VerifyingUpstream("app", "poolgate", 300,
                                          jwks_url=gateway.admin + "/.well-known/jwks.json")

    def token(self, **over: Any) -> str:
        return self.signer.token(cognito_claims(ISSUER, CLIENT, **over))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    signer = Signer()
    control = JwksControl()
    control.keys = [signer.public_jwk()]
    jwks = ThreadServer(control).start()
    upstream = Upstream()
    up = ThreadServer(upstream).start()
    gw = Gateway(_config(jwks.url + "/jwks", up.url), tmp_path_factory.mktemp("gw"))
    try:
        gw.start()
        gw.wait_ready()
        yield Stack(signer, upstream, gw, up)
    finally:
        gw.stop()
        up.stop()
        jwks.stop()


@pytest.fixture(scope="module", params=PROXIES)
def proxy(request: pytest.FixtureRequest, stack: Stack,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    if binary(request.param.split("-")[0]) is None:
        pytest.skip(f"{request.param} is not installed (see .ci/run and the test extra)")
    decisions = stack.decisions_grpc if request.param == "envoy-grpc" else stack.decisions
    p = Proxy(request.param, tmp_path_factory.mktemp(request.param), decisions,
              stack.upstream_addr).start()
    try:
        yield p
    finally:
        p.stop()


def _last(stack: Stack, marker: str) -> Any:
    found = [s for s in stack.upstream.seen if s.query == f"m={marker}".encode()]
    assert len(found) == 1, f"upstream saw {len(found)} requests marked {marker}"
    return found[0]


def _get(url: str, **kw: Any) -> httpx.Response:
    return httpx.request(kw.pop("method", "GET"), url, timeout=10, trust_env=False, **kw)


def test_allowed_carries_identity_and_a_credential_that_verifies(stack, proxy):
    m = uuid.uuid4().hex
    sub = str(uuid.uuid4())
    r = _get(f"{proxy.url}/api/orders?m={m}",
             headers={"Authorization": "Bearer " + stack.token(sub=sub)})
    assert r.status_code == 200, (proxy.kind, r.status_code, r.text)
    seen = _last(stack, m)
    assert seen.header("x-auth-sub") == [sub] and seen.header("x-auth-role") == ["member"]
    assert seen.header("authorization") == []            # the token stays at the edge
    raw, _, claims = stack.verifier.verify(seen.headers)  # signature against the admin JWKS
    assert claims["sub"] == sub and claims["role"] == "member" and claims["aud"] == "app"


def test_401_and_403_reach_the_client_with_the_challenge(stack, proxy):
    before = len(stack.upstream.seen)
    r = _get(f"{proxy.url}/api/orders")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="poolgate"'
    r = _get(f"{proxy.url}/api/orders",
             headers={"Authorization": "Bearer " + stack.token(exp=int(time.time()) - 600)})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    r = _get(f"{proxy.url}/admin/users", headers={"Authorization": "Bearer " + stack.token()})
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert len(stack.upstream.seen) == before            # nothing denied was forwarded


def test_other_spellings_of_gateway_headers_never_reach_envoys_upstream(stack, proxy):
    """The proxy mode strips ``X_Auth_Sub`` / ``x.auth.role``; Envoy is told to remove them
    (nginx, Traefik and Caddy only overwrite the exact names: README "Decision service")."""
    if not proxy.kind.startswith("envoy"):
        pytest.skip("only Envoy can be told to remove arbitrary request headers")
    m = uuid.uuid4().hex
    r = _get(f"{proxy.url}/api/x?m={m}", headers={
        "X_Auth_Sub": "evil", "x.auth.role": "admin", "X_Gateway_Credential": "a.b.c",
        "Authorization": "Bearer " + stack.token()})
    assert r.status_code == 200
    seen = _last(stack, m)
    names = {k.lower() for k, _ in seen.headers}
    assert not names & {b"x_auth_sub", b"x.auth.role", b"x_gateway_credential"}, names


def test_spoofed_identity_headers_never_reach_the_upstream(stack, proxy):
    m1, m2 = uuid.uuid4().hex, uuid.uuid4().hex
    r = _get(f"{proxy.url}/public/page?m={m1}", headers=SPOOF)
    assert r.status_code == 200
    seen = _last(stack, m1)
    for name in SPOOF:
        assert seen.header(name) == [], (proxy.kind, name, seen.header(name))
    sub = str(uuid.uuid4())
    r = _get(f"{proxy.url}/api/x?m={m2}",
             headers={**SPOOF, "Authorization": "Bearer " + stack.token(sub=sub)})
    assert r.status_code == 200
    seen = _last(stack, m2)
    assert seen.header("x-auth-sub") == [sub] and seen.header("x-auth-role") == ["member"]
    assert seen.header("x-gateway-credential") != ["a.b.c"]
    stack.verifier.verify(seen.headers)


# what the client gets (README "Fail closed"): decision service unreachable / answering 503
UNREACHABLE = {"nginx": 500, "traefik": 500, "caddy": 502, "envoy": 503, "envoy-grpc": 503}
OUTAGE = {"nginx": 500, "traefik": 503, "caddy": 503, "envoy": 503, "envoy-grpc": 503}


def _decisions_addr(gw: Gateway, kind: str) -> str:
    return gw.listening["decisions_grpc" if kind == "envoy-grpc" else "decisions"]


def test_decision_service_down_fails_closed(stack, proxy, tmp_path):
    dead = f"127.0.0.1:{free_port()}"                      # nothing listens there
    p = Proxy(proxy.kind, tmp_path / "dead", dead, stack.upstream_addr)
    p.start(ready_path="/api/ready")
    try:
        before = len(stack.upstream.seen)
        for path in ("/api/orders", "/public/page"):
            r = _get(p.url + path, headers={"Authorization": "Bearer " + stack.token()})
            assert r.status_code == UNREACHABLE[p.kind], (p.kind, path, r.status_code)
        assert len(stack.upstream.seen) == before
    finally:
        p.stop()


def test_decision_service_outage_503_fails_closed(stack, proxy, tmp_path):
    control = JwksControl()
    control.mode, control.status = "status", 500           # the IdP is down from the start
    jwks = ThreadServer(control).start()
    gw = Gateway(_config(jwks.url + "/jwks", "http://" + stack.upstream_addr), tmp_path)
    p = None
    try:
        gw.start()
        p = Proxy(proxy.kind, tmp_path / "outage", _decisions_addr(gw, proxy.kind),
                  stack.upstream_addr).start(ready_path="/public/ready")
        before = len(stack.upstream.seen)
        r = _get(p.url + "/api/orders", headers={"Authorization": "Bearer " + stack.token()})
        assert r.status_code == OUTAGE[p.kind], (p.kind, r.status_code, r.text)
        assert len(stack.upstream.seen) == before
    finally:
        if p is not None:
            p.stop()
        gw.stop()
        jwks.stop()


def _table(stack: Stack) -> list[tuple[str, str, dict[str, str], int]]:
    ok = "Bearer " + stack.token(**{"custom:tenant": "acme"})
    return [
        ("GET", "/public/x", {}, 200),
        ("GET", "/public/x", {"Authorization": "Bearer not.a.token"}, 200),
        ("GET", "/api/orders", {"Authorization": ok}, 200),
        ("POST", "/api/orders", {"Authorization": ok}, 200),
        ("DELETE", "/api/orders", {"Authorization": ok}, 403),
        ("GET", "/api/orders", {}, 401),
        ("GET", "/api/orders", {"Authorization": "Bearer " + stack.token(
            exp=int(time.time()) - 600)}, 401),
        ("GET", "/api/orders", {"Authorization": "Bearer " + stack.signer.token(
            cognito_claims(ISSUER + "x", CLIENT))}, 401),
        ("GET", "/api/orders", {"Authorization": "Bearer abc"}, 401),
        ("GET", "/api/orders", {"Authorization": "Basic YTpi"}, 401),
        ("GET", "/admin/users", {"Authorization": ok}, 403),
        ("GET", "/tenants/acme/orders", {"Authorization": ok}, 200),
        ("GET", "/tenants/globex/orders", {"Authorization": ok}, 403),
        ("GET", "/nowhere", {"Authorization": ok}, 404),
        ("GET", "/nowhere", {}, 404),
        ("GET", "/api/orders?access_token=abc", {}, 400),
        ("GET", "/api/%2e%2e/admin/users", {"Authorization": ok}, 403),
        ("GET", "/api/orders", {"Authorization": ok, "X-Gateway-Role": "admin"}, 403),
        ("HEAD", "/api/orders", {"Authorization": ok}, 403),
        ("GET", "/api/a%2Fb", {"Authorization": ok}, 400),
    ]


def _statuses(base: str, table: list[tuple[str, str, dict[str, str], int]]) -> list[int]:
    out = []
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as c:
        for method, path, headers, _ in table:
            out.append(c.request(method, httpx.URL(path), headers=headers).status_code)
    return out


def test_table_of_20_requests_same_statuses_as_the_proxy_mode(stack, proxy):
    table = _table(stack)
    assert len(table) == 20
    expected = [row[3] for row in table]
    assert _statuses(stack.gateway.proxy, table) == expected       # proxy mode
    got = _statuses(proxy.url, table)
    diff = [(t[0], t[1], e, g) for t, e, g in zip(table, expected, got) if e != g]
    assert not diff, f"{proxy.kind}: {diff}"
