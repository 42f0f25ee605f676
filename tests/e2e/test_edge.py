"""The stateless edge end to end: real uvicorn, real upstream, a JWKS server we control."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time

import httpx
import pytest

from .conftest import CLIENT, ISSUER, base_config
from .servers import Signer, cognito_claims, free_port, raw_request

pytestmark = pytest.mark.e2e


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def gw(jwks, upstream, gateway_factory):
    control, jsrv = jwks
    app, usrv = upstream
    return gateway_factory(base_config(jsrv.url + "/jwks.json", usrv.url))


def test_valid_token_is_forwarded_with_identity_and_credential(gw, signer, upstream):
    app, _ = upstream
    claims = cognito_claims(ISSUER, CLIENT)
    r = httpx.get(gw.proxy + "/orders/1?x=1&y=%41", headers={**_auth(signer.token(claims)),
                                                             "X-Request-Id": "client-id"})
    assert r.status_code == 200, r.text
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert len(r.headers.get_list("date")) == 1            # the upstream's, not a second one
    seen = app.seen[-1]
    assert seen.path == "/orders/1" and seen.query == b"x=1&y=%41"
    assert seen.header("x-auth-sub") == [claims["sub"]]
    assert seen.header("x-auth-role") == ["member"]
    assert len(seen.header("x-gateway-credential")) == 1
    assert seen.header("authorization") == []            # the user's token stays at the edge
    assert seen.header("x-forwarded-for") == ["127.0.0.1"]
    assert seen.header("x-forwarded-proto") == ["http"]
    rid = seen.header("x-request-id")
    assert len(rid) == 1 and rid[0] != "client-id"       # not a trusted proxy: generated
    assert r.headers["x-request-id"] == rid[0]
    host = seen.header("host")
    assert host == [f"127.0.0.1:{upstream[1].port}"]


@pytest.mark.parametrize("headers,status,reason,challenge", [
    ({}, 401, "missing_token", 'Bearer realm="poolgate"'),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "missing_token", 'Bearer realm="poolgate"'),
    ({"Authorization": "Bearer"}, 400, "empty_bearer", 'error="invalid_request"'),
    ({"Authorization": "Bearer a.b.c d.e.f"}, 400, "multiple_credentials", 'error="invalid_request"'),
    ({"Authorization": "Bearer a$b.c"}, 400, "bad_token_chars", 'error="invalid_request"'),
    ({"Authorization": "Bearer not-a-jwt"}, 401, None, 'error="invalid_token"'),
])
def test_bad_requests_get_rfc6750_answers(gw, upstream, headers, status, reason, challenge):
    app, _ = upstream
    r = httpx.get(gw.proxy + "/orders/1", headers=headers)
    assert r.status_code == status
    assert challenge in r.headers["www-authenticate"]
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    assert len(r.headers.get_list("date")) == 1
    if reason:
        assert body["reason"] == reason
    assert app.seen == []                                   # never reaches the upstream


def test_two_authorization_headers_and_query_token_are_400(gw, signer, upstream):
    tok = signer.token(cognito_claims(ISSUER, CLIENT))
    r = httpx.get(gw.proxy + "/x", headers=[("Authorization", f"Bearer {tok}"),
                                            ("Authorization", f"Bearer {tok}")])
    assert r.status_code == 400 and r.json()["reason"] == "multiple_authorization"
    r = httpx.get(gw.proxy + "/x?access_token=" + tok)
    assert r.status_code == 400 and r.json()["reason"] == "token_in_query"
    assert upstream[0].seen == []


@pytest.mark.parametrize("over,reason", [
    ({"exp": int(time.time()) - 3600}, "token_expired"),
    ({"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"}, "bad_issuer"),
    ({"client_id": "someone-else"}, "bad_client_id"),
    ({"token_use": "id"}, "bad_token_use"),
    ({"exp": True}, "bad_claim_type"),
])
def test_invalid_tokens_are_401_with_stable_reason(gw, signer, upstream, over, reason):
    tok = signer.token(cognito_claims(ISSUER, CLIENT, **over))
    r = httpx.get(gw.proxy + "/x", headers=_auth(tok))
    assert r.status_code == 401, r.text
    assert r.json()["reason"] == reason
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert upstream[0].seen == []


def test_issuer_cognito_idp_form_is_accepted(gw, signer):
    iss = ISSUER.replace("https://cognito-idp.", "https://issuer-cognito-idp.")
    r = httpx.get(gw.proxy + "/x", headers=_auth(signer.token(cognito_claims(iss, CLIENT))))
    assert r.status_code == 200


def test_spoofed_gateway_headers_never_reach_the_upstream(gw, signer, upstream):
    app, _ = upstream
    spoof = [("X-Auth-Sub", "admin"), ("X_Auth_Sub", "admin"), ("X.Auth.Role", "admin"),
             ("X-Gateway-Credential", "forged"), ("X-HTTP-Method-Override", "DELETE"),
             ("Connection", "X-Keep-Me"), ("X-Keep-Me", "1")]
    r = httpx.get(gw.proxy + "/public/a", headers=spoof)             # public route
    assert r.status_code == 200
    tok = signer.token(cognito_claims(ISSUER, CLIENT, sub="real-user"))
    r = httpx.get(gw.proxy + "/b", headers=[*spoof, ("Authorization", f"Bearer {tok}")])
    assert r.status_code == 200
    for seen in app.seen:
        names = {k.lower().replace(b"_", b"-").replace(b".", b"-") for k, _ in seen.headers}
        assert b"x-http-method-override" not in names and b"x-keep-me" not in names
        assert "admin" not in seen.header("x-auth-sub") + seen.header("x-auth-role")
        assert "forged" not in seen.header("x-gateway-credential")
        assert not any(k in (b"X_Auth_Sub", b"X.Auth.Role") for k, _ in seen.headers)
    assert app.seen[1].header("x-auth-sub") == ["real-user"]


def test_public_route_ignores_and_strips_a_token(gw, upstream):
    r = httpx.get(gw.proxy + "/public/x", headers={"Authorization": "Bearer garbage"})
    assert r.status_code == 200
    assert upstream[0].seen[-1].header("authorization") == []


@pytest.mark.parametrize("raw,status,forwarded", [
    ("/public/a/./b/../c", 200, "/public/a/c"),
    ("/public//a", 200, "/public/a"),
    ("/public/%7Euser", 200, "/public/~user"),
    ("/public/a%2Fb", 400, None),
    ("/public/a%5cb", 400, None),
    ("/public/a;b", 400, None),
    ("/public/../../etc/passwd", 400, None),
    ("/public/%2e%2e/%2e%2e/etc/passwd", 400, None),
    ("/x/../public/y", 200, "/public/y"),
])
def test_path_is_normalised_once_and_forwarded_as_matched(gw, upstream, raw, status, forwarded):
    code, body = raw_request(gw.proxy, b"GET " + raw.encode() + b" HTTP/1.1\r\nHost: gw\r\n"
                                       b"Connection: close\r\n\r\n")
    assert code == status, body
    if forwarded:
        assert upstream[0].seen[-1].raw_path == forwarded.encode()
    else:
        assert json.loads(body)["reason"] == "bad_path"
        assert upstream[0].seen == []


def test_content_length_with_transfer_encoding_is_rejected(gw, upstream):
    import socket
    host, port = gw.proxy.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 400")
    assert upstream[0].seen == []


def test_upstream_refused_is_502_and_slow_is_504(jwks, upstream, gateway_factory, signer):
    app, usrv = upstream
    app.delay = 5
    cfg = base_config(jwks[1].url + "/jwks.json", usrv.url)
    cfg["upstreams"] = {"app": {"url": usrv.url, "timeout_seconds": 0.5},
                        "dead": {"url": f"http://127.0.0.1:{free_port()}"}}
    cfg["routes"] = [{"id": "dead", "match": {"path": "/dead/**"}, "upstream": "dead",
                      "auth": "public"},
                     {"id": "slow", "match": {"path": "/**"}, "upstream": "app", "auth": "public"}]
    gw = gateway_factory(cfg)
    r = httpx.get(gw.proxy + "/dead/x", timeout=10)
    assert r.status_code == 502 and r.json()["error"] == "bad_gateway"
    t0 = time.monotonic()
    r = httpx.get(gw.proxy + "/slow", timeout=10)
    assert r.status_code == 504 and r.json()["error"] == "gateway_timeout"
    assert time.monotonic() - t0 < 1.5


def test_key_rotation_is_accepted_after_one_refetch(gw, jwks, signer):
    control, _ = jwks
    time.sleep(1.1)            # past the unknown-kid cooldown (1 s here) since start-up's fetch
    before = control.fetches
    new = Signer()
    control.keys = [signer.public_jwk(), new.public_jwk()]
    r = httpx.get(gw.proxy + "/x", headers=_auth(new.token(cognito_claims(ISSUER, CLIENT))))
    assert r.status_code == 200
    assert control.fetches == before + 1


def test_unknown_kid_flood_causes_at_most_two_fetches(gw, jwks):
    control, _ = jwks
    before = control.fetches
    stranger = Signer()
    tok = stranger.token(cognito_claims(ISSUER, CLIENT))

    async def flood() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as c:
            rs = await asyncio.gather(*[c.get(gw.proxy + "/x", headers=_auth(tok))
                                        for _ in range(50)])
        return [r.status_code for r in rs]

    codes = asyncio.run(flood())
    assert set(codes) == {401}
    assert control.fetches - before <= 2


@pytest.mark.parametrize("mode", ["status", "hang", "garbage"])
def test_jwks_outage_at_start_is_503_then_recovers(jwks, upstream, gateway_factory, signer, mode):
    control, jsrv = jwks
    control.mode = mode
    t0 = time.monotonic()
    gw = gateway_factory(base_config(jsrv.url + "/jwks.json", upstream[1].url), ready=False)
    assert time.monotonic() - t0 < 10                      # listeners up at once
    assert httpx.get(gw.admin + "/healthz").status_code == 200
    assert httpx.get(gw.admin + "/readyz").status_code == 503
    r = httpx.get(gw.proxy + "/x", headers=_auth(signer.token(cognito_claims(ISSUER, CLIENT))),
                  timeout=10)
    assert r.status_code == 503 and "retry-after" in r.headers
    assert r.json()["reason"] == "jwks_unavailable"
    assert gw.wait_log(lambda line: "pool" in line and jsrv.url in line), gw.lines
    control.mode = "ok"
    gw.wait_ready(timeout=30)
    r = httpx.get(gw.proxy + "/x", headers=_auth(signer.token(cognito_claims(ISSUER, CLIENT))))
    assert r.status_code == 200


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_20_mib_streams_both_ways_with_bounded_memory(gw, signer, upstream):
    app, _ = upstream
    tok = signer.token(cognito_claims(ISSUER, CLIENT))
    size = 20 * 1024 * 1024
    pid = gw.proc.pid
    httpx.get(gw.proxy + "/warm", headers=_auth(tok))
    base = _rss_kb(pid)
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb(pid))
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    try:
        def body():
            chunk = b"y" * 65536
            for _ in range(size // len(chunk)):
                yield chunk
        r = httpx.post(gw.proxy + "/upload", headers=_auth(tok), content=body(), timeout=60)
        assert r.status_code == 200 and r.json()["received_bytes"] == size
        app.response_bytes = size
        n = 0
        with httpx.stream("GET", gw.proxy + "/download", headers=_auth(tok), timeout=60) as resp:
            for chunk in resp.iter_raw():
                n += len(chunk)
        assert n == size
    finally:
        done.set()
        t.join()
    assert (peak[0] - base) < 12 * 1024, f"RSS grew by {(peak[0] - base) / 1024:.1f} MiB"


def test_access_log_is_json_and_never_contains_the_token(gw, signer):
    tok = signer.token(cognito_claims(ISSUER, CLIENT))
    httpx.get(gw.proxy + "/logged", headers=_auth(tok))
    httpx.get(gw.proxy + "/logged", headers=_auth(tok + "x"))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sum('"request"' in x for x in gw.lines) < 2:
        time.sleep(0.05)
    access = [json.loads(x) for x in gw.lines if '"poolgate.access"' in x]
    assert len(access) >= 2
    for rec in access:
        assert {"request_id", "route", "method", "status", "decision", "code", "role",
                "latency_ms"} <= rec.keys()
    assert not any(tok[:40] in x for x in gw.lines)
    assert {a["status"] for a in access} >= {200, 401}


def test_sigterm_lets_in_flight_requests_finish(gw, signer, upstream):
    app, _ = upstream
    app.delay = 1.0
    tok = signer.token(cognito_claims(ISSUER, CLIENT))
    result: dict[str, int] = {}

    def call() -> None:
        result["status"] = httpx.get(gw.proxy + "/slow", headers=_auth(tok), timeout=10).status_code

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.3)
    gw.signal(signal.SIGTERM)
    t.join(10)
    assert result.get("status") == 200
    assert gw.proc.wait(10) == 0


def test_admin_endpoints(gw, signer):
    assert httpx.get(gw.admin + "/healthz").status_code == 200
    assert httpx.get(gw.admin + "/readyz").status_code == 200
    httpx.get(gw.proxy + "/x", headers=_auth(signer.token(cognito_claims(ISSUER, CLIENT))))
    text = httpx.get(gw.admin + "/metrics").text
    assert "poolgate_decisions_total" in text and "poolgate_jwks_fetches_total" in text
    keys = httpx.get(gw.admin + "/.well-known/jwks.json").json()["keys"]
    assert keys and all("d" not in k for k in keys)
    assert httpx.get(gw.proxy + "/healthz").status_code == 401        # not on the proxy listener
