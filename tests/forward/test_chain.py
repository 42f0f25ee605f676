"""gateway/forward/chain.py and facts.py: the client behind trusted proxies, the scheme, and the
one X-Forwarded-For list that policy walks and the upstream receives (LIMITS.md)."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.errors import BadRequest
from gateway.facts import request_facts
from gateway.forward.chain import (Chain, client_address, forwarded_chain, forwarded_proto,
                                   hop_address)
from gateway.forward.headers import upstream_request_headers

NETS = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
PROXY = "10.0.0.2"          # a trusted proxy (HAProxy)


def facts(headers: list[tuple[bytes, bytes]], peer: str = PROXY, scheme: str = "http"):
    from gateway.forward.headers import is_trusted
    scope = {"headers": headers, "method": "GET", "scheme": scheme}
    return request_facts(scope, "/", peer, is_trusted(peer, NETS), 0.0, NETS)


# (headers, peer, expected req:source_ip): the first untrusted hop walking back from the peer
@pytest.mark.parametrize("headers, peer, client", [
    ([], PROXY, PROXY),                                            # the proxy's own request
    ([(b"X-Forwarded-For", b"198.51.100.7")], PROXY, "198.51.100.7"),
    # HAProxy `option forwardfor` appends its own LINE after the client's spoofed one
    ([(b"X-Forwarded-For", b"203.0.113.9"), (b"X-Forwarded-For", b"198.51.100.7")], PROXY,
     "198.51.100.7"),
    # ... or appends to the list in one line
    ([(b"X-Forwarded-For", b"203.0.113.9, 198.51.100.7")], PROXY, "198.51.100.7"),
    # two trusted proxies in a row are skipped; the spoof on the left is never reached
    ([(b"x-forwarded-for", b"203.0.113.9"), (b"X-Forwarded-For", b"198.51.100.7, 10.1.1.1")],
     PROXY, "198.51.100.7"),
    # canonical spelling: X_Forwarded_For is the same header
    ([(b"X_Forwarded_For", b"203.0.113.9"), (b"X-Forwarded-For", b"198.51.100.7")], PROXY,
     "198.51.100.7"),
    # an untrusted peer: its headers are never believed
    ([(b"X-Forwarded-For", b"203.0.113.9")], "198.51.100.7", "198.51.100.7"),
    # every hop trusted: the leftmost one
    ([(b"X-Forwarded-For", b"10.9.9.9, 10.1.1.1")], PROXY, "10.9.9.9"),
    # ports, brackets and empty items
    ([(b"X-Forwarded-For", b", [2001:db8::1]:4711 ,")], PROXY, "2001:db8::1"),
    ([(b"X-Forwarded-For", b"198.51.100.7:5555")], PROXY, "198.51.100.7"),
    ([(b"X-Forwarded-For", b"::ffff:198.51.100.7")], PROXY, "198.51.100.7"),
    # RFC 7239 Forwarded, used when there is no X-Forwarded-For
    ([(b"Forwarded", b'for=203.0.113.9;proto=https, for="[2001:db8::2]:80"')], PROXY,
     "2001:db8::2"),
    ([(b"Forwarded", b"for=203.0.113.9"), (b"Forwarded", b"by=10.0.0.2;for=198.51.100.7")],
     PROXY, "198.51.100.7"),
    ([(b"Forwarded", b"proto=https")], PROXY, "unknown"),          # no for=: not an address
    # both present and naming the same client: fine
    ([(b"X-Forwarded-For", b"198.51.100.7"), (b"Forwarded", b"for=198.51.100.7")], PROXY,
     "198.51.100.7"),
    # IPv4-mapped peer is rendered as IPv4
    ([], "::ffff:198.51.100.7", "198.51.100.7"),
])
def test_source_ip(headers, peer, client) -> None:
    assert facts(headers, peer).source_ip == client


def test_both_headers_naming_different_clients_is_400() -> None:
    with pytest.raises(BadRequest) as e:
        facts([(b"X-Forwarded-For", b"198.51.100.7"), (b"Forwarded", b"for=203.0.113.9")])
    assert e.value.code == "ambiguous_forwarded" and e.value.status == 400
    # from an untrusted peer nothing is believed, so nothing is ambiguous
    f = facts([(b"X-Forwarded-For", b"198.51.100.7"), (b"Forwarded", b"for=203.0.113.9")],
              peer="192.0.2.1")
    assert f.source_ip == "192.0.2.1"


# (headers, peer, connection scheme, secure)
@pytest.mark.parametrize("headers, peer, scheme, secure", [
    ([(b"X-Forwarded-Proto", b"https")], PROXY, "http", True),
    ([(b"X-Forwarded-Proto", b"https")], "198.51.100.7", "http", False),    # not trusted
    # the client's spoofed first line loses to the line the proxy appended
    ([(b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Proto", b"http")], PROXY, "http", False),
    ([(b"X-Forwarded-Proto", b"https, http")], PROXY, "http", False),
    ([(b"X-Forwarded-Proto", b"http"), (b"x_forwarded_proto", b"https")], PROXY, "http", True),
    ([(b"X-Forwarded-Proto", b"HTTPS")], PROXY, "http", True),
    ([(b"X-Forwarded-Proto", b"gopher")], PROXY, "https", False),
    ([], PROXY, "https", True),
    ([], "198.51.100.7", "https", True),
    ([(b"X-Forwarded-Proto", b" , ")], PROXY, "https", True),                # no value
])
def test_secure(headers, peer, scheme, secure) -> None:
    assert facts(headers, peer, scheme).secure is secure


def test_forwarded_upstream_is_what_policy_walked() -> None:
    """The X-Forwarded-For the upstream gets is the walked chain + the peer; the proto is the
    one policy believed; every client copy is gone."""
    raw = [(b"X-Forwarded-For", b"203.0.113.9"), (b"X-Forwarded-For", b"198.51.100.7"),
           (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Proto", b"http"),
           (b"X-Forwarded-Host", b"evil.example"), (b"Forwarded", b"for=198.51.100.7")]
    f = facts(raw)
    assert f.source_ip == "198.51.100.7" and f.secure is False
    out = upstream_request_headers(raw, remove=frozenset(), peer=PROXY, trusted=True,
                                   scheme="https" if f.secure else "http", host=b"api.example",
                                   request_id="r", upstream_authority="up:1", extra=[],
                                   chain=f.chain)
    xff = [v for n, v in out if n.lower() == b"x-forwarded-for"]
    assert xff == [b"203.0.113.9, 198.51.100.7, 10.0.0.2"]
    assert [v for n, v in out if n.lower() == b"x-forwarded-proto"] == [b"http"]
    assert [v for n, v in out if n.lower() == b"x-forwarded-host"] == [b"api.example"]
    assert not [n for n, _ in out if n.lower() == b"forwarded"]
    # walking the forwarded list again (as a next gateway would) names the same client
    again = Chain([h.strip() for h in xff[0].decode().split(",")][:-1])
    assert client_address(again, PROXY, NETS, trusted=True) == f.source_ip


def test_forwarded_only_is_forwarded_as_x_forwarded_for() -> None:
    raw = [(b"Forwarded", b'for="[2001:db8::2]:80"')]
    f = facts(raw)
    out = upstream_request_headers(raw, remove=frozenset(), peer=PROXY, trusted=True,
                                   scheme="http", host=None, request_id="r",
                                   upstream_authority="up:1", extra=[], chain=f.chain)
    assert (b"x-forwarded-for", b"2001:db8::2, 10.0.0.2") in out


@pytest.mark.parametrize("hop, addr", [
    ("198.51.100.7", "198.51.100.7"), (" 198.51.100.7:80 ", "198.51.100.7"),
    ("[::1]:8080", "::1"), ("2001:DB8::1", "2001:db8::1"), ('"[2001:db8::1]"', "2001:db8::1"),
    ("unknown", "unknown"), ("_hidden", "_hidden"), ("[::1", "[::1"),
])
def test_hop_address(hop, addr) -> None:
    assert hop_address(hop) == addr


def test_forwarded_chain_and_proto_on_raw_lists() -> None:
    raw = [(b"x-forwarded-for", b"a, b"), (b"X.Forwarded.For", b"c")]
    assert forwarded_chain(raw, PROXY, NETS, True).hops == ("a", "b", "c")
    assert forwarded_proto([b"https", b"http"], "https", trusted=True) == "http"
    assert forwarded_proto([b"https"], "http", trusted=False) == "http"
