"""Token lifetime and revocation TTLs through a running `poolgate serve` (memory store, and a
private redis-server): a token living longer than its source's max_token_lifetime_seconds is
401 bad_exp; the longest token the gateway accepts is also accepted by `{"token": T}` on the
admin API (no far-future refusal), and exp-less entries outlive it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from redis_helpers import cli, need_redis, redis_proc  # noqa: F401

from .conftest import CLIENT, ISSUER, base_config
from .servers import cognito_claims

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-admin-token-" + uuid.uuid4().hex[:16]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TEN_YEARS = 3650 * 86400
SKEW = 60


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_lifetime_bound_and_ttls_end_to_end(store, request, jwks, upstream, signer,
                                            gateway_factory) -> None:
    revocation: dict[str, Any] = {"store": "memory"}
    port = None
    prefix = f"pgtl-{uuid.uuid4().hex[:8]}:"
    if store == "redis":
        need_redis()
        port = request.getfixturevalue("redis_proc").port
        revocation = {"store": "redis", "redis": {"url": f"redis://127.0.0.1:{port}/0",
                                                  "key_prefix": prefix}}
    _, jsrv = jwks
    _, usrv = upstream
    cfg = base_config(jsrv.url + "/jwks.json", usrv.url, revocation=revocation,
                      admin={"token": "${POOLGATE_ADMIN_TOKEN}"})
    cfg["identity_sources"][0]["max_token_lifetime_seconds"] = TEN_YEARS
    gw = gateway_factory(cfg, env={"POOLGATE_ADMIN_TOKEN": ADMIN_TOKEN})
    api = httpx.Client(base_url=gw.admin, headers=ADMIN, timeout=5)
    now = int(time.time())

    def get(tok: str) -> httpx.Response:
        return httpx.get(gw.proxy + "/api/x", headers={"Authorization": f"Bearer {tok}"},
                         timeout=5)

    # one second over the source's bound: refused; at the bound: accepted
    too_long = signer.token(cognito_claims(ISSUER, CLIENT, iat=now,
                                           exp=now + TEN_YEARS + SKEW + 1))
    r = get(too_long)
    assert r.status_code == 401 and r.json()["reason"] == "bad_exp", r.text
    claims = cognito_claims(ISSUER, CLIENT, iat=now, exp=now + TEN_YEARS + SKEW)
    longest = signer.token(claims)
    assert get(longest).status_code == 200

    # {"token": T} for the longest accepted token (exp > 10 years ahead): written, TTL from it
    r = api.post("/revocations", json={"token": longest})
    assert r.status_code == 201, r.text
    assert r.json()["jti"] == claims["jti"] and r.json()["ttl"] >= claims["exp"] + SKEW - now - 2
    r = get(longest)
    assert r.status_code == 401 and r.json()["reason"] == "token_revoked"

    # exp-less entries outlive the longest token the gateway accepts now
    horizon = TEN_YEARS + 3 * SKEW                     # iat + skew ahead, exp + skew past it
    for body in ({"jti": "j-" + prefix}, {"origin_jti": "o-" + prefix}, {"sub": "s-" + prefix}):
        r = api.post("/revocations", json=body)
        assert r.status_code == 201, r.text
        kind = next(iter(body))
        ttl = api.get("/revocations", params=body).json()["ttl"]
        top = horizon + 1                  # a sub's default not_before is the next whole second
        assert horizon - 5 <= ttl <= top, (kind, ttl)
        if port is not None:
            seg = {"jti": "jti", "origin_jti": "ojti", "sub": "sub"}[kind]
            assert horizon - 5 <= int(cli(port, "TTL", f"{prefix}{seg}:{body[kind]}")) <= top

    # a token of that user issued before the sub entry is refused; the gateway's own bound
    # still applies to tokens minted later
    victim = signer.token(cognito_claims(ISSUER, CLIENT, sub="s-" + prefix, iat=now - 1,
                                         exp=now + 3600))
    r = get(victim)
    assert r.status_code == 401 and r.json()["reason"] == "token_revoked"
    api.close()
