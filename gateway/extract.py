"""Step 1: exactly one bearer token from the request, or a clear error. Pure."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from .errors import InvalidRequest, TokenTooLarge

# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
HARD_CAP = 65536   # before any per-source cap: a header this large is never a token we accept


def bearer_token(headers: list[tuple[bytes, bytes]], query_string: bytes = b"") -> str | None:
    """The request's bearer token, None when it carries none (or a non-Bearer scheme)."""
    if (b"access_token" in query_string or b"%" in query_string) and any(
            k == "access_token" for k, _ in parse_qsl(query_string.decode("latin-1"),
                                                      keep_blank_values=True)):
        # compared after percent-decoding: `access%5Ftoken` and `%61ccess_token` are the
        # name every upstream framework decodes them to (LIMITS.md "Policy inputs")
        raise InvalidRequest("send the token in the Authorization header, not the query",
                             code="token_in_query")
    found: bytes | None = None
    for name, value in headers:
        if len(name) != 13 or name.lower() != b"authorization":   # (lower() copies)
            continue
        if found is not None:
            raise InvalidRequest("more than one Authorization header", code="multiple_authorization")
        found = value
    if found is None:
        return None
    value = found.strip(b" \t")
    scheme, _, credentials = value.partition(b" ")
    if scheme.lower() != b"bearer":
        return None            # another scheme is not ours: treated as no token
    credentials = credentials.strip(b" ")
    if not credentials:
        raise InvalidRequest("Bearer with no credential", code="empty_bearer")
    if len(credentials) > HARD_CAP:
        raise TokenTooLarge(f"token larger than {HARD_CAP} bytes")
    if not _B64TOKEN.fullmatch(credentials):
        if b"," in credentials or b" " in credentials:
            raise InvalidRequest("more than one credential in Authorization",
                                 code="multiple_credentials")
        raise InvalidRequest("characters outside the b64token syntax", code="bad_token_chars")
    return credentials.decode("ascii")


def websocket_protocol_token(headers: list[tuple[bytes, bytes]], prefix: str) -> str | None:
    """A token carried as a ``Sec-WebSocket-Protocol`` entry ``<prefix><token>`` (browsers
    cannot set Authorization on a WebSocket handshake). Two such entries are a 400."""
    found: str | None = None
    for name, value in headers:
        if name.lower() != b"sec-websocket-protocol":
            continue
        for item in value.decode("latin-1").split(","):
            item = item.strip()
            if not item.startswith(prefix):
                continue
            if found is not None:
                raise InvalidRequest("more than one bearer entry in Sec-WebSocket-Protocol",
                                     code="multiple_credentials")
            token = item[len(prefix):]
            if not token:
                raise InvalidRequest("bearer subprotocol entry with no credential",
                                     code="empty_bearer")
            if len(token) > HARD_CAP:
                raise TokenTooLarge(f"token larger than {HARD_CAP} bytes")
            if not _B64TOKEN.fullmatch(token.encode("ascii", "replace")):
                raise InvalidRequest("characters outside the b64token syntax",
                                     code="bad_token_chars")
            found = token
    return found
