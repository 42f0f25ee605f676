"""``poolgate explain``: the decision trace for one request, as the gateway would decide it.

The verdict comes from the gateway's own ``Pipeline`` (route -> token -> verify -> revoked? ->
role -> policy), built from the same ``Engine`` parts as ``serve``; explain only watches it.
``--claims JSON`` replaces verification by the given claims (nothing is checked: signature,
``iss``, time claims, client id, ``token_use``), using the identity source whose issuer matches
the claims' ``iss`` (else the first, or ``--identity-source``); ``--claims null`` explains the
request of a caller without a token (the guest). ``--token`` is verified first, with keys
fetched from the source's JWKS.

Output: ``key: value`` lines, always ``role:``, ``decision:`` and ``reason:`` (``--json``: one
object). Exit 0 allow, 1 deny (including an invalid token), 2 usage or config error.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .aws.describe import describe as describe_aws
from .config import Config, load_config
from .engine import Engine
from .errors import ConfigError, Forbidden, GatewayError, InvalidToken
from .mapping import RoleChoice, RoleMapper
from .pipeline import Pipeline
from .principal import Decision, Principal, RequestFacts, VerifiedToken
from .routes import normalise_path
from .verify import Verifier

ALLOW, DENY = 0, 1
NO_ROLE = "(none)"
_JWKS_WAIT_SECONDS = 10.0
_ORDER = ("verification", "identity_source", "revocation", "route", "role", "candidates",
          "rule", "decision", "reason", "statements", "status", "decision_id", "detail",
          "aws_role_arn", "aws_flow", "aws_session_name", "aws_source_identity",
          "aws_session_policy", "aws_session_tags", "aws_error")


# --------------------------------------------------------------------------- watchers


class _ClaimsVerifier:
    """``--claims``: every token "verifies" to the given claims (nothing is checked)."""

    def __init__(self, token: VerifiedToken) -> None:
        self.token = token
        self.called = False

    async def verify(self, token: str, *,
                     allowed_sources: tuple[str, ...] | None = None) -> VerifiedToken:
        self.called = True
        if allowed_sources is not None and self.token.source_id not in allowed_sources:
            raise InvalidToken(f"identity source {self.token.source_id} is not accepted on "
                               "this route", code="bad_issuer")
        return self.token


class _RecordingVerifier:
    """``--token``: the real verifier, remembering what it verified."""

    def __init__(self, verifier: Verifier) -> None:
        self.inner = verifier
        self.called = False
        self.token: VerifiedToken | None = None

    async def verify(self, token: str, *,
                     allowed_sources: tuple[str, ...] | None = None) -> VerifiedToken:
        self.called = True
        self.token = await self.inner.verify(token, allowed_sources=allowed_sources)
        return self.token


class _TracingMapper(RoleMapper):
    """The gateway's role mapping, keeping its choice (or the candidates of a refusal)."""

    choice: RoleChoice | None = None
    candidates: tuple[str, ...] | None = None

    def choose(self, source_id: str | None, claims: Mapping[str, Any] | None,
               requested_role: str | None = None) -> RoleChoice:
        try:
            self.choice = super().choose(source_id, claims, requested_role)
        except Forbidden:
            if requested_role:          # show whom the caller could have asked for
                try:
                    self.candidates = super().choose(source_id, claims).candidates
                except Forbidden:
                    pass
            raise
        self.candidates = self.choice.candidates
        return self.choice


class _TracingPipeline(Pipeline):
    """The gateway's pipeline, keeping the decision it reaches, a refusal included (the
    pipeline turns a denying decision into an exception that does not carry it)."""

    decision: Decision | None = None

    def _decide(self, route: Any, params: Any, facts: RequestFacts, principal: Principal,
                rule: str | None, decision_id: str) -> Decision:
        self.decision = super()._decide(route, params, facts, principal, rule, decision_id)
        return self.decision


# --------------------------------------------------------------------------- arguments


def _claims(text: str) -> dict[str, Any] | None:
    try:
        claims = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError("--claims", f"not valid JSON: {e}") from None
    if claims is not None and not isinstance(claims, dict):
        raise ConfigError("--claims", "must be a JSON object (or null for a caller without "
                                      "a token)")
    return claims


def _source_for(cfg: Config, claims: Mapping[str, Any], wanted: str | None) -> str:
    if wanted is not None:
        try:
            cfg.source_by_id(wanted)
        except KeyError:
            known = ", ".join(s.id for s in cfg.identity_sources) or "none"
            raise ConfigError("--identity-source",
                              f"no identity source {wanted!r} (configured: {known})") from None
        return wanted
    iss = claims.get("iss")
    for s in cfg.identity_sources:
        if iss in s.issuers:
            return s.id
    if not cfg.identity_sources:
        raise ConfigError("identity_sources", "explain --claims needs at least one identity source")
    return cfg.identity_sources[0].id


def _headers(args: argparse.Namespace) -> tuple[list[tuple[bytes, bytes]], dict[str, str]]:
    headers: list[tuple[bytes, bytes]] = []
    hmap: dict[str, str] = {}
    for h in args.header:
        k, sep, v = h.partition(":")
        name = k.strip().lower()
        if not sep or not name:
            raise ConfigError("--header", f"{h!r} must be K:V")
        if name == "authorization":
            raise ConfigError("--header", "give the token with --token (or --claims)")
        headers.append((name.encode("latin-1"), v.strip().encode("latin-1")))
        hmap.setdefault(name.replace("_", "-").replace(".", "-"), v.strip())   # canonical, as facts
    return headers, hmap


