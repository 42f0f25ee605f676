"""POST | GET | DELETE /revocations and `poolgate revoke` (memory store via a real uvicorn,
redis store against a private redis-server)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any, AsyncIterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.config import Config, RevocationConfig, loads_config
from gateway.errors import InvalidToken, Unavailable
from gateway.revocation import MemoryStore, RevocationStore
from gateway.revocation.api import RevokeError, revocations_endpoint
from gateway.revocation.command import revoke_command
from gateway.revocation.redis_store import RedisStore

from .conftest import RedisProc, free_port, make_token

ADMIN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def app_for(store: RevocationStore | None, *, token: str | None = ADMIN,
            config: RevocationConfig = RevocationConfig(), **kw: Any) -> Starlette:
    handler = revocations_endpoint(lambda: store, admin_token=token, config=config,
                                   clock=time.time, **kw)
    return Starlette(routes=[Route("/revocations", handler, methods=["GET", "POST", "DELETE"])])


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin")


def jwt(claims: dict[str, Any]) -> str:
    def seg(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{seg({'alg': 'RS256', 'kid': 'k'})}.{seg(claims)}.c2ln"


async def test_post_get_delete() -> None:
    store = MemoryStore()
    async with client(app_for(store)) as c:
        exp = int(time.time()) + 600
        r = await c.post("/revocations", json={"jti": "j1", "exp": exp}, headers=AUTH)
        assert r.status_code == 201, r.text
        assert r.json()["jti"] == "j1" and r.json()["exp"] == exp
        assert 600 < r.json()["ttl"] <= 661
        r = await c.get("/revocations", params={"jti": "j1"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["kind"] == "jti"
        assert await store.revoked(make_token(jti="j1")) == "jti"
        r = await c.post("/revocations", json={"sub": "u1", "not_before": time.time() - 5},
                         headers=AUTH)
        assert r.status_code == 201 and "not_before" in r.json()
        r = await c.post("/revocations", json={"origin_jti": "o1"}, headers=AUTH)
        assert r.status_code == 201
        assert (await c.delete("/revocations", params={"jti": "j1"}, headers=AUTH)).status_code == 204
        assert (await c.delete("/revocations", params={"jti": "j1"}, headers=AUTH)).status_code == 404
        r = await c.get("/revocations", params={"jti": "j1"}, headers=AUTH)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        assert await store.revoked(make_token(jti="j1", sub="zz")) is None


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                                     {"Authorization": f"Basic {ADMIN}"},
                                     {"Authorization": f"Bearer {ADMIN}x"},
                                     {"Authorization": "Bearer"}])
async def test_401_writes_nothing(headers: dict[str, str]) -> None:
    store = MemoryStore()
    async with client(app_for(store)) as c:
        r = await c.post("/revocations", json={"jti": "j1"}, headers=headers)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        assert "www-authenticate" in r.headers
        r = await c.get("/revocations", params={"jti": "j1"}, headers=headers)
        assert r.status_code == 401
    assert len(store) == 0


async def test_api_disabled_without_admin_token() -> None:
    store = MemoryStore()
    async with client(app_for(store, token=None)) as c:
        r = await c.post("/revocations", json={"jti": "j1"}, headers=AUTH)
    assert r.status_code == 401 and r.json()["reason"] == "revocation_api_disabled"
    assert len(store) == 0


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "bad_json"),
    (b"[1, 2]", "bad_json"),
    (b'"jti"', "bad_json"),
    (b"\xff\xfe{}", "bad_json"),
    (b'{"jti": "a", "jti": "b"}', "bad_json"),
    (b'{"jti": "a", "exp": NaN}', "bad_json"),
    (b'{"jti": "a", "extra": 1}', "unknown_field"),
    (b'{"jti": "a", "sub": "b"}', "one_kind"),
    (b'{"jti": "a", "token": "x.y.z"}', "one_kind"),
    (b"{}", "one_kind"),
    (b'{"exp": 1}', "one_kind"),
    (b'{"jti": "a", "exp": true}', "bad_exp"),
    (b'{"jti": "a", "exp": "1764150000"}', "bad_exp"),
    (b'{"jti": "a", "not_before": 1}', "bad_not_before"),
    (b'{"jti": 5}', "bad_value"),
    (b'{"jti": ""}', "bad_value"),
    (b'{"jti": "a", "exp": 1000}', "already_expired"),
    (b'{"token": "not-a-jwt"}', "bad_token"),
    (b'{"token": 7}', "bad_token"),
    (b'{"token": "a.b+c.d"}', "bad_token"),
])
async def test_400_writes_nothing(body: bytes, reason: str) -> None:
    store = MemoryStore()
    async with client(app_for(store)) as c:
        r = await c.post("/revocations", content=body, headers=AUTH)
    assert r.status_code == 400, r.text
    data = r.json()
    assert data["error"] == "invalid_request" and data["reason"] == reason
    assert data["error_description"]
    assert len(store) == 0


@pytest.mark.parametrize("params", [{}, {"jti": "a", "sub": "b"}, {"kid": "a"},
                                    [("jti", "a"), ("jti", "b")]])
async def test_query_400(params: Any) -> None:
    async with client(app_for(MemoryStore())) as c:
        r = await c.get("/revocations", params=params, headers=AUTH)
        if params == {}:                     # no query: the listing of active entries
            assert r.status_code == 200 and r.json() == {"entries": [], "next": None}
        else:
            assert r.status_code == 400 and r.json()["reason"] in ("one_kind", "unknown_field")
        r = await c.delete("/revocations", params=params, headers=AUTH)
        assert r.status_code == 400


async def test_token_body_unverified() -> None:
    store = MemoryStore()
    now = time.time()
    async with client(app_for(store)) as c:
        r = await c.post("/revocations", json={"token": jwt({"jti": "tj", "sub": "s",
                                                             "exp": int(now) + 300})},
                         headers=AUTH)
        assert r.status_code == 201 and r.json()["kind"] == "jti" and r.json()["jti"] == "tj"
        assert r.json()["exp"] == int(now) + 300
        iat = int(now) - 10
        r = await c.post("/revocations", json={"token": jwt({"sub": "nojti", "iat": iat,
                                                             "exp": int(now) + 300})},
                         headers=AUTH)
        assert r.status_code == 201 and r.json()["kind"] == "sub"
        assert r.json()["not_before"] == iat + 1
        r = await c.post("/revocations", json={"token": jwt({"exp": int(now) + 300})},
                         headers=AUTH)
        assert r.status_code == 400 and r.json()["reason"] == "bad_token"
        r = await c.post("/revocations", json={"token": jwt({"jti": "old", "exp": 1000})},
                         headers=AUTH)
        assert r.status_code == 400 and r.json()["reason"] == "already_expired"
    assert await store.revoked(make_token(jti="tj")) == "jti"
    assert await store.revoked(make_token(jti="x", sub="nojti", iat=iat)) == "sub"
    assert await store.revoked(make_token(jti="x", sub="nojti", iat=iat + 1)) is None


async def test_token_body_verified() -> None:
    store = MemoryStore()

    async def verifier(raw: str):  # type: ignore[no-untyped-def]
        if raw == "good":
            return make_token(jti="vj", sub="vs")
        if raw == "down":
            raise Unavailable("keys unavailable")
        raise InvalidToken("bad", code="bad_signature")

    async with client(app_for(store, token_verifier=verifier,
                              skew_for_token=lambda claims: 5)) as c:
        r = await c.post("/revocations", json={"token": "good"}, headers=AUTH)
        assert r.status_code == 201 and r.json()["jti"] == "vj"
        r = await c.post("/revocations", json={"token": "forged"}, headers=AUTH)
        assert r.status_code == 400 and r.json()["reason"] == "token_not_accepted"
        assert "bad_signature" in r.json()["error_description"]
        r = await c.post("/revocations", json={"token": "down"}, headers=AUTH)
        assert r.status_code == 503 and "retry-after" in r.headers
    assert len(store) == 1


async def test_store_states() -> None:
    async with client(app_for(None, config=RevocationConfig(store="none"))) as c:
        r = await c.post("/revocations", json={"jti": "a"}, headers=AUTH)
        assert r.status_code == 409 and r.json()["reason"] == "no_revocation_store"
    async with client(app_for(None)) as c:
        r = await c.post("/revocations", json={"jti": "a"}, headers=AUTH)
        assert r.status_code == 503 and r.headers["retry-after"]
    full = MemoryStore(max_entries=0)
    async with client(app_for(full)) as c:
        r = await c.post("/revocations", json={"jti": "a"}, headers=AUTH)
        assert r.status_code == 503 and r.json()["reason"] == "revocation_unavailable"
        assert r.headers["retry-after"]


async def test_api_on_redis_store_reaches_another_replica(shared_redis: RedisProc,
                                                          prefix: str) -> None:
    from gateway.config import RedisConfig
    rcfg = RedisConfig(url=f"redis://127.0.0.1:{shared_redis.port}/0", key_prefix=prefix)
    a, b = RedisStore(rcfg), RedisStore(rcfg)
    await a.start()
    await b.start()
    try:
        tok = make_token(jti="api-r", sub="s")
        assert await b.revoked(tok) is None
        async with client(app_for(a, config=RevocationConfig(store="redis", redis=rcfg))) as c:
            r = await c.post("/revocations", json={"jti": "api-r"}, headers=AUTH)
            assert r.status_code == 201
            r = await c.get("/revocations", params={"jti": "api-r"}, headers=AUTH)
            assert r.status_code == 200 and r.json()["ttl"] > 0
        t0 = time.perf_counter()
        while await b.revoked(tok) is None:
            assert time.perf_counter() - t0 < 1.0
            await asyncio.sleep(0.001)
    finally:
        await a.aclose()
        await b.aclose()


# --------------------------------------------------------------------------- poolgate revoke

def config(store: str, *, admin_port: int = 9901, token: str | None = ADMIN,
           redis_url: str = "redis://127.0.0.1:6379/0", prefix: str = "poolgate:") -> Config:
    admin = f'admin: {{host: 0.0.0.0, port: {admin_port}' + (f', token: "{token}"}}' if token
                                                             else "}")
    return loads_config(f"""
