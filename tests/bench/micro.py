"""In-process micro-benchmarks of token verification (one core, no network on the hot path).

    python tests/bench/micro.py --targets FILE --jwks-url URL [--seconds 2]

Rates (verifications per second), each run for about ``--seconds``, cycling over the tokens:
  cryptography_rs256_per_s      the RSA-2048 PKCS#1 v1.5 verify alone (inputs pre-decoded):
                                the floor every RS256 verifier pays, the "raw" target base
  cryptography_jws_minimal_per_s split + base64url + verify + json.loads: the least a JWS
                                verifier can do
  joserfc_per_s                 joserfc jwt.decode + claims registry (iss, aud, exp)
  pyjwt_per_s                   PyJWT jwt.decode with audience and issuer
  poolgate_uncached_per_s       gateway.verify.Verifier.verify on tokens it has not seen
  poolgate_cached_per_s         the same token again (cache hit)
  poolgate_cached_10k_per_s     cycling over 10,000 cached tokens
and RSS of this process before and after 10,000 tokens sit in the Verifier's cache.
Prints one JSON line. Any poolgate part that cannot run prints "n/a" with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import issuer  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
# Rates are per second of this process's CPU time, not wall time: the machine may be shared
# (other jobs), and CPU time makes single-threaded in-process rates comparable across runs.
_cpu = time.process_time


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / (1024 * 1024)


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def rate(fn: Callable[[int], None], n_items: int, seconds: float) -> float:
    """Call ``fn(i)`` for i = 0, 1, ... for about ``seconds``; return calls per second."""
    fn(0)                                            # warm
    count, batch = 0, 50
    t0 = _cpu()
    deadline = t0 + seconds
    while True:
        for _ in range(batch):
            fn(count % n_items)
            count += 1
        now = _cpu()
        if now >= deadline:
            return count / (now - t0)


async def arate(fn: Callable[[int], Any], n_items: int, seconds: float,
                limit: int | None = None) -> tuple[float, int]:
    """Async ``rate``; stops early after ``limit`` calls (returns rate, calls made)."""
    count, batch = 0, 50
    t0 = _cpu()
    deadline = t0 + seconds
    while True:
        for _ in range(batch):
            await fn(count % n_items)
            count += 1
            if limit is not None and count >= limit:
                return count / (_cpu() - t0), count
        now = _cpu()
        if now >= deadline:
            return count / (now - t0), count


def bench_libraries(tokens: list[str], jwks: dict, seconds: float, out: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    jwk = jwks["keys"][0]
    pub = RSAPublicNumbers(int.from_bytes(b64d(jwk["e"]), "big"),
                           int.from_bytes(b64d(jwk["n"]), "big")).public_key()
    n = min(len(tokens), 2000)
    decoded = []
    for t in tokens[:n]:
        h, p, s = t.split(".")
        decoded.append(((h + "." + p).encode(), b64d(s)))
    pkcs, sha = padding.PKCS1v15(), hashes.SHA256()

    def raw(i: int) -> None:
        signing_input, sig = decoded[i]
        pub.verify(sig, signing_input, pkcs, sha)
    out["cryptography_rs256_per_s"] = round(rate(raw, n, seconds))

    def minimal(i: int) -> None:
        h, p, s = tokens[i].split(".")
        pub.verify(b64d(s), (h + "." + p).encode(), pkcs, sha)
        json.loads(b64d(p))
    out["cryptography_jws_minimal_per_s"] = round(rate(minimal, n, seconds))

    try:
        from joserfc import jwt as jjwt
        from joserfc.jwk import RSAKey
        key = RSAKey.import_key(jwk)
        registry = jjwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer.ISSUER},
                                          aud={"essential": True, "value": issuer.AUDIENCE})

        def jose(i: int) -> None:
            tok = jjwt.decode(tokens[i], key, algorithms=["RS256"])
            registry.validate(tok.claims)
        out["joserfc_per_s"] = round(rate(jose, n, seconds))
    except Exception as e:  # noqa: BLE001
        out["joserfc_per_s"] = f"n/a ({type(e).__name__}: {e})"

    try:
        import jwt as pyjwt
        pkey = pyjwt.PyJWK(jwk).key

        def pj(i: int) -> None:
            pyjwt.decode(tokens[i], pkey, algorithms=["RS256"], audience=issuer.AUDIENCE,
                         issuer=issuer.ISSUER)
        out["pyjwt_per_s"] = round(rate(pj, n, seconds))
    except Exception as e:  # noqa: BLE001
        out["pyjwt_per_s"] = f"n/a ({type(e).__name__}: {e})"


async def bench_poolgate(tokens: list[str], jwks_url: str, seconds: float,
                         out: dict[str, Any]) -> None:
    try:
        from gateway.config import parse_config
        from gateway.verify import JwksManager, Verifier
    except Exception as e:  # noqa: BLE001 (the gateway may not exist yet)
        for k in ("poolgate_uncached_per_s", "poolgate_cached_per_s",
                  "poolgate_cached_10k_per_s"):
            out[k] = "n/a"
        out.setdefault("notes", []).append(f"gateway.verify not importable: {type(e).__name__}: {e}")
        return
    cfg = parse_config({"version": 1, "identity_sources": [
        {"id": "bench", "issuer": issuer.ISSUER, "jwks_uri": jwks_url,
         "audiences": [issuer.AUDIENCE], "algorithms": ["RS256"]}]})
    jwks = JwksManager(cfg.identity_sources)
    try:
        await jwks.start()
        if hasattr(jwks, "wait_ready") and not await jwks.wait_ready(10):
            raise RuntimeError("JWKS not loaded within 10 s")
        verifier = Verifier(cfg.identity_sources, jwks, clock=time.time)
        await verifier.verify(tokens[0])                     # warm the code paths
        gc.collect()
        out["rss_idle_mb"] = round(rss_mb(), 1)
        n = len(tokens)

        async def verify(i: int) -> None:
            await verifier.verify(tokens[i])
        # uncached: tokens 1.. have never been seen (token 0 was the warm-up)
        first = tokens[1:]

        async def verify_new(i: int) -> None:
            await verifier.verify(first[i])
        r, done = await arate(verify_new, len(first), seconds, limit=len(first))
        out["poolgate_uncached_per_s"] = round(r)
        for t in first[done:]:                                # fill the cache to all tokens
            await verifier.verify(t)
        gc.collect()
        out["rss_10k_cached_mb"] = round(rss_mb(), 1)
        out["rss_cache_delta_mb"] = round(out["rss_10k_cached_mb"] - out["rss_idle_mb"], 1)
        out["cached_tokens"] = n

        async def verify_same(i: int) -> None:
            await verifier.verify(tokens[0])
        out["poolgate_cached_per_s"] = round((await arate(verify_same, 1, seconds))[0])
        out["poolgate_cached_10k_per_s"] = round((await arate(verify, n, seconds))[0])
    finally:
        await jwks.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", required=True, help="lines PATH TOKEN")
    ap.add_argument("--jwks-url", required=True)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    tokens = [line.split()[1] for line in open(a.targets) if line.strip()]
    import httpx
    jwks = httpx.get(a.jwks_url, timeout=5).json()
    out: dict[str, Any] = {"tokens": len(tokens)}
    bench_libraries(tokens, jwks, a.seconds, out)
    try:
        asyncio.run(bench_poolgate(tokens, a.jwks_url, a.seconds, out))
    except Exception as e:  # noqa: BLE001
        out.setdefault("notes", []).append(f"poolgate verifier failed: {type(e).__name__}: {e}")
    if isinstance(out.get("poolgate_uncached_per_s"), int):
        out["uncached_vs_raw"] = round(out["poolgate_uncached_per_s"]
                                       / out["cryptography_rs256_per_s"], 3)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
