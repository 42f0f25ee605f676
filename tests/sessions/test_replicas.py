"""Two `poolgate serve` replicas sharing a real Redis: single-flight refresh across replicas,
sign-out seen everywhere at once, sealed records, key rotation, refresh failures."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from e2e.servers import free_port
from redis_helpers import cli, redis_proc  # noqa: F401 (fixture)

from .conftest import KEY, browser, redis_sessions, session_config, sign_in


@pytest.fixture
def pair(start_gateway, idp, upstream, redis_proc):  # noqa: F811
    ctl, isrv = idp
    _, usrv = upstream
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    port = free_port()

    def make(port_: int | None = None, **sessions):
        base = session_config(isrv.url, usrv.url, f"http://127.0.0.1:{port}", **sessions)
        return start_gateway(redis_sessions(base, redis_proc.port, prefix), port_)

    a = make(port, refresh_before_seconds=2)
    b = make(refresh_before_seconds=2)
    return a, b, make, prefix


def _cookie(c: httpx.Client) -> dict[str, str]:
    sid = c.cookies.get("__Host-poolgate")
    assert sid, "not signed in"
    return {"Cookie": f"__Host-poolgate={sid}"}


@pytest.mark.parametrize("refresh_before, wait", [(2, 2.6), (0, 4.3)],
                         ids=["before-expiry", "after-expiry"])
def test_refresh_race_one_token_call_per_session_across_two_replicas(
        start_gateway, idp, upstream, redis_proc, refresh_before, wait):  # noqa: F811
    ctl, isrv = idp
    _, usrv = upstream
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    port = free_port()
    base = session_config(isrv.url, usrv.url, f"http://127.0.0.1:{port}",
                          refresh_before_seconds=refresh_before)
    a = start_gateway(redis_sessions(base, redis_proc.port, prefix), port)
    b = start_gateway(redis_sessions(base, redis_proc.port, prefix))
    ctl.access_lifetime, ctl.rotate_refresh, ctl.token_delay = 4, True, 0.3
    browsers = [browser(), browser()]
    try:
        hdrs = []
        for c in browsers:
            r = sign_in(c, a.proxy, isrv.url)
            assert r.status_code == 302, r.text
            hdrs.append(_cookie(c))
            assert httpx.get(b.proxy + "/api/x", headers=hdrs[-1]).status_code == 200
        time.sleep(wait)                       # refresh due (before: still valid; after: expired)
        before = ctl.token_calls.count("refresh_token")

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=15) as h:
                rs = await asyncio.gather(*(h.get(f"{gw.proxy}/api/{i}", headers=hdr)
                                            for hdr in hdrs for i in range(13)
                                            for gw in (a, b)))
            return [r.status_code for r in rs]

        statuses = asyncio.run(burst())        # 52 concurrent requests, 2 sessions, 2 replicas
        assert statuses == [200] * 52
        assert ctl.token_calls.count("refresh_token") - before == 2      # one per session
        # the rotated refresh tokens replaced the old ones: the next refreshes work too
        time.sleep(wait)
        for hdr in hdrs:
            assert httpx.get(b.proxy + "/api/y", headers=hdr).status_code == 200
        assert ctl.token_calls.count("refresh_token") - before == 4
    finally:
        for c in browsers:
            c.close()


def test_sign_out_on_one_replica_is_refused_on_the_other_within_1s(pair, idp):
    ctl, isrv = idp
    a, b, _, _ = pair
    with browser() as c:
        r = sign_in(c, a.proxy, isrv.url)
        assert r.status_code == 302, r.text
        hdr = _cookie(c)
        assert httpx.get(b.proxy + "/api/x", headers=hdr).status_code == 200
        r = c.post(a.proxy + "/_poolgate/logout", headers={"Origin": a.proxy})
        assert r.status_code == 302
        t0 = time.monotonic()
        while httpx.get(b.proxy + "/api/x", headers=hdr).status_code != 401:
            assert time.monotonic() - t0 < 1.0
            time.sleep(0.02)


def test_redis_dump_holds_nothing_usable_and_rotation_keeps_sessions(pair, idp, redis_proc):  # noqa: F811
    ctl, isrv = idp
    a, b, make, prefix = pair
    with browser() as c:
        sign_in(c, a.proxy, isrv.url)
        sid = c.cookies.get("__Host-poolgate")
        hdr = _cookie(c)
        sub = c.get(a.proxy + "/_poolgate/session").json()["sub"]
    keys = cli(redis_proc.port, "KEYS", f"{prefix}session:*").split()
    assert len(keys) == 1 and sid not in keys[0]
    raw = cli(redis_proc.port, "GET", keys[0])
    assert len(raw) > 500 and "eyJ" not in raw and sub not in raw and "alice" not in raw
    ttl = int(cli(redis_proc.port, "PTTL", keys[0]))
    assert 0 < ttl <= 28800 * 1000
    rotated = make(encryption_keys=["a-brand-new-key-0123456789abcdef0123", KEY])
    assert httpx.get(rotated.proxy + "/api/x", headers=hdr).status_code == 200
    stranger = make(encryption_keys=["a-brand-new-key-0123456789abcdef0123"])
    assert httpx.get(stranger.proxy + "/api/x", headers=hdr).status_code == 401


def test_refresh_failures(pair, idp):
    ctl, isrv = idp
    a, b, _, _ = pair
    ctl.access_lifetime = 3
    with browser() as c:
        r = sign_in(c, a.proxy, isrv.url)
        assert r.status_code == 302, r.text
        hdr = _cookie(c)
        ctl.token_status = 503                       # provider down
        time.sleep(1.2)                              # refresh due, token still valid: kept
        assert httpx.get(a.proxy + "/api/x", headers=hdr).status_code == 200
        time.sleep(2.2)                              # now actually expired: 503
        r = httpx.get(a.proxy + "/api/x", headers=hdr)
        assert r.status_code == 503 and "retry-after" in r.headers
        ctl.token_status = None                      # provider back: refreshed, 200
        assert httpx.get(b.proxy + "/api/x", headers=hdr).status_code == 200
        ctl.refresh_error = "invalid_grant"          # refresh token revoked: session ends
        time.sleep(3.2)
        assert httpx.get(a.proxy + "/api/x", headers=hdr).status_code == 401
        ctl.refresh_error = None
        assert httpx.get(b.proxy + "/_poolgate/session", headers=hdr).status_code == 401
