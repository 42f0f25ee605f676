"""The fallback load generator (when ``wrk`` is not installed): a bounded asyncio + aiohttp loop.

Closed loop: ``--connections`` workers, each with its own keep-alive connection, send GETs
back to back for ``--duration`` seconds, cycling through the targets file (lines
``PATH TOKEN``; the token is sent as ``Authorization: Bearer``). Prints one JSON line:
requests, seconds, rps, p50_ms, p99_ms, non_2xx, errors.

On a 2-core machine this generator competes with the system under test for CPU: numbers it
produces are lower bounds, and the report says which generator was used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[idx]


async def run(url: str, targets: list[tuple[str, dict[str, str]]], duration: float,
              connections: int, timeout: float) -> dict:
    latencies: list[float] = []
    counts = {"non_2xx": 0, "errors": 0}
    deadline = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=connections, force_close=False, ttl_dns_cache=None)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        i = offset
        n = len(targets)
        perf = time.perf_counter
        while True:
            start = perf()
            if start >= deadline:
                return
            path, headers = targets[i % n]
            i += connections
            try:
                async with session.get(url + path, headers=headers) as resp:
                    await resp.read()
                    if not 200 <= resp.status < 300:
                        counts["non_2xx"] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                counts["errors"] += 1
                await asyncio.sleep(0.01)
                continue
            latencies.append(perf() - start)

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout,
                                     auto_decompress=False, skip_auto_headers=["User-Agent"]) as s:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(s, k) for k in range(connections)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    total = len(latencies) + counts["non_2xx"]
    return {"requests": total, "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
            "p50_ms": round(percentile(latencies, 50) * 1000, 3),
            "p99_ms": round(percentile(latencies, 99) * 1000, 3),
            "non_2xx": counts["non_2xx"], "errors": counts["errors"]}


def load_targets(path: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            headers = {"Authorization": f"Bearer {parts[1]}"} if len(parts) > 1 and parts[1] != "-" else {}
            out.append((parts[0], headers))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--targets", required=True)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    if not a.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise SystemExit("loadgen: loopback targets only")
    coro = run(a.url.rstrip("/"), load_targets(a.targets), min(a.duration, 120.0),
               a.connections, a.timeout)
    try:
        import uvloop
        result = uvloop.run(coro)
    except ImportError:
        result = asyncio.run(coro)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
