"""JwksManager: rotation, single-flight, cooldown, outages, bad responses, key replacement.

httpx.MockTransport stands in for the IdP and a fake clock drives time: nothing sleeps except
the one bounded timeout test (0.1 s)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.config import JwksSettings
from gateway.errors import InvalidToken, Unavailable
from gateway.metrics import Metrics
from gateway.verify import JwksManager

from .helpers import (FakeClock, JwksEndpoint, cognito_source, jwk_of, make_token,
                      oidc_source, rsa_key, build)


def manager(endpoint: JwksEndpoint, sources=None, clock=None, **kw) -> JwksManager:
    return JwksManager(sources or [cognito_source()], client=endpoint.client(),
                       clock=clock or FakeClock(), **kw)


async def test_prefetch_ready_and_status() -> None:
    ep = JwksEndpoint()
    metrics = Metrics()
    mgr = manager(ep, metrics=metrics)
    assert not mgr.ready()
    await mgr.start()
    try:
        assert await mgr.wait_ready(2.0)
        st = mgr.status()["pool"]
        assert st["ready"] and st["keys"] == 1 and st["error"] is None
        assert st["age_seconds"] == 0 and st["jwks_uri"].endswith("/jwks.json")
        assert metrics.jwks_fetches.labels(source="pool", result="ok")._value.get() == 1
        assert metrics.jwks_keys.labels(source="pool")._value.get() == 1
    finally:
        await mgr.aclose()


async def test_rotation_accepted_after_one_refetch() -> None:
    verifier, mgr, ep, wall, mono = build()
    await verifier.verify(make_token())
    assert ep.fetches == 1
    ep.doc = {"keys": [jwk_of(rsa_key(), "k1"), jwk_of(rsa_key(2048, 2), "k2")]}
    mono.advance(10)
    vt = await verifier.verify(make_token(key=rsa_key(2048, 2), kid="k2"))
    assert vt.header["kid"] == "k2" and ep.fetches == 2


async def test_unknown_kid_flood_single_flight() -> None:
    ep = JwksEndpoint()
    ep.delay = 0.01                         # keep the fetch in flight while the flood arrives
    mgr = manager(ep)
    assert await mgr.refresh("pool")
    ep.fetches = 0
    results = await asyncio.gather(*(mgr.get_key("pool", f"nope-{i}", "RS256")
                                     for i in range(50)), return_exceptions=True)
    assert all(isinstance(r, InvalidToken) and r.code == "unknown_kid" for r in results)
    assert ep.fetches <= 2


async def test_unknown_kid_cooldown() -> None:
    ep = JwksEndpoint()
    clock = FakeClock()
    mgr = manager(ep, clock=clock)
    await mgr.refresh("pool")
    clock.advance(10)
    for _ in range(5):
        with pytest.raises(InvalidToken):
            await mgr.get_key("pool", "nope", "RS256")
    assert ep.fetches == 2                  # the start-up fetch + one refetch
    clock.advance(4.9)
    with pytest.raises(InvalidToken):
        await mgr.get_key("pool", "nope", "RS256")
    assert ep.fetches == 2
    clock.advance(0.2)
    with pytest.raises(InvalidToken):
        await mgr.get_key("pool", "nope", "RS256")
    assert ep.fetches == 3


async def test_outage_keeps_stale_keys_until_max_stale() -> None:
    ep = JwksEndpoint()
    clock = FakeClock()
    src = cognito_source(jwks=JwksSettings(refresh_seconds=300, max_stale_seconds=3600))
    mgr = manager(ep, [src], clock)
    await mgr.refresh("pool")
    ep.mode = "status"
    clock.advance(301)
    assert not await mgr.refresh("pool")
    assert mgr.ready() and await mgr.get_key("pool", "k1", "RS256") is not None
    assert mgr.status()["pool"]["error"] == "HTTP 500"
    clock.advance(3600 - 301)
    assert mgr.ready()
    clock.advance(1)
    assert not mgr.ready()
    with pytest.raises(Unavailable) as info:
        await mgr.get_key("pool", "k1", "RS256")
    assert info.value.code == "jwks_unavailable" and info.value.status == 503
    assert info.value.retry_after and info.value.retry_after >= 1
    ep.mode = "ok"
    assert await mgr.refresh("pool") and mgr.ready()


@pytest.mark.parametrize("mode,error", [
    ("status", "HTTP 500"), ("garbage", "not JSON"), ("oversize", "larger than"),
    ("redirect", "HTTP 302"),
])
async def test_bad_responses_are_logged_not_fatal(mode, error, caplog) -> None:
    ep = JwksEndpoint()
    ep.mode = mode
    mgr = manager(ep)
    with caplog.at_level(logging.WARNING, logger="poolgate.jwks"):
        assert not await mgr.refresh("pool")
    assert error in mgr.status()["pool"]["error"]
    assert "source=pool" in caplog.text and "jwks.json" in caplog.text
    with pytest.raises(Unavailable):
        await mgr.get_key("pool", "k1", "RS256")
    assert len(ep.urls) == 1                # a redirect is never followed


@pytest.mark.parametrize("doc", [[], {"keys": {}}, {"nokeys": []}, {"keys": []},
                                 {"keys": [{"kty": "oct", "k": "AAAA", "kid": "k"}]}])
async def test_not_a_usable_jwks(doc) -> None:
    ep = JwksEndpoint()
    ep.doc = doc
    mgr = manager(ep)
    assert not await mgr.refresh("pool")
    assert not mgr.ready()


async def test_hanging_idp_times_out() -> None:
    ep = JwksEndpoint()
    ep.mode = "hang"
    src = cognito_source(jwks=JwksSettings(timeout_seconds=0.1))
    mgr = manager(ep, [src])
    assert not await asyncio.wait_for(mgr.refresh("pool"), 2.0)
    assert "timed out" in mgr.status()["pool"]["error"]


async def test_weak_key_skipped_others_kept(caplog) -> None:
    ep = JwksEndpoint([jwk_of(rsa_key(1024), "weak"), {"kty": "RSA", "kid": "broken"},
                       jwk_of(rsa_key(), "k1")])
    mgr = manager(ep)
    with caplog.at_level(logging.WARNING, logger="poolgate.jwks"):
        assert await mgr.refresh("pool")
    assert mgr.status()["pool"]["keys"] == 1
    assert "kid=weak" in caplog.text and "1024 bits" in caplog.text and "kid=broken" in caplog.text


async def test_keys_replaced_on_refetch() -> None:
    verifier, mgr, ep, wall, mono = build()
    old = make_token()
    await verifier.verify(old)                          # cached
    ep.doc = {"keys": [jwk_of(rsa_key(2048, 3), "k1")]}  # k1 republished with a new key
    mono.advance(301)
    assert await mgr.refresh("pool")
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(old)                      # neither the cache nor the old key
    assert info.value.code == "bad_signature"
    assert (await verifier.verify(make_token(key=rsa_key(2048, 3)))).sub == "u-1"


async def test_unchanged_keys_survive_a_refetch_with_their_cached_tokens() -> None:
    verifier, mgr, ep, wall, mono = build()
    token = make_token()
    first = await verifier.verify(token)
    held = mgr.lookup("pool", "k1")
    ep.doc = {"keys": [dict(k) for k in ep.doc["keys"]]}     # the same keys, a new document
    mono.advance(301)
    assert await mgr.refresh("pool") and ep.fetches == 2
    assert mgr.lookup("pool", "k1") is held
    assert await verifier.verify(token) is first             # still cached: not re-verified
    # the same key material under an added alg is another key: checked again from scratch
    ep.doc = {"keys": [{**ep.doc["keys"][0], "alg": "RS384"}]}
    mono.advance(301)
    assert await mgr.refresh("pool") and mgr.lookup("pool", "k1") is not held
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(token)                          # an RS256 token, an RS384 key
    assert info.value.code == "key_alg_mismatch"


async def test_http_refused_unless_loopback_or_opted_in() -> None:
    ep = JwksEndpoint()
    src = cognito_source(jwks_uri="http://idp.example/jwks.json")
    mgr = manager(ep, [src])
    assert not await mgr.refresh("pool")
    assert "non-https" in mgr.status()["pool"]["error"] and ep.fetches == 0
    for s in (cognito_source(jwks_uri="http://127.0.0.1:9/jwks.json"),
              cognito_source(jwks_uri="http://idp.example/jwks.json", allow_insecure_http=True)):
        assert await manager(ep, [s]).refresh("pool")


async def test_discovery() -> None:
    ep = JwksEndpoint()
    src = oidc_source(jwks_uri=None)
    ep.discovery = {"issuer": "https://idp.example/", "jwks_uri": "https://idp.example/keys"}
    mgr = manager(ep, [src])
    assert await mgr.refresh("oidc")
    assert mgr.status()["oidc"]["jwks_uri"] == "https://idp.example/keys"
    assert ep.urls[0] == "https://idp.example/.well-known/openid-configuration"
    for bad in ({"issuer": "https://evil.example/", "jwks_uri": "https://idp.example/keys"},
                {"issuer": "https://idp.example/", "jwks_uri": "http://idp.example/keys"},
                {"issuer": "https://idp.example/"}):
        ep.discovery = bad
        m = manager(ep, [src])
        assert not await m.refresh("oidc") and not m.ready()


async def test_shared_url_fetched_once_keys_bound_per_source() -> None:
    ep = JwksEndpoint()
    ep.delay = 0.01
    a = cognito_source(id="a")
    b = oidc_source(id="b", issuers=("https://other.example/",), jwks_uri=a.jwks_uri)
    verifier, mgr, *_ = build([a, b], ep)
    assert all(await asyncio.gather(mgr.refresh("a"), mgr.refresh("b")))
    assert ep.fetches == 1
    vt = await verifier.verify(make_token({"iss": "https://other.example/", "sub": "s",
                                           "exp": 1_800_000_100, "aud": "api"}))
    assert vt.source_id == "b"
    assert (await verifier.verify(make_token())).source_id == "a"


async def test_background_refresh_and_backoff() -> None:
    ep = JwksEndpoint()
    ep.mode = "status"
    clock = FakeClock()
    delays: list[float] = []
    parked = asyncio.Event()

    async def fake_sleep(d: float) -> None:
        delays.append(round(d, 3))
        clock.advance(d)
        if len(delays) == 6:
            ep.mode = "ok"
        if len(delays) >= 8:
            parked.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    mgr = manager(ep, clock=clock, sleep=fake_sleep)
    await mgr.start()
    try:
        await asyncio.wait_for(parked.wait(), 2.0)
    finally:
        await mgr.aclose()
    assert delays[:5] == [5, 10, 20, 30, 30]          # backoff from retry_seconds, capped
    assert delays[6:8] == [300, 300]                   # healthy again: every refresh_seconds
    assert mgr.ready()
