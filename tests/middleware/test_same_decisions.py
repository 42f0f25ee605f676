"""One config file, two deployments: `poolgate serve` (proxy) and GatewayMiddleware (in-app)
reach the same decisions: same status, reason code, WWW-Authenticate challenge and mapped role,
request by request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e.servers import Gateway, JwksControl, Signer, ThreadServer, Upstream, cognito_claims

from gateway import GatewayMiddleware

from .conftest import CLIENT, ISSUER, LiveServer, middleware_config, wait_until


async def role_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The in-app endpoint: answers with the role the middleware published."""
    if scope["type"] != "http":
        return
    body = json.dumps({"role": scope["user"].role}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    signer = Signer()
    control = JwksControl()
    control.keys = [signer.public_jwk()]
    upstream = Upstream()
    servers = [ThreadServer(control).start(), ThreadServer(upstream).start()]
    cfg = middleware_config(servers[0].url + "/jwks.json",
                            upstreams={"app": {"url": servers[1].url, "timeout_seconds": 2}})
    cfg["routes"].append({"id": "rest", "match": {"path": "/**"}, "upstream": "app",
                          "auth": "authenticated"})
    cfg["mappings"]["pool"]["role_request"] = {"header": "X-Gateway-Role"}
    gw = Gateway(cfg, tmp_path_factory.mktemp("same"))
    mw_srv: LiveServer | None = None
    try:
        gw.start()
        gw.wait_ready()
        mw = GatewayMiddleware(role_app, config=gw.path)     # the very file the proxy runs
        mw_srv = LiveServer(mw).start()
        assert wait_until(mw.engine.jwks.ready)
        yield {"proxy": gw.proxy, "middleware": mw_srv.url, "upstream": upstream,
               "signer": signer, "path": gw.path}
    finally:
        if mw_srv is not None:
            mw_srv.stop()
        gw.stop()
        for s in servers:
            s.stop()


def _token(signer: Signer, who: str) -> str | None:
    if who == "anonymous":
        return None
    if who == "garbage":
        return "not-a-jwt"
    over: dict[str, Any] = {
        "member": {}, "admin": {"cognito:groups": ["admins"]},
        "expired": {"exp": int(time.time()) - 300},
        "other-client": {"client_id": "someoneelse0000000000000000"},
        "id-token": {"token_use": "id", "aud": CLIENT, "client_id": None},
    }[who]
    return signer.token(cognito_claims(ISSUER, CLIENT, **over))


TABLE = [
    ("GET", "/public/info", "anonymous", {}),
    ("GET", "/public/info", "garbage", {}),
    ("GET", "/orders/1", "anonymous", {}),
    ("GET", "/orders/1", "garbage", {}),
    ("GET", "/orders/1", "member", {}),
    ("GET", "/orders/1", "admin", {}),
    ("GET", "/orders/1", "expired", {}),
    ("GET", "/orders/1", "other-client", {}),
    ("GET", "/orders/1", "id-token", {}),
    ("GET", "/items/7", "member", {}),
    ("DELETE", "/items/7", "member", {}),
    ("DELETE", "/items/7", "admin", {}),
    ("POST", "/items/7", "admin", {}),                 # the route allows GET, DELETE only
    ("GET", "/admin/stats", "member", {}),
    ("GET", "/admin/stats", "admin", {}),
    ("GET", "/admin/stats", "member", {"X-Gateway-Role": "admin"}),   # not eligible
    ("GET", "/items/7", "admin", {"X-Gateway-Role": "member"}),       # not eligible either
    ("GET", "/orders/a%2Fb", "member", {}),
    ("GET", "/orders/../admin/stats", "member", {}),
    ("GET", "/orders/1?access_token=x", "member", {}),
]


def _answer(base: str, method: str, path: str, token: str | None,
            extra: dict[str, str]) -> tuple[int, str | None, str | None, dict[str, Any] | None]:
    headers = dict(extra)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(timeout=5) as c:
        # httpx.URL keeps the path as written (no client-side dot-segment removal)
        r = c.send(c.build_request(method, httpx.URL(base + path), headers=headers))
    body = r.json() if r.headers.get("content-type") == "application/json" else None
    reason = body.get("reason") if body is not None and r.status_code >= 400 else None
    return r.status_code, reason, r.headers.get("www-authenticate"), body


def test_the_same_config_file_gives_the_same_decisions(both):
    rows = []
    for method, path, who, extra in TABLE:
        token = _token(both["signer"], who)
        before = len(both["upstream"].seen)
        p_status, p_reason, p_challenge, _ = _answer(both["proxy"], method, path, token, extra)
        p_role = None
        if p_status == 200:
            seen = both["upstream"].seen[before:]
            assert len(seen) == 1
            roles = seen[0].header("x-auth-role")
            p_role = roles[0] if roles else None
        m_status, m_reason, m_challenge, m_body = _answer(both["middleware"], method, path,
                                                          token, extra)
        m_role = m_body["role"] if m_status == 200 and m_body is not None else None
        rows.append(((method, path, who, extra), (p_status, p_reason, p_challenge, p_role),
                     (m_status, m_reason, m_challenge, m_role)))
    print("\n".join(f"{req} -> {p}" for req, p, _ in rows))
    diff = [r for r in rows if r[1] != r[2]]
    assert not diff, "\n".join(f"{req}: proxy={p} middleware={m}" for req, p, m in diff)
    # and the table means something: every kind of answer is in it
    statuses = {p[0] for _, p, _ in rows}
    assert {200, 400, 401, 403} <= statuses
    assert {p[3] for _, p, _ in rows if p[0] == 200} == {None, "member", "admin"}
