"""Every refused sign-in path of SESSIONS.md: 4xx with a short text, never a redirect."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from e2e.servers import free_port

from .conftest import browser, session_config, sign_in


@pytest.fixture
def gw(start_gateway, idp, upstream):
    ctl, isrv = idp
    _, usrv = upstream
    port = free_port()
    return start_gateway(session_config(isrv.url, usrv.url, f"http://127.0.0.1:{port}"), port)


def _to_callback(c: httpx.Client, gw, isrv, rd: str = "/app") -> str:
    """Start a sign-in and submit the provider form; the callback URL (not yet visited)."""
    r = c.get(f"{gw.proxy}/_poolgate/login", params={"rd": rd})
    form = dict(parse_qsl(urlsplit(r.headers["location"]).query))
    form["username"] = "bob"
    r = c.post(f"{isrv.url}/oauth2/authorize", data=form)
    return r.headers["location"]


def _refused(r: httpx.Response, code: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert "location" not in r.headers
    assert code in r.text and len(r.text) < 300


@pytest.mark.parametrize("rd", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                "/\t/evil.example", "evil", "/_poolgate/login"])
def test_open_redirect_rd_is_400(gw, rd):
    r = httpx.get(f"{gw.proxy}/_poolgate/login", params={"rd": rd})
    _refused(r, "bad_rd")


def test_missing_and_bad_state(gw, idp):
    _, isrv = idp
    with browser() as c:
        cb = _to_callback(c, gw, isrv)
        q = dict(parse_qsl(urlsplit(cb).query))
        _refused(c.get(f"{gw.proxy}/_poolgate/callback", params={"code": q["code"]}),
                 "missing_state")
        _refused(c.get(f"{gw.proxy}/_poolgate/callback",
                       params={"code": q["code"], "state": "forged"}), "bad_state")
    # state bound to the browser: another browser (no pre-login cookie) cannot use it
    with browser() as other:
        _refused(other.get(cb), "bad_state")


def test_state_is_single_use_and_checked_before_the_code(gw, idp):
    ctl, isrv = idp
    with browser() as c:
        cb = _to_callback(c, gw, isrv)
        pre = c.cookies.get("__Host-poolgate-login")
        assert c.get(cb).status_code == 302
        calls = len(ctl.token_calls)
        c.cookies.set("__Host-poolgate-login", pre, domain="127.0.0.1")   # replay it all
        _refused(c.get(cb), "state_replayed")
        assert len(ctl.token_calls) == calls          # refused before any code exchange


def test_code_reuse_is_refused(gw, idp):
    ctl, isrv = idp
    with browser() as c:
        cb = _to_callback(c, gw, isrv)
        assert c.get(cb).status_code == 302
        code = dict(parse_qsl(urlsplit(cb).query))["code"]
        cb2 = _to_callback(c, gw, isrv)                # a new attempt, the OLD code
        state2 = dict(parse_qsl(urlsplit(cb2).query))["state"]
        _refused(c.get(f"{gw.proxy}/_poolgate/callback",
                       params={"code": code, "state": state2}), "code_refused")


def test_wrong_pkce_verifier_is_refused(gw, idp):
    ctl, isrv = idp
    with browser() as c:
        r = c.get(f"{gw.proxy}/_poolgate/login", params={"rd": "/"})
        form = dict(parse_qsl(urlsplit(r.headers["location"]).query))
        form.update(username="alice", code_challenge="A" * 43)    # a challenge we never made
        cb = c.post(f"{isrv.url}/oauth2/authorize", data=form).headers["location"]
        _refused(c.get(cb), "code_refused")


def test_nonce_mismatch_is_refused(gw, idp):
    ctl, isrv = idp
    ctl.wrong_nonce = True
    with browser() as c:
        _refused(sign_in(c, gw.proxy, isrv.url), "id_token_rejected")
        assert c.get(f"{gw.proxy}/_poolgate/session").status_code == 401


def test_provider_error_is_shown_not_redirected(gw):
    r = httpx.get(f"{gw.proxy}/_poolgate/callback", params={"error": "access_denied",
                                                          "state": "x"})
    _refused(r, "provider_error")


def test_logout_csrf(gw, idp):
    ctl, isrv = idp
    with browser() as c:
        sign_in(c, gw.proxy, isrv.url)
        r = c.post(f"{gw.proxy}/_poolgate/logout", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        r = c.post(f"{gw.proxy}/_poolgate/logout", headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        assert c.post(f"{gw.proxy}/_poolgate/logout").status_code == 403   # no evidence
        assert c.get(f"{gw.proxy}/_poolgate/session").status_code == 200  # still signed in
        assert not ctl.revoked
        r = c.post(f"{gw.proxy}/_poolgate/logout", headers={"Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 302 and ctl.revoked


def test_session_id_rotates_at_login(gw, idp):
    _, isrv = idp
    with browser() as c:
        c.cookies.set("__Host-poolgate", "A" * 43, domain="127.0.0.1")   # planted (fixation)
        sign_in(c, gw.proxy, isrv.url)
        sid = c.cookies.get("__Host-poolgate")
        assert sid != "A" * 43 and len(sid) == 43
        sign_in(c, gw.proxy, isrv.url)
        assert c.cookies.get("__Host-poolgate") != sid
        old = httpx.get(f"{gw.proxy}/api/x", headers={"Cookie": f"__Host-poolgate={sid}"})
        assert old.status_code == 401                      # the replaced session is gone


def test_cookie_sizes(gw, idp):
    ctl, isrv = idp
    ctl.id_token_padding = 4096                      # a 4 KB id token
    with browser() as c:
        r = sign_in(c, gw.proxy, isrv.url)
        assert r.status_code == 302
        session = next(v for v in r.headers.get_list("set-cookie")
                       if v.startswith("__Host-poolgate="))
        assert len(session.split(";")[0]) < 200
        assert c.get(f"{gw.proxy}/api/x").status_code == 200
    with browser() as c:
        for _ in range(40):                          # 40 abandoned sign-ins
            assert c.get(f"{gw.proxy}/_poolgate/login", params={"rd": "/app/x"}).status_code == 302
        req = c.build_request("GET", f"{gw.proxy}/api/x")
        assert len(req.headers["cookie"]) < 4096
        # and the latest attempt still completes
        r = sign_in(c, gw.proxy, isrv.url)
        assert r.status_code == 302
