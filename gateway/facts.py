"""What policy may know about a request (``RequestFacts``), read once from the ASGI scope."""

from __future__ import annotations

from typing import Any

from .forward.headers import is_trusted
from .principal import RequestFacts


def request_facts(scope: dict[str, Any], path: str, peer: str, trusted: bool, now: float,
                  networks: Any) -> RequestFacts:
    """Method, normalised path, client address, https-ness, time and headers, as policy sees
    them: the socket peer unless it is a trusted proxy, whose X-Forwarded-* are then believed."""
    headers = scope["headers"]
    hmap: dict[str, str] = {}
    for k, v in headers:
        name = k.decode("latin-1").lower()
        if name not in hmap:
            hmap[name] = v.decode("latin-1")
    source_ip, secure = peer, scope.get("scheme") in ("https", "wss")
    if trusted:
        xff = hmap.get("x-forwarded-for")
        if xff:
            source_ip = _client_from_xff(xff, networks)
        proto = hmap.get("x-forwarded-proto")
        if proto:
            secure = proto.strip().lower() in ("https", "wss")
    method = scope.get("method", "GET").upper()
    return RequestFacts(method=method, path=path, source_ip=source_ip, secure=secure, now=now,
                        headers=hmap)


def _client_from_xff(xff: str, networks: Any) -> str:
    """The rightmost X-Forwarded-For hop that is not itself a trusted proxy."""
    hops = [h.strip() for h in xff.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, networks):
            return hop
    return hops[0] if hops else ""
