"""SigV4 upstream cost (AWS.md, issue 15): a signed forward with cached credentials vs a plain
forward, same gateway, same upstream, same run; plus the in-process credential-cache hit.

    nice python tests/bench/aws_sigv4.py [--seconds 3] [--rounds 3] [--connections 8]

Starts moto (STS only, in process), the bench upstream (tests/bench/upstream.py), a JWKS
server, and one ``poolgate serve`` with two routes to the same upstream: ``/plain/**`` and
``/signed/**`` (``aws_sigv4: {service: execute-api}``). Plain and signed rounds alternate so
both see the same machine noise. Reported per kind: requests/s, p50, and the gateway's own CPU
time per request (from /proc, the most stable number on a shared machine). Targets: signed
CPU/request <= 1.5x plain; cache hit <= 20 us. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))          # tests/: e2e.servers
sys.path.insert(0, str(HERE))                 # loadgen, procs

from e2e.servers import JwksControl, Signer, ThreadServer, cognito_claims
from loadgen import run as load
from procs import Proc, cpu_seconds

POOL = "eu-west-1_BenchPool1"
ISSUER = f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"
CLIENT = "benchclient0000000000000000"
ROLE = "arn:aws:iam::123456789012:role/bench"


def in_process() -> dict[str, float]:
    """Credential-cache hit (render + key + LRU lookup) and one sign() (headers, botocore)."""
    from gateway.aws import AwsRoom
    from gateway.aws.sigv4 import sign
    from gateway.aws.sts import AwsCredentials
    from gateway.config import parse_config
    from gateway.principal import Principal, VerifiedToken

    cfg = parse_config({
        "version": 1,
        "upstreams": {"api": {"url": "http://127.0.0.1:9",
                              "aws_sigv4": {"service": "execute-api"}}},
        "roles": {"member": {"aws": {"role_arn": ROLE, "session_tags": {"u": "${jwt:username}"},
                                     "session_policy": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                         "Resource": "arn:aws:s3:::b/${jwt:sub}/*"}]}}},
        "aws": {"region": "eu-west-1"}})
    room = AwsRoom(cfg)
    claims = {"sub": "5f0c-1e2d", "username": "alice"}
    token = VerifiedToken(raw="h.p.s", source_id="pool", issuer=ISSUER, header={}, claims=claims,
                          token_hash=b"\x01" * 32)
    p = Principal(sub="5f0c-1e2d", role="member", claims=claims, source_id="pool", tags={},
                  token=token)
    # the same claims without a token: nothing to memoise on, the policy is rendered each time
    guest = Principal(sub="5f0c-1e2d", role="member", claims=claims, source_id=None, tags={},
                      token=None)

    async def main() -> dict[str, float]:
        async def fetch() -> AwsCredentials:
            return AwsCredentials("ASIABENCH", "secret", "token" * 60, time.time() + 900, ROLE)

        await room.cache.get(room.request_for(p)[0], fetch)
        hits, renders = [], []
        for who, out in ((p, hits), (guest, renders)):
            for _ in range(5):
                n = 20000
                t = time.perf_counter()
                for _ in range(n):
                    await room.credentials(who)
                out.append((time.perf_counter() - t) / n * 1e6)
        scope = {"method": "GET", "headers": [(b"host", b"gw")], "query_string": b""}
        headers = [(b"host", b"127.0.0.1:9"), (b"x-forwarded-for", b"127.0.0.1"),
                   (b"x-forwarded-proto", b"http"), (b"x-request-id", b"0123456789abcdef")]

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        signs = []
        for _ in range(5):
            n = 5000
            t = time.perf_counter()
            for _ in range(n):
                await sign(room, scope, receive, p, "/signed/items/1", cfg.upstreams["api"],
                           headers)
            signs.append((time.perf_counter() - t) / n * 1e6)
        room.close()
        return {"cache_hit_us": round(min(hits), 2), "cache_hit_us_median": round(statistics.median(hits), 2),
                "cache_hit_no_token_us": round(min(renders), 2),   # policy rendered every time
                "sign_us": round(min(signs), 2), "sign_us_median": round(statistics.median(signs), 2)}

    return asyncio.run(main())


def end_to_end(seconds: float, rounds: int, connections: int, log_dir: Path) -> dict:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    signer = Signer()
    jwks = JwksControl()
    jwks.keys = [signer.public_jwk()]
    jsrv = ThreadServer(jwks).start()
    up = gw = None
    try:
        up = Proc("upstream", [sys.executable, str(HERE / "upstream.py"), "--port", "0"], log_dir)
        up_port = up.wait_for(r"upstream listening 127\.0\.0\.1:(\d+)", 20).group(1)
        up_url = f"http://127.0.0.1:{up_port}"
        cfg = {
            "version": 1, "listen": {"host": "127.0.0.1", "port": 0},
            "admin": {"host": "127.0.0.1", "port": 0},
            "identity_sources": [{"id": "pool", "cognito": {"region": "eu-west-1", "user_pool_id": POOL},
                                  "jwks_uri": jsrv.url + "/jwks", "client_ids": [CLIENT]}],
            "upstreams": {"plain": {"url": up_url},
                          "api": {"url": up_url, "aws_sigv4": {"service": "execute-api",
                                                               "region": "eu-west-1"}}},
            "routes": [{"id": "plain", "match": {"path": "/plain/**"}, "upstream": "plain",
                        "auth": "authenticated"},
                       {"id": "signed", "match": {"path": "/signed/**"}, "upstream": "api",
                        "auth": "authenticated"}],
            "default_role": "member",
            "roles": {"member": {"aws": {"role_arn": ROLE}}},
            "aws": {"region": "eu-west-1", "endpoint_url": f"http://{host}:{port}"},
            "revocation": {"store": "memory"}, "logging": {"access_log": False},
        }
        path = log_dir / "poolgate.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        gw = Proc("poolgate", [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
                  log_dir, env=env)
        proxy = gw.wait_for(r"poolgate listening proxy=(\S+)", 30).group(1)
        url = f"http://{proxy}"
        tok = signer.token(cognito_claims(ISSUER, CLIENT, username="alice"))
        auth = {"Authorization": f"Bearer {tok}"}
        import httpx
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:    # JWKS loaded, credentials cached
            try:
                if (httpx.get(url + "/signed/warm", headers=auth).status_code == 200
                        and httpx.get(url + "/plain/warm", headers=auth).status_code == 200):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("gateway not serving both routes:\n" + gw.tail())
        results: dict[str, list[dict]] = {"plain": [], "signed": []}
        for _ in range(rounds):
            for kind in ("plain", "signed"):
                cpu0 = cpu_seconds(gw.pid)
                r = asyncio.run(load(url, [(f"/{kind}/items/1", auth)], seconds, connections, 10))
                r["cpu_us_per_request"] = round((cpu_seconds(gw.pid) - cpu0) / max(r["requests"], 1) * 1e6, 1)
                results[kind].append(r)
        summary = {}
        for kind, rs in results.items():
            summary[kind] = {"rps": statistics.median(r["rps"] for r in rs),
                             "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                             "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rs),
                             "non_2xx": sum(r["non_2xx"] for r in rs), "errors": sum(r["errors"] for r in rs)}
        summary["ratio_cpu"] = round(summary["signed"]["cpu_us_per_request"]
                                     / summary["plain"]["cpu_us_per_request"], 3)
        summary["ratio_p50"] = round(summary["signed"]["p50_ms"] / summary["plain"]["p50_ms"], 3)
        summary["ratio_rps"] = round(summary["plain"]["rps"] / summary["signed"]["rps"], 3)
        return summary
    finally:
        if gw is not None:
            gw.stop()
        if up is not None:
            up.stop()
        jsrv.stop()
        moto.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    a = ap.parse_args()
    out = {"in_process": in_process()}
    with tempfile.TemporaryDirectory(prefix="pg-aws-bench-") as d:
        out["end_to_end"] = end_to_end(min(a.seconds, 30), min(a.rounds, 10), a.connections, Path(d))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
