"""``poolgate explain``: the decision trace for one request, as the gateway would decide it."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from typing import Any

from .config import Config, load_config
from .engine import Engine
from .errors import ConfigError, GatewayError
from .principal import RequestFacts, VerifiedToken
from .routes import normalise_path

ALLOW, DENY = 0, 1


def _source_for(cfg: Config, claims: dict[str, Any], wanted: str | None) -> str:
    if wanted is not None:
        cfg.source_by_id(wanted)     # KeyError -> usage error below
        return wanted
    iss = claims.get("iss")
    for s in cfg.identity_sources:
        if iss in s.issuers:
            return s.id
    if not cfg.identity_sources:
        raise ConfigError("identity_sources", "explain --claims needs at least one identity source")
    return cfg.identity_sources[0].id


def _facts(args: argparse.Namespace, path: str, now: float) -> tuple[RequestFacts, list[tuple[bytes, bytes]]]:
    headers: list[tuple[bytes, bytes]] = []
    hmap: dict[str, str] = {}
    for h in args.header:
        k, sep, v = h.partition(":")
        if not sep:
            raise ConfigError("--header", f"{h!r} must be K:V")
        headers.append((k.strip().lower().encode(), v.strip().encode()))
        hmap.setdefault(k.strip().lower(), v.strip())
    return RequestFacts(method=args.method.upper(), path=path, source_ip=args.source_ip,
                        secure=args.secure, now=now, headers=hmap), headers


async def explain(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, strict_env=False)
    engine = Engine(cfg, store=None if args.claims else "build")
    lines: dict[str, Any] = {}
    try:
        path = normalise_path(args.path.split("?", 1)[0])
        facts, headers = _facts(args, path, engine.clock())
        decision_id = os.urandom(8).hex()
        if args.claims is not None:
            claims = json.loads(args.claims)
            if not isinstance(claims, dict):
                raise ConfigError("--claims", "must be a JSON object")
            lines["verification"] = "skipped (--claims: signature, iss, time claims, client id " \
                                    "and token_use were NOT checked)"
            source = _source_for(cfg, claims, args.identity_source)
            token = VerifiedToken(raw="", source_id=source, issuer=str(claims.get("iss", "")),
                                  header={}, claims=claims, token_hash=hashlib.sha256(
                                      json.dumps(claims, sort_keys=True).encode()).digest())
            route, params = engine.pipeline.route(facts.method, facts.path)
            outcome = engine.pipeline.admit(route, params, token, facts, decision_id)
        else:
            await engine.start()
            await engine.jwks.wait_ready(10)
            headers.append((b"authorization", b"Bearer " + args.token.encode()))
            lines["verification"] = "verified (signature, issuer, times, audience, revocation)"
            outcome = await engine.pipeline.authorize(headers, b"", facts)
        d = outcome.decision
        lines.update(route=outcome.route.id if outcome.route else None, role=d.role,
                     decision="allow", reason=d.reason, rule=d.rule,
                     statements=list(d.statements), decision_id=d.id, detail=d.detail)
        code = ALLOW
    except GatewayError as e:
        lines.update(decision="deny", reason=e.code, status=e.status, detail=e.description)
        code = DENY
    except json.JSONDecodeError as e:
        raise ConfigError("--claims", f"not valid JSON: {e}")
    except KeyError as e:
        raise ConfigError("--identity-source", f"no identity source {e}")
    finally:
        await engine.aclose()
    if args.json:
        print(json.dumps(lines, indent=2))
    else:
        order = ("verification", "route", "role", "decision", "reason", "rule", "statements",
                 "status", "decision_id", "detail")
        for k in order:
            if k in lines and lines[k] not in (None, []):
                v = lines[k]
                print(f"{k}: {', '.join(v) if isinstance(v, list) else v}")
    return code
