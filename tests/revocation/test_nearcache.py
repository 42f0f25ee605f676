"""The near-cache: negative answers, the generation guard, size and age bounds (pure)."""

from __future__ import annotations

from gateway.revocation.nearcache import MISSING, NearCache


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_caches_negative_and_positive() -> None:
    c = NearCache()
    c.put_many([(("jti", "a"), None), (("sub", "u"), "123")], c.generation)
    assert c.get(("jti", "a")) is None
    assert c.get(("sub", "u")) == "123"
    assert c.get(("jti", "zz")) is MISSING


def test_read_overtaken_by_an_invalidation_is_not_cached() -> None:
    c = NearCache()
    gen = c.generation                      # a Redis read starts ...
    c.invalidate(("jti", "a"))              # ... a revocation message arrives meanwhile ...
    c.put_many([(("jti", "a"), None)], gen)  # ... the (possibly stale) answer is dropped
    assert c.get(("jti", "a")) is MISSING
    gen = c.generation
    c.clear()
    c.put_many([(("jti", "b"), None)], gen)
    assert c.get(("jti", "b")) is MISSING


def test_bounded_size_evicts_oldest() -> None:
    c = NearCache(max_entries=3)
    for i in range(5):
        c.put_many([(("jti", str(i)), None)], c.generation)
    assert len(c) == 3
    assert c.get(("jti", "0")) is MISSING and c.get(("jti", "4")) is None


def test_max_age() -> None:
    clock = Clock()
    c = NearCache(max_age=30, clock=clock)
    c.put_many([(("jti", "a"), None)], c.generation)
    clock.t = 30
    assert c.get(("jti", "a")) is None
    clock.t = 30.1
    assert c.get(("jti", "a")) is MISSING and len(c) == 0
