"""Step 5 (pure): the header trust boundary, inbound and outbound, on raw ``(bytes, bytes)`` lists.

Lists, never dicts: duplicates (``Set-Cookie``, two ``Content-Length``) must stay visible.
Names are compared in ``canonical`` form, so ``X_Auth_Sub`` and ``x.auth.sub`` are
``x-auth-sub``: some upstream frameworks (CGI/WSGI, nginx with underscores) fold them together.
"""

from __future__ import annotations

import ipaddress
import re
from random import getrandbits
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import compress
from operator import itemgetter
from typing import Any

from ..errors import BadRequest

__all__ = [
    "GATEWAY_SET",
    "HOP_BY_HOP",
    "METHOD_OVERRIDE",
    "canonical",
    "canonical_request_headers",
    "check_framing",
    "forwarded_for",
    "is_trusted",
    "request_id",
    "response_headers",
    "strip_request_headers",
    "upstream_request_headers",
]

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
                        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding",
                        b"upgrade"})
METHOD_OVERRIDE = frozenset({b"x-http-method-override", b"x-http-method", b"x-method-override"})
# Set by the gateway on every forwarded request: inbound copies are always dropped first.
GATEWAY_SET = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                         b"x-request-id", b"forwarded"})
# Not set by the gateway, but upstreams are known to believe them: client-address claims
# (nginx's X-Real-IP, X-Forwarded-Port/Prefix) and path overrides that IIS and Symfony honour
# (X-Original-URL would let a client name a different resource than the one authorized).
# `Expect` is answered by the gateway's own server; forwarding it adds interim responses.
_ALWAYS_DROPPED = (HOP_BY_HOP | METHOD_OVERRIDE | GATEWAY_SET
                   | {b"x-real-ip", b"x-forwarded-port", b"x-forwarded-prefix",
                      b"x-forwarded-server", b"x-original-url", b"x-rewrite-url", b"expect"})

_CANON = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ_.", b"abcdefghijklmnopqrstuvwxyz--")
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
_DIGITS = re.compile(rb"[0-9]{1,19}")


_CANON_CACHE: dict[bytes, bytes] = {}


def canonical(name: bytes) -> bytes:
    """Lower-case, with ``_`` and ``.`` read as ``-`` (memoised: a request asks ~40 times)."""
    c = _CANON_CACHE.get(name)
    if c is None:
        c = name.translate(_CANON)
        if len(_CANON_CACHE) < 4096:           # bounded: clients choose header names
            _CANON_CACHE[name] = c
    return c


@lru_cache(maxsize=64)
def _drop_set(remove: frozenset[bytes], keep_upgrade: bool) -> frozenset[bytes]:
    drop = _ALWAYS_DROPPED | {canonical(n) for n in remove}
    return drop - {b"upgrade"} if keep_upgrade else drop


