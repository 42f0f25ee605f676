"""gateway/aws/cache.py: single-flight, bounded LRU, refresh before expiry, failures not cached."""

from __future__ import annotations

import asyncio

import pytest

from gateway.aws.cache import MIN_REMAINING, CredentialCache


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(clock: Clock, **kw):
    return CredentialCache(expiry_of=lambda v: v[1], clock=clock, refresh_before=300, **kw)


async def test_single_flight_100_concurrent_one_fetch():
    clock = Clock()
    cache = make(clock)
    calls = 0
    gate = asyncio.Event()

    async def fetch():
        nonlocal calls
        calls += 1
        await gate.wait()
        return ("creds", clock.t + 900)

    tasks = [asyncio.ensure_future(cache.get("k", fetch)) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    entries = await asyncio.gather(*tasks)
    assert calls == 1 and len({id(e) for e in entries}) == 1
    assert cache.peek("k").value == ("creds", 1900.0)


async def test_refresh_before_expiry_serves_old_then_new():
    clock = Clock()
    cache = make(clock)
    n = 0

    async def fetch():
        nonlocal n
        n += 1
        return (n, clock.t + 900)

    assert (await cache.get("k", fetch)).value[0] == 1
    clock.t += 599                       # before refresh_at (expiry - 300): a plain hit
    assert cache.peek("k").value[0] == 1 and n == 1
    clock.t += 2                         # inside the refresh window: old value + one refresh
    assert cache.peek("k").value[0] == 1
    assert cache.peek("k").value[0] == 1
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert n == 2 and cache.peek("k").value[0] == 2


async def test_nearly_expired_entries_are_not_handed_out():
    clock = Clock()
    cache = make(clock)

    async def fetch():
        return ("v", clock.t + 900)

    await cache.get("k", fetch)
    clock.t += 900 - MIN_REMAINING + 1
    assert cache.peek("k") is None


async def test_failures_are_not_cached_and_reach_every_waiter():
    clock = Clock()
    cache = make(clock)
    calls = 0

    async def failing():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("sts down")

    results = await asyncio.gather(*(cache.get("k", failing) for _ in range(5)),
                                   return_exceptions=True)
    assert calls == 1 and all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await cache.get("k", failing)
    assert calls == 2


async def test_bounded_lru():
    clock = Clock()
    cache = make(clock, max_entries=3)

    def fetch_for(k):
        async def fetch():
            return (k, clock.t + 900)
        return fetch

    for k in "abc":
        await cache.get(k, fetch_for(k))
    cache.peek("a")                      # a is now the most recent
    await cache.get("d", fetch_for("d"))
    assert len(cache) == 3 and cache.peek("b") is None and cache.peek("a") is not None


async def test_a_cancelled_waiter_does_not_cancel_the_fetch():
    clock = Clock()
    cache = make(clock)
    gate = asyncio.Event()

    async def fetch():
        await gate.wait()
        return ("v", clock.t + 900)

    t1 = asyncio.ensure_future(cache.get("k", fetch))
    t2 = asyncio.ensure_future(cache.get("k", fetch))
    await asyncio.sleep(0)
    t1.cancel()
    gate.set()
    assert (await t2).value == ("v", 1900.0)
