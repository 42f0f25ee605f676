"""The Redis store against a private redis-server: kinds, TTLs, the near-cache and faults."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import AsyncIterator, Callable

import pytest

from gateway.config import RedisConfig
from gateway.metrics import Metrics
from gateway.revocation import StoreError, make_entry
from gateway.revocation.redis_store import RedisStore

from .conftest import RedisProc, cli, make_token


def cfg(port: int, prefix: str, **kw: object) -> RedisConfig:
    return RedisConfig(url=f"redis://127.0.0.1:{port}/0", key_prefix=prefix, **kw)  # type: ignore[arg-type]


def entry(kind: str, value: str, **kw: float):  # type: ignore[no-untyped-def]
    return make_entry(kind, value, now=time.time(), max_token_lifetime=3600, skew=60, **kw)


@pytest.fixture
async def stores(shared_redis: RedisProc, prefix: str) -> AsyncIterator[Callable[..., object]]:
    made: list[RedisStore] = []

    async def make(**kw: object) -> RedisStore:
        s = RedisStore(cfg(shared_redis.port, prefix, **kw), metrics=Metrics())
        made.append(s)
        await s.start()
        return s

    try:
        yield make
    finally:
        for s in made:
            await s.aclose()


async def wait_until(pred: Callable[[], object], timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if await pred():  # type: ignore[misc]
            return time.perf_counter() - started
        await asyncio.sleep(0.001)
    raise AssertionError(f"not within {timeout}s")


async def test_kinds_and_sub_boundary(stores) -> None:  # type: ignore[no-untyped-def]
    store = await stores()
    assert store.subscribed and store.healthy()
    nb = time.time() - 100
    await store.add(entry("jti", "j1"))
    await store.add(entry("origin_jti", "o1"))
    await store.add(entry("sub", "u1", not_before=nb))
    assert await store.revoked(make_token(jti="j1", sub="z")) == "jti"
    assert await store.revoked(make_token(jti="j9", origin_jti="o1", sub="z")) == "origin_jti"
    assert await store.revoked(make_token(jti="j9", sub="u1", iat=nb - 1)) == "sub"
    assert await store.revoked(make_token(jti="j9", sub="u1", iat=nb)) is None
    assert await store.revoked(make_token(jti="j9", sub="u1")) == "sub"          # no iat
    assert await store.revoked(make_token(jti="j9", sub="u2", iat=nb - 1)) is None
    got = await store.get("sub", "u1")
    assert got is not None and got.not_before == int(nb) or got.not_before == nb
    assert await store.delete("jti", "j1") is True
    assert await store.delete("jti", "j1") is False
    assert await store.revoked(make_token(jti="j1", sub="z")) is None


async def test_every_key_has_a_ttl(stores, shared_redis: RedisProc, prefix: str) -> None:  # type: ignore[no-untyped-def]
    store = await stores()
    await store.add(entry("jti", "a"))
    await store.add(entry("origin_jti", "b", exp=time.time() + 5))
    await store.add(entry("sub", "c"))
    keys = cli(shared_redis.port, "--scan", "--pattern", prefix + "*").split()
    assert sorted(keys) == sorted([prefix + "jti:a", prefix + "ojti:b", prefix + "sub:c"])
    for k in keys:
        assert int(cli(shared_redis.port, "TTL", k)) > 0, k
    assert float(cli(shared_redis.port, "GET", prefix + "sub:c")) > 1e9    # not_before


async def test_invalidation_across_instances(stores) -> None:  # type: ignore[no-untyped-def]
    """Two stores = two gateway replicas: a write through A is enforced by B within 1 s."""
    a, b = await stores(), await stores()
    assert b.subscribed
    delays = []
    for i in range(5):
        tok = make_token(jti=f"x{i}", sub=f"user-x{i}", iat=time.time())
        assert await b.revoked(tok) is None           # B caches the negative answer
        assert await b.revoked(tok) is None
        assert len(b._cache) >= 2                     # type: ignore[arg-type]
        t0 = time.perf_counter()
        await a.add(entry("jti", f"x{i}"))
        delays.append(await wait_until(lambda: b.revoked(tok), 1.0))
        del t0
    print(f"\ncross-instance propagation (write via A -> enforced by B): "
          f"max {max(delays) * 1000:.2f} ms, all {[round(d * 1000, 2) for d in delays]} ms")
    assert max(delays) < 1.0


async def test_direct_redis_cli_write_is_enforced(stores, shared_redis: RedisProc,  # type: ignore[no-untyped-def]
                                                  prefix: str) -> None:
    store = await stores()
    nb = int(time.time())
    old, new = make_token(jti="q1", sub="lambda-user", iat=nb - 5), \
        make_token(jti="q2", sub="lambda-user", iat=nb)
    assert await store.revoked(old) is None                 # cached negative
    cli(shared_redis.port, "SET", f"{prefix}sub:lambda-user", str(nb), "EX", "600")
    cli(shared_redis.port, "PUBLISH", f"{prefix}revocations", "sub:lambda-user")
    delay = await wait_until(lambda: store.revoked(old), 1.0)
    print(f"\nredis-cli SET + PUBLISH enforced after {delay * 1000:.2f} ms")
    assert await store.revoked(new) is None                 # iat == not_before: still valid
    cli(shared_redis.port, "SET", f"{prefix}ojti:fam", "1", "EX", "600")
    cli(shared_redis.port, "PUBLISH", f"{prefix}revocations", "ojti:fam")
    await wait_until(lambda: store.revoked(make_token(origin_jti="fam", sub="s")), 1.0)


async def test_near_cache_off_always_asks_redis(stores, shared_redis: RedisProc,  # type: ignore[no-untyped-def]
                                                prefix: str) -> None:
    store = await stores(invalidation="none")
    tok = make_token(jti="nc1", sub="s-nc")
    assert not store.subscribed
    assert await store.revoked(tok) is None
    cli(shared_redis.port, "SET", f"{prefix}jti:nc1", "1", "EX", "60")   # no PUBLISH at all
    assert await store.revoked(tok) == "jti"


async def test_lookup_cost(stores) -> None:  # type: ignore[no-untyped-def]
    cached, direct = await stores(), await stores(invalidation="none")
    tok = make_token(jti="cost", origin_jti="cost-o", sub="cost-s", iat=time.time())
    n = 2000
    for store, label in ((cached, "near-cache hit"), (direct, "redis round trip (MGET 3 keys)")):
        await store.revoked(tok)
        t0 = time.perf_counter()
        for _ in range(n):
            assert await store.revoked(tok) is None
        per = (time.perf_counter() - t0) / n
        print(f"\nrevoked() {label}: {per * 1e6:.1f} us/lookup over {n}")


# --------------------------------------------------------------------------- faults

async def test_kill_and_restart(redis_proc: RedisProc, prefix: str) -> None:
    store = RedisStore(cfg(redis_proc.port, prefix), metrics=Metrics())
    await store.start()
    try:
        await store.add(entry("jti", "k1"))
        tok, other = make_token(jti="k1", sub="a"), make_token(jti="k2", sub="b")
        assert await store.revoked(tok) == "jti"
        assert await store.revoked(other) is None          # now in the near-cache
        stop = asyncio.Event()
        errors: list[float] = []

        async def traffic() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    await store.revoked(other)
                except StoreError:
                    errors.append(time.perf_counter())
                assert time.perf_counter() - t0 < 2.0     # no lookup ever hangs
                await asyncio.sleep(0.005)

        runner = asyncio.create_task(traffic())
        await asyncio.sleep(0.1)
        killed = time.perf_counter()
        redis_proc.kill()
        t0 = time.perf_counter()
        while True:                                         # fail closed, never the cache
            try:
                await store.revoked(other)
            except StoreError:
                break
            assert time.perf_counter() - t0 < 2.0, "no StoreError within 2 s of the kill"
            await asyncio.sleep(0.01)
        first_error = time.perf_counter() - killed
        while store.healthy():
            assert time.perf_counter() - killed < 5.0, "healthy() still True after 5 s"
            await asyncio.sleep(0.05)
        unhealthy = time.perf_counter() - killed
        redis_proc.start()                                 # same port, same store object
        restarted = time.perf_counter()
        while True:
            try:
                if store.healthy() and await store.revoked(other) is None:
                    break
            except StoreError:
                pass
            assert time.perf_counter() - restarted < 10.0, "not back within 10 s"
            await asyncio.sleep(0.05)
        back = time.perf_counter() - restarted
        stop.set()
        await runner
        # the data died with the process (no persistence): a fresh write works again
        await store.add(entry("jti", "k1"))
        assert await store.revoked(tok) == "jti"
        assert await store.wait_subscribed(5)
        print(f"\nkill: StoreError after {first_error * 1000:.0f} ms, unhealthy after "
              f"{unhealthy * 1000:.0f} ms; restart: normal after {back * 1000:.0f} ms")
        assert errors
    finally:
        await store.aclose()


async def test_hung_redis_never_blocks_past_timeout(redis_proc: RedisProc, prefix: str) -> None:
    store = RedisStore(cfg(redis_proc.port, prefix, timeout_ms=300), metrics=Metrics())
    await store.start()
    try:
        tok = make_token(jti="h1", sub="h")
        assert await store.revoked(tok) is None
        os.kill(redis_proc.pid, signal.SIGSTOP)
        try:
            saw_error = False
            deadline = time.perf_counter() + 5
            while time.perf_counter() < deadline and not (saw_error and not store.healthy()):
                t0 = time.perf_counter()
                try:
                    await store.revoked(make_token(jti=f"h{t0}", sub=f"h{t0}"))
                except StoreError:
                    saw_error = True
                assert time.perf_counter() - t0 < 1.0      # timeout_ms + scheduling slack (< 2 s)
            assert saw_error and not store.healthy()
            with pytest.raises(StoreError):
                await store.revoked(tok)                   # cache bypassed while down
        finally:
            os.kill(redis_proc.pid, signal.SIGCONT)
        t0 = time.perf_counter()
        while not (store.healthy() and store.subscribed):
            assert time.perf_counter() - t0 < 10
            await asyncio.sleep(0.05)
        assert await store.revoked(tok) is None
    finally:
        await store.aclose()


async def test_start_with_redis_down_then_up(tmp_path, prefix: str) -> None:  # type: ignore[no-untyped-def]
    from .conftest import need_redis
    need_redis()
    proc = RedisProc(tmp_path)
    store = RedisStore(cfg(proc.port, prefix), metrics=Metrics())
    try:
        t0 = time.perf_counter()
        await store.start()                                  # never fatal, never long
        assert time.perf_counter() - t0 < 2 and not store.healthy()
        with pytest.raises(StoreError):
            await store.revoked(make_token(jti="d1"))
        proc.start()
        t0 = time.perf_counter()
        while not store.subscribed:
            assert time.perf_counter() - t0 < 10
            await asyncio.sleep(0.05)
        assert await store.revoked(make_token(jti="d1")) is None
    finally:
        await store.aclose()
        proc.stop()


async def test_lost_subscription_bypasses_then_resubscribes(stores, shared_redis: RedisProc,  # type: ignore[no-untyped-def]
                                                            prefix: str) -> None:
    """Redis drops the pubsub connection: a write whose PUBLISH nobody heard is still
    enforced (the cache is cleared and bypassed until resubscribed), and the channel comes back."""
    store = await stores()
    tok = make_token(jti="ps1", sub="ps-user")
    assert await store.revoked(tok) is None                    # cached negative
    cli(shared_redis.port, "CLIENT", "KILL", "TYPE", "pubsub")
    cli(shared_redis.port, "SET", f"{prefix}jti:ps1", "1", "EX", "60")
    cli(shared_redis.port, "PUBLISH", f"{prefix}revocations", "jti:ps1")   # heard by no one
    t0 = time.perf_counter()
    while await store.revoked(tok) is None:
        assert time.perf_counter() - t0 < 1.0
        await asyncio.sleep(0.005)
    assert await store.wait_subscribed(5)
    print(f"\nlost subscription: enforced after {(time.perf_counter() - t0) * 1000:.1f} ms")
