"""GET /revocations without a query: the active entries, paged with an opaque cursor, for the
memory store and a real redis-server (SCAN under the key prefix); admin token required."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aredis

from gateway.config import RedisConfig
from gateway.revocation import MemoryStore, make_entry
from gateway.revocation.redis_store import RedisStore

from .conftest import RedisProc, redis_cluster  # noqa: F401
from .test_api import AUTH, app_for, client


def _entry(i: int):
    kind = ("jti", "origin_jti", "sub")[i % 3]
    return make_entry(kind, f"v-{i:04d}", now=time.time(), max_token_lifetime=3600, skew=60)


async def _all_pages(c, limit: int) -> tuple[list[dict], int]:
    seen: list[dict] = []
    pages = 0
    params: dict[str, str] = {"limit": str(limit)}
    while True:
        r = await c.get("/revocations", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"entries", "next"}
        seen.extend(body["entries"])
        pages += 1
        assert pages < 100
        if body["next"] is None:
            return seen, pages
        params = {"cursor": body["next"], "limit": str(limit)}


async def test_memory_listing_pages_every_active_entry_once() -> None:
    store = MemoryStore()
    for i in range(250):
        await store.add(_entry(i))
    async with client(app_for(store)) as c:
        entries, pages = await _all_pages(c, 100)
        assert pages == 3
        assert sorted(e["value"] for e in entries) == [f"v-{i:04d}" for i in range(250)]
        assert all(set(e) == {"kind", "value", "ttl"} and 0 < e["ttl"] <= 3661 for e in entries)
        # a delete between pages skips nothing that is still there
        r = await c.get("/revocations", params={"limit": "10"}, headers=AUTH)
        first = r.json()
        await store.delete(first["entries"][-1]["kind"], first["entries"][-1]["value"])
        r = await c.get("/revocations", params={"limit": "10", "cursor": first["next"]},
                        headers=AUTH)
        assert len(r.json()["entries"]) == 10
        # default page size, then errors
        r = await c.get("/revocations", headers=AUTH)
        assert len(r.json()["entries"]) == 100 and r.json()["next"]
        for params in ({"cursor": "garbage!"}, {"limit": "0"}, {"limit": "x"}, {"foo": "1"}):
            r = await c.get("/revocations", params=params, headers=AUTH)
            assert r.status_code == 400, params
        r = await c.get("/revocations")
        assert r.status_code == 401


async def test_memory_listing_leaves_out_expired_entries() -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    await store.add(make_entry("jti", "short", exp=1010, now=1000, max_token_lifetime=60, skew=0))
    await store.add(make_entry("jti", "long", exp=5000, now=1000, max_token_lifetime=60, skew=0))
    now[0] = 1020
    entries, nxt = await store.list(None, 10)
    assert [e.value for e in entries] == ["long"] and nxt is None


async def test_redis_listing_scans_the_prefix_only(shared_redis: RedisProc, prefix: str) -> None:
    cfg = RedisConfig(url=f"redis://127.0.0.1:{shared_redis.port}/0", key_prefix=prefix)
    store = RedisStore(cfg)
    raw = aredis.Redis(port=shared_redis.port, decode_responses=True)
    await store.start()
    try:
        for i in range(120):
            await store.add(_entry(i))
        await raw.set(prefix + "session:abc", "x", ex=60)      # another room's key: left out
        await raw.set("other:" + prefix + "jti:zzz", "1", ex=60)  # another prefix: left out
        async with client(app_for(store)) as c:
            entries, pages = await _all_pages(c, 50)
        assert pages >= 2
        values = {e["value"] for e in entries}
        assert values == {f"v-{i:04d}" for i in range(120)}
        kinds = {e["value"]: e["kind"] for e in entries}
        assert kinds["v-0001"] == "origin_jti" and kinds["v-0002"] == "sub"
        assert all(0 < e["ttl"] <= 3661 for e in entries)
        with pytest.raises(ValueError):
            await store.list("bm90LWEtY3Vyc29y", 10)
    finally:
        await raw.aclose()
        await store.aclose()


async def test_cluster_listing_scans_every_primary(redis_cluster: list[RedisProc],
                                                  prefix: str) -> None:
    seed = redis_cluster[0]
    cfg = RedisConfig(mode="cluster", url=f"redis://127.0.0.1:{seed.port}/0", key_prefix=prefix)
    store = RedisStore(cfg)
    await store.start()
    try:
        for i in range(60):                  # spread over the three primaries' slots
            await store.add(_entry(i))
        seen: list = []
        cursor = None
        for _ in range(100):
            entries, cursor = await store.list(cursor, 25)
            seen.extend(entries)
            if cursor is None:
                break
        assert cursor is None
        assert {e.value for e in seen} == {f"v-{i:04d}" for i in range(60)}
        assert all(e.ttl > 0 for e in seen)
    finally:
        await store.aclose()
