"""Where sealed sessions live: in memory (one process) or in Redis (shared by replicas).

The stores hold opaque sealed text under a hashed handle; they never see a token or a cookie.
Also: single-use markers (a login ``state``) and short per-session locks (single-flight refresh).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Callable, Protocol

from ..config import RedisConfig


class SessionStoreError(Exception):
    """The store could not answer (Redis down): the caller answers 503."""


class SessionStore(Protocol):
    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def get(self, handle: str) -> str | None: ...
    async def put(self, handle: str, sealed: str, ttl: float, sub_key: str) -> None: ...
    async def delete(self, handle: str) -> bool: ...
    async def handles_for(self, sub_key: str) -> list[str]: ...
    async def claim_once(self, name: str, ttl: float) -> bool: ...
    async def lock(self, handle: str, ttl: float) -> str | None: ...
    async def unlock(self, handle: str, token: str) -> None: ...


class MemorySessionStore:
    """One process: dicts with expiry times (swept on access and when large)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[str, float, str]] = {}
        self._subs: dict[str, set[str]] = {}
        self._once: dict[str, float] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def get(self, handle: str) -> str | None:
        item = self._data.get(handle)
        if item is None:
            return None
        if item[1] <= self._clock():
            await self.delete(handle)
            return None
        return item[0]

    async def put(self, handle: str, sealed: str, ttl: float, sub_key: str) -> None:
        self._data[handle] = (sealed, self._clock() + ttl, sub_key)
        self._subs.setdefault(sub_key, set()).add(handle)
        if len(self._data) % 1024 == 0:
            self._sweep()

    async def delete(self, handle: str) -> bool:
        item = self._data.pop(handle, None)
        if item is None:
            return False
        subs = self._subs.get(item[2])
        if subs is not None:
            subs.discard(handle)
            if not subs:
                del self._subs[item[2]]
        return True

    async def handles_for(self, sub_key: str) -> list[str]:
        return sorted(self._subs.get(sub_key, ()))

    async def claim_once(self, name: str, ttl: float) -> bool:
        now = self._clock()
        if len(self._once) > 10_000:
            self._once = {k: t for k, t in self._once.items() if t > now}
        if self._once.get(name, 0) > now:
            return False
        self._once[name] = now + ttl
        return True

    async def lock(self, handle: str, ttl: float) -> str | None:
        now = self._clock()
        held = self._locks.get(handle)
        if held is not None and held[1] > now:
            return None
        token = secrets.token_hex(8)
        self._locks[handle] = (token, now + ttl)
        return token

    async def unlock(self, handle: str, token: str) -> None:
        held = self._locks.get(handle)
        if held is not None and held[0] == token:
            del self._locks[handle]

    def _sweep(self) -> None:
        now = self._clock()
        for h in [h for h, (_, exp, _) in self._data.items() if exp <= now]:
            item = self._data.pop(h)
            subs = self._subs.get(item[2])
            if subs is not None:
                subs.discard(h)
                if not subs:
                    del self._subs[item[2]]


_UNLOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisSessionStore:
    """Replicas share sessions through Redis (the ``revocation.redis`` connection settings).

    Keys, all with a TTL: ``<prefix>session:<handle>`` (sealed record),
    ``<prefix>session-sub:<sub key>`` (set of handles, for sign-out everywhere),
    ``<prefix>session-once:<name>`` (used login states), ``<prefix>session-lock:<handle>``.
    """

    def __init__(self, cfg: RedisConfig, *, max_ttl: float) -> None:
        self._cfg = cfg
        self._p = cfg.key_prefix
        self._max_ttl = max_ttl
        self._client: Any = None

    async def start(self) -> None:
        from ..revocation.clients import make_client   # redis is imported only when configured
        self._client = make_client(self._cfg)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _run(self, coro: Any) -> Any:
        from redis.exceptions import RedisError
        try:
            return await coro
        except (RedisError, OSError, asyncio.TimeoutError) as e:
            raise SessionStoreError(f"session store unavailable: {type(e).__name__}") from None

    async def get(self, handle: str) -> str | None:
        value: str | None = await self._run(self._client.get(f"{self._p}session:{handle}"))
        return value

    async def put(self, handle: str, sealed: str, ttl: float, sub_key: str) -> None:
        ms = max(1000, int(ttl * 1000))
        await self._run(self._client.set(f"{self._p}session:{handle}", sealed, px=ms))
        subs = f"{self._p}session-sub:{sub_key}"
        await self._run(self._client.sadd(subs, handle))
        await self._run(self._client.expire(subs, int(self._max_ttl) + 60))

    async def delete(self, handle: str) -> bool:
        return bool(await self._run(self._client.delete(f"{self._p}session:{handle}")))

    async def handles_for(self, sub_key: str) -> list[str]:
        subs = f"{self._p}session-sub:{sub_key}"
        handles = sorted(await self._run(self._client.smembers(subs)))
        if handles:
            await self._run(self._client.srem(subs, *handles))
        return handles

    async def claim_once(self, name: str, ttl: float) -> bool:
        return bool(await self._run(self._client.set(f"{self._p}session-once:{name}", "1",
                                                     nx=True, px=max(1000, int(ttl * 1000)))))

    async def lock(self, handle: str, ttl: float) -> str | None:
        token = secrets.token_hex(8)
        ok = await self._run(self._client.set(f"{self._p}session-lock:{handle}", token, nx=True,
                                              px=max(100, int(ttl * 1000))))
        return token if ok else None

    async def unlock(self, handle: str, token: str) -> None:
        await self._run(self._client.eval(_UNLOCK, 1, f"{self._p}session-lock:{handle}", token))
