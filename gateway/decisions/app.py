"""The decisions listener's pure-ASGI app: nginx, Traefik/Caddy and Envoy ext_authz HTTP faces.

Each face reads the original request the way its proxy reports it and answers in the way its
proxy understands; the decision itself is ``verdict.decide`` for all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import accesslog
from ..errors import BadRequest, GatewayError, NotFound
from ..forward.headers import is_trusted, request_id
from .verdict import Verdict, decide, gateway_names, refusal, spelled_otherwise

if TYPE_CHECKING:
    from ..engine import Engine

Headers = list[tuple[bytes, bytes]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

NGINX, TRAEFIK, ENVOY = "/auth/nginx", "/auth/traefik", "/auth/envoy"
ENVOY_REMOVE = b"x-envoy-auth-headers-to-remove"
STATUS_HEADER = b"x-poolgate-status"     # the refusal's real status (nginx sees 401/403 only)


class Untrusted(GatewayError):
    """403: the asking peer is not in ``decisions.trusted_proxies``; nothing is decided."""

    status = 403
    error = "forbidden"
    code = "untrusted_peer"


class DecisionApp:
    """``DecisionApp(lambda: proxy_app.engine)``: follows the proxy's engine across reloads."""

    def __init__(self, engine: Callable[[], "Engine"]) -> None:
        self.engine = engine
        self._trust: dict[str, bool] = {}        # peer -> trusted, for one engine
        self._trust_engine: Any = None

    def trusted(self, engine: "Engine", peer: str) -> bool:
        """``decisions.trusted_proxies`` membership, memoised per engine (a handful of proxy
        addresses ask, again and again: parsing the address was ~14% of a decision)."""
        if engine is not self._trust_engine:
            self._trust, self._trust_engine = {}, engine
        found = self._trust.get(peer)
        if found is None:
            found = is_trusted(peer, engine.config.decisions.trusted_proxies)
            if len(self._trust) < 4096:          # bounded: peers are not chosen by clients
                self._trust[peer] = found
        return found

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return                         # lifespan is the proxy listener's
        engine = self.engine()
        if not engine.started:
            await engine.start()
        headers: Headers = scope["headers"]
        client = scope.get("client")
        peer = client[0] if client else ""
        path: str = scope["path"]
        if not self.trusted(engine, peer):
            rid = request_id(headers, trusted=False)
            v = refusal(Untrusted(f"peer {peer or '?'} is not in decisions.trusted_proxies"),
                        rid)
            return await _send(send, v.status, v.headers, v.body)
        face = "-"
        try:
            if path == NGINX:
                face, v = "nginx", await self._nginx(engine, headers, peer)
            elif path == TRAEFIK:
                face, v = "traefik", await self._traefik(engine, headers, peer)
            elif path == ENVOY or path.startswith(ENVOY + "/"):
                face, v = "envoy", await self._envoy(engine, scope, headers, peer)
            else:
                v = refusal(NotFound("no such decision endpoint", code="no_endpoint"),
                            request_id(headers, trusted=True))
        except BadRequest as e:           # the sub-request itself lacks what its face needs
            v = refusal(e, request_id(headers, trusted=True))
        count_decision(engine, v, face)
        await _send(send, v.status, v.headers, v.body)

    # -- faces --------------------------------------------------------------------------

    async def _nginx(self, engine: "Engine", headers: Headers, peer: str) -> Verdict:
        method, uri = _required(headers, b"x-original-method", b"x-original-uri")
        v = await decide(engine, method, uri, headers, peer=peer)
        if v.allowed or v.status in (401, 403) or v.status >= 500:
            return _with(v, [(STATUS_HEADER, str(v.status).encode())] if not v.allowed else [])
        # auth_request turns any other status into 500: answer 403 (still a denial without
        # the shipped error_page) and carry the proxy mode's status for the shipped config
        return replace(v, status=403, headers=[*v.headers, (STATUS_HEADER, str(v.status).encode())])

    async def _traefik(self, engine: "Engine", headers: Headers, peer: str) -> Verdict:
        method, uri = _required(headers, b"x-forwarded-method", b"x-forwarded-uri")
        fwd_host = _one(headers, b"x-forwarded-host")
        if fwd_host is not None:          # the check request's Host names us, not the site
            headers = [(k, v) for k, v in headers if k.lower() != b"host"]
            headers.append((b"host", fwd_host))
        return await decide(engine, method, uri, headers, peer=peer)

    async def _envoy(self, engine: "Engine", scope: dict[str, Any], headers: Headers,
                     peer: str) -> Verdict:
        raw = scope.get("raw_path") or scope["path"].encode()
        uri = raw[len(ENVOY):] or b"/"
        query = scope.get("query_string", b"")
        if query:
            uri += b"?" + query
        v = await decide(engine, scope["method"], uri, headers, peer=peer)
        if not v.allowed:
            return v
        # headers the gateway sets but did not set this time, and other spellings of them:
        # Envoy removes the client's copies
        names = gateway_names(engine)
        remove = sorted((names - v.set_names) | spelled_otherwise(headers, names))
        return _with(v, [(ENVOY_REMOVE, b",".join(remove))] if remove else [])


def _with(v: Verdict, extra: Headers) -> Verdict:
    if not extra:
        return v
    return replace(v, headers=[*v.headers, *extra])


def _one(headers: Headers, name: bytes) -> bytes | None:
    found = [v for k, v in headers if k.lower() == name]
    if len(found) > 1:
        raise BadRequest(f"more than one {name.decode()} header", code="bad_subrequest")
    return found[0] if found else None


def _required(headers: Headers, method_name: bytes, uri_name: bytes) -> tuple[str, bytes]:
    method, uri = _one(headers, method_name), _one(headers, uri_name)
    if not method or not uri:
        raise BadRequest(f"{method_name.decode()} and {uri_name.decode()} are required",
                         code="bad_subrequest")
    try:
        m = method.decode("ascii").strip().upper()
    except UnicodeDecodeError:
        raise BadRequest("non-ASCII method", code="bad_subrequest") from None
    if not m.isalpha():
        raise BadRequest("malformed method", code="bad_subrequest")
    return m, uri.strip()


def count_decision(engine: "Engine", v: Verdict, face: str) -> None:
    """The proxy mode's decision metric and access-log line, for one decision."""
    m = engine.metrics
    code = v.reason if v.error is None else v.error.code
    decision = "allow" if v.error is None else "deny"
    m.child(m.decisions, decision, code or "none").inc()
    if engine.config.logging.access_log:
        accesslog.emit({"request_id": v.request_id, "listener": "decisions", "face": face,
                        "route": v.route, "status": v.status,
                        "decision": decision, "code": code, "role": v.role})


async def _send(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["DecisionApp"]
