"""Steps 0-4 in order, nothing else: route -> token -> verify -> revoked? -> role -> policy."""

from __future__ import annotations

import logging
from random import getrandbits
from dataclasses import dataclass
from typing import Any, Mapping

from . import tracing
from .config import Config, Route
from .errors import BadRequest, Forbidden, GatewayError, InvalidToken, MissingToken, Unavailable
from .extract import bearer_token
from .mapping import RoleMapper
from .policy import PolicyEngine, scopes_satisfied
from .principal import Decision, Principal, RequestFacts, VerifiedToken
from .revocation import RevocationStore, StoreError
from .routes import Router
from .verify import Verifier

log = logging.getLogger("poolgate.pipeline")
# middleware mode, no route matched: the requirement of `middleware.default` applies, and logs,
# traces and the metrics `route` label name it after that config key (a fixed, bounded value)
FALLBACK_ROUTE_ID = "middleware.default"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the pipeline concluded about one request; the proxy and the middleware act on it."""

    route: Route | None
    path_params: Mapping[str, str]
    principal: Principal
    decision: Decision


class Pipeline:
    """The one engine shared by the proxy and the middleware."""

    def __init__(self, config: Config, *, router: Router, verifier: Verifier,
                 revocation: RevocationStore | None, mapper: RoleMapper,
                 policy: PolicyEngine, fallback_auth: str | None = None,
                 fallback_service: str | None = None) -> None:
        self.config = config
        self.router = router
        self.verifier = verifier
        self.revocation = revocation
        self.fail_open = config.revocation.on_error == "allow"
        self.mapper = mapper
        self.policy = policy
        # middleware mode: the requirement when no route matches (None: no route = 404)
        self.fallback = (None if fallback_auth is None else
                         Route(id=FALLBACK_ROUTE_ID, path=None, methods=None,  # type: ignore[arg-type]
                               upstream=fallback_service, auth=fallback_auth))

    async def authorize(self, headers: list[tuple[bytes, bytes]], query: bytes,
                        facts: RequestFacts, token: str | None = None) -> Outcome:
        decision_id = f"{getrandbits(64):016x}"   # an id, not a secret: no syscall
        # 0. route
        route, params = self.route(facts.method, facts.path)
        if route.auth == "public":
            return self._public(route, params, decision_id)
        try:
            return await self._authorize(route, params, headers, query, facts, token,
                                         decision_id)
        except GatewayError as e:
            e.route = route.id             # logs and metrics name the route of a refusal too
            raise

    async def authorize_reserved(self, route: Route, headers: list[tuple[bytes, bytes]],
                                 query: bytes, facts: RequestFacts,
                                 token: str | None = None) -> Outcome:
        """Steps 1-4 for a gateway-owned endpoint (``/_poolgate/...``): the caller names the
        route instead of the router (``token``: a browser session's access token)."""
        try:
            return await self._authorize(route, {}, headers, query, facts, token,
                                         f"{getrandbits(64):016x}")
        except GatewayError as e:
            e.route = route.id
            raise

    async def _authorize(self, route: Route, params: Mapping[str, str],
                         headers: list[tuple[bytes, bytes]], query: bytes,
                         facts: RequestFacts, token: str | None, decision_id: str) -> Outcome:
        # 1. extract
        if token is None:
            token = bearer_token(headers, query)
        if token is None:
            return self._guest(route, params, facts, decision_id)
        # 2. verify
        with tracing.span(tracing.VERIFY):
            verified = await self.verifier.verify(token, allowed_sources=route.identity_sources)
        # 3. revoked?
        if self.revocation is not None:
            with tracing.span(tracing.REVOCATION):
                await self.check_revoked(verified)
        # 4. role, then policy
        return self.admit(route, params, verified, facts, decision_id)

    def admit(self, route: Route, params: Mapping[str, str], verified: VerifiedToken,
              facts: RequestFacts, decision_id: str) -> Outcome:
        """Step 4 alone (role mapping + policy) for verified claims; pure."""
        claims = verified.claims            # one read-only view for mapping, tags, principal
        choice = self.mapper.choose(verified.source_id, claims,
                                    self._requested_role(verified.source_id, facts))
        tags = self.mapper.tags(verified.source_id, claims)
        principal = Principal(sub=verified.sub, role=choice.role, claims=claims,
                              source_id=verified.source_id, tags=tags, token=verified)
        decision = self._decide(route, params, facts, principal, choice.rule, decision_id)
        if not decision.allowed:
            e = Forbidden(decision.detail or "not allowed", code=decision.reason)
            e.role = decision.role
            raise e
        principal.decision = decision
        return Outcome(route, params, principal, decision)

    # -- steps ---------------------------------------------------------------------------

    def route(self, method: str, path: str) -> tuple[Route, Mapping[str, str]]:
        if self.fallback is None:
            return self.router.match(method, path)
        found = self.router.match_or_none(method, path)
        return found if found is not None else (self.fallback, {})

    def _public(self, route: Route, params: Mapping[str, str], decision_id: str) -> Outcome:
        role = self.config.guest_role
        principal = Principal(sub=None, role=role, claims={}, source_id=None,
                              tags={}, token=None)
        decision = Decision(id=decision_id, allowed=True, role=role, reason="public_route",
                            detail=f"route {route.id} is public")
        principal.decision = decision
        return Outcome(route, params, principal, decision)

    def _guest(self, route: Route, params: Mapping[str, str], facts: RequestFacts,
               decision_id: str) -> Outcome:
        guest = self.config.guest_role
        if guest is None or route.auth == "authenticated":
            raise MissingToken(f"route {route.id} needs a bearer token")
        choice = self.mapper.choose(None, None)
        principal = Principal(sub=None, role=choice.role, claims={}, source_id=None,
                              tags={}, token=None)
        decision = self._decide(route, params, facts, principal, choice.rule, decision_id)
        if not decision.allowed:
            # no credentials: the challenge invites sign-in rather than a bare 403
            raise MissingToken(f"route {route.id} needs a bearer token for this request")
        principal.decision = decision
        return Outcome(route, params, principal, decision)

    async def check_revoked(self, token: VerifiedToken) -> None:
        assert self.revocation is not None
        try:
            kind = await self.revocation.revoked(token)
        except StoreError as e:
            if self.fail_open:
                log.warning("revocation store unavailable, allowing (on_error: allow): %s", e)
                return
            raise Unavailable("revocation store unavailable", code="revocation_unavailable",
                              retry_after=2)
        if kind is not None:
            raise InvalidToken(f"token revoked (by {kind})", code="token_revoked")

    def _requested_role(self, source_id: str, facts: RequestFacts) -> str | None:
        mapping = self.config.mappings.get(source_id)
        header = mapping.role_request_header if mapping is not None else "x-gateway-role"
        if not header:
            return None
        header = header.replace("_", "-").replace(".", "-")      # canonical, as facts keys
        if header in facts.ambiguous:
            raise BadRequest(f"more than one value for {header}", code="ambiguous_header")
        return facts.headers.get(header)

    def _decide(self, route: Route, params: Mapping[str, str], facts: RequestFacts,
                principal: Principal, rule: str | None, decision_id: str) -> Decision:
        token = principal.token
        scopes = token.scopes if token is not None else ()
        token_use = token.token_use if token is not None else None
        if route.auth == "policy":
            d = self.policy.evaluate(role=principal.role, route=route,
                                     upstream=route.upstream or "", facts=facts,
                                     claims=principal.claims, tags=principal.tags,
                                     path_params=params, scopes=scopes, token_use=token_use,
                                     decision_id=decision_id)
            return _with_rule(d, rule)
        # authenticated: required scopes only, no statements
        if not scopes_satisfied(route, scopes, token_use):
            return Decision(id=decision_id, allowed=False, role=principal.role,
                            reason="missing_scope", rule=rule,
                            detail=f"route {route.id} needs one of the scopes "
                                   f"{' '.join(route.required_scopes)}")
        perms: tuple[Mapping[str, Any], ...] = ()
        if principal.role is not None and route.upstream:
            perms = self.policy.permissions(principal.role, route.upstream, principal.claims,
                                            principal.tags, params)
        return Decision(id=decision_id, allowed=True, role=principal.role,
                        reason="authenticated", rule=rule, permissions=perms,
                        detail=f"route {route.id} needs authentication only")


def _with_rule(d: Decision, rule: str | None) -> Decision:
    if d.rule is not None or rule is None:
        return d
    return Decision(id=d.id, allowed=d.allowed, role=d.role, reason=d.reason, rule=rule,
                    statements=d.statements, detail=d.detail, permissions=d.permissions)
