"""How poolgate's per-request cost grows: routes, mapping rules, statements, distinct tokens,
revocation entries. In-process, one core; writes tests/bench/results/scaling.json.

    .venv/bin/python tests/bench/scaling.py [--quick] [--redis-keys 1000000] [--skip-redis]

Redis part: loads N revocation keys (the documented key format, ``SET ... EX``) under a
private key prefix on 127.0.0.1:6379 with ``redis-cli --pipe`` (or a redis-py pipeline),
measures lookups, then deletes every key under that prefix (and the keys carry a TTL anyway).
See SCALING.md for the reading of the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import issuer  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
# Rates are per second of this process's CPU time, not wall time: the machine may be shared
# (other jobs), and CPU time makes single-threaded in-process rates comparable across runs.
_cpu = time.process_time


def per_op_us(fn: Callable[[], Any], seconds: float) -> float:
    """Mean microseconds per call of ``fn`` over about ``seconds`` (after one warm call)."""
    fn()
    n, batch = 0, 100
    t0 = _cpu()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        el = _cpu() - t0
        if el >= seconds:
            return round(el / n * 1e6, 3)


async def aper_op_us(fn: Callable[[], Awaitable[Any]], seconds: float,
                     clock: Callable[[], float] = _cpu) -> float:
    """Async ``per_op_us``; pass ``clock=time.perf_counter`` when the call waits on the network."""
    await fn()
    n, batch = 0, 100
    t0 = clock()
    while True:
        for _ in range(batch):
            await fn()
        n += batch
        el = clock() - t0
        if el >= seconds:
            return round(el / n * 1e6, 3)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * (len(values) - 1) + 0.5))]


BASE: dict[str, Any] = {
    "version": 1,
    "identity_sources": [{"id": "bench", "issuer": issuer.ISSUER,
                          "jwks_uri": "http://127.0.0.1:9/jwks.json",
                          "audiences": [issuer.AUDIENCE]}],
    "upstreams": {"bench": {"url": "http://127.0.0.1:9"}},
    "default_role": "member",
    "roles": {"member": {"statements": []}},
}


def config(**extra: Any) -> Any:
    from gateway.config import parse_config
    return parse_config({**BASE, **extra})


# --------------------------------------------------------------------------- routes

def bench_routes(seconds: float) -> dict[str, Any]:
    from gateway.routes import Router
    out: dict[str, Any] = {}
    for n in (10, 100, 1000):
        # typical: a literal first segment per service, a capture or two after it
        literal = [{"id": f"r{i}", "match": {"path": f"/svc{i}/items/{{id}}", "methods": ["GET"]},
                    "upstream": "bench", "auth": "authenticated"} for i in range(n)]
        # worst case for a prefix trie: every route starts with a capture
        captured = [{"id": f"r{i}", "match": {"path": f"/{{tenant}}/svc{i}/items/**",
                                              "methods": ["GET"]},
                     "upstream": "bench", "auth": "authenticated"} for i in range(n)]
        for kind, routes in (("literal_prefix", literal), ("leading_capture", captured)):
            router = Router(config(routes=routes).routes)
            first = "/svc0/items/42" if kind == "literal_prefix" else "/t1/svc0/items/42"
            last = (f"/svc{n - 1}/items/42" if kind == "literal_prefix"
                    else f"/t1/svc{n - 1}/items/a/b")
            miss = "/nothing/here/at/all"
            out[f"{kind}_{n}"] = {
                "first_us": per_op_us(lambda: router.match_or_none("GET", first), seconds),
                "last_us": per_op_us(lambda: router.match_or_none("GET", last), seconds),
                "miss_us": per_op_us(lambda: router.match_or_none("GET", miss), seconds)}
    return out


# --------------------------------------------------------------------------- mapping

def bench_mapping(seconds: float) -> dict[str, Any]:
    from gateway.mapping import RoleMapper
    out: dict[str, Any] = {}
    ops = ["equals", "starts_with", "contains", "regex", "any_of"]
    claims = {"sub": "user-1", "cognito:groups": ["members", "g7"], "custom:tenant_id": "t1",
              "email": "u@example.com"}
    for n in (1, 10, 100):
        rules = []
        for i in range(n - 1):                       # n - 1 rules that do not match
            op = ops[i % len(ops)]
            value: Any = {"equals": f"nobody-{i}", "starts_with": f"zz{i}",
                          "contains": f"group-{i}", "regex": f"^x{i}[0-9]+$",
                          "any_of": [f"a{i}", f"b{i}"]}[op]
            claim = {"contains": "cognito:groups", "starts_with": "email"}.get(op, "sub")
            rules.append({"claim": claim, "op": op, "value": value, "role": "admin"})
        rules.append({"claim": "cognito:groups", "op": "contains", "value": "members",
                      "role": "member"})
        cfg = config(mappings={"bench": {"mode": "rules", "rules": rules}},
                     roles={"admin": {"statements": []}, "member": {"statements": []}})
        mapper = RoleMapper(cfg)
        choice = mapper.choose("bench", claims)
        assert choice.role == "member", choice
        out[f"rules_{n}_us"] = per_op_us(lambda: mapper.choose("bench", claims), seconds)
    return out


# --------------------------------------------------------------------------- policy

def bench_policy(seconds: float) -> dict[str, Any]:
    from gateway.policy import PolicyEngine
    from gateway.principal import RequestFacts
    out: dict[str, Any] = {}
    claims = {"sub": "user-1", "custom:tenant_id": "t1"}
    for n in (2, 10, 100):
        stmts = [{"sid": f"S{i}", "effect": "allow", "action": ["http:GET"],
                  "resource": [f"bench:/other{i}/${{jwt:custom:tenant_id}}/*"]}
                 for i in range(n - 1)]
        stmts.append({"sid": "Own", "effect": "allow", "action": ["http:GET"],
                      "resource": ["bench:/tenants/${jwt:custom:tenant_id}/orders/*"]})
        cfg = config(roles={"member": {"statements": stmts}},
                     routes=[{"id": "o", "match": {"path": "/tenants/{t}/orders/{o}"},
                              "upstream": "bench", "auth": "policy"}])
        engine = PolicyEngine(cfg)
        route = cfg.routes[0]
        facts = RequestFacts(method="GET", path="/tenants/t1/orders/7", source_ip="127.0.0.1",
                             secure=False, now=time.time())

        def ev() -> Any:
            return engine.evaluate(role="member", route=route, upstream="bench", facts=facts,
                                   claims=claims, tags={}, path_params={"t": "t1", "o": "7"},
                                   scopes=(), token_use=None, decision_id="x")
        d = ev()
        assert d.allowed, d
        out[f"statements_{n}_us"] = per_op_us(ev, seconds)
    return out


# --------------------------------------------------------------------------- tokens

async def bench_tokens(tokens: list[str], jwks_url: str, seconds: float) -> dict[str, Any]:
    from gateway.config import parse_config
    from gateway.verify import JwksManager, Verifier
    cfg = parse_config({"version": 1, "identity_sources": [
        {"id": "bench", "issuer": issuer.ISSUER, "jwks_uri": jwks_url,
         "audiences": [issuer.AUDIENCE]}]})
    jwks = JwksManager(cfg.identity_sources)
    out: dict[str, Any] = {}
    try:
        await jwks.start()
        await jwks.wait_ready(10)
        for distinct in (1, 1000, len(tokens)):
            v = Verifier(cfg.identity_sources, jwks)
            for t in tokens[:distinct]:
                await v.verify(t)
            i = 0

            async def hit() -> None:
                nonlocal i
                await v.verify(tokens[i % distinct])
                i += 1
            out[f"cached_{distinct}_us"] = await aper_op_us(hit, seconds)
        # more distinct tokens than the cache holds, cycled: an LRU then misses every time
        small = Verifier(cfg.identity_sources, jwks, cache_size=1000)
        j = 0

        async def thrash() -> None:
            nonlocal j
            await small.verify(tokens[j % 1100])
            j += 1
        out["cycle_1100_over_cache_1000_us"] = await aper_op_us(thrash, seconds)
    finally:
        await jwks.aclose()
    return out


# --------------------------------------------------------------------------- revocation

def load_keys(prefix: str, n: int, ttl: int) -> float:
    """SET n jti keys (EX ttl) under ``prefix``; returns seconds taken."""
    t0 = time.perf_counter()
    cli = shutil.which("redis-cli")
    if cli:
        def resp(*parts: str) -> bytes:
            out = [f"*{len(parts)}\r\n".encode()]
            for p in parts:
                b = p.encode()
                out.append(b"$%d\r\n%s\r\n" % (len(b), b))
            return b"".join(out)
        ttl_s = str(ttl)
        payload = b"".join(resp("SET", f"{prefix}jti:{uuid.UUID(int=i)}", "1", "EX", ttl_s)
                           for i in range(n))
        r = subprocess.run([cli, "-h", "127.0.0.1", "-p", "6379", "--pipe"], input=payload,
                           capture_output=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(r.stdout.decode()[-500:] + r.stderr.decode()[-500:])
    else:
        import redis
        rc = redis.Redis(host="127.0.0.1", port=6379)
        pipe = rc.pipeline(transaction=False)
        for i in range(n):
            pipe.set(f"{prefix}jti:{uuid.UUID(int=i)}", "1", ex=ttl)
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        rc.close()
    return time.perf_counter() - t0


def delete_prefix(prefix: str) -> int:
    import redis
    rc = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=30)
    n = 0
    try:
        batch: list[bytes] = []
        for k in rc.scan_iter(match=prefix + "*", count=5000):
            batch.append(k)
            if len(batch) >= 5000:
                n += rc.unlink(*batch)
                batch = []
        if batch:
            n += rc.unlink(*batch)
    finally:
        rc.close()
    return n


async def lookup_latency(prefix: str, n_keys: int, samples: int) -> dict[str, float]:
    """MGET of 3 keys (jti, ojti, sub: what the store asks per token), as the gateway does."""
    import redis.asyncio as aredis
    rc = aredis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    lat_hit: list[float] = []
    lat_miss: list[float] = []
    try:
        await rc.ping()
        for i in range(samples):
            hit = f"{prefix}jti:{uuid.UUID(int=(i * 7919) % max(1, n_keys))}"
            miss = f"{prefix}jti:{uuid.uuid4()}"
            for key, bucket in ((hit, lat_hit), (miss, lat_miss)):
                t = time.perf_counter()
                await rc.mget([key, f"{prefix}ojti:x{i}", f"{prefix}sub:user-{i}"])
                bucket.append((time.perf_counter() - t) * 1e6)
    finally:
        await rc.aclose()
    return {"hit_p50_us": round(pct(lat_hit, 50), 1), "hit_p99_us": round(pct(lat_hit, 99), 1),
            "miss_p50_us": round(pct(lat_miss, 50), 1),
            "miss_p99_us": round(pct(lat_miss, 99), 1)}


async def store_lookup(prefix: str, token: Any, seconds: float) -> dict[str, float]:
    """gateway's RedisStore.revoked(): with the near-cache (pubsub) and without (none)."""
    from gateway.config import RedisConfig
    from gateway.revocation.redis_store import RedisStore
    out = {}
    for inval in ("pubsub", "none"):
        store = RedisStore(RedisConfig(key_prefix=prefix, invalidation=inval))
        await store.start()
        try:
            assert await store.revoked(token) is None
            out[f"store_{inval}_us"] = await aper_op_us(lambda: store.revoked(token), seconds,
                                                        clock=time.perf_counter)
        finally:
            await store.aclose()
    return out


