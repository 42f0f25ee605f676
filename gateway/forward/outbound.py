"""The outbound request headers for an admitted request: one function for HTTP and WebSocket.

Client copies of every header the gateway sets are deleted first; then the gateway adds the
identity headers, the downstream credential and (only if the route says so) the user token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .headers import canonical, upstream_request_headers

if TYPE_CHECKING:
    from ..engine import Engine
    from ..middleware import RequestContext

Headers = list[tuple[bytes, bytes]]

# headers the gateway sets itself: client copies are deleted on every path
ALWAYS_REMOVED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                            b"x-request-id", b"forwarded", b"x-real-ip"})


def removed_names(engine: "Engine") -> frozenset[bytes]:
    """Every header name the gateway sets or strips (canonical form), computed once per engine."""
    cached: frozenset[bytes] | None = getattr(engine, "_removed_names", None)
    if cached is None:
        cfg = engine.config
        role_headers = {canonical(m.role_request_header.encode("ascii"))
                        for m in cfg.mappings.values() if m.role_request_header}
        cached = (ALWAYS_REMOVED | engine.identity.names | {b"authorization"} | role_headers
                  | {credential_header(engine)})
        engine._removed_names = cached  # type: ignore[attr-defined]
    return cached


def credential_header(engine: "Engine") -> bytes:
    return canonical(engine.config.downstream_credential.header.encode("ascii"))


def _host(scope: dict[str, Any]) -> str:
    """The request's one ``Host`` (validated by the front end: exactly one, LIMITS.md), sent as
    ``X-Forwarded-Host``; a client's own ``X-Forwarded-Host`` is never passed on."""
    found = [v for k, v in scope["headers"] if canonical(k) == b"host"]
    if len(found) == 1:
        return found[0].decode("latin-1")
    server = scope.get("server")
    return f"{server[0]}:{server[1]}" if server else ""


def gateway_headers(engine: "Engine", outcome: Any, facts: Any = None) -> Headers:
    """The headers the gateway adds for an admitted request: identity headers, the downstream
    credential, the user token if the route says so (also what the decision service hands to
    the asking proxy). With ``downstream_credential.request_binding`` the credential names
    this request (``htm``: its method, ``htu``: the upstream URL of its path, no query), so it
    is signed per request (and the admission cache is off, gateway/admissions.py)."""
    route, principal = outcome.route, outcome.principal
    assert route is not None and route.upstream is not None
    upstream = engine.config.upstreams[route.upstream]
    extra = engine.identity.render(principal)
    signer = engine.signer
    if signer is not None and principal.role is not None:
        htm = htu = None
        if facts is not None and engine.config.downstream_credential.request_binding:
            htm, htu = facts.method, upstream.url.rstrip("/") + facts.path
        before = signer.signs_count
        cred = signer.issue_bytes(principal=principal, upstream=upstream.id, route_id=route.id,
                                  route_action=route.action, path_params=outcome.path_params,
                                  permissions=outcome.decision.permissions,
                                  decision_id=outcome.decision.id, htm=htm, htu=htu)
        extra.append((credential_header(engine), cred))
        if signer.signs_count != before:          # a cache miss: a real signature
            engine.metrics.credentials_signed.labels(upstream.id).inc()
    if route.forward_user_token and principal.token is not None:
        extra.append((b"authorization", b"Bearer " + principal.token.raw.encode("ascii")))
    return extra


def gateway_request_headers(scope: dict[str, Any], ctx: "RequestContext", *,
                            remove: frozenset[bytes] = frozenset(),
                            extra: Headers | None = None) -> Headers:
    """The complete outbound header list of an admitted request (``extra``: the gateway's
    own headers when already rendered, e.g. from the admission cache)."""
    engine = ctx.engine
    route = ctx.outcome.route
    upstream = engine.config.upstreams[route.upstream]
    if extra is None:
        extra = gateway_headers(engine, ctx.outcome, ctx.facts)
    facts = ctx.facts
    # the chain and scheme policy decided on (facts.py): the upstream sees the same ones
    return upstream_request_headers(
        scope["headers"], remove=removed_names(engine) | remove if remove else removed_names(engine),
        peer=ctx.peer, trusted=ctx.trusted, scheme="https" if facts.secure else "http",
        host=_host(scope), request_id=ctx.request_id, upstream_authority=upstream.authority,
        extra=extra, chain=facts.chain)
