"""Browser-session costs (issue 14), not part of the test run:

    .venv/bin/python tests/bench/sessions_cost.py [memory|redis]

1. a request carrying the session cookie vs a bearer request on the same route, same gateway,
   same run (sequential keep-alive requests, median of 10 alternating rounds of 300);
2. the sealed size of a Cognito-sized session (1.1 KB access + 1.7 KB refresh token);
3. the extra memory of 10,000 sessions in the memory store (tracemalloc and RSS).
`redis` uses 127.0.0.1:6379 (key prefix ``sessbench:``, every key with a TTL).
"""

from __future__ import annotations

import asyncio
import copy
import pathlib
import secrets
import statistics
import sys
import tempfile
import time
import tracemalloc
from http.cookiejar import DefaultCookiePolicy

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
import yaml  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from e2e.servers import Gateway, ThreadServer, Upstream, free_port  # noqa: E402
from gateway.demo.issuer import DemoIssuer, build_issuer_app  # noqa: E402
from gateway.demo.oauth import OAuthControl  # noqa: E402
from gateway.sessions.crypto import KeyRing, handle, new_session_id, sub_handle  # noqa: E402
from gateway.sessions.record import Record  # noqa: E402
from gateway.sessions.store import MemorySessionStore  # noqa: E402
from sessions.conftest import browser, redis_sessions, session_config, sign_in  # noqa: E402


def request_cost(store: str) -> None:
    DefaultCookiePolicy.return_ok_secure = lambda self, c, r: True  # type: ignore[method-assign]
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    isrv = ThreadServer(build_issuer_app(DemoIssuer(pem), OAuthControl())).start()
    usrv = ThreadServer(Upstream()).start()
    port = free_port()
    cfg = session_config(isrv.url, usrv.url, f"http://127.0.0.1:{port}")
    if store == "redis":
        cfg = redis_sessions(cfg, 6379, "sessbench:")
    cfg["logging"] = {"access_log": False}
    cfg["listen"] = {"host": "127.0.0.1", "port": port}
    gw = Gateway(copy.deepcopy(cfg), pathlib.Path(tempfile.mkdtemp()))
    gw.path.write_text(yaml.safe_dump(cfg))
    gw.start()
    gw.wait_ready()
    try:
        c = browser()
        sign_in(c, gw.proxy, isrv.url)
        hc = {"Cookie": f"__Host-poolgate={c.cookies.get('__Host-poolgate')}"}
        hb = {"Authorization": "Bearer " + httpx.post(isrv.url + "/token/alice").json()["access_token"]}
        res: dict[str, list[float]] = {"bearer": [], "cookie": []}
        with httpx.Client() as h:
            for hd in (hb, hc):
                for _ in range(200):
                    assert h.get(gw.proxy + "/api/x", headers=hd).status_code == 200
            for _ in range(10):
                for name, hd in (("bearer", hb), ("cookie", hc)):
                    t0 = time.perf_counter()
                    for _ in range(300):
                        h.get(gw.proxy + "/api/x", headers=hd)
                    res[name].append((time.perf_counter() - t0) / 300 * 1e6)
        b, k = statistics.median(res["bearer"]), statistics.median(res["cookie"])
        print(f"store={store}: bearer {b:.0f} us/req, cookie {k:.0f} us/req, ratio {k / b:.3f}")
    finally:
        gw.stop()
        isrv.stop()
        usrv.stop()


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")) / 1024


async def memory_cost() -> None:
    keys = KeyRing((b"k" * 32,))
    store = MemorySessionStore()
    access = "eyJ" + secrets.token_urlsafe(800)
    refresh = secrets.token_urlsafe(1300)
    r0 = _rss_mib()
    tracemalloc.start()
    biggest = 0
    for i in range(10_000):
        h = handle(new_session_id())
        now = time.time()
        rec = Record(sub=f"user-{i}", role="member", access=access + str(i), refresh=refresh,
                     access_exp=now + 3600, created=now, last_seen=now, abs_exp=now + 86400,
                     jti=secrets.token_hex(16), origin_jti=secrets.token_hex(16))
        sealed = keys.seal_text(rec.dumps(), h.encode())
        biggest = max(biggest, len(sealed))
        await store.put(h, sealed, 3600, sub_handle(rec.sub))
    cur, _ = tracemalloc.get_traced_memory()
    print(f"sealed Cognito-sized session: {biggest} bytes; 10,000 sessions: "
          f"traced {cur / 2**20:.1f} MiB, RSS +{_rss_mib() - r0:.1f} MiB")


if __name__ == "__main__":
    asyncio.run(memory_cost())
    request_cost(sys.argv[1] if len(sys.argv) > 1 else "memory")
