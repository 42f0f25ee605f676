"""Browser sessions end to end (protocol level): a real `poolgate serve`, the local
authorization server and a recording upstream; an httpx cookie jar plays the browser."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx

from e2e.servers import free_port

from .conftest import ADMIN, browser, session_config, sign_in


def _gw(start_gateway, idp, upstream, **sessions):
    ctl, isrv = idp
    app, usrv = upstream
    port = free_port()
    cfg = session_config(isrv.url, usrv.url, f"http://127.0.0.1:{port}", **sessions)
    return start_gateway(cfg, port)


def test_sign_in_call_api_session_info_and_sign_out(start_gateway, idp, upstream):
    ctl, isrv = idp
    app, _ = upstream
    gw = _gw(start_gateway, idp, upstream)
    with browser() as c:
        r = sign_in(c, gw.proxy, isrv.url, rd="/app/page?x=1")
        assert r.status_code == 302 and r.headers["location"] == "/app/page?x=1", r.text
        cookies = r.headers.get_list("set-cookie")
        session_cookie = next(v for v in cookies if v.startswith("__Host-poolgate="))
        for attr in ("Path=/", "Secure", "HttpOnly", "SameSite=Lax"):
            assert attr in session_cookie
        assert "Domain" not in session_cookie
        assert len(session_cookie.split(";")[0]) < 200
        # a fetch with the cookie (and other cookies that must pass unchanged)
        c.cookies.set("theme", "dark", domain="127.0.0.1")
        r = c.get(gw.proxy + "/api/orders", headers={"Sec-Fetch-Mode": "cors"})
        assert r.status_code == 200, r.text
        seen = app.seen[-1]
        cookie_hdr = "; ".join(seen.header("cookie"))
        assert "theme=dark" in cookie_hdr and "poolgate" not in cookie_hdr
        assert seen.header("authorization") == []                  # no token upstream
        assert seen.header("x-auth-sub") and seen.header("x-gateway-credential")
        info = c.get(gw.proxy + "/_poolgate/session")
        assert info.status_code == 200
        body = info.json()
        assert set(body) == {"sub", "role", "expires_at", "idle_expires_at"}
        assert body["role"] == "member" and "eyJ" not in info.text
        # sign-out: CSRF-safe POST, provider revocation, Cognito /logout
        r = c.post(gw.proxy + "/_poolgate/logout", headers={"Origin": gw.proxy})
        assert r.status_code == 302
        loc = urlsplit(r.headers["location"])
        assert f"{loc.scheme}://{loc.netloc}{loc.path}" == isrv.url + "/logout"
        q = dict(parse_qsl(loc.query))
        assert q == {"client_id": "poolgatedemoclient00000000", "logout_uri": gw.proxy + "/"}
        assert len(ctl.revoked) == 1
        assert c.get(gw.proxy + "/_poolgate/session").status_code == 401
        r = c.get(gw.proxy + "/api/orders", headers={"Sec-Fetch-Mode": "cors"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert not any("eyJ" in line for line in gw.lines)              # no token in any log line
    metrics = httpx.get(gw.admin + "/metrics").text
    assert "poolgate_requests_total" in metrics and "eyJ" not in metrics    # nor any metric


def test_navigation_redirects_fetch_gets_401(start_gateway, idp, upstream):
    gw = _gw(start_gateway, idp, upstream)
    with httpx.Client() as c:
        r = c.get(gw.proxy + "/app/x?y=1", headers={"Sec-Fetch-Mode": "navigate",
                                                     "Accept": "text/html"})
        assert r.status_code == 302
        assert r.headers["location"] == "/_poolgate/login?rd=/app/x%3Fy%3D1"
        r = c.get(gw.proxy + "/app/x", headers={"Sec-Fetch-Mode": "cors", "Accept": "text/html"})
        assert r.status_code == 401 and "www-authenticate" in r.headers
        r = c.get(gw.proxy + "/app/x", headers={"Accept": "application/json"})
        assert r.status_code == 401
        r = c.get(gw.proxy + "/app/x", headers={"Accept": "text/html"})     # old browser
        assert r.status_code == 302
        assert c.get(gw.proxy + "/public/x").status_code == 200


def test_login_redirect_never_answers_401(start_gateway, idp, upstream):
    gw = _gw(start_gateway, idp, upstream, login_redirect="never")
    r = httpx.get(gw.proxy + "/app/x", headers={"Sec-Fetch-Mode": "navigate"})
    assert r.status_code == 401


def test_bearer_and_cookie_together_is_400_and_credentials_per_route(start_gateway, idp, upstream):
    ctl, isrv = idp
    gw = _gw(start_gateway, idp, upstream)
    bearer = httpx.post(isrv.url + "/token/alice").json()["access_token"]
    with browser() as c:
        sign_in(c, gw.proxy, isrv.url)
        r = c.get(gw.proxy + "/api/x", headers={"Authorization": f"Bearer {bearer}"})
        assert r.status_code == 400 and r.json()["reason"] == "multiple_authorization"
        assert c.get(gw.proxy + "/web-only/x").status_code == 200
        # a bearer-only route ignores the cookie (it is no credential there)
        assert c.get(gw.proxy + "/api-bearer/x").status_code == 401
    assert httpx.get(gw.proxy + "/api-bearer/x",
                     headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
    r = httpx.get(gw.proxy + "/web-only/x", headers={"Authorization": f"Bearer {bearer}"})
    assert r.status_code == 401 and r.json()["reason"] == "session_required"
    assert httpx.get(gw.proxy + "/api/x",
                     headers={"Authorization": f"Bearer {bearer}"}).status_code == 200


def test_poolgate_prefix_is_never_forwarded(start_gateway, idp, upstream):
    app, _ = upstream
    gw = _gw(start_gateway, idp, upstream)
    assert httpx.get(gw.proxy + "/_poolgate/other").status_code == 404
    assert httpx.get(gw.proxy + "/_poolgate/logout").status_code == 405
    assert not app.seen


def test_admin_ends_all_sessions_of_a_user(start_gateway, idp, upstream):
    ctl, isrv = idp
    gw = _gw(start_gateway, idp, upstream)
    clients = [browser(), browser()]
    try:
        for c in clients:
            sign_in(c, gw.proxy, isrv.url)
            assert c.get(gw.proxy + "/api/x").status_code == 200
        sub = clients[0].get(gw.proxy + "/_poolgate/session").json()["sub"]
        assert httpx.delete(gw.admin + "/sessions", params={"sub": sub}).status_code == 401
        r = httpx.delete(gw.admin + "/sessions", params={"sub": sub},
                         headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200 and r.json() == {"ended": 2}
        assert len(ctl.revoked) == 2
        for c in clients:
            assert c.get(gw.proxy + "/api/x").status_code == 401
        r = httpx.get(gw.admin + "/revocations", params={"sub": sub},
                      headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200
    finally:
        for c in clients:
            c.close()


def test_memory_sessions_survive_a_hot_reload(start_gateway, idp, upstream):
    import signal
    import time

    import yaml
    ctl, isrv = idp
    _, usrv = upstream
    port = free_port()
    cfg = session_config(isrv.url, usrv.url, f"http://127.0.0.1:{port}")
    gw = start_gateway(cfg, port)
    with browser() as c:
        sign_in(c, gw.proxy, isrv.url)
        assert c.get(gw.proxy + "/web-only/x").status_code == 200
        cfg["routes"][2]["match"]["path"] = "/web-only-2/**"        # a visible change
        cfg["listen"] = {"host": "127.0.0.1", "port": port}
        gw.path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        gw.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not gw.wait_log(lambda line: "new config in service" in line, timeout=0.2):
            assert time.monotonic() < deadline
        assert c.get(gw.proxy + "/_poolgate/session").status_code == 200
        assert c.get(gw.proxy + "/web-only-2/x").status_code == 200


def test_generic_oidc_provider_by_discovery(start_gateway, idp, upstream):
    ctl, isrv = idp
    _, usrv = upstream
    port = free_port()
    cfg = session_config(isrv.url, usrv.url, f"http://127.0.0.1:{port}")
    cfg["sessions"]["provider"] = {
        "discovery_url": isrv.url + "/.well-known/openid-configuration",
        "client_id": "poolgatedemoclient00000000"}
    gw = start_gateway(cfg, port)
    with browser() as c:
        assert sign_in(c, gw.proxy, isrv.url).status_code == 302
        assert c.get(gw.proxy + "/api/x").status_code == 200
        r = c.post(gw.proxy + "/_poolgate/logout", headers={"Origin": gw.proxy})
        loc = urlsplit(r.headers["location"])
        assert f"{loc.scheme}://{loc.netloc}{loc.path}" == isrv.url + "/logout"
        assert dict(parse_qsl(loc.query))["post_logout_redirect_uri"] == gw.proxy + "/"
        assert ctl.revoked


def test_poolgate_prefix_is_reserved_without_sessions(start_gateway, idp, upstream):
    ctl, isrv = idp
    app, usrv = upstream
    cfg = session_config(isrv.url, usrv.url, "http://127.0.0.1:1")
    del cfg["sessions"]
    for r in cfg["routes"]:
        r.pop("credentials", None)
    gw = start_gateway(cfg)
    assert httpx.get(gw.proxy + "/_poolgate/login").status_code == 404
    assert httpx.get(gw.proxy + "/public/x").status_code == 200
    assert [s.path for s in app.seen] == ["/public/x"]


def test_the_aws_credentials_endpoint_takes_the_browser_session(start_gateway, idp, upstream):
    """AWS.md: GET /_poolgate/aws/credentials with the user's bearer token OR session. The
    member role has no aws.role_arn here, so a signed-in browser reaches the credentials step
    and is refused 403 no_aws_role (never a 401, never an STS call); without a session 401;
    with a bearer token too 400."""
    ctl, isrv = idp
    app, usrv = upstream
    port = free_port()
    cfg = session_config(isrv.url, usrv.url, f"http://127.0.0.1:{port}")
    cfg["aws"] = {"region": "us-east-1", "endpoint_url": f"http://127.0.0.1:{free_port()}"}
    cfg["credentials_endpoint"] = {"enabled": True}
    gw = start_gateway(cfg, port)
    with browser() as c:
        assert c.get(gw.proxy + "/_poolgate/aws/credentials").status_code == 401
        assert sign_in(c, gw.proxy, isrv.url).status_code == 302
        r = c.get(gw.proxy + "/_poolgate/aws/credentials", headers={"Sec-Fetch-Mode": "cors"})
        assert r.status_code == 403 and r.json()["reason"] == "no_aws_role", r.text
        r = c.get(gw.proxy + "/_poolgate/aws/credentials",
                  headers={"Authorization": "Bearer abc.def.ghi"})
        assert r.status_code == 400 and r.json()["reason"] == "multiple_authorization"
    assert not [s for s in app.seen if s.path.startswith("/_poolgate")]
