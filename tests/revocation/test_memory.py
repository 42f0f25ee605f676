"""The embedded store: matching, lazy expiry, the sweep, the size guard, an injected clock."""

from __future__ import annotations

import pytest

from gateway.metrics import Metrics
from gateway.revocation import MemoryStore, StoreError, build_store, make_entry
from gateway.config import RevocationConfig

from .conftest import make_token

NOW = 1_764_150_000.0


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


def entry(kind: str, value: str, clock: Clock, **kw: float):  # type: ignore[no-untyped-def]
    return make_entry(kind, value, now=clock(), max_token_lifetime=3600, skew=60, **kw)


async def test_kinds_match() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.add(entry("jti", "j1", clock))
    await store.add(entry("origin_jti", "o1", clock))
    await store.add(entry("sub", "u1", clock, not_before=NOW - 10))
    assert await store.revoked(make_token(jti="j1", sub="other")) == "jti"
    assert await store.revoked(make_token(jti="j2", origin_jti="o1", sub="x")) == "origin_jti"
    assert await store.revoked(make_token(jti="j2", sub="u1", iat=NOW - 11)) == "sub"
    assert await store.revoked(make_token(jti="j2", sub="u1", iat=NOW - 10)) is None
    assert await store.revoked(make_token(jti="j2", sub="u1")) == "sub"    # no iat
    assert await store.revoked(make_token(jti="j3", sub="u2", iat=NOW)) is None


async def test_expiry_lazy_and_sweep() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.add(entry("jti", "short", clock, exp=NOW + 10))     # ttl 70
    await store.add(entry("jti", "long", clock))                    # ttl 3660
    clock.t = NOW + 69
    assert await store.revoked(make_token(jti="short")) == "jti"
    got = await store.get("jti", "short")
    assert got is not None and got.ttl == 1
    clock.t = NOW + 71
    assert await store.revoked(make_token(jti="short")) is None      # lazily dropped
    assert await store.get("jti", "short") is None
    assert len(store) == 1
    clock.t = NOW + 4000
    assert store.sweep() == 1 and len(store) == 0


async def test_size_guard_refuses_rather_than_evicts() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock, max_entries=2)
    await store.add(entry("jti", "a", clock, exp=NOW + 1))
    await store.add(entry("jti", "b", clock))
    with pytest.raises(StoreError):
        await store.add(entry("jti", "c", clock))
    await store.add(entry("jti", "b", clock))       # rewriting an existing key is fine
    clock.t = NOW + 100                             # "a" expired: the sweep makes room
    await store.add(entry("jti", "c", clock))
    assert await store.revoked(make_token(jti="b")) == "jti"


async def test_delete_get_and_metrics() -> None:
    clock = Clock()
    metrics = Metrics()
    store = MemoryStore(clock=clock, metrics=metrics)
    await store.start()
    try:
        await store.add(entry("sub", "u", clock))
        got = await store.get("sub", "u")
        assert got is not None and got.not_before == NOW
        assert await store.revoked(make_token(sub="u", iat=NOW - 1)) == "sub"
        assert await store.delete("sub", "u") is True
        assert await store.delete("sub", "u") is False
        assert await store.revoked(make_token(sub="u", iat=NOW - 1)) is None
        assert store.healthy()
        text = metrics.exposition().decode()
        assert 'poolgate_revocation_lookups_total{result="hit"} 1.0' in text
        assert 'poolgate_revocation_lookups_total{result="miss"} 1.0' in text
    finally:
        await store.aclose()


def test_build_store() -> None:
    assert build_store(RevocationConfig(store="none")) is None
    s = build_store(RevocationConfig(store="memory"))
    assert s is not None and s.name == "memory"


def test_require_redis_turns_a_skip_into_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis_helpers
    monkeypatch.setattr(redis_helpers, "REDIS_SERVER", None)
    monkeypatch.setenv("POOLGATE_REQUIRE_REDIS", "1")
    with pytest.raises(pytest.fail.Exception):
        redis_helpers.need_redis()
    monkeypatch.delenv("POOLGATE_REQUIRE_REDIS")
    with pytest.raises(pytest.skip.Exception):
        redis_helpers.need_redis()