def redis_memory() -> int:
    import redis
    rc = redis.Redis(host="127.0.0.1", port=6379)
    try:
        return int(rc.info("memory")["used_memory"])
    finally:
        rc.close()


async def bench_revocation(n_keys: int, token: Any, seconds: float, samples: int) -> dict[str, Any]:
    prefix = f"poolgate-scaling-{uuid.uuid4().hex[:10]}:"
    out: dict[str, Any] = {"keys": n_keys, "prefix": prefix}
    try:
        out["empty"] = await lookup_latency(prefix, 0, samples)
        out["empty"].update(await store_lookup(prefix, token, seconds))
        mem0 = redis_memory()
        out["load_seconds"] = round(load_keys(prefix, n_keys, ttl=1800), 1)
        out["redis_memory_mb_added"] = round((redis_memory() - mem0) / 2**20, 1)
        out["loaded"] = await lookup_latency(prefix, n_keys, samples)
        out["loaded"].update(await store_lookup(prefix, token, seconds))
    finally:
        t0 = time.perf_counter()
        out["deleted"] = delete_prefix(prefix)
        out["delete_seconds"] = round(time.perf_counter() - t0, 1)
    return out


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--redis-keys", type=int, default=1_000_000)
    ap.add_argument("--skip-redis", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "scaling.json")
    a = ap.parse_args()
    seconds = 0.2 if a.quick else 0.6
    key, tokens = issuer.load_or_create(10_000)
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           "nproc": os.cpu_count(), "python": sys.version.split()[0],
                           "loadavg": open("/proc/loadavg").read().split()[0]}
    res["routes"] = bench_routes(seconds)
    print("routes", json.dumps(res["routes"]), flush=True)
    res["mapping"] = bench_mapping(seconds)
    print("mapping", json.dumps(res["mapping"]), flush=True)
    res["policy"] = bench_policy(seconds)
    print("policy", json.dumps(res["policy"]), flush=True)
    with issuer.JwksServer(key.jwks()) as jwks:
        res["tokens"] = asyncio.run(bench_tokens(tokens, jwks.url, seconds))
    print("tokens", json.dumps(res["tokens"]), flush=True)
    if not a.skip_redis:
        from types import MappingProxyType

        from gateway.principal import VerifiedToken
        tok = VerifiedToken(raw=tokens[0], source_id="bench", issuer=issuer.ISSUER,
                            header=MappingProxyType({"alg": "RS256"}),
                            claims=MappingProxyType({"sub": "user-00000", "jti": str(uuid.uuid4()),
                                                     "iat": int(time.time()) - 5,
                                                     "exp": int(time.time()) + 3600}),
                            token_hash=b"x" * 32)
        try:
            res["revocation"] = asyncio.run(bench_revocation(
                10_000 if a.quick else a.redis_keys, tok, seconds, 2000 if a.quick else 5000))
        except Exception as e:  # noqa: BLE001
            res["revocation"] = {"error": f"{type(e).__name__}: {e}"}
        print("revocation", json.dumps(res["revocation"]), flush=True)
    a.out.parent.mkdir(exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