version: 1
{admin}
identity_sources:
  - id: s
    issuer: http://127.0.0.1:1/
    jwks_uri: http://127.0.0.1:1/jwks
    audiences: any
revocation:
  store: {store}
  redis: {{url: "{redis_url}", key_prefix: "{prefix}"}}
""")


@pytest.fixture
async def admin_server() -> AsyncIterator[tuple[int, MemoryStore]]:
    store = MemoryStore()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app_for(store), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        t0 = time.monotonic()
        while not server.started:
            assert time.monotonic() - t0 < 10 and not task.done()
            await asyncio.sleep(0.02)
        yield port, store
    finally:
        server.should_exit = True
        await asyncio.wait([task], timeout=5)


async def test_revoke_command_memory_posts_to_gateway(
        admin_server: tuple[int, MemoryStore]) -> None:
    port, store = admin_server
    out = await revoke_command(config("memory", admin_port=port), jti="cli-j")
    assert out["jti"] == "cli-j"
    out = await revoke_command(config("memory", admin_port=port), sub="cli-u",
                               not_before=time.time() - 1)
    assert out["kind"] == "sub"
    assert await store.revoked(make_token(jti="cli-j")) == "jti"
    with pytest.raises(RevokeError, match="already past"):
        await revoke_command(config("memory", admin_port=port), jti="x", exp=1000)


async def test_revoke_command_errors() -> None:
    with pytest.raises(RevokeError, match="admin.token"):
        await revoke_command(config("memory", token=None), jti="a")
    with pytest.raises(RevokeError, match="poolgate serve"):
        await revoke_command(config("memory", admin_port=free_port()), jti="a")
    with pytest.raises(RevokeError, match="store is none"):
        await revoke_command(config("none"), jti="a")


async def test_revoke_command_redis_is_enforced_by_a_running_store(shared_redis: RedisProc,
                                                                   prefix: str) -> None:
    url = f"redis://127.0.0.1:{shared_redis.port}/0"
    cfg = config("redis", redis_url=url, prefix=prefix)
    gateway_store = RedisStore(cfg.revocation.redis)
    await gateway_store.start()
    try:
        tok = make_token(jti="cmd-j", sub="cmd-s", iat=time.time() - 30)
        assert await gateway_store.revoked(tok) is None
        out = await revoke_command(cfg, jti="cmd-j")
        assert out["kind"] == "jti" and out["ttl"] > 86400
        t0 = time.perf_counter()
        while await gateway_store.revoked(tok) is None:
            assert time.perf_counter() - t0 < 1.0
            await asyncio.sleep(0.001)
        out = await revoke_command(cfg, token=jwt({"sub": "cmd-t", "iat": int(time.time()) - 9,
                                                   "exp": int(time.time()) + 60}))
        assert out["kind"] == "sub"
        with pytest.raises(RevokeError, match="cannot write to redis"):
            await revoke_command(config("redis", redis_url=f"redis://127.0.0.1:{free_port()}/0"),
                                 jti="x")
    finally:
        await gateway_store.aclose()


async def test_body_cap_answers_413_without_reading_the_rest() -> None:
    """The handler's own cap (the admin listener's protocol caps too): a chunked body is read
    only until it passes 64 KiB; nothing is written."""
    store = MemoryStore()
    pulled = 0

    async def body():
        nonlocal pulled
        for _ in range(1000):                  # 64 MiB if it were all read
            pulled += 1
            yield b"x" * 65536

    async with client(app_for(store)) as c:
        r = await c.post("/revocations", content=body(), headers=AUTH)
        assert r.status_code == 413 and r.json()["reason"] == "body_too_large"
        assert pulled <= 3
        r = await c.post("/revocations", content=b"{}", headers={**AUTH,
                         "Content-Length": str(10 * 1024 * 1024)})
        assert r.status_code == 413
    assert len(store) == 0
