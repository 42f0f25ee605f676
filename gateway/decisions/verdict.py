"""One decision for a proxy's sub-request: the proxy mode's router, facts, pipeline and errors.

``decide`` takes the ORIGINAL request (method, URI, headers) as the asking proxy reports it and
the asking peer, and returns what the proxy mode would have done with it: 200 plus the identity
headers and the downstream credential it would have sent upstream, or the refusal it would
have answered (status, ``WWW-Authenticate``, JSON body with error/reason/request_id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, GatewayError
from ..facts import request_facts
from ..forward.headers import canonical, request_id
from ..admissions import admit
from ..forward.outbound import credential_header
from ..listen.head import HeadError, check_target
from ..routes import normalise_path

if TYPE_CHECKING:
    from ..engine import Engine

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one sub-request."""

    status: int
    headers: Headers          # allow: identity headers + credential; deny: challenge etc.
    body: bytes
    request_id: str
    error: GatewayError | None = None   # the refusal, None when allowed
    set_names: frozenset[bytes] = frozenset()   # gateway headers the allow carries
    route: str = "-"                    # for logs and metrics, as the proxy mode names them
    role: str | None = None
    reason: str | None = None           # the allow's reason (a refusal's is error.code)

    @property
    def allowed(self) -> bool:
        return self.error is None


def original_target(method: str, uri: bytes, headers: Headers) -> tuple[bytes, bytes]:
    """(raw path, query) of the original request, with the proxy mode's target and ``Host``
    rules (gateway/listen/head.py, shared with the HTTP protocol), or ``BadRequest``."""
    try:
        found = check_target(method, uri, headers, "1.1")
    except HeadError as e:
        err = BadRequest(e.detail, code=e.code)
        err.status = e.status                  # 400, or 501 for CONNECT
        raise err from None
    if found is None:                          # OPTIONS *: the proxy mode answers it itself
        raise BadRequest("asterisk-form target is not forwarded", code="bad_request")
    return found


async def decide(engine: "Engine", method: str, uri: bytes, headers: Headers, *, peer: str,
                 scheme: str = "http") -> Verdict:
    """The proxy mode's decision for ``method uri`` with ``headers``, asked by trusted ``peer``.

    The peer was checked against ``decisions.trusted_proxies`` by the caller, so the proxy's
    ``X-Forwarded-For``/``-Proto``/``X-Request-Id`` are believed (the client is the rightmost
    hop that is neither a decisions peer nor one of ``listen.trusted_proxies``).
    """
    cfg = engine.config
    rid = request_id(headers, trusted=True)
    networks = tuple(cfg.listen.trusted_proxies) + tuple(cfg.decisions.trusted_proxies)
    try:
        raw_path, query = original_target(method, uri, headers)
        path = normalise_path(raw_path)
        scope: dict[str, Any] = {"type": "http", "method": method, "headers": headers,
                                 "scheme": scheme, "path": path, "raw_path": raw_path,
                                 "query_string": query}
        facts = request_facts(scope, path, peer, True, engine.clock(), networks,
                              engine.admissions.read_names)
        # the proxy mode's own admission: the same cache, session and pipeline
        outcome, extra = await admit(engine, headers, scope, facts)
    except GatewayError as e:
        return refusal(e, rid)
    return _allow(engine, outcome, extra, rid)


def refusal(e: GatewayError, rid: str) -> Verdict:
    """The proxy mode's refusal (middleware ``_refuse``): same status, challenge and body."""
    body = json.dumps(e.body(rid)).encode()
    hdrs: Headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                     (b"x-request-id", rid.encode("ascii"))]
    challenge = e.www_authenticate()
    if challenge:
        hdrs.append((b"www-authenticate", challenge.encode("latin-1")))
    if e.retry_after is not None:
        hdrs.append((b"retry-after", str(e.retry_after).encode()))
    return Verdict(e.status, hdrs, body, rid, error=e, route=e.route or "-", role=e.role)


def _allow(engine: "Engine", outcome: Any, extra: Headers, rid: str) -> Verdict:
    names = gateway_names(engine)
    # what the proxy mode adds to the outbound request; the user token (forward_user_token)
    # is the client's own Authorization, which the proxy passes or strips by its config
    own = [(k, v) for k, v in extra if canonical(k) in names]
    own.append((b"x-request-id", rid.encode("ascii")))
    return Verdict(200, own, b"", rid, set_names=frozenset(canonical(k) for k, _ in own),
                   route=outcome.route.id if outcome.route is not None else "-",
                   role=outcome.principal.role, reason=outcome.decision.reason)


def spelled_otherwise(headers: Headers, names: frozenset[bytes]) -> set[bytes]:
    """Client header names that are a gateway header spelled otherwise (``X_Auth_Sub``,
    ``x.auth.sub``): the proxy mode strips them; a proxy only overwrites the exact name."""
    return {k.lower() for k, _ in headers
            if canonical(k) in names and k.lower() != canonical(k)}


def gateway_names(engine: "Engine") -> frozenset[bytes]:
    """The identity header names and the credential header (canonical, lower-case)."""
    return frozenset(engine.identity.names) | {credential_header(engine)}
