"""SigV4 upstreams: an admitted request signed with the user's own temporary AWS credentials.

The client's ``Authorization`` and every ``X-Amz-*`` header are removed; the path and query
are put in AWS's canonical encoding once, and that same text is what is signed and what goes
on the wire (forward/h1.py writes the header list and target byte for byte, in order). The
signature covers ``host`` and the ``x-amz-*`` headers botocore adds; other headers travel
unsigned. Bodies up to ``listen.limits.buffer_body_bytes`` are read and signed with their
SHA-256; a larger S3 body streams with ``UNSIGNED-PAYLOAD``; a larger body to another service
is ``413`` (its signature needs the hash before the first byte is sent).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_to_bytes

from ..errors import PayloadTooLarge
from ..forward.headers import canonical
from .sts import quiet_botocore

if TYPE_CHECKING:
    from ..config import Upstream
    from ..principal import Principal
    from .room import AwsRoom
    from .sts import AwsCredentials

Headers = list[tuple[bytes, bytes]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
_AMZ = (b"x-amz", b"x_amz", b"x.amz")
_UNSIGNED_S3 = SimpleNamespace(s3={"payload_signing_enabled": False})
_SAFE = "-_.~"


def make_signer(creds: AwsCredentials, service: str, region: str) -> Any:
    """botocore's SigV4 signer (``S3SigV4Auth`` for s3) for one set of credentials, with two
    lean overrides for the per-request path (measured: the email.message-based header map was
    most of the signing cost): a plain dict for the headers to sign, and the derived signing
    key kept for the day it is valid (4 HMACs per request saved). The canonical request, string
    to sign and payload rules stay botocore's."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.credentials import ReadOnlyCredentials
    quiet_botocore()
    base = S3SigV4Auth if service == "s3" else SigV4Auth
    cls = _LEAN.get(base)
    if cls is None:
        cls = _LEAN[base] = type(f"Lean{base.__name__}", (_LeanSigner, base), {})
    return cls(ReadOnlyCredentials(creds.access_key_id, creds.secret_access_key,
                                   creds.session_token), service, region)


class _HeaderMap(dict):  # type: ignore[type-arg]
    """What ``canonical_headers`` needs from botocore's ``HTTPHeaders``: ``get_all``."""

    def get_all(self, key: str) -> list[str]:
        return [self[key]]


