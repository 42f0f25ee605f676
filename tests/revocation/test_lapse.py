"""A revocation never lapses while the token it revokes still verifies (LIMITS.md).

For each identity source, the longest-lived tokens the real verifier accepts now (iat one skew
ahead and exp = iat + lifetime + skew; no iat and exp = now + lifetime + skew) are found and
checked against the verifier itself; then entries written through the admin API without exp
(jti, origin_jti, sub, sub with a past not_before, and {"token": T}) must still revoke them
at the last instant they verify: on the memory store by moving its clock there, on a real
redis-server by its TTL.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.config import IdentitySource, RedisConfig, RevocationConfig
from gateway.errors import InvalidToken
from gateway.principal import VerifiedToken
from gateway.revocation import MemoryStore, RevocationStore
from gateway.revocation.api import revocations_endpoint
from gateway.revocation.entries import entry_lifetime
from gateway.revocation.redis_store import RedisStore
from gateway.verify import Verifier

from verify.helpers import ISS, FakeClock, build, cognito_source, make_token, oidc_source
from .conftest import RedisProc

ADMIN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
DAY = 86400
OIDC = "https://idp.example/"
SOURCES = [cognito_source(max_token_lifetime_seconds=DAY, clock_skew_seconds=60),
           oidc_source(max_token_lifetime_seconds=7 * DAY, clock_skew_seconds=300,
                       algorithms=("RS256",))]
# a source allowing 10 years: its longest tokens are past the old "10 years ahead" refusal
TEN_YEARS = [cognito_source(max_token_lifetime_seconds=10 * 365 * DAY, clock_skew_seconds=600)]


@dataclass
class Longest:
    name: str
    token: str
    claims: dict[str, Any]
    last: float            # the last instant (verifier clock) at which it verifies


def _claims(source: IdentitySource, **c: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "u-" + uuid.uuid4().hex[:8], "jti": uuid.uuid4().hex,
                            "origin_jti": uuid.uuid4().hex}
    if source.cognito:
        base.update(iss=ISS, client_id=source.client_ids[0], token_use="access")
    else:
        base.update(iss=OIDC, aud="api")
    base.update(c)
    return {k: v for k, v in base.items() if v is not ...}


async def _verifies(verifier: Verifier, wall: FakeClock, token: str, at: float) -> bool:
    saved = wall.t
    wall.t = at
    try:
        await verifier.verify(token)
        return True
    except InvalidToken:
        return False
    finally:
        wall.t = saved


async def longest_tokens(verifier: Verifier, wall: FakeClock,
                         sources: list[IdentitySource]) -> list[Longest]:
    """The longest-lived tokens each source accepts at wall.t, proven with the verifier."""
    now = wall.t
    out = []
    for s in sources:
        life, skew = s.max_token_lifetime_seconds, s.clock_skew_seconds
        for name, c in ((f"{s.id}/iat", {"iat": now + skew, "exp": now + skew + life + skew}),
                        # the longest a sub entry with not_before = now revokes (iat < now)
                        (f"{s.id}/iat-past", {"iat": now - 1, "exp": now - 1 + life + skew}),
                        (f"{s.id}/no-iat", {"iat": ..., "exp": now + life + skew})):
            claims = _claims(s, **c)
            token = make_token(claims)
            assert await _verifies(verifier, wall, token, now), name
            longer = make_token({**claims, "exp": claims["exp"] + 1})
            with pytest.raises(InvalidToken) as info:
                await verifier.verify(longer)
            assert info.value.code == "bad_exp", name          # so this one is the longest
            last = claims["exp"] + skew
            assert await _verifies(verifier, wall, token, last), name
            assert not await _verifies(verifier, wall, token, last + 1), name
            out.append(Longest(name, token, claims, last))
    return out


def admin_app(store: RevocationStore, verifier: Verifier, wall: FakeClock,
              sources: list[IdentitySource], rev: RevocationConfig) -> Starlette:
    """Wired as gateway/admin.py wires it."""
    skews = {iss: s.clock_skew_seconds for s in sources for iss in s.issuers}
    top = max(skews.values())
    handler = revocations_endpoint(
        lambda: store, admin_token=ADMIN, config=rev, clock=wall, skew=top,
        token_verifier=verifier.verify_for_revocation,
        skew_for_token=lambda claims: skews.get(claims.get("iss"), top),
        max_token_lifetime=entry_lifetime(rev.max_token_lifetime_seconds, sources))
    return Starlette(routes=[Route("/revocations", handler, methods=["GET", "POST", "DELETE"])])


def bodies(t: Longest, now: float) -> list[dict[str, Any]]:
    c = t.claims
    return [{"jti": c["jti"]}, {"origin_jti": c["origin_jti"]}, {"sub": c["sub"]},
            {"sub": c["sub"] + "-past", "not_before": now - 3 * DAY}]


def _vt(t: Longest, sub_suffix: str | None = None) -> VerifiedToken:
    """The token as the store sees it; with ``sub_suffix``, only its (renamed) sub is kept."""
    claims = dict(t.claims)
    if sub_suffix is not None:
        claims = {k: v for k, v in claims.items() if k not in ("jti", "origin_jti")}
        claims["sub"] += sub_suffix
    return VerifiedToken(raw=t.token, source_id="x", issuer=claims["iss"], header={},
                         claims=claims, token_hash=uuid.uuid4().bytes)


@pytest.mark.parametrize("sources, rev_life", [
    (SOURCES, 3600),           # the sources' lifetimes decide the TTL
    (SOURCES, 30 * DAY),       # revocation.max_token_lifetime_seconds still a floor
    (TEN_YEARS, DAY),
])
async def test_memory_entries_outlive_every_token_they_revoke(sources, rev_life) -> None:
    verifier, _, _, wall, _ = build(sources, wall=FakeClock(1_800_000_000.0))
    now = wall.t
    store = MemoryStore(clock=wall)
    rev = RevocationConfig(max_token_lifetime_seconds=rev_life)
    app = admin_app(store, verifier, wall, sources, rev)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://admin") as c:
        tokens = await longest_tokens(verifier, wall, sources)
        for t in tokens:
            for body in bodies(t, now):
                r = await c.post("/revocations", json=body, headers=AUTH)
                assert r.status_code == 201, (t.name, body, r.text)
                assert r.json()["ttl"] >= rev_life
            r = await c.post("/revocations", json={"token": t.token}, headers=AUTH)
            assert r.status_code == 201, (t.name, r.text)        # no far-future mismatch
            assert r.json()["ttl"] >= t.last - now
    for t in tokens:
        wall.t = t.last                  # the last instant the token verifies
        assert await _verifies(verifier, wall, t.token, t.last)
        for kind in ("jti", "origin_jti"):
            assert await store.get(kind, t.claims[kind]) is not None, (t.name, kind)
        assert await store.revoked(_vt(t)) is not None, t.name
        if t.claims.get("iat", 0) < now:     # what {"sub": S} (not_before = now) revokes
            assert await store.revoked(_vt(t, "")) == "sub", t.name
        if "iat" not in t.claims:            # a past not_before still revokes tokens without iat
            assert await store.revoked(_vt(t, "-past")) == "sub", t.name
        wall.t = now


async def test_token_without_jti_or_pending_is_revocable_until_it_stops_verifying() -> None:
    sources = SOURCES
    verifier, _, _, wall, _ = build(sources, wall=FakeClock(1_800_000_000.0))
    now = wall.t
    store = MemoryStore(clock=wall)
    app = admin_app(store, verifier, wall, sources, RevocationConfig())
    no_jti = _claims(sources[0], jti=..., iat=now + 60, exp=now + 60 + DAY + 60)
    # no iat, exp far ahead: refused now (bad_exp), verifies later; the API must revoke it
    pending = _claims(sources[1], iat=..., exp=now + 100 * DAY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://admin") as c:
        assert not await _verifies(verifier, wall, make_token(pending), now)
        for claims in (no_jti, pending):
            r = await c.post("/revocations", json={"token": make_token(claims)}, headers=AUTH)
            assert r.status_code == 201, r.text
        r = await c.post("/revocations", json={"token": make_token(_claims(
            sources[0], iat=now, exp=now + 2 * DAY))}, headers=AUTH)
        assert r.status_code == 400 and r.json()["reason"] == "token_not_accepted"
    for claims, skew in ((no_jti, 60), (pending, 300)):
        last = claims["exp"] + skew
        assert await _verifies(verifier, wall, make_token(claims), last)
        wall.t = last
        t = Longest("x", make_token(claims), claims, last)
        assert await store.revoked(_vt(t)) is not None
        wall.t = now


async def test_redis_entries_outlive_every_token_they_revoke(shared_redis: RedisProc,
                                                             prefix: str) -> None:
    sources = SOURCES
    verifier, _, _, wall, _ = build(sources, wall=FakeClock(time.time()))
    rcfg = RedisConfig(url=f"redis://127.0.0.1:{shared_redis.port}/0", key_prefix=prefix)
    rev = RevocationConfig(store="redis", redis=rcfg, max_token_lifetime_seconds=3600)
    store = RedisStore(rcfg)
    await store.start()
    try:
        app = admin_app(store, verifier, wall, sources, rev)
        now = wall.t
        tokens = await longest_tokens(verifier, wall, sources)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://admin") as c:
            for t in tokens:
                for body in [*bodies(t, now), {"token": t.token}]:
                    r = await c.post("/revocations", json=body, headers=AUTH)
                    assert r.status_code == 201, (t.name, body, r.text)
        elapsed = time.time() - now + 1
        for t in tokens:
            need = t.last - now - elapsed    # seconds the entry must still live, from here
            kinds = [("jti", t.claims["jti"]), ("origin_jti", t.claims["origin_jti"]),
                     ("sub", t.claims["sub"]), ("sub", t.claims["sub"] + "-past")]
            for kind, value in kinds:
                entry = await store.get(kind, value)
                assert entry is not None and entry.ttl >= need, (t.name, kind, entry, need)
            assert await store.revoked(_vt(t)) is not None
    finally:
        await store.aclose()


async def test_a_large_token_the_verifier_accepts_is_revocable() -> None:
    """A source may accept tokens up to 64 KiB (max_token_bytes): so must {"token": T}."""
    sources = [cognito_source(max_token_bytes=32768), oidc_source()]
    verifier, _, _, wall, _ = build(sources, wall=FakeClock(1_800_000_000.0))
    now = wall.t
    claims = _claims(sources[0], iat=now, exp=now + 3600, pad="p" * 20000)
    token = make_token(claims)
    assert len(token) > 16 * 1024
    assert (await verifier.verify(token, allowed_sources=("pool",))).claims["jti"] == claims["jti"]
    store = MemoryStore(clock=wall)
    app = admin_app(store, verifier, wall, sources, RevocationConfig())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://admin") as c:
        r = await c.post("/revocations", json={"token": token}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["jti"] == claims["jti"]
