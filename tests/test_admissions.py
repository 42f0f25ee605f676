"""The admission cache (gateway/admissions.py): a decision and its outbound header block reused
for the same token + method + path + the request facts a condition reads, re-validated on every
hit through ``Verifier.still_valid`` and the revocation store's ``generation``.

Everything real: ``Engine`` (verifier, JWKS manager, pipeline, memory or Redis store, credential
signer), tokens signed by a test RSA key, a JWKS document the test controls (served in process
through httpx.MockTransport, tests/verify/helpers.py), the engine's clock injected and frozen
unless a test moves it. Requests go through ``request_facts`` + ``admit`` as gateway/edge.py
sends them; a hit is told from a miss by counting ``Pipeline.authorize`` calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from redis_helpers import cli, prefix, shared_redis  # noqa: F401 (pytest fixtures)
from verify.helpers import (CLIENT, JWKS_URL, NOW, POOL, FakeClock, JwksEndpoint,
                            access_claims, jwk_of, make_token, rsa_key)

from gateway.admissions import REVALIDATE_SECONDS, AdmissionCache, admit, fact_reads
from gateway.config import parse_config
from gateway.engine import Engine
from gateway.errors import GatewayError
from gateway.facts import request_facts
from gateway.principal import VerifiedToken
from gateway.revocation import make_entry
from gateway.routes import normalise_path

pytestmark = pytest.mark.timeout(60)

SKEW = 60                         # the identity source's clock_skew_seconds (the default)
ORIGIN = "family-1"


def statement(sid: str, resource: str, condition: dict[str, Any] | None = None,
              action: str = "http:GET") -> dict[str, Any]:
    st: dict[str, Any] = {"sid": sid, "effect": "allow", "action": [action],
                          "resource": [resource]}
    if condition is not None:
        st["condition"] = condition
    return st


# one path prefix per request fact a condition reads
MEMBER = [
    statement("ReadItems", "app:/items/*"),
    statement("Tenant", "app:/tenant/*", {"StringEquals": {"req:header/x-tenant": "acme"}}),
    statement("Office", "app:/office/*", {"IpAddress": {"req:source_ip": "10.0.0.0/8"}}),
    statement("Tls", "app:/tls/*", {"Bool": {"req:secure": "true"}}),
]


def raw_config(*, member: list[dict[str, Any]] | None = None, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "version": 1,
        "identity_sources": [{
            "id": "pool", "cognito": {"region": "eu-west-1", "user_pool_id": POOL},
            "jwks_uri": JWKS_URL, "client_ids": [CLIENT]}],
        "upstreams": {"app": {"url": "http://127.0.0.1:9"}},
        "routes": [{"id": "public", "match": {"path": "/public/**"}, "upstream": "app",
                    "auth": "public"},
                   {"id": "api", "match": {"path": "/**"}, "upstream": "app", "auth": "policy"}],
        "default_role": "member",
        "roles": {"member": {"statements": MEMBER if member is None else member},
                  "auditor": {"statements": [statement("Audit", "app:/audit/*")]}},
        "revocation": {"store": "memory"},
    }
    cfg.update(over)
    return cfg


def token(**claims: Any) -> str:
    """An access token for the test pool, signed with key ``k1``, valid at NOW."""
    return make_token(access_claims(origin_jti=ORIGIN, **claims), key=rsa_key(), kid="k1")


TOKEN = token()


@dataclass
class Answer:
    status: int
    code: str
    extra: list[tuple[bytes, bytes]] | None = None
    decision_id: str | None = None


class Gate:
    """One engine on a frozen clock, a JWKS endpoint the test controls, counted pipeline calls."""

    def __init__(self, raw: dict[str, Any] | None = None, *, clock: FakeClock | None = None,
                 idp: JwksEndpoint | None = None) -> None:
        self.clock = clock or FakeClock(NOW)
        self.idp = idp or JwksEndpoint([jwk_of(rsa_key(), "k1")])
        self.http = self.idp.client()
        self.engine = Engine(parse_config(raw or raw_config(), env={}), clock=self.clock,
                             http_client=self.http)
        self.authorized = 0          # full decisions (a miss)
        self.revocation_checks = 0   # revocation lookups on any path
        pipeline = self.engine.pipeline
        authorize, check_revoked = pipeline.authorize, pipeline.check_revoked

        async def counted_authorize(*a: Any, **kw: Any) -> Any:
            self.authorized += 1
            return await authorize(*a, **kw)

        async def counted_check(*a: Any, **kw: Any) -> Any:
            self.revocation_checks += 1
            return await check_revoked(*a, **kw)

        pipeline.authorize = counted_authorize          # type: ignore[method-assign]
        pipeline.check_revoked = counted_check          # type: ignore[method-assign]

    async def start(self) -> "Gate":
        await self.engine.start()
        assert await self.engine.jwks.wait_ready(5), "JWKS not loaded"
        return self

    async def aclose(self) -> None:
        await self.engine.aclose()
        await self.http.aclose()

    @property
    def admissions(self) -> AdmissionCache:
        return self.engine.admissions

    async def ask(self, path: str = "/items/1", method: str = "GET", *,
                  bearer: str | None = TOKEN, headers: tuple[tuple[str, str], ...] = (),
                  peer: str = "192.0.2.10", scheme: str = "http") -> Answer:
        """One request as gateway/edge.py hands it to ``admit`` (no trusted proxies)."""
        raw = [(b"host", b"api.example")]
        if bearer is not None:
            raw.append((b"authorization", b"Bearer " + bearer.encode("ascii")))
        raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
                 "query_string": b"", "headers": raw, "scheme": scheme,
                 "client": (peer, 50000), "server": ("127.0.0.1", 8080)}
        engine = self.engine
        facts = request_facts(scope, normalise_path(path.encode()), peer, False, engine.clock(),
                              engine.config.listen.trusted_proxies,
                              engine.admissions.read_names)
        try:
            outcome, extra = await admit(engine, raw, scope, facts)
        except GatewayError as e:
            return Answer(e.status, e.code)
        return Answer(200, outcome.decision.reason, extra, outcome.decision.id)


@pytest.fixture
async def gates() -> AsyncIterator[Callable[..., Any]]:
    made: list[Gate] = []

    async def make(raw: dict[str, Any] | None = None, **kw: Any) -> Gate:
        gate = Gate(raw, **kw)
        made.append(gate)
        return await gate.start()

    try:
        yield make
    finally:
        for gate in made:
            await gate.aclose()


async def entry_for(gate: Gate, kind: str) -> Any:
    """A revocation entry matching TOKEN, as the revocation API would write it."""
    value = {"jti": "j-1", "origin_jti": ORIGIN, "sub": "u-1"}[kind]
    return make_entry(kind, value, not_before=NOW if kind == "sub" else None,
                      now=gate.clock(), max_token_lifetime=86400 + 2 * SKEW, skew=SKEW)


# --------------------------------------------------------------------------- 1. a hit


def _verifier_hits(gate: Gate) -> float:
    metrics = gate.engine.metrics
    metrics.flush()                              # counts are batched; a scrape flushes first
    return float(metrics.token_cache.labels(result="hit")._value.get())


async def test_a_repeated_request_is_a_hit_with_the_same_outbound_headers(gates) -> None:
    gate = await gates()
    first = await gate.ask()
    hits = _verifier_hits(gate)
    assert (first.status, gate.authorized, len(gate.admissions)) == (200, 1, 1)
    names = {k for k, _ in first.extra or []}
    assert {b"x-auth-sub", b"x-gateway-credential"} <= names      # identity + credential
    for _ in range(3):
        again = await gate.ask()
        assert again.status == 200
        assert again.extra == first.extra and again.decision_id == first.decision_id
    assert gate.authorized == 1                  # decided once, served three times
    assert _verifier_hits(gate) == hits + 3      # each hit asked Verifier.still_valid


async def test_refusals_public_routes_and_guests_are_never_held(gates) -> None:
    gate = await gates()
    for _ in range(2):
        assert (await gate.ask("/items/1", "DELETE")).code == "no_allow"
        assert (await gate.ask("/public/x")).status == 200
        assert (await gate.ask("/items/1", bearer=None)).code == "missing_token"
    assert gate.authorized == 6 and len(gate.admissions) == 0


# --------------------------------------------------------------------------- 2. the key


# (first request, second request, the second's answer, whether the second is a hit)
SHAPES = [
    ("method", {}, {"method": "DELETE"}, (403, "no_allow"), False),
    ("path", {}, {"path": "/items/1/x"}, (403, "no_allow"), False),
    ("path, both allowed", {}, {"path": "/items/2"}, (200, "allowed"), False),
    ("read header value", {"path": "/tenant/1", "headers": (("x-tenant", "acme"),)},
     {"path": "/tenant/1", "headers": (("x-tenant", "globex"),)}, (403, "no_allow"), False),
    ("read header absent", {"path": "/tenant/1", "headers": (("x-tenant", "acme"),)},
     {"path": "/tenant/1"}, (403, "no_allow"), False),
    ("read header, another spelling of its name", {"path": "/tenant/1",
                                                   "headers": (("x-tenant", "acme"),)},
     {"path": "/tenant/1", "headers": (("X_Tenant", "acme"),)}, (200, "allowed"), True),
    ("source ip", {"path": "/office/1", "peer": "10.1.2.3"},
     {"path": "/office/1", "peer": "192.0.2.1"}, (403, "no_allow"), False),
    ("scheme", {"path": "/tls/1", "scheme": "https"}, {"path": "/tls/1", "scheme": "http"},
     (403, "no_allow"), False),
    ("role request header", {"headers": (("x-gateway-role", "member"),)},
     {"headers": (("x-gateway-role", "auditor"),)}, (403, "role_not_eligible"), False),
    ("another token", {}, {"bearer": token(sub="u-2", jti="j-2")}, (200, "allowed"), False),
    ("a header no condition reads", {"headers": (("x-trace", "a"),)},
     {"headers": (("x-trace", "b"),)}, (200, "allowed"), True),
]


@pytest.mark.parametrize(("first", "second", "answer", "hit"),
                         [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
async def test_each_request_shape_is_decided_on_its_own(gates, first, second, answer,
                                                        hit) -> None:
    gate = await gates()
    assert (await gate.ask(**first)).status == 200
    got = await gate.ask(**second)
    assert (got.status, got.code) == answer
    assert gate.authorized == (1 if hit else 2)
    again = await gate.ask(**first)                # the first entry is intact and still a hit
    assert again.status == 200 and gate.authorized == (1 if hit else 2)


# --------------------------------------------------------------------------- 3. the clock


def _reads(member: list[dict[str, Any]], guardrails: list[dict[str, Any]] | None = None,
           **over: Any) -> tuple[bool, bool, bool, tuple[str, ...]]:
    raw = raw_config(member=member, **over)
    if guardrails is not None:
        raw["guardrails"] = guardrails
    return fact_reads(parse_config(raw, env={}))


GUARD_TIME = {"name": "hours", "applies_to": {"roles": ["*"]}, "statements": [
    {"sid": "Hours", "effect": "allow", "action": ["http:*"], "resource": ["*:/**"],
     "condition": {"DateLessThan": {"req:time": NOW + 5}}}]}


@pytest.mark.parametrize(("member", "guardrails", "over", "expected"), [
    ([statement("A", "app:/**")], None, {}, (False, False, False, ("x-gateway-role",))),
    (MEMBER, None, {}, (True, True, False, ("x-gateway-role", "x-tenant"))),
    ([statement("A", "app:/**", {"StringEquals": {"req:header/X_Tenant.Id": "a"}})], None, {},
     (False, False, False, ("x-gateway-role", "x-tenant-id"))),
    ([statement("A", "app:/**")], None,
     {"mappings": {"pool": {"mode": "default", "role_request": {"header": "X-Want_Role"}}}},
     (False, False, False, ("x-gateway-role", "x-want-role"))),
    ([statement("A", "app:/**")], [GUARD_TIME], {}, (False, False, True, ("x-gateway-role",))),
    ([statement("A", "app:/**", {"DateGreaterThan": {"req:time": 0}})], None, {},
     (False, False, True, ("x-gateway-role",))),
], ids=["nothing", "ip+secure+header", "header spelling", "role request header",
        "time in a guardrail", "time in a role"])
def test_fact_reads_names_what_conditions_read(member, guardrails, over, expected) -> None:
    assert _reads(member, guardrails, **over) == expected


@pytest.mark.parametrize("where", ["role", "guardrail"])
async def test_a_config_reading_the_clock_never_caches(gates, where) -> None:
    if where == "role":
        raw = raw_config(member=[statement("Hours", "app:/**",
                                           {"DateLessThan": {"req:time": NOW + 5}})])
    else:
        raw = raw_config(member=[statement("All", "app:/**")], guardrails=[GUARD_TIME])
    gate = await gates(raw)
    assert gate.admissions.enabled is False
    assert (await gate.ask()).status == 200
    assert (await gate.ask()).status == 200
    assert gate.authorized == 2 and len(gate.admissions) == 0
    gate.clock.advance(10)                       # past the condition, well within a hold
    got = await gate.ask()
    assert (got.status, got.code) == (403, "no_allow")


# --------------------------------------------------------------------------- 4. revocation


@pytest.mark.parametrize("kind", ["jti", "origin_jti", "sub"])
async def test_a_revocation_after_a_hit_refuses_the_next_request(gates, kind) -> None:
    gate = await gates()
    assert (await gate.ask()).status == 200
    assert (await gate.ask()).status == 200 and gate.authorized == 1
    before = gate.engine.store.generation
    await gate.engine.store.add(await entry_for(gate, kind))
    assert gate.engine.store.generation != before
    got = await gate.ask()                       # the clock has not moved: the generation did
    assert (got.status, got.code) == (401, "token_revoked")
    assert gate.authorized == 1                  # refused on the hit path itself
    assert len(gate.admissions) == 0
    got = await gate.ask()
    assert (got.status, got.code) == (401, "token_revoked") and gate.authorized == 2


# (seconds the clock moves, whether some unrelated revocation is written) -> store asked?
@pytest.mark.parametrize(("advance", "write", "asked"), [
    (0, False, False),
    (REVALIDATE_SECONDS, False, False),
    (REVALIDATE_SECONDS + 0.5, False, True),
    (0, True, True),
    (1, True, True),
])
async def test_a_hit_asks_the_store_when_the_generation_moved_or_every_few_seconds(
        gates, advance, write, asked) -> None:
    gate = await gates()
    assert (await gate.ask()).status == 200 and gate.revocation_checks == 1
    assert (await gate.ask()).status == 200 and gate.revocation_checks == 1
    gate.clock.advance(advance)
    if write:
        await gate.engine.store.add(make_entry("jti", "someone-else", now=gate.clock(),
                                               max_token_lifetime=86400, skew=SKEW))
    assert (await gate.ask()).status == 200 and gate.authorized == 1
    assert gate.revocation_checks == (2 if asked else 1)
    # once asked, the answer holds again until the next move
    assert (await gate.ask()).status == 200
    assert gate.revocation_checks == (2 if asked else 1) and gate.authorized == 1


def redis_revocation(port: int, key_prefix: str, invalidation: str) -> dict[str, Any]:
    return {"store": "redis", "redis": {"url": f"redis://127.0.0.1:{port}/0",
                                        "key_prefix": key_prefix, "invalidation": invalidation,
                                        "timeout_ms": 1000}}


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("writer", ["this gateway", "another writer (PUBLISH)",
                                    "no invalidation channel"])
async def test_a_redis_revocation_after_a_hit_refuses_the_next_request(
        gates, shared_redis, prefix, writer) -> None:  # noqa: F811
    invalidation = "none" if writer == "no invalidation channel" else "pubsub"
    gate = await gates(raw_config(revocation=redis_revocation(shared_redis.port, prefix,
                                                              invalidation)))
    store = gate.engine.store
    if invalidation == "pubsub":
        assert await store.wait_subscribed(5) and store.generation is not None
    else:
        assert store.generation is None          # no channel: every hit asks Redis
    assert (await gate.ask()).status == 200
    assert (await gate.ask()).status == 200 and gate.authorized == 1
    before = store.generation
    if writer == "this gateway":
        await store.add(await entry_for(gate, "jti"))
    else:                                        # e.g. another replica or a Lambda
        assert cli(shared_redis.port, "SET", f"{prefix}jti:j-1", "1", "EX", "600") == "OK"
        if writer == "another writer (PUBLISH)":
            cli(shared_redis.port, "PUBLISH", f"{prefix}revocations", "jti:j-1")
            await _wait(lambda: store.generation != before, 5, "the invalidation")
    got = await gate.ask()
    assert (got.status, got.code) == (401, "token_revoked")
    assert gate.authorized == 1 and len(gate.admissions) == 0


# --------------------------------------------------------------------------- 5. keys


@pytest.mark.parametrize(("published", "answer"), [
    ("nothing of k1", (401, "unknown_kid")),
    ("another key under k1", (401, "bad_signature")),
    ("k1 again", (200, "allowed")),              # a refresh alone refuses nothing
], ids=["dropped", "replaced", "republished"])
async def test_a_key_rotation_after_a_hit_is_decided_by_the_verifier(gates, published,
                                                                    answer) -> None:
    gate = await gates()
    assert (await gate.ask()).status == 200
    assert (await gate.ask()).status == 200 and gate.authorized == 1
    keys = {"nothing of k1": [jwk_of(rsa_key(n=1), "k2")],
            "another key under k1": [jwk_of(rsa_key(n=1), "k1")],
            "k1 again": [jwk_of(rsa_key(), "k1")]}[published]
    gate.idp.doc = {"keys": keys}
    assert await gate.engine.jwks.refresh("pool")
    got = await gate.ask()
    assert (got.status, got.code) == answer
    if got.status != 200:
        assert gate.authorized == 2              # decided again: the verifier's own refusal


# --------------------------------------------------------------------------- 6. expiry


# the token expires 20 s after NOW (before the 30 s hold would end); seconds the clock moves
@pytest.mark.parametrize(("advance", "answer", "hit"), [
    (19, (200, "allowed"), True),
    (20, (200, "allowed"), False),     # at exp: the verifier still accepts (skew), decided anew
    (20 + SKEW + 1, (401, "token_expired"), False),
])
async def test_an_admission_ends_with_the_token(gates, advance, answer, hit) -> None:
    gate = await gates()
    short = token(exp=NOW + 20)
    assert (await gate.ask(bearer=short)).status == 200
    gate.clock.advance(advance)
    got = await gate.ask(bearer=short)
    assert (got.status, got.code) == answer
    assert gate.authorized == (1 if hit else 2)
    if not hit:
        assert len(gate.admissions) == 0         # past exp: never held again


def _outcome(exp: float, raw: str = "a.b.c") -> Any:
    verified = VerifiedToken(raw=raw, source_id="pool", issuer="iss", header={},
                             claims={"exp": exp}, token_hash=raw.encode())
    return SimpleNamespace(principal=SimpleNamespace(token=verified))


def _cache(max_entries: int = 1024, hold: float = 30.0) -> AdmissionCache:
    return AdmissionCache(parse_config(raw_config(), env={}), hold_seconds=hold,
                          max_entries=max_entries, clock=FakeClock(NOW))


def _key(raw: str = "a.b.c", path: str = "/x") -> tuple[Any, ...]:
    return (raw, "GET", path, None, None, None, ())


# (seconds to exp, hold) -> the entry's end, relative to the put
@pytest.mark.parametrize(("to_exp", "hold", "end"), [
    (3600, 30, 30),            # the hold
    (10, 30, 10),              # the token's exp comes first
    (0, 30, None),             # expiring now: not held
    (-5, 30, None),            # already expired: not held
])
def test_put_and_get_never_outlive_exp(to_exp, hold, end) -> None:
    cache = _cache(hold=hold)
    cache.put(_key(), _outcome(NOW + to_exp), [], 0, NOW)
    if end is None:
        assert len(cache) == 0 and cache.get(_key(), NOW) is None
        return
    assert cache.get(_key(), NOW + end - 0.001) is not None
    assert cache.get(_key(), NOW + end) is None
    assert len(cache) == 0                       # an expired entry is dropped when met


# --------------------------------------------------------------------------- 7. bounds


def test_the_cache_is_bounded_and_oldest_entries_go_first() -> None:
    cache = _cache(max_entries=3)
    for i in range(5):
        cache.put(_key(path=f"/{i}"), _outcome(NOW + 3600), [], 0, NOW)
        assert len(cache) == min(i + 1, 3)
    assert [cache.get(_key(path=f"/{i}"), NOW) is not None for i in range(5)] == \
        [False, False, True, True, True]
    assert _cache(max_entries=0).enabled is False


async def test_an_engine_with_a_small_cache_evicts_its_oldest_admission(gates) -> None:
    gate = await gates()
    gate.engine.admissions = AdmissionCache(gate.engine.config, hold_seconds=30,
                                            max_entries=2, clock=gate.clock)
    for i in (1, 2, 3):
        assert (await gate.ask(f"/items/{i}")).status == 200
    assert gate.authorized == 3 and len(gate.admissions) == 2
    assert (await gate.ask("/items/3")).status == 200 and gate.authorized == 3   # kept
    assert (await gate.ask("/items/1")).status == 200 and gate.authorized == 4   # evicted


# --------------------------------------------------------------------------- 8. ambiguity


@pytest.mark.parametrize(("path", "held", "sent"), [
    ("/tenant/1", ("x-tenant", "acme"), (("x-tenant", "acme"), ("x-tenant", "acme"))),
    ("/tenant/1", ("x-tenant", "acme"), (("x-tenant", "acme"), ("x-tenant", "globex"))),
    ("/tenant/1", ("x-tenant", "acme"), (("x-tenant", "acme"), ("X_Tenant", "acme"))),
    ("/items/1", ("x-gateway-role", "member"),
     (("x-gateway-role", "member"), ("x-gateway-role", "member"))),
], ids=["same value twice", "two values", "two spellings", "role request twice"])
async def test_an_ambiguous_read_header_never_hits_an_entry_for_one_value(gates, path, held,
                                                                          sent) -> None:
    fresh = await gates()                        # without an entry: the refusal to expect
    expected = await fresh.ask(path, headers=sent)
    assert (expected.status, expected.code) == (400, "ambiguous_header")
    gate = await gates()
    assert (await gate.ask(path, headers=(held,))).status == 200
    got = await gate.ask(path, headers=sent)
    assert (got.status, got.code) == (expected.status, expected.code)
    assert gate.authorized == 2
    assert (await gate.ask(path, headers=(held,))).status == 200 and gate.authorized == 2


# --------------------------------------------------------------------------- 9. reload


async def test_a_reload_starts_empty_and_decides_under_the_new_config(gates) -> None:
    old = await gates()
    assert (await old.ask()).status == 200 and (await old.ask()).status == 200
    assert len(old.admissions) == 1 and old.authorized == 1
    same = await gates(clock=old.clock, idp=old.idp)
    assert len(same.admissions) == 0
    assert (await same.ask()).status == 200 and same.authorized == 1
    narrower = await gates(raw_config(member=[statement("Tenant", "app:/tenant/*")]),
                           clock=old.clock, idp=old.idp)
    got = await narrower.ask()
    assert (got.status, got.code) == (403, "no_allow") and narrower.authorized == 1
    assert (await old.ask()).status == 200 and old.authorized == 1   # the old one is its own


# --------------------------------------------------------------------------- still_valid


@pytest.mark.parametrize(("change", "valid"), [
    ("nothing", True),
    ("clock within skew past exp", True),
    ("clock past exp + skew", False),
    ("key dropped", False),
    ("route takes other sources", False),
    ("a token object the verifier did not return", False),
])
async def test_still_valid_is_the_verifiers_cache_hit(gates, change, valid) -> None:
    gate = await gates()
    verifier = gate.engine.verifier
    verified = await verifier.verify(TOKEN)
    allowed: tuple[str, ...] | None = ("pool",)
    if change == "clock within skew past exp":
        gate.clock.t = verified.exp + SKEW
    elif change == "clock past exp + skew":
        gate.clock.t = verified.exp + SKEW + 1
    elif change == "key dropped":
        gate.idp.doc = {"keys": [jwk_of(rsa_key(n=1), "k2")]}
        assert await gate.engine.jwks.refresh("pool")
    elif change == "route takes other sources":
        allowed = ("other",)
    elif change == "a token object the verifier did not return":
        verified = VerifiedToken(raw=verified.raw, source_id=verified.source_id,
                                 issuer=verified.issuer, header=verified.header,
                                 claims=verified.claims, token_hash=verified.token_hash)
    assert verifier.still_valid(verified, allowed) is valid


# --------------------------------------------------------------------------- request binding


def _credential_claims(answer: Answer) -> dict[str, Any]:
    import base64
    import json
    value = dict(answer.extra or [])[b"x-gateway-credential"].decode("ascii")
    payload = value.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_a_bound_credential_names_each_request_and_is_never_reused(gates) -> None:
    """downstream_credential.request_binding: htm/htu of the request itself, so neither the
    admission cache nor the signer's cache may hand one request's credential to another."""
    gate = await gates(raw_config(downstream_credential={"request_binding": True}))
    assert not gate.admissions.enabled
    one, two = await gate.ask("/items/1"), await gate.ask("/items/2")
    assert (one.status, two.status) == (200, 200)
    c1, c2 = _credential_claims(one), _credential_claims(two)
    assert (c1["htm"], c1["htu"]) == ("GET", "http://127.0.0.1:9/items/1")
    assert c2["htu"] == "http://127.0.0.1:9/items/2"
    again = await gate.ask("/items/1")
    assert gate.authorized == 3 and _credential_claims(again)["htu"] == c1["htu"]


async def test_without_binding_the_credential_names_no_request(gates) -> None:
    gate = await gates()
    claims = _credential_claims(await gate.ask("/items/1"))
    assert "htm" not in claims and "htu" not in claims
