"""The Redis store against a 3-master Redis Cluster on loopback (started by the fixture)."""

from __future__ import annotations

import asyncio
import time

from gateway.config import RedisConfig
from gateway.metrics import Metrics
from gateway.revocation import make_entry
from gateway.revocation.redis_store import RedisStore

from .conftest import RedisProc, cli, make_token


def entry(kind: str, value: str, **kw: float):  # type: ignore[no-untyped-def]
    return make_entry(kind, value, now=time.time(), max_token_lifetime=3600, skew=60, **kw)


async def test_cluster_add_revoked_invalidation(redis_cluster: list[RedisProc],
                                                prefix: str) -> None:
    seed = redis_cluster[0]
    cfg = RedisConfig(mode="cluster", url=f"redis://127.0.0.1:{seed.port}/0", key_prefix=prefix)
    a, b = RedisStore(cfg, metrics=Metrics()), RedisStore(cfg, metrics=Metrics())
    await a.start()
    await b.start()
    try:
        assert b.subscribed and a.healthy() and b.healthy()
        # keys spread over slots owned by different masters: no cross-slot command is used
        values = [f"c{i}" for i in range(12)]
        owners = {cli(seed.port, "CLUSTER", "KEYSLOT", f"{prefix}jti:{v}") for v in values}
        assert len(owners) > 1
        nb = time.time() - 10
        for v in values:
            await a.add(entry("jti", v))
        await a.add(entry("sub", "cluster-user", not_before=nb))
        await a.add(entry("origin_jti", "cluster-fam"))
        for v in values:
            assert await b.revoked(make_token(jti=v, sub="zz")) == "jti"
        assert await b.revoked(make_token(jti="n", sub="cluster-user", iat=nb - 1)) == "sub"
        assert await b.revoked(make_token(jti="n", sub="cluster-user", iat=nb)) is None
        assert await b.revoked(make_token(jti="n", origin_jti="cluster-fam", sub="q")) \
            == "origin_jti"
        # every key has a TTL, on whichever master holds it
        for n in redis_cluster:
            for k in cli(n.port, "--scan", "--pattern", prefix + "*").split():
                assert int(cli(n.port, "TTL", k)) > 0, k
        # invalidation: B caches a negative answer, a write via A reaches it through pubsub
        tok = make_token(jti="late", sub="late-user", iat=time.time())
        assert await b.revoked(tok) is None
        assert await b.revoked(tok) is None
        t0 = time.perf_counter()
        await a.add(entry("jti", "late"))
        while await b.revoked(tok) is None:
            assert time.perf_counter() - t0 < 1.0
            await asyncio.sleep(0.001)
        print(f"\ncluster propagation A -> B: {(time.perf_counter() - t0) * 1000:.2f} ms")
        got = await b.get("jti", "late")
        assert got is not None and got.ttl > 0
        assert await a.delete("jti", "late") is True
        while await b.revoked(tok) is not None:
            assert time.perf_counter() - t0 < 2.0
            await asyncio.sleep(0.001)
    finally:
        await a.aclose()
        await b.aclose()


async def test_cluster_publish_from_any_node_reaches_subscriber(redis_cluster: list[RedisProc],
                                                                prefix: str) -> None:
    """A writer (e.g. a Lambda) may PUBLISH on any node: the subscriber's node still hears it."""
    cfg = RedisConfig(mode="cluster", url=f"redis://127.0.0.1:{redis_cluster[1].port}/0",
                      key_prefix=prefix)
    store = RedisStore(cfg, metrics=Metrics())
    await store.start()
    try:
        for i, node in enumerate(redis_cluster):
            tok = make_token(jti=f"any{i}", sub="s")
            assert await store.revoked(tok) is None
            # SET through the cluster-aware CLI (-c follows MOVED), PUBLISH on this very node
            key = f"{prefix}jti:any{i}"
            import subprocess
            from .conftest import REDIS_CLI
            subprocess.run([REDIS_CLI, "-c", "-p", str(node.port), "SET", key, "1", "EX", "60"],
                           capture_output=True, timeout=5, check=True)
            cli(node.port, "PUBLISH", f"{prefix}revocations", f"jti:any{i}")
            t0 = time.perf_counter()
            while await store.revoked(tok) is None:
                assert time.perf_counter() - t0 < 1.0, f"publish on node {i} not seen"
                await asyncio.sleep(0.001)
    finally:
        await store.aclose()
