"""The request target and ``Host`` rules of RFC 9112 §3.2 / RFC 9110 §7.2 (pure).

Shared by the gateway's HTTP protocol (before the app runs), the middleware (under any other
server) and the decision service (for the original request a proxy asks about), so the three
refuse exactly the same heads.
"""

from __future__ import annotations

import re

__all__ = ["HeadError", "allow_header", "check_host", "check_target", "valid_host"]

# reg-name without sub-delims (a comma would make a list), IPv4, or a bracketed IPv6
# literal; then an optional port. No userinfo, no path, no whitespace.
_HOST = re.compile(rb"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?")
_ALLOW = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


class HeadError(Exception):
    """A request head refused before the app: ``status`` (400, 501) and a short reason."""

    def __init__(self, status: int, detail: str, code: str = "bad_request") -> None:
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


def allow_header() -> bytes:
    """The ``Allow`` value of the gateway's own ``OPTIONS *`` answer."""
    return _ALLOW


_VALID: dict[bytes, bool] = {}     # clients repeat their Host: answers memoised (bounded)


def valid_host(value: bytes) -> bool:
    known = _VALID.get(value)
    if known is None:
        known = bool(value) and _HOST.fullmatch(value) is not None
        if len(_VALID) < 1024:
            _VALID[value] = known
    return known


def check_host(headers: list[tuple[bytes, bytes]], version: str,
               authority: bytes | None = None) -> bytes | None:
    """The one valid ``Host`` value (lower-case names expected), or ``HeadError``.

    HTTP/1.1 needs exactly one ``Host`` line; HTTP/1.0 may omit it. An empty value, a comma
    list, userinfo (``@``), a path or anything else that is not ``host[:port]`` is refused, and
    so is an absolute-form ``authority`` that disagrees with it.
    """
    found: bytes | None = None
    count = 0
    for name, value in headers:
        if name == b"host":
            count += 1
            found = value
    if count > 1:
        raise HeadError(400, "more than one Host header", "bad_host")
    if found is None:
        if version == "1.0" and authority is None:
            return None
        if authority is None:
            raise HeadError(400, "HTTP/1.1 request without Host", "bad_host")
        raise HeadError(400, "absolute-form target without Host", "bad_host")
    if not valid_host(found):
        raise HeadError(400, "invalid Host header", "bad_host")
    if authority is not None and authority.lower() != found.lower():
        raise HeadError(400, "request target authority differs from Host", "bad_host")
    return found


def check_target(method: str, url: bytes, headers: list[tuple[bytes, bytes]],
                 version: str) -> tuple[bytes, bytes] | None:
    """``(raw path, query)`` of a request target, ``None`` for ``OPTIONS *`` (answered by the
    gateway itself), or ``HeadError``. ``Host`` is checked here too."""
    authority: bytes | None = None
    if url[:1] == b"/":
        target = url
    elif url == b"*":
        check_host(headers, version)
        if method != "OPTIONS":
            raise HeadError(400, "asterisk-form target is only for OPTIONS")
        return None
    elif method == "CONNECT":
        raise HeadError(501, "CONNECT is not supported", "not_implemented")
    else:
        lower = url[:8].lower()
        if lower.startswith(b"http://"):
            rest = url[7:]
        elif lower.startswith(b"https://"):
            rest = url[8:]
        else:
            raise HeadError(400, "invalid request target")
        slash = rest.find(b"/")
        query_at = rest.find(b"?")
        end = min(i for i in (slash, query_at, len(rest)) if i >= 0)
        authority, target = rest[:end], rest[end:]
        if not valid_host(authority):
            raise HeadError(400, "invalid authority in request target", "bad_host")
        if not target.startswith(b"/"):
            target = b"/" + target
    if b"#" in target:
        raise HeadError(400, "fragment in request target")
    check_host(headers, version, authority)
    q = target.find(b"?")
    if q < 0:
        return target, b""
    return target[:q], target[q + 1:]
