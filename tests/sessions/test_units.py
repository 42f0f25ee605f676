"""Pure parts of the sessions room: sealing, the pre-login cookie, cookie handling, navigation
detection, return-path safety, the memory store, the Cognito logout URL."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from gateway.config import parse_config
from gateway.sessions import prelogin
from gateway.sessions.cookies import cookie_values, set_cookie, without_cookies
from gateway.sessions.crypto import KeyRing, handle, new_session_id
from gateway.sessions.gate import _navigation
from gateway.sessions.oidc import OidcClient
from gateway.sessions.record import Record
from gateway.sessions.store import MemorySessionStore

from .test_config import _cfg

A, B = b"a" * 32, b"b" * 40


def test_seal_open_rotation_and_binding():
    old = KeyRing((A,))
    blob = old.seal(b"secret", b"h1")
    assert b"secret" not in blob
    assert KeyRing((B, A)).open(blob, b"h1") == b"secret"      # rotation: old keys still open
    assert KeyRing((B,)).open(blob, b"h1") is None             # without the key: nothing
    assert old.open(blob, b"h2") is None                       # bound to its store key
    assert old.open(blob[:-1] + bytes([blob[-1] ^ 1]), b"h1") is None
    assert KeyRing((B, A)).seal(b"x", b"")[1:5] != blob[1:5]   # the first key seals
    assert old.open_text("!!not base64!!", b"h1") is None


def test_session_ids_are_256_bit_and_handles_hide_them():
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 43 for i in ids)
    sid = ids.pop()
    assert sid not in handle(sid) and len(handle(sid)) == 64


def test_record_repr_hides_tokens():
    r = Record(sub="s", role="member", access="eyJaccess", refresh="rt-secret", access_exp=1,
               created=0, last_seen=0, abs_exp=9)
    assert "eyJ" not in repr(r) and "rt-secret" not in repr(r)
    assert Record.loads(r.dumps()) == r and Record.loads(b"garbage") is None


def test_prelogin_is_bounded_sealed_and_expires():
    keys = KeyRing((A,))
    now = time.time()
    attempts: list[prelogin.Attempt] = []
    value = None
    for i in range(40):
        attempts = [*prelogin.read(keys, value, now + i), prelogin.Attempt.new("/x", now + i)]
        value = prelogin.write(keys, attempts)
    assert len(prelogin.read(keys, value, now + 40)) == prelogin.MAX_ATTEMPTS
    assert len(value) < 1500
    assert prelogin.read(keys, value, now + 40 + prelogin.MAX_AGE) == []
    assert prelogin.read(KeyRing((B,)), value, now + 40) == []
    last = attempts[-1]
    found, rest = prelogin.take(prelogin.read(keys, value, now + 40), last.state)
    assert found is not None and found.state == last.state and found.verifier == last.verifier
    assert len(rest) == prelogin.MAX_ATTEMPTS - 1


@pytest.mark.parametrize("rd, ok", [
    (None, "/"), ("", "/"), ("/app?x=1#f", "/app?x=1#f"), ("/a/%2F%2Fb", "/a/%2F%2Fb"),
    ("//evil", None), ("/\\evil", None), ("https://evil/", None), ("/\t/evil", None),
    ("/\n/evil", None), ("evil", None), ("/_poolgate/login", None), ("/é", None),
    ("/" + "a" * 600, None),
])
def test_safe_return_path(rd, ok):
    assert prelogin.safe_return_path(rd) == ok


def test_cookie_reading_and_stripping():
    h = [(b"cookie", b"theme=dark; __Host-poolgate=SID; x=1"), (b"Cookie", b"__Host-poolgate-login=P"),
         (b"accept", b"*/*")]
    assert cookie_values(h, "__Host-poolgate") == ["SID"]
    names = frozenset({b"__Host-poolgate", b"__Host-poolgate-login"})
    assert without_cookies(h, names) == [(b"cookie", b"theme=dark; x=1"), (b"accept", b"*/*")]
    plain = [(b"cookie", b"a=1")]
    assert without_cookies(plain, names) is plain
    c = set_cookie("__Host-poolgate", "v", same_site="lax").decode()
    assert c == "__Host-poolgate=v; Path=/; Secure; HttpOnly; SameSite=Lax"


@pytest.mark.parametrize("headers, nav", [
    ([(b"sec-fetch-mode", b"navigate")], True),
    ([(b"sec-fetch-mode", b"cors"), (b"accept", b"text/html")], False),
    ([(b"accept", b"text/html,application/xhtml+xml")], True),
    ([(b"accept", b"application/json")], False),
    ([], False),
])
def test_navigation(headers, nav):
    assert _navigation(headers) is nav


async def test_memory_store():
    now = [0.0]
    s = MemorySessionStore(clock=lambda: now[0])
    await s.put("h1", "sealed", 10, "sub1")
    await s.put("h2", "sealed2", 10, "sub1")
    assert await s.get("h1") == "sealed"
    assert await s.handles_for("sub1") == ["h1", "h2"]
    assert await s.claim_once("state", 5) and not await s.claim_once("state", 5)
    t = await s.lock("h1", 1)
    assert t and await s.lock("h1", 1) is None
    await s.unlock("h1", "wrong")
    assert await s.lock("h1", 1) is None
    await s.unlock("h1", t)
    assert await s.lock("h1", 1)
    now[0] = 11
    assert await s.get("h1") is None and await s.claim_once("state", 5)


async def test_cognito_logout_url_is_built_by_hand():
    cfg = parse_config(_cfg()).sessions
    client = OidcClient(cfg)
    try:
        url = client.logout_url()
        p = urlsplit(url)
        assert f"{p.scheme}://{p.netloc}{p.path}" == \
            "https://app.auth.eu-west-1.amazoncognito.com/logout"
        assert dict(parse_qsl(p.query)) == {"client_id": cfg.provider.client_id,
                                           "logout_uri": "https://app.example.com/"}
        auth = await client.authorization_url("st", "v" * 43, "nn")
        q = dict(parse_qsl(urlsplit(auth).query))
        assert q["code_challenge_method"] == "S256" and q["state"] == "st"
        assert q["nonce"] == "nn" and q["response_type"] == "code"
        assert q["redirect_uri"] == "https://app.example.com/_poolgate/callback"
        assert q["scope"] == "openid email profile" and "code_verifier" not in q
    finally:
        await client.aclose()


def test_a_cognito_sized_session_costs_at_most_4kb_in_the_store():
    import secrets
    rec = Record(sub="8b1d4c2e-0000-4000-8000-000000000000", role="member",
                 access="eyJ" + secrets.token_urlsafe(800), refresh=secrets.token_urlsafe(1300),
                 access_exp=2e9, created=1e9, last_seen=1e9, abs_exp=2e9,
                 jti=secrets.token_hex(16), origin_jti=secrets.token_hex(16))
    sealed = KeyRing((A,)).seal_text(rec.dumps(), b"h")
    assert len(sealed) <= 4096
    assert Record.loads(KeyRing((A,)).open_text(sealed, b"h")) == rec
