"""The Redis store through Sentinel: one master, one replica, one sentinel on loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.config import RedisConfig
from gateway.metrics import Metrics
from gateway.revocation import make_entry
from gateway.revocation.redis_store import RedisStore

from .conftest import cli, make_token


async def test_sentinel_add_revoked_invalidation(redis_sentinel: dict[str, Any],
                                                 prefix: str) -> None:
    cfg = RedisConfig(mode="sentinel", sentinels=(("127.0.0.1", redis_sentinel["sentinel"].port),),
                      service_name=redis_sentinel["service_name"], key_prefix=prefix)
    a, b = RedisStore(cfg, metrics=Metrics()), RedisStore(cfg, metrics=Metrics())
    await a.start()
    await b.start()
    try:
        assert a.healthy() and b.subscribed
        tok = make_token(jti="s1", sub="sent-user", iat=time.time() - 5)
        assert await b.revoked(tok) is None                      # cached negative
        t0 = time.perf_counter()
        await a.add(make_entry("jti", "s1", now=time.time(), max_token_lifetime=3600, skew=60))
        while await b.revoked(tok) is None:
            assert time.perf_counter() - t0 < 1.0
            await asyncio.sleep(0.001)
        print(f"\nsentinel propagation A -> B: {(time.perf_counter() - t0) * 1000:.2f} ms")
        # written on the master, replicated to the replica, with a TTL
        master, replica = redis_sentinel["master"], redis_sentinel["replica"]
        assert int(cli(master.port, "TTL", f"{prefix}jti:s1")) > 0
        deadline = time.monotonic() + 5
        while cli(replica.port, "GET", f"{prefix}jti:s1") != "1":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await a.add(make_entry("sub", "sent-user", now=time.time(), max_token_lifetime=3600,
                               skew=60))
        old = make_token(jti="other", sub="sent-user", iat=time.time() - 5)
        t0 = time.perf_counter()
        while await b.revoked(old) != "sub":        # B had cached "no sub entry" above
            assert time.perf_counter() - t0 < 1.0
            await asyncio.sleep(0.001)
    finally:
        await a.aclose()
        await b.aclose()
