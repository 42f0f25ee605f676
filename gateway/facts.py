"""What policy may know about a request (``RequestFacts``), read once from the ASGI scope."""

from __future__ import annotations

from typing import Any

from .forward.chain import Chain, chain_of, client_address, forwarded_proto
from .forward.headers import canonical
from .principal import RequestFacts

_XFF, _FWD, _XFP = b"x-forwarded-for", b"forwarded", b"x-forwarded-proto"
_NO_CHAIN = Chain(())             # no X-Forwarded-For / Forwarded: what chain_of returns then
_NONE: frozenset[str] = frozenset()


def request_facts(scope: dict[str, Any], path: str, peer: str, trusted: bool, now: float,
                  networks: Any, reads: frozenset[bytes] | None = None) -> RequestFacts:
    """Method, normalised path, client address, https-ness, time and headers, as policy sees
    them and as they are forwarded (the same chain and scheme, see forward/chain.py).

    Header names are canonical (``X_Tenant_Id`` is ``x-tenant-id``); a name with more than one
    field line is listed in ``ambiguous`` and never read as one value. ``reads`` (canonical
    names) limits ``headers`` and ``ambiguous`` to the headers the config's conditions and
    role requests read (``admissions.fact_reads``): nothing else looks at them.
    """
    hmap: dict[str, str] = {}
    ambiguous: set[str] = set()
    xff: list[bytes] = []
    fwd: list[bytes] = []
    xfp: list[bytes] = []
    for k, v in scope["headers"]:
        c = canonical(k)
        if c == _XFF:
            xff.append(v)
        elif c == _FWD:
            fwd.append(v)
        elif c == _XFP:
            xfp.append(v)
        if reads is not None and c not in reads:
            continue
        name = c.decode("latin-1")
        if name in hmap:
            ambiguous.add(name)
        else:
            hmap[name] = v.decode("latin-1")
    chain = chain_of(xff, fwd, peer, networks, trusted) if xff or fwd else _NO_CHAIN
    source_ip = client_address(chain, peer, networks, trusted=trusted)
    secure = forwarded_proto(xfp, scope.get("scheme", "http"), trusted=trusted) == "https"
    method = scope.get("method", "GET").upper()
    return RequestFacts(method=method, path=path, source_ip=source_ip, secure=secure, now=now,
                        headers=hmap, ambiguous=frozenset(ambiguous) if ambiguous else _NONE,
                        chain=chain.hops)
