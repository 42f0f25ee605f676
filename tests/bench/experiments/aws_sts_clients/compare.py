"""botocore in a bounded thread pool vs aiobotocore, for the gateway's STS calls (issue 15).

    python -m venv /tmp/v && /tmp/v/bin/pip install aiobotocore 'moto[server]'
    nice /tmp/v/bin/python tests/bench/experiments/aws_sts_clients/compare.py

Against moto's STS on loopback: N AssumeRole calls for N distinct users, all at once (a cold
cache after a restart), then one at a time. Reported per client: wall time, calls/s, and the
event loop's worst lag (a 1 ms ticker) while they run: the gateway's other requests wait that
long. Client construction (tens of ms) is done before timing in both cases.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import botocore.session
from botocore.config import Config
from moto.server import ThreadedMotoServer

N = 100
CONF = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"},
              max_pool_connections=10)


async def lag_probe(stop: asyncio.Event, out: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.001)
        out.append(loop.time() - t - 0.001)


async def measure(name: str, call, n: int, concurrent: bool) -> dict:
    stop, lags = asyncio.Event(), []
    probe = asyncio.create_task(lag_probe(stop, lags))
    t = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(call(i) for i in range(n)))
    else:
        for i in range(n):
            await call(i)
    wall = time.perf_counter() - t
    stop.set()
    await probe
    return {"client": name, "mode": "concurrent" if concurrent else "sequential", "calls": n,
            "wall_s": round(wall, 3), "calls_per_s": round(n / wall, 1),
            "loop_lag_max_ms": round(max(lags) * 1000, 2),
            "loop_lag_p99_ms": round(sorted(lags)[int(len(lags) * 0.99)] * 1000, 2)}


async def main(endpoint: str) -> list[dict]:
    kw = dict(region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="testing",
              aws_secret_access_key="testing", config=CONF)
    arn = "arn:aws:iam::123456789012:role/bench"
    results = []
    # botocore in a bounded pool (what gateway/aws/sts.py does)
    sync = botocore.session.get_session().create_client("sts", **kw)
    pool = ThreadPoolExecutor(max_workers=4)
    loop = asyncio.get_running_loop()

    async def threaded(i: int) -> None:
        await loop.run_in_executor(pool, lambda: sync.assume_role(
            RoleArn=arn, RoleSessionName=f"user-{i}", DurationSeconds=900))

    await threaded(-1)
    for concurrent in (True, False):
        results.append(await measure("botocore+threads(4)", threaded, N, concurrent))
    pool.shutdown()
    # aiobotocore
    from aiobotocore.session import get_session
    async with get_session().create_client("sts", **kw) as client:
        async def native(i: int) -> None:
            await client.assume_role(RoleArn=arn, RoleSessionName=f"user-{i}", DurationSeconds=900)

        await native(-1)
        for concurrent in (True, False):
            results.append(await measure("aiobotocore", native, N, concurrent))
    return results


if __name__ == "__main__":
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        for r in asyncio.run(main(f"http://{host}:{port}")):
            print(json.dumps(r))
    finally:
        srv.stop()