class _LeanSigner:
    _day: str = ""
    _key: bytes = b""
    _second: int = -1
    _stamp: str = ""

    def add_auth(self, request: Any) -> None:
        """botocore's ``SigV4Auth.add_auth`` step for step (modify -> canonical request ->
        string to sign -> signature -> inject), with the timestamp formatted once a second."""
        now = int(time.time())
        if now != self._second:
            self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            self._second = now
        request.context["timestamp"] = self._stamp
        self._modify_request_before_signing(request)                  # type: ignore[attr-defined]
        canonical_request = self.canonical_request(request)          # type: ignore[attr-defined]
        string_to_sign = self.string_to_sign(request, canonical_request)  # type: ignore[attr-defined]
        self._inject_signature_to_request(                            # type: ignore[attr-defined]
            request, self.signature(string_to_sign, request))

    def headers_to_sign(self, request: Any) -> _HeaderMap:
        return _HeaderMap((n.lower(), v) for n, v in request.headers.items())

    def _normalize_url_path(self, path: str) -> str:
        # the path is already normalised (gateway/routes.py) and in canonical encoding
        # (wire_path): botocore's dot-segment pass is a no-op here; the encoding rule stays
        # botocore's (S3: as is; others: encoded once more)
        return path if self._service_name == "s3" else quote(path, safe="/~")  # type: ignore[attr-defined]

    def signature(self, string_to_sign: str, request: Any) -> str:
        day = request.context["timestamp"][0:8]
        if day != self._day:
            self._key = self._derive(day)          # type: ignore[attr-defined]
            self._day = day
        return hmac.new(self._key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()

    def _derive(self, day: str) -> bytes:
        sign = self._sign                          # type: ignore[attr-defined]
        k = sign(f"AWS4{self.credentials.secret_key}".encode(), day)  # type: ignore[attr-defined]
        k = sign(k, self._region_name)             # type: ignore[attr-defined]
        k = sign(k, self._service_name)            # type: ignore[attr-defined]
        return sign(k, "aws4_request")             # type: ignore[no-any-return]


_LEAN: dict[type, type] = {}


class _Request:
    """The fields botocore's signer reads and writes (its ``AWSRequest`` keeps headers in an
    ``email.message``: several times slower for the few headers signed here)."""

    __slots__ = ("body", "context", "headers", "method", "params", "url")

    def __init__(self, method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self.context: dict[str, Any] = {}
        self.params: dict[str, str] = {}


async def sign(room: AwsRoom, scope: dict[str, Any], receive: Receive, principal: Principal,
               path: str, upstream: Upstream,
               headers: Headers) -> tuple[dict[str, Any], Receive, str, Headers]:
    """(scope, receive, path, headers) to forward an admitted request (``path`` normalised):
    signed with ``principal``'s credentials, the body replayed if it was read."""
    target = room.upstreams[upstream.id]
    entry = await room.credentials(principal)
    signer = room.signer(entry, target.service, target.region)
    body, receive, unsigned = await _body(scope, receive, room.body_limit,
                                          s3=target.service == "s3")
    path = wire_path(path)
    query = wire_query(scope.get("query_string", b""))
    host = upstream.authority
    url = f"{upstream.url}{path}?{query}" if query else f"{upstream.url}{path}"
    req = _Request(scope["method"], url, {"host": host}, body or b"")
    if unsigned:
        req.context["client_config"] = _UNSIGNED_S3
    signer.add_auth(req)
    # client copies of what AWS reads (any spelling: X_Amz_Date too) never reach it
    out = [(n, v) for n, v in headers
           if not (c := n.lower()).startswith(_AMZ) and canonical(c) != b"authorization"]
    if body is not None and not any(n.lower() == b"content-length" for n, _ in out):
        out.append((b"content-length", str(len(body)).encode("ascii")))
    for name, value in req.headers.items():        # what botocore added, as it signed them
        if name != "host":
            out.append((name.lower().encode("ascii"), value.encode("ascii")))
    raw_query = scope.get("query_string", b"")
    if raw_query and query.encode("latin-1") != raw_query:
        scope = {**scope, "query_string": query.encode("latin-1")}
    return scope, receive, path, out


def wire_path(path: str) -> str:
    """The path in AWS's canonical encoding (every byte but unreserved ones and ``/``
    percent-encoded): S3 signs it as is, other services sign it encoded once more."""
    return quote(unquote_to_bytes(path), safe="/" + _SAFE)


def wire_query(raw: bytes) -> str:
    """The query in AWS's canonical form: each name and value encoded, pairs sorted."""
    if not raw:
        return ""
    pairs = []
    for part in raw.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        pairs.append((quote(unquote_to_bytes(name), safe=_SAFE),
                      quote(unquote_to_bytes(value), safe=_SAFE)))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


async def _body(scope: dict[str, Any], receive: Receive, limit: int,
                *, s3: bool) -> tuple[bytes | None, Receive, bool]:
    """(body or None, receive to hand on, unsigned?). None: no body, or a streamed one."""
    length: int | None = None
    chunked = False
    for n, v in scope.get("headers", ()):           # ASGI: names lower-case, as parsed
        if n == b"content-length":
            length = int(v)
        elif n == b"transfer-encoding":
            chunked = True
    if not chunked and not length:
        return None, receive, False
    if length is not None and length > limit:
        if not s3:
            raise PayloadTooLarge(f"a signed request body is limited to {limit} bytes")
        return None, receive, True
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None, _replay([], msg, receive), False
        chunk = msg.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = msg.get("more_body", False)
        if size > limit:
            if not s3:
                raise PayloadTooLarge(f"a signed request body is limited to {limit} bytes")
            return None, _replay(chunks, None, receive, complete=not more), True
    body = b"".join(chunks)
    return body, _replay([body], None, receive, complete=True), False


def _replay(chunks: list[bytes], final: dict[str, Any] | None, receive: Receive,
            *, complete: bool = False) -> Receive:
    """A ``receive`` that hands back what was read (``complete``: the whole body, so the last
    chunk ends it), then continues with the client's own ``receive``."""
    queue: list[dict[str, Any]] = [{"type": "http.request", "body": c, "more_body": True}
                                   for c in chunks]
    if complete and queue:
        queue[-1]["more_body"] = False
    if final is not None:
        queue.append(final)

    async def replayed() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed
