"""The client-address chain and scheme behind trusted proxies (LIMITS.md "Client identity"). Pure.

Every field line of ``X-Forwarded-For`` is one comma list, in order (RFC 9110 §5.3); the same
for ``Forwarded`` ``for=``. The chain the gateway walks is exactly the chain it forwards
(``X-Forwarded-For: <chain>, <peer>``), so policy and upstream can never disagree. Walking from
the socket peer backwards, every hop inside ``trusted_proxies`` is skipped; the first one that
is not is the client. A client can only add hops to the LEFT of what its trusted proxies
append, so it can never choose the hop the walk stops at.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from ..errors import BadRequest
from .headers import canonical, is_trusted

__all__ = ["Chain", "chain_of", "client_address", "comma_list", "forwarded_chain",
           "forwarded_proto", "hop_address"]

Headers = list[tuple[bytes, bytes]]
Networks = Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]


def hop_address(hop: str) -> str:
    """One hop as an address: ``[v6]:port`` and ``v4:port`` lose brackets and port; a valid IP
    is rendered canonically (IPv4-mapped IPv6 as IPv4); anything else is kept as written."""
    h = hop.strip().strip('"')
    if h.startswith("["):
        end = h.find("]")
        h = h[1:end] if end > 0 else h
    elif h.count(":") == 1:
        h = h.partition(":")[0]
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return h
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def comma_list(lines: Iterable[bytes]) -> list[str]:
    """Field lines joined into one comma list, in order; empty items dropped."""
    out: list[str] = []
    for v in lines:
        out.extend(t for t in (x.strip() for x in v.decode("latin-1").split(",")) if t)
    return out


def _lines(raw: Headers, name: bytes) -> list[bytes]:
    return [v for n, v in raw if canonical(n) == name]


def _forwarded_for(lines: Iterable[bytes]) -> list[str]:
    """``Forwarded`` (RFC 7239) elements' ``for=`` values, in order (``unknown`` if absent)."""
    hops = []
    for element in comma_list(lines):
        value = "unknown"
        for pair in element.split(";"):
            key, _, v = pair.partition("=")
            if key.strip().lower() == "for":
                value = v.strip()
        hops.append(value)
    return hops


class Chain:
    """The hops in front of the peer as the gateway reads and forwards them."""

    __slots__ = ("hops",)

    def __init__(self, hops: Sequence[str]) -> None:
        self.hops = tuple(hops)

    def rendered(self, peer: str) -> bytes:
        """The ``X-Forwarded-For`` value sent upstream: the chain, then the real peer."""
        parts = [*self.hops, peer or "unknown"]
        return ", ".join(parts).encode("latin-1", "replace")


def forwarded_chain(raw: Headers, peer: str, networks: Networks, trusted: bool) -> Chain:
    """``chain_of`` for a raw header list."""
    return chain_of(_lines(raw, b"x-forwarded-for"), _lines(raw, b"forwarded"), peer,
                    networks, trusted)


def chain_of(xff_lines: Sequence[bytes], forwarded_lines: Sequence[bytes], peer: str,
             networks: Networks, trusted: bool) -> Chain:
    """The chain to walk and forward: ``X-Forwarded-For`` if present, else ``Forwarded``.

    From a trusted peer carrying both, the two must name the same client, else ``400
    ambiguous_forwarded``: which header the proxy wrote cannot be known, and the other one is
    the client's to choose.
    """
    xff = comma_list(xff_lines) if xff_lines else []
    fwd = _forwarded_for(forwarded_lines) if forwarded_lines else []
    if xff and fwd and trusted:
        a = client_address(Chain(xff), peer, networks, trusted=True)
        b = client_address(Chain(fwd), peer, networks, trusted=True)
        if a != b:
            raise BadRequest("X-Forwarded-For and Forwarded name different clients",
                             code="ambiguous_forwarded")
    return Chain(xff or [hop_address(h) for h in fwd])


def client_address(chain: Chain, peer: str, networks: Networks, *, trusted: bool) -> str:
    """``req:source_ip``: the peer itself unless it is trusted; then the first hop, walking
    backwards, that is not a trusted proxy (the leftmost hop if all of them are)."""
    if not trusted or not chain.hops:
        return _hop(peer, ())[0] if peer else peer
    nets = tuple(networks)
    addr = ""
    for hop in reversed(chain.hops):
        addr, hop_trusted = _hop(hop, nets)
        if not hop_trusted:
            return addr
    return addr


@functools.lru_cache(maxsize=4096)     # pure; the same few proxies and clients recur
def _hop(hop: str, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
         ) -> tuple[str, bool]:
    addr = hop_address(hop)
    return addr, bool(nets) and is_trusted(addr, nets)


def forwarded_proto(proto_lines: Sequence[bytes], scheme: str, *, trusted: bool) -> str:
    """``http`` or ``https``: from a trusted peer the LAST ``X-Forwarded-Proto`` value (the one
    the nearest proxy wrote), else the connection's own scheme. The same value goes upstream."""
    if trusted and proto_lines:
        values = comma_list(proto_lines)
        if values:
            return "https" if values[-1].lower() in ("https", "wss") else "http"
    return "https" if scheme in ("https", "wss") else "http"
