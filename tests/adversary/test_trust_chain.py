"""Issue 11 item 1, as an attacker tried it: a spoofed X-Forwarded-For / X-Forwarded-Proto in
front of HAProxy (`option forwardfor`) must not choose req:source_ip or req:secure, and the
upstream must see the same chain policy walked."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import ATTACKER, CLIENT, ISSUER, OFFICE, base_config, get
from e2e.servers import cognito_claims

pytestmark = pytest.mark.e2e


def _config(jwks_url: str, upstream_url: str) -> dict[str, Any]:
    return base_config(
        jwks_url, upstream_url,
        listen={"trusted_proxies": ["127.0.0.1/32"]},
        routes=[{"id": "all", "match": {"path": "/**"}, "upstream": "app", "auth": "policy"}],
        guardrails=[{"name": "office", "applies_to": {"roles": ["*"]}, "statements": [
            {"sid": "AdminFromOffice", "effect": "deny", "action": ["http:*"],
             "resource": ["*:/admin/**"],
             "condition": {"NotIpAddress": {"req:source_ip": ["203.0.113.0/24", f"{OFFICE}/32"]}}},
            {"sid": "SecureOnly", "effect": "deny", "action": ["http:*"],
             "resource": ["*:/secure/**"], "condition": {"Bool": {"req:secure": "false"}}}]}])


@pytest.fixture
def stack(jwks, upstream, gateway_factory, haproxy_factory, signer):
    _, jsrv = jwks
    app, usrv = upstream
    gw = gateway_factory(_config(jsrv.url + "/jwks.json", usrv.url))
    hp = haproxy_factory(gw.proxy)
    token = signer.token(cognito_claims(ISSUER, CLIENT))
    return gw, hp, app, [("Authorization", f"Bearer {token}")]


def test_spoofed_xff_through_haproxy_does_not_pass_the_ip_guardrail(stack) -> None:
    gw, hp, app, auth = stack
    # the reproduction: the attacker's own first line named the office address
    r = get(hp.plain, "/admin/users", [*auth, ("X-Forwarded-For", "203.0.113.9")])
    assert r.status == 403, r.body
    assert b"explicit_deny" in r.body and app.seen == []
    # the same list in any shape: one line, two lines, a Forwarded header, an _ spelling
    for spoof in ([("X-Forwarded-For", "203.0.113.9, 203.0.113.10")],
                  [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "203.0.113.9")],
                  [("X_Forwarded_For", "203.0.113.9")],
                  [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "203.0.113.9")]):
        assert get(hp.plain, "/admin/users", [*auth, *spoof]).status == 403, spoof
    assert app.seen == []
    # the real office address passes, and so does the attacker elsewhere
    assert get(hp.plain, "/admin/users", auth, source=OFFICE).status == 200
    assert get(hp.plain, "/orders/1", [*auth, ("X-Forwarded-For", "203.0.113.9")]).status == 200


def test_upstream_sees_the_chain_policy_walked(stack) -> None:
    gw, hp, app, auth = stack
    r = get(hp.plain, "/orders/1", [*auth, ("X-Forwarded-For", "203.0.113.9"),
                                    ("X-Forwarded-Host", "evil.example"),
                                    ("Forwarded", "for=203.0.113.9")])
    # both headers, naming different clients from a trusted peer: which one HAProxy wrote
    # cannot be known, so it is refused rather than guessed
    assert r.status == 400 and b"ambiguous_forwarded" in r.body
    r = get(hp.plain, "/orders/1", [*auth, ("X-Forwarded-For", "203.0.113.9"),
                                    ("X-Forwarded-Host", "evil.example")])
    assert r.status == 200, r.body
    seen = app.seen[-1]
    # the client's list, HAProxy's appended hop (the attacker's real address), then the peer
    assert seen.header("x-forwarded-for") == [f"203.0.113.9, {ATTACKER}, 127.0.0.1"]
    assert seen.header("x-forwarded-proto") == ["http"]
    assert seen.header("x-forwarded-host") == [f"127.0.0.1:{hp.plain_port}"]
    assert seen.header("forwarded") == []


def test_spoofed_proto_does_not_make_a_request_secure(stack) -> None:
    gw, hp, app, auth = stack
    r = get(hp.plain, "/secure/x", [*auth, ("X-Forwarded-Proto", "https")])
    assert r.status == 403 and app.seen == []
    # the frontend that terminates TLS says https (its line is the last one): allowed
    r = get(hp.tls, "/secure/x", [*auth, ("X-Forwarded-Proto", "http")])
    assert r.status == 200, r.body
    assert app.seen[-1].header("x-forwarded-proto") == ["https"]


def test_untrusted_peer_headers_are_never_believed(stack) -> None:
    gw, hp, app, auth = stack
    r = get(gw.proxy, "/admin/users", [*auth, ("X-Forwarded-For", "203.0.113.9")])
    assert r.status == 403
    r = get(gw.proxy, "/secure/x", [*auth, ("X-Forwarded-Proto", "https")])
    assert r.status == 403
    r = get(gw.proxy, "/orders/1", [*auth, ("X-Forwarded-For", "203.0.113.9"),
                                    ("X-Forwarded-Proto", "https")])
    assert r.status == 200
    assert app.seen[-1].header("x-forwarded-for") == [f"203.0.113.9, {ATTACKER}"]
    assert app.seen[-1].header("x-forwarded-proto") == ["http"]