def _repeated(headers: list[tuple[bytes, bytes]]) -> frozenset[str]:
    """Canonical names given more than once (a condition reading one is 400, as in serve)."""
    seen: set[str] = set()
    out: set[str] = set()
    for k, _ in headers:
        name = k.decode("latin-1").replace("_", "-").replace(".", "-")
        (out if name in seen else seen).add(name)
    return frozenset(out)


def _store_mode(cfg: Config) -> tuple[str | None, str]:
    """(Engine ``store`` argument, the revocation line) for --token."""
    kind = cfg.revocation.store
    if kind == "memory":
        return None, ("not checked (store: memory lives in the running gateway; "
                      "ask it with GET /revocations)")
    if kind == "none":
        return None, "none configured"
    return "build", f"checked ({kind} store)"


# --------------------------------------------------------------------------- the trace


async def explain(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, strict_env=False)
    # explain never signs a credential: no signing key is loaded or generated
    cfg = dataclasses.replace(cfg, downstream_credential=dataclasses.replace(
        cfg.downstream_credential, enabled=False))
    claims_mode = args.claims is not None
    claims = _claims(args.claims) if claims_mode else None
    headers, hmap = _headers(args)
    store, revocation = (None, None) if claims_mode else _store_mode(cfg)
    if args.identity_source is not None and claims is None:
        _source_for(cfg, {}, args.identity_source)          # a typo is still a usage error
    engine = Engine(cfg, store=store)  # type: ignore[arg-type]
    verifier: _ClaimsVerifier | _RecordingVerifier
    if claims is not None:
        source = _source_for(cfg, claims, args.identity_source)
        verifier = _ClaimsVerifier(VerifiedToken(
            raw="", source_id=source, issuer=str(claims.get("iss", "")), header={},
            claims=claims,
            token_hash=hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()))
    else:
        verifier = _RecordingVerifier(engine.verifier)
    mapper = _TracingMapper(cfg)
    pipeline = _TracingPipeline(
        cfg, router=engine.router, verifier=verifier,  # type: ignore[arg-type]
        revocation=engine.store, mapper=mapper, policy=engine.policy)
    error: GatewayError | None = None
    route_id: str | None = None
    try:
        path = normalise_path(args.path.split("?", 1)[0])
        facts = RequestFacts(method=args.method.upper(), path=path, source_ip=args.source_ip,
                             secure=args.secure, now=engine.clock(), headers=hmap,
                             ambiguous=_repeated(headers))
        token: str | None = None
        if claims is not None:
            token = "--claims"                  # any non-empty value: _ClaimsVerifier answers
        elif not claims_mode:
            await engine.start()
            await engine.jwks.wait_ready(_JWKS_WAIT_SECONDS)
            token = args.token
        try:
            route_id = pipeline.route(facts.method, facts.path)[0].id
        except GatewayError:
            pass                                # authorize raises it again, as the gateway does
        decision = (await pipeline.authorize(headers, b"", facts, token=token)).decision
    except GatewayError as e:
        error, decision = e, pipeline.decision  # the refused decision, if one was reached
    finally:
        await engine.aclose()

    verified = verifier.token if verifier.called else None
    choice = mapper.choice
    lines: dict[str, Any] = {
        "verification": _verification(claims_mode, claims, verifier, error),
        "identity_source": verified.source_id if verified is not None else None,
        "revocation": revocation if verified is not None else None,
        "route": route_id,
        "role": (decision.role if decision is not None else
                 choice.role if choice is not None else None),
        "candidates": list(mapper.candidates or ()),
        "rule": (decision.rule if decision is not None and decision.rule else
                 choice.rule if choice is not None else None),
        "decision": "allow" if error is None else "deny",
        "reason": error.code if error is not None else decision.reason if decision else None,
        "statements": list(decision.statements) if decision is not None else [],
        "status": error.status if error is not None else None,
        "decision_id": decision.id if decision is not None else None,
        "detail": error.description if error is not None else
                  decision.detail if decision is not None else None,
    }
    if verified is not None and lines["role"] is not None:     # AWS.md: the rendered policy
        lines.update(describe_aws(engine.aws, lines["role"], verified.claims,
                                  mapper.tags(verified.source_id, verified.claims)))
    _print(lines, as_json=args.json)
    return ALLOW if error is None else DENY


def _verification(claims_mode: bool, claims: Any,
                  verifier: _ClaimsVerifier | _RecordingVerifier,
                  error: GatewayError | None) -> str:
    if claims_mode and claims is None:
        return "skipped (--claims null: no token, explained as a caller without one)"
    if claims_mode:
        return ("skipped (--claims: signature, iss, time claims, client id and token_use were "
                "NOT checked)")
    if not verifier.called:
        if error is not None:
            return "not reached"
        return "not needed (public route: a token is ignored)"
    if isinstance(verifier, _RecordingVerifier) and verifier.token is None:
        return f"failed ({error.code if error is not None else 'unknown'})"
    return "verified (signature, issuer, time claims, client id / audience, token_use)"


def _print(lines: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: lines.get(k) for k in _ORDER}, indent=2))
        return
    for k in _ORDER:
        v = lines.get(k)
        if k == "role":
            v = NO_ROLE if v is None else v
        elif v is None or v == []:
            continue
        print(f"{k}: {', '.join(v) if isinstance(v, list) else v}")


__all__ = ["explain"]
