"""The revocations admin API (POST | GET | DELETE /revocations) and `poolgate revoke`.

POST body: exactly one of ``jti``, ``origin_jti``, ``sub``, ``token``; plus optional ``exp``
(epoch seconds; with ``token`` the later of it and the token's exp) or, with ``sub`` only,
``not_before`` (default now). ``{"token": JWT}`` revokes its ``jti``, or, without one, its
``sub`` with ``not_before = iat + 1`` (so that token and every earlier one; now if no iat).
The token is verified when a verifier is wired in; otherwise its payload is decoded strictly
but NOT trusted (harmless: revoking only ever adds a deny entry). Nothing is written unless the
whole request is valid. Answers: 201 + entry, 200 + entry / 404, 204 / 404; 400 with
``{"error": "invalid_request", "reason", "error_description"}``; 401 without the admin token;
409 when ``revocation.store`` is ``none``; 503 + Retry-After when the store cannot answer.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import time
from typing import Any, Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..config import RevocationConfig
from ..errors import REALM
from ..principal import VerifiedToken
from .audit import audit, delete_entry, write_entry
from .entries import KINDS, Entry, EntryError, RevocationStore, StoreError, make_entry
from .listing import DEFAULT_LIMIT, MAX_LIMIT, CursorError, page_json

MAX_BODY_BYTES = 64 * 1024
MAX_TOKEN_BYTES = 64 * 1024      # identity_sources[].max_token_bytes may be up to 65536
POST_FIELDS = frozenset(KINDS) | {"token", "exp", "not_before"}
Handler = Callable[[Request], Awaitable[Response]]
VIA_API = "admin_api"


class RevokeError(Exception):
    """`poolgate revoke` could not write the entry; the message says why and what to do."""


class _Invalid(Exception):
    def __init__(self, reason: str, description: str) -> None:
        self.reason, self.description = reason, description
        super().__init__(description)


def _error(status: int, error: str, reason: str, description: str,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason, "error_description": description},
                        status_code=status, headers=dict(headers or {}))


# --------------------------------------------------------------------------- strict parsing

def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Invalid("bad_json", f"duplicate key {k!r}")
        out[k] = v
    return out


def _bad_constant(name: str) -> Any:
    raise _Invalid("bad_json", f"{name} is not valid JSON")


def _loads(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = json.loads(text, object_pairs_hook=_no_dupes, parse_constant=_bad_constant)
    except _Invalid:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Invalid("bad_json", f"{what} is not valid UTF-8 JSON")
    if not isinstance(data, dict):
        raise _Invalid("bad_json", f"{what} must be a JSON object")
    return data


def _number(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _Invalid("bad_" + name, f"{name} must be a number (epoch seconds)")
    return float(v)


def decode_unverified(token: Any) -> dict[str, Any]:
    """The payload of a compact JWS, parsed strictly, NOT verified: use only to add entries."""
    if not isinstance(token, str) or not token:
        raise _Invalid("bad_token", "token must be a non-empty string")
    if len(token) > MAX_TOKEN_BYTES:
        raise _Invalid("bad_token", f"token is larger than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise _Invalid("bad_token", "token is not a compact JWS (three base64url segments)")
    seg = parts[1]
    if any(c not in _B64URL for c in seg):
        raise _Invalid("bad_token", "token payload is not base64url")
    try:
        raw = base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
    except ValueError:
        raise _Invalid("bad_token", "token payload is not base64url")
    return _loads(raw, "token payload")


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def entry_from_body(body: Mapping[str, Any], claims: Mapping[str, Any] | None, *, now: float,
                    max_token_lifetime: float, skew: float) -> Entry:
    """A validated POST body (with the token's claims when it names a token) -> Entry."""
    unknown = sorted(set(body) - POST_FIELDS)
    if unknown:
        raise _Invalid("unknown_field", f"unknown field {unknown[0]!r} (allowed: "
                                        f"{', '.join(sorted(POST_FIELDS))})")
    kinds = [k for k in (*KINDS, "token") if k in body]
    if len(kinds) != 1:
        raise _Invalid("one_kind", "give exactly one of jti, origin_jti, sub, token")
    kind = kinds[0]
    exp = _number(body["exp"], "exp") if "exp" in body else None
    not_before = _number(body["not_before"], "not_before") if "not_before" in body else None
    if not_before is not None and kind != "sub":
        raise _Invalid("bad_not_before", "not_before is allowed with sub only")
    if kind == "sub" and not_before is None:
        not_before = whole_second_after(now)
    if kind != "token":
        return make_entry(kind, body[kind], exp=exp, not_before=not_before, now=now,
                          max_token_lifetime=max_token_lifetime, skew=skew)
    assert claims is not None
    token_exp = claims.get("exp")
    from_token = False
    if token_exp is not None:
        token_exp = _number(token_exp, "exp")
        from_token = exp is None or exp <= token_exp     # the TTL comes from the token's exp
        exp = token_exp if exp is None else max(exp, token_exp)
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        return make_entry("jti", jti, exp=exp, now=now, max_token_lifetime=max_token_lifetime,
                          skew=skew, from_token=from_token)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise _Invalid("bad_token", "the token has neither a jti nor a sub to revoke by")
    iat = claims.get("iat")
    nbf = _number(iat, "iat") + 1 if iat is not None else whole_second_after(now)
    # the sub entry must outlive every token issued before nbf: not exp, the lifetime rule
    return make_entry("sub", sub, not_before=nbf, now=now,
                      max_token_lifetime=max_token_lifetime, skew=skew, from_token=True)


def whole_second_after(now: float) -> int:
    """The default not-before of a ``sub`` entry: whole epoch seconds (the key table's
    format), rounded UP so every token issued up to now (``iat`` is whole seconds) is revoked."""
    return math.floor(now) + 1


# --------------------------------------------------------------------------- the endpoint

def revocations_endpoint(store_getter: Callable[[], RevocationStore | None], *,
                         admin_token: str | None, config: RevocationConfig,
                         clock: Callable[[], float] = time.time,
                         skew_for_token: Callable[[Mapping[str, Any]], float] | None = None,
                         token_verifier: Callable[[str], Awaitable[VerifiedToken]] | None = None,
                         skew: float = 60, max_token_lifetime: float | None = None) -> Handler:
    """A Starlette handler for /revocations (route it with methods GET, POST, DELETE).

    ``max_token_lifetime``: for entries without exp, ``entries.entry_lifetime(...)`` of the
    config (default: ``config.max_token_lifetime_seconds``)."""
    expected = admin_token.encode() if admin_token else None
    lifetime = (config.max_token_lifetime_seconds if max_token_lifetime is None
                else max_token_lifetime)

    def authorized(request: Request) -> Response | None:
        if expected is None:
            return _error(401, "unauthorized", "revocation_api_disabled",
                          "revocation API disabled (set admin.token)", {"WWW-Authenticate": REALM})
        scheme, _, cred = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(cred.strip().encode(), expected):
            return _error(401, "unauthorized", "bad_admin_token",
                          "missing or wrong admin token", {"WWW-Authenticate": REALM})
        return None

    def store_or_error() -> RevocationStore | Response:
        store = store_getter()
        if store is not None:
            return store
        if config.store == "none":
            return _error(409, "invalid_request", "no_revocation_store",
                          "revocation.store is none: there is no revocation list to use")
        return _error(503, "unavailable", "store_not_started",
                      "the revocation store is not started yet", {"Retry-After": "5"})

    def unavailable(e: StoreError) -> Response:
        return _error(503, "unavailable", "revocation_unavailable",
                      f"revocation store unavailable: {e}", {"Retry-After": "5"})

    async def claims_of(raw: Any) -> Mapping[str, Any]:
        if token_verifier is None:
            return decode_unverified(raw)
        if not isinstance(raw, str) or not raw or len(raw) > MAX_TOKEN_BYTES:
            raise _Invalid("bad_token", "token must be a non-empty string of at most "
                                        f"{MAX_TOKEN_BYTES} bytes")
        try:
            return (await token_verifier(raw)).claims
        except Exception as e:  # noqa: BLE001 - a GatewayError names why
            if getattr(e, "status", None) == 503:
                raise StoreError(f"cannot verify the token now: {e}") from e
            code = getattr(e, "code", "invalid_token")
            raise _Invalid("token_not_accepted", f"the token does not verify ({code}); the "
                                                 "gateway already rejects it")

    async def post(request: Request, store: RevocationStore, peer: str | None,
                   seen: dict[str, Any]) -> Response:
        body_raw = await read_capped(request)
        if body_raw is None:
            audit("add", outcome="refused", peer=peer, via=VIA_API, reason="body_too_large")
            return _error(413, "invalid_request", "body_too_large",
                          f"body larger than {MAX_BODY_BYTES} bytes", {"Connection": "close"})
        body = _loads(body_raw, "body")
        seen.update((k, body[k]) for k in KINDS if isinstance(body.get(k), str))
        claims = None
        if "token" in body and not any(k in body for k in KINDS):
            claims = await claims_of(body["token"])
        entry_skew = skew_for_token(claims) if claims is not None and skew_for_token else skew
        entry = entry_from_body(body, claims, now=clock(), max_token_lifetime=lifetime,
                                skew=entry_skew)
        seen.update(kind=entry.kind, value=entry.value)
        entry = await write_entry(store, entry, peer=peer, via=VIA_API)
        return JSONResponse(entry.to_json(), status_code=201)

    def query_key(request: Request) -> tuple[str, str]:
        params = request.query_params
        unknown = sorted(set(params.keys()) - set(KINDS))
        if unknown:
            raise _Invalid("unknown_field", f"unknown query parameter {unknown[0]!r}")
        given = [k for k in KINDS if k in params]
        if len(given) != 1 or len(params.getlist(given[0])) != 1:
            raise _Invalid("one_kind", "give exactly one of jti, origin_jti, sub")
        return given[0], params[given[0]]

    async def listing(request: Request, store: RevocationStore) -> Response:
        params = request.query_params
        unknown = sorted(set(params.keys()) - {"cursor", "limit"})
        if unknown:
            raise _Invalid("unknown_field", f"unknown query parameter {unknown[0]!r} (give "
                                            "one of jti, origin_jti, sub; or cursor, limit)")
        limit_raw = params.get("limit", str(DEFAULT_LIMIT))
        if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_LIMIT:
            raise _Invalid("bad_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
        try:
            entries, nxt = await store.list(params.get("cursor"), int(limit_raw))
        except CursorError as e:
            raise _Invalid("bad_cursor", str(e))
        return JSONResponse(page_json(entries, nxt))

    async def handler(request: Request) -> Response:
        peer = request.client.host if request.client else None
        action = {"POST": "add", "DELETE": "delete"}.get(request.method)
        seen: dict[str, Any] = {}

        def refused(outcome: str, reason: str) -> None:
            if action is not None:
                kind = seen.get("kind") or next((k for k in KINDS if k in seen), None)
                audit(action, outcome=outcome, peer=peer, via=VIA_API, kind=kind,
                      value=seen.get("value", seen.get(kind or "")), reason=reason)

        denied = authorized(request)
        if denied is not None:
            refused("unauthorized", "bad_admin_token" if expected else "revocation_api_disabled")
            return denied
        store = store_or_error()
        if isinstance(store, Response):
            refused("refused" if config.store == "none" else "error", "no_revocation_store")
            return store
        try:
            if request.method == "POST":
                return await post(request, store, peer, seen)
            if request.method == "GET" and not any(k in request.query_params for k in KINDS):
                return await listing(request, store)
            kind, value = query_key(request)
            seen.update(kind=kind, value=value)
            if request.method == "GET":
                entry = await store.get(kind, value)
                if entry is None:
                    return _error(404, "not_found", "no_entry", f"no {kind} entry")
                return JSONResponse(entry.to_json())
            if request.method == "DELETE":
                if not await delete_entry(store, kind, value, peer=peer, via=VIA_API):
                    return _error(404, "not_found", "no_entry", f"no {kind} entry")
                return Response(status_code=204)
            return _error(405, "method_not_allowed", "method_not_allowed", "use GET, POST or DELETE",
                          {"Allow": "GET, POST, DELETE"})
        except _Invalid as e:
            refused("refused", e.reason)
            return _error(400, "invalid_request", e.reason, e.description)
        except EntryError as e:
            refused("refused", e.reason)
            return _error(400, "invalid_request", e.reason, e.description)
        except StoreError as e:
            if "value" not in seen or action is None:   # write_entry/delete_entry audited it
                refused("error", "revocation_unavailable")
            return unavailable(e)

    return handler


async def read_capped(request: Request, cap: int = MAX_BODY_BYTES) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``cap`` (from
    ``Content-Length``, or while reading a chunked body): never more than ``cap`` bytes plus
    one chunk are held, and the rest is never read."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)