def _connection_named(raw: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    memo = _CANON_CACHE.get
    for name, value in raw:
        if (memo(name) or canonical(name)) == b"connection":
            named.update(canonical(t.strip()) for t in value.split(b",") if t.strip())
    return named


def strip_request_headers(raw: Headers, *, remove: frozenset[bytes],
                          keep_upgrade: bool = False) -> Headers:
    """Client headers minus hop-by-hop, Connection-named, method overrides, Host and ``remove``.

    ``keep_upgrade`` keeps ``Upgrade`` (an authorised WebSocket handshake) even when named in
    Connection; ``Connection`` itself always goes.
    """
    drop = _drop_for(raw, remove, keep_upgrade)
    return [(n, v) for n, v in raw if canonical(n) not in drop]


def _drop_for(raw: Headers, remove: frozenset[bytes], keep_upgrade: bool) -> frozenset[bytes]:
    drop = _drop_set(frozenset(remove), keep_upgrade)
    named = _connection_named(raw)
    if keep_upgrade:
        named.discard(b"upgrade")
    return drop | named if named else drop


def check_framing(raw: Headers) -> None:
    """Refuse ambiguous message framing (request smuggling): ``BadRequest(bad_framing)``."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in raw:
        key = canonical(name)
        if (key == b"content-length" or key == b"transfer-encoding") and name.lower() != key:
            # `Content_Length`: the HTTP parser did not frame the body by it, an upstream that
            # folds `_` would; no reading is safe, so it is refused (never forwarded)
            raise BadRequest(f"framing header spelled {name.decode('latin-1')!r}",
                             code="bad_framing")
        if key == b"content-length":
            lengths.extend(v.strip() for v in value.split(b","))
        elif key == b"transfer-encoding":
            codings.extend(v.strip().lower() for v in value.split(b","))
    if lengths and codings:
        raise BadRequest("Content-Length together with Transfer-Encoding", code="bad_framing")
    if codings and codings != [b"chunked"]:
        raise BadRequest("Transfer-Encoding other than chunked", code="bad_framing")
    if lengths:
        if not all(_DIGITS.fullmatch(v) for v in lengths):
            raise BadRequest("non-numeric Content-Length", code="bad_framing")
        if len({int(v) for v in lengths}) > 1:
            raise BadRequest("conflicting Content-Length values", code="bad_framing")


def request_id(raw: Headers, *, trusted: bool) -> str:
    """A trusted proxy's well-formed ``X-Request-Id`` (exactly one), else 128 random bits as
    hex. An id, not a secret: the PRNG (reseeded after fork) instead of a syscall per request
    (os.urandom measured ~19 us a call under this sandbox's syscall cost)."""
    if trusted:
        found = [v for n, v in raw if canonical(n) == b"x-request-id"]
        if len(found) == 1 and _REQUEST_ID.fullmatch(found[0]):
            return found[0].decode("ascii")
    return f"{getrandbits(128):032x}"


def forwarded_for(raw: Headers, peer: str, *, trusted: bool) -> bytes:
    """The client's ``X-Forwarded-For`` (if any, copies joined) followed by the real peer.

    The client's part is kept whether or not the peer is trusted (DESIGN "Forwarding"); an
    upstream must only believe the right-most entries, which the gateway appends. ``trusted``
    is accepted so callers state it; it does not change the value.
    """
    del trusted
    parts = [v.strip() for n, v in raw if canonical(n) == b"x-forwarded-for" and v.strip()]
    parts.append(peer.encode("ascii", "replace") if peer else b"unknown")
    return b", ".join(parts)


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def canonical_request_headers(raw: Headers, drop: frozenset[bytes] = frozenset()) -> Headers:
    """What is forwarded is what was read: a name spelled with ``_`` or ``.`` goes out in its
    canonical form (``X_Tenant_Id`` -> ``x-tenant-id``, LIMITS.md "Rules"), and the framing
    header ``Content-Length`` is re-rendered once as ``content-length: <int>`` (``03`` ->
    ``3``); ``Transfer-Encoding`` is hop-by-hop and never forwarded. Names in ``drop``
    (canonical) are left out: one pass, one ``canonical`` lookup per header."""
    out: Headers = []
    length: int | None = None
    memo = _CANON_CACHE.get                 # canonical() without a call per header
    for n, v in raw:
        c = memo(n) or canonical(n)
        if c in drop:
            continue
        if c == b"content-length":
            for item in v.split(b","):
                item = item.strip()
                if not _DIGITS.fullmatch(item) or (length is not None and int(item) != length):
                    raise BadRequest("invalid Content-Length", code="bad_framing")
                length = int(item)
            continue
        out.append((c if (b"_" in n or b"." in n) else n, v))
    if length is not None:
        out.append((b"content-length", str(length).encode("ascii")))
    return out


def upstream_request_headers(raw: Headers, *, remove: frozenset[bytes], peer: str, trusted: bool,
                             scheme: str, host: str | bytes | None, request_id: str,
                             upstream_authority: str | bytes,
                             extra: Headers, chain: Sequence[str] | None = None) -> Headers:
    """The complete outbound header list: stripped client headers, then the gateway's own.

    Every name the gateway sets here (``extra`` included) is removed from the client's copy
    first, so exactly one of each reaches the upstream. ``chain`` is the X-Forwarded-For list
    policy walked (RequestFacts.chain); the upstream gets that list followed by the peer.
    ``scheme`` is the one policy believed (``http``/``https``, or ``ws``/``wss``).
    """
    own = frozenset(canonical(n) for n, _ in extra)
    out = [(b"host", _bytes(upstream_authority))]
    out += canonical_request_headers(raw, _drop_for(raw, frozenset(remove) | own, False))
    xff = (forwarded_for(raw, peer, trusted=trusted) if chain is None else
           ", ".join([*chain, peer or "unknown"]).encode("latin-1", "replace"))
    out.append((b"x-forwarded-for", xff))
    out.append((b"x-forwarded-proto", {"ws": b"http", "wss": b"https"}.get(scheme,
                                                                           _bytes(scheme))))
    if host:
        out.append((b"x-forwarded-host", _bytes(host)))
    out.append((b"x-request-id", request_id.encode("ascii")))
    out.extend(extra)
    return out


_NAME = itemgetter(0)
_RESPONSE_KEEP: dict[tuple[Any, ...], tuple[tuple[int, ...], tuple[bool, ...]]] = {}


def response_headers(raw: Headers, *, remove: frozenset[bytes] = frozenset()) -> Headers:
    """Upstream response headers minus hop-by-hop, Connection-named and ``remove``.

    Repeated headers (``Set-Cookie``) are kept, in order. An upstream answers with the same
    header names response after response: which positions to keep is memoised per name list
    and, when there is a ``Connection`` header (nginx sends ``Connection: keep-alive`` on
    every response), per its values too, since they name more to drop (bounded).
    """
    names = tuple(map(_NAME, raw))
    key: tuple[Any, ...] = (names, remove)
    found = _RESPONSE_KEEP.get(key)
    if found is not None and found[0]:
        key = (names, remove, tuple(raw[i][1] for i in found[0]))
        found = _RESPONSE_KEEP.get(key)
    if found is None:
        canon = [canonical(n) for n in names]
        drop = HOP_BY_HOP | remove
        at = tuple(i for i, c in enumerate(canon) if c == b"connection")
        if at:
            drop = drop | _connection_named(raw)
        keep = tuple(c not in drop for c in canon)
        if len(_RESPONSE_KEEP) < 1024:      # bounded: upstreams choose names and values
            if at:
                _RESPONSE_KEEP[(names, remove)] = (at, ())
                key = (names, remove, tuple(raw[i][1] for i in at))
            _RESPONSE_KEEP[key] = ((), keep)
        return list(compress(raw, keep))
    return list(compress(raw, found[1]))


def is_trusted(peer: str | None, networks: Iterable[ipaddress.IPv4Network
                                                    | ipaddress.IPv6Network]) -> bool:
    """Whether the socket peer is one of ``listen.trusted_proxies``."""
    networks = tuple(networks)
    if not networks or not peer:
        return False
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)
