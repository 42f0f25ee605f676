"""The header trust boundary (gateway/forward/headers.py): pure, table-driven."""

from __future__ import annotations

import ipaddress
import re

import pytest

from gateway.errors import BadRequest
from gateway.forward.headers import (
    HOP_BY_HOP,
    canonical,
    check_framing,
    forwarded_for,
    is_trusted,
    request_id,
    response_headers,
    strip_request_headers,
    upstream_request_headers,
)

GATEWAY_OWN = frozenset({b"x-auth-sub", b"x-auth-role", b"x-gateway-credential"})


def names(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [n.lower() for n, _ in headers]


@pytest.mark.parametrize("name, expected", [
    (b"X-Auth-Sub", b"x-auth-sub"), (b"X_Auth_Sub", b"x-auth-sub"), (b"x.auth.sub", b"x-auth-sub"),
    (b"X_AUTH.SUB", b"x-auth-sub"), (b"Content-Type", b"content-type"),
])
def test_canonical(name: bytes, expected: bytes) -> None:
    assert canonical(name) == expected


def test_hop_by_hop_set() -> None:
    assert HOP_BY_HOP == {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
                          b"proxy-authorization", b"te", b"trailer", b"transfer-encoding",
                          b"upgrade"}


@pytest.mark.parametrize("header", [
    (b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5"), (b"Proxy-Connection", b"x"),
    (b"Proxy-Authorization", b"Basic eA=="), (b"Proxy-Authenticate", b"Basic"), (b"TE", b"trailers"),
    (b"Trailer", b"X-Auth-Sub"), (b"Transfer-Encoding", b"chunked"), (b"Upgrade", b"websocket"),
    (b"Host", b"evil.example"),
    # a client posing as the gateway, in every spelling
    (b"X-Auth-Sub", b"admin"), (b"X_Auth_Sub", b"admin"), (b"x.auth.sub", b"admin"),
    (b"X-AUTH-ROLE", b"admin"), (b"X_Gateway_Credential", b"forged"),
    (b"X-Forwarded-For", b"1.2.3.4"), (b"X_Forwarded_For", b"1.2.3.4"),
    (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Host", b"a"), (b"Forwarded", b"for=1.2.3.4"),
    (b"X-Request-Id", b"abc"),
    # method overrides, path overrides
    (b"X-HTTP-Method-Override", b"DELETE"), (b"X-HTTP-Method", b"DELETE"),
    (b"X-Method-Override", b"DELETE"), (b"X_HTTP_Method_Override", b"DELETE"),
    (b"X-Original-URL", b"/admin"), (b"X-Rewrite-URL", b"/admin"), (b"X-Real-IP", b"10.0.0.1"),
])
def test_strip_removes(header: tuple[bytes, bytes]) -> None:
    remove = GATEWAY_OWN | {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                            b"x-request-id", b"forwarded"}
    assert strip_request_headers([header, (b"accept", b"*/*")], remove=remove) == [
        (b"accept", b"*/*")]


def test_strip_keeps_end_to_end_headers_and_duplicates() -> None:
    raw = [(b"Accept", b"a"), (b"Cookie", b"x=1"), (b"Cookie", b"y=2"),
           (b"Content-Length", b"3"), (b"X-Custom", b"1"), (b"X-Custom", b"2")]
    assert strip_request_headers(raw, remove=GATEWAY_OWN) == raw


def test_strip_connection_named_headers() -> None:
    raw = [(b"Connection", b"close, X-Secret , x_other"), (b"X-Secret", b"s"),
           (b"X-Other", b"o"), (b"X-Keep", b"k")]
    assert strip_request_headers(raw, remove=frozenset()) == [(b"X-Keep", b"k")]
    raw = [(b"connection", b"a"), (b"connection", b"b"), (b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    assert strip_request_headers(raw, remove=frozenset()) == [(b"c", b"3")]


def test_remove_names_are_canonicalised() -> None:
    raw = [(b"x_tenant", b"t"), (b"X-Tenant", b"t"), (b"ok", b"1")]
    assert strip_request_headers(raw, remove=frozenset({b"X.Tenant"})) == [(b"ok", b"1")]


def test_keep_upgrade_for_websocket_handshake() -> None:
    raw = [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"), (b"Sec-WebSocket-Key", b"k")]
    assert strip_request_headers(raw, remove=frozenset(), keep_upgrade=True) == raw[1:]
    assert strip_request_headers(raw, remove=frozenset()) == raw[2:]


@pytest.mark.parametrize("raw", [
    [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")],
    [(b"transfer-encoding", b"chunked"), (b"content_length", b"5")],
    [(b"Content-Length", b"5"), (b"Content-Length", b"6")],
    [(b"Content-Length", b"5, 6")],
    [(b"Content-Length", b"abc")], [(b"Content-Length", b"-1")], [(b"Content-Length", b"+5")],
    [(b"Content-Length", b"")], [(b"Content-Length", b"0x10")], [(b"Content-Length", b"1 2")],
    [(b"Transfer-Encoding", b"gzip, chunked")], [(b"Transfer-Encoding", b"identity")],
    [(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")],
    [(b"Transfer-Encoding", b"")], [(b"Transfer-Encoding", b"xchunked")],
])
def test_framing_refused(raw: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(BadRequest) as info:
        check_framing(raw)
    assert (info.value.code, info.value.status) == ("bad_framing", 400)


@pytest.mark.parametrize("raw", [
    [], [(b"Content-Length", b"5")], [(b"Content-Length", b"5"), (b"content-length", b"5")],
    [(b"Content-Length", b"5, 5")], [(b"Transfer-Encoding", b"chunked")],
    [(b"Transfer-Encoding", b"Chunked")], [(b"Content-Length", b"0")],
])
def test_framing_accepted(raw: list[tuple[bytes, bytes]]) -> None:
    check_framing(raw)


@pytest.mark.parametrize("raw, trusted, kept", [
    ([(b"X-Request-Id", b"abc-123_x.y")], True, "abc-123_x.y"),
    ([(b"x_request_id", b"abc")], True, "abc"),
    ([(b"X-Request-Id", b"abc")], False, None),
    ([(b"X-Request-Id", b"bad id")], True, None),
    ([(b"X-Request-Id", b"a" * 129)], True, None),
    ([(b"X-Request-Id", b"")], True, None),
    ([(b"X-Request-Id", b"\xff")], True, None),
    ([(b"X-Request-Id", b"a"), (b"X-Request-Id", b"b")], True, None),
    ([], True, None),
])
def test_request_id(raw: list[tuple[bytes, bytes]], trusted: bool, kept: str | None) -> None:
    rid = request_id(raw, trusted=trusted)
    if kept is not None:
        assert rid == kept
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
        assert rid != request_id(raw, trusted=trusted)


@pytest.mark.parametrize("raw, peer, expected", [
    ([], "10.0.0.7", b"10.0.0.7"),
    ([(b"X-Forwarded-For", b"1.2.3.4")], "10.0.0.7", b"1.2.3.4, 10.0.0.7"),
    ([(b"X-Forwarded-For", b"1.2.3.4, 5.6.7.8"), (b"x-forwarded-for", b"9.9.9.9")], "::1",
     b"1.2.3.4, 5.6.7.8, 9.9.9.9, ::1"),
    ([(b"X-Forwarded-For", b" ")], "10.0.0.7", b"10.0.0.7"),
    ([], "", b"unknown"),
])
@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_for(raw: list[tuple[bytes, bytes]], peer: str, expected: bytes,
                       trusted: bool) -> None:
    assert forwarded_for(raw, peer, trusted=trusted) == expected


def test_upstream_request_headers_complete_list() -> None:
    raw = [(b"Host", b"api.example"), (b"Accept", b"*/*"), (b"X-Forwarded-For", b"1.1.1.1"),
           (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Host", b"evil"),
           (b"X-Request-Id", b"client"), (b"X_Auth_Sub", b"admin"), (b"Authorization", b"Bearer t"),
           (b"Connection", b"keep-alive"), (b"Set-Thing", b"1"), (b"Set-Thing", b"2"),
           (b"X-Gateway-Credential", b"forged")]
    extra = [(b"X-Auth-Sub", b"alice"), (b"X-Auth-Role", b"member"),
             (b"X-Gateway-Credential", b"signed")]
    out = upstream_request_headers(
        raw, remove=frozenset({b"authorization"}), peer="10.0.0.7", trusted=False, scheme="http",
        host=b"api.example", request_id="r1", upstream_authority="127.0.0.1:9001", extra=extra)
    assert out == [
        (b"host", b"127.0.0.1:9001"), (b"Accept", b"*/*"), (b"Set-Thing", b"1"),
        (b"Set-Thing", b"2"), (b"x-forwarded-for", b"1.1.1.1, 10.0.0.7"),
        (b"x-forwarded-proto", b"http"), (b"x-forwarded-host", b"api.example"),
        (b"x-request-id", b"r1"), *extra]
    for name in (b"host", b"x-request-id", b"x-auth-sub", b"x-gateway-credential"):
        assert [canonical(n) for n in names(out)].count(name) == 1


def test_upstream_request_headers_without_client_host() -> None:
    out = upstream_request_headers([], remove=frozenset(), peer="::1", trusted=True,
                                   scheme="wss", host=None, request_id="r",
                                   upstream_authority=b"up:80", extra=[])
    assert out == [(b"host", b"up:80"), (b"x-forwarded-for", b"::1"),
                   (b"x-forwarded-proto", b"https"), (b"x-request-id", b"r")]


def test_response_headers() -> None:
    raw = [(b"Content-Type", b"text/plain"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"),
           (b"Connection", b"keep-alive, X-Internal"), (b"X-Internal", b"secret"),
           (b"Keep-Alive", b"timeout=5"), (b"Transfer-Encoding", b"chunked"),
           (b"Trailer", b"x"), (b"Upgrade", b"h2c"), (b"Content-Length", b"5"),
           (b"X-Request-Id", b"up")]
    assert response_headers(raw) == [(b"Content-Type", b"text/plain"), (b"Set-Cookie", b"a=1"),
                                     (b"Set-Cookie", b"b=2"), (b"Content-Length", b"5"),
                                     (b"X-Request-Id", b"up")]
    assert (b"X-Request-Id", b"up") not in response_headers(
        raw, remove=frozenset({b"x-request-id"}))


NETS = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize("peer, networks, expected", [
    ("10.1.2.3", NETS, True), ("11.1.2.3", NETS, False), ("fd00::1", NETS, True),
    ("::ffff:10.0.0.1", NETS, True), ("::1", NETS, False), ("not-an-ip", NETS, False),
    ("", NETS, False), (None, NETS, False), ("10.1.2.3", (), False),
])
def test_is_trusted(peer: str | None, networks: tuple, expected: bool) -> None:
    assert is_trusted(peer, networks) is expected
