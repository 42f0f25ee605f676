"""The Redis revocation store (standalone, Sentinel, Cluster) with a pubsub-fed near-cache.

Key format: see ``entries``. A lookup reads up to 3 keys in one round trip (MGET; in Cluster
pipelined single-key GETs, never a cross-slot command), bounded by ``timeout_ms`` via
``asyncio.timeout`` as well as socket timeouts. A supervisor task PINGs every 0.5 s: two
failures mark the store down (``healthy()`` False, lookups fail fast: fail closed) until a
PING answers again. So a Redis that hangs without closing its sockets (the near-cache may go on
answering from memory meanwhile) is marked down within 0.5 s + 2 x timeout_ms + 0.25 s
(1.35 s by default), inside the 2 s outage budget. The near-cache is used only while the
invalidation subscription is live.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from typing import Any

from ..config import RedisConfig
from ..metrics import Metrics
from ..principal import VerifiedToken
from .clients import ConnectHook, make_client, node_client
from .entries import (CHANNEL, Entry, StoreError, check_value, message, parse_message,
                      parse_not_before, redis_key, redis_value, sub_revokes, token_keys)
from .listing import redis_store_page
from .nearcache import MISSING, NearCache

log = logging.getLogger("poolgate.revocation")

PING_SECONDS = 0.5                   # health PING period; 2 failures (each <= timeout_ms) = down
DOWN_AFTER_FAILURES = 2
SUB_PING_SECONDS = 2.0


class RedisStore:
    name = "redis"

    def __init__(self, cfg: RedisConfig, *, metrics: Metrics | None = None,
                 near_cache_entries: int = 100_000, near_cache_max_age: float = 30.0) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._timeout = cfg.timeout_ms / 1000
        self._connect_timeout = cfg.connect_timeout_ms / 1000
        self._channel = cfg.key_prefix + CHANNEL
        self._cluster = cfg.mode == "cluster"
        self._client: Any = make_client(cfg)
        self._cache = (NearCache(max_entries=near_cache_entries, max_age=near_cache_max_age)
                       if cfg.invalidation == "pubsub" else None)
        self._up = True                      # optimistic until the supervisor says otherwise
        self._subscribed = False
        self._wake = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._subscriber: asyncio.Task[None] | None = None
        self._node_turn = itertools.count()
        self._closed = False
        self._sub_turn = 0                   # bumped to tell a running subscriber to stop
        self._counters: dict[str, Any] = {}

    def _pubsub_client(self) -> tuple[Any, bool]:
        """(client, owned). Cluster: a plain connection to one node, rotating on each attempt
        (a cluster PUBLISH is broadcast to every node, so any node hears every write)."""
        if not self._cluster:
            return self._client, False
        nodes = self._client.get_nodes()
        if not nodes:
            raise StoreError("cluster topology not known yet")
        node = nodes[next(self._node_turn) % len(nodes)]
        return node_client(self._cfg, node.host, node.port), True

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the supervisor; wait (bounded) for a first PING and, if up, the subscription."""
        if self._supervisor is not None:
            return
        self._up = await self._ping()
        if self._up and self._cache is not None:
            self._subscriber = asyncio.create_task(self._subscribe(),
                                                   name="poolgate-redis-invalidation")
        self._supervisor = asyncio.create_task(self._supervise(), name="poolgate-redis-health")
        if self._subscriber is not None:
            await self.wait_subscribed(self._timeout + self._connect_timeout + 0.5)

    async def aclose(self) -> None:
        self._closed = True
        self._sub_turn += 1
        self._wake.set()
        tasks = [t for t in (self._supervisor, self._subscriber) if t is not None]
        self._supervisor = self._subscriber = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)    # bounded even if a cancel got swallowed
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._client.aclose()

    def healthy(self) -> bool:
        return self._up

    @property
    def subscribed(self) -> bool:
        """True while the invalidation channel is live (the near-cache is in use)."""
        return self._subscribed and self._up

    async def wait_subscribed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.subscribed and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return self.subscribed

    async def _ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.ping()
            return True
        except Exception as e:  # noqa: BLE001 - any failure means "not answering"
            log.debug("redis ping failed: %r", e)
            return False

    async def _supervise(self) -> None:
        failures = 0
        while not self._closed:
            ok = await self._ping()
            if self._closed:      # redis-py may swallow a cancel mid-command: check the flag
                return
            if ok:
                if not self._up:
                    log.warning("revocation store redis answering again")
                failures, self._up, interval = 0, True, PING_SECONDS
                if self._cache is not None and (self._subscriber is None
                                                or self._subscriber.done()):
                    self._subscriber = asyncio.create_task(self._subscribe(),
                                                           name="poolgate-redis-invalidation")
            else:
                failures += 1
                if failures >= DOWN_AFTER_FAILURES and self._up:
                    log.error("revocation store redis not answering (fail closed)")
                    self._up = False
                if not self._up:
                    await self._drop_subscription()
                interval = min(PING_SECONDS, 0.25 * 2 ** (failures - 1))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def _drop_subscription(self) -> None:
        self._sub_turn += 1
        self._subscribed = False
        if self._cache is not None:
            self._cache.clear()
        task, self._subscriber = self._subscriber, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=2)

    async def _subscribe(self) -> None:
        """Hold the invalidation subscription; the near-cache is live only while it is.

        redis-py reconnects and resubscribes a pubsub connection by itself, silently losing
        what was published in between: a hook on every (re)connect marks the cache unusable
        and clears it, and only the SUBSCRIBE confirmation that follows makes it usable again.
        """
        assert self._cache is not None
        cache = self._cache
        turn = self._sub_turn
        try:
            client, owned = self._pubsub_client()
        except Exception as e:  # noqa: BLE001 - e.g. cluster not reachable yet: retried
            log.warning("revocation invalidation channel: no node to subscribe on: %r", e)
            return
        pubsub = client.pubsub()
        def unusable() -> None:
            if turn == self._sub_turn:
                self._subscribed = False
                cache.clear()

        hook = ConnectHook(unusable, pubsub.on_connect)   # held here: redis keeps a weakref
        pubsub.on_connect = hook.on_connect
        try:
            async with asyncio.timeout(self._timeout + self._connect_timeout):
                await pubsub.subscribe(self._channel)
            last_seen = last_ping = time.monotonic()
            while turn == self._sub_turn:
                # ignore_subscribe_messages=False: we need the confirmations, and redis-py 8
                # parses a decoded PONG as type "P" (dropped as a subscribe message otherwise)
                msg = await pubsub.get_message(timeout=0.5)
                now = time.monotonic()
                if msg is not None:
                    last_seen = now
                    kind = msg.get("type")
                    if kind == "message":
                        self._on_message(msg.get("data"))
                    elif kind == "subscribe" and turn == self._sub_turn:
                        cache.clear()       # whatever was cached may have missed writes
                        self._subscribed = True
                        log.info("revocation near-cache subscribed to %s", self._channel)
                if now - last_ping >= SUB_PING_SECONDS:      # a half-open socket stays silent:
                    last_ping = now                          # PING it and expect a reply
                    async with asyncio.timeout(self._timeout):
                        await pubsub.ping()
                if now - last_seen > SUB_PING_SECONDS + 2 * self._timeout + 0.5:
                    raise StoreError("invalidation channel silent (no pong)")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the supervisor retries
            log.warning("revocation invalidation channel lost: %r", e)
        finally:
            if turn == self._sub_turn:      # a dropped (stale) subscriber leaves state alone
                self._subscribed = False
                cache.clear()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await pubsub.aclose()
                    if owned:
                        await client.aclose()

    def _on_message(self, data: Any) -> None:
        assert self._cache is not None
        key = parse_message(data, self._cfg.key_prefix) if isinstance(data, str) else None
        if key is None:
            self._cache.clear()             # not understood: forget everything (safe)
        else:
            self._cache.invalidate(key)

    # ------------------------------------------------------------------ lookups

    def _fail(self, what: str, e: BaseException | None = None) -> StoreError:
        if self._metrics is not None:
            self._metrics.revocation_errors.labels(store=self.name).inc()
        self._wake.set()                    # let the supervisor look now
        detail = f": {e!r}" if e is not None else ""
        return StoreError(f"redis {what} failed{detail}")

    async def _read(self, keys: list[str]) -> list[str | None]:
        if self._cluster:
            pipe = self._client.pipeline(transaction=False)
            for k in keys:
                pipe.get(k)
            return list(await pipe.execute())
        return list(await self._client.mget(keys))

    @property
    def generation(self) -> int | None:
        """Moves whenever an earlier answer may have changed (any invalidation, local write or
        resubscription); None while answers must not be reused (no live invalidation channel)."""
        cache = self._cache
        return cache.generation if cache is not None and self.subscribed else None

    async def revoked(self, token: VerifiedToken) -> str | None:
        started = time.perf_counter()
        try:
            found = await self._revoked(token)
        except StoreError:
            self._count("error")
            raise
        self._count("hit" if found else "miss")
        if self._metrics is not None:
            m = self._metrics
            m.child(m.revocation_seconds, token.source_id).observe(time.perf_counter() - started)
        return found

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            counter = self._counters.get(result)
            if counter is None:
                counter = self._counters[result] = \
                    self._metrics.revocation_lookups.labels(result=result)
            counter.inc()

    async def _revoked(self, token: VerifiedToken) -> str | None:
        keys = token_keys(token)
        if not keys:
            return None
        values: dict[tuple[str, str], str | None] = {}
        missing = keys
        cache = self._cache if self.subscribed else None
        if cache is not None:
            missing = []
            for k in keys:
                v = cache.get(k)
                if v is MISSING:
                    missing.append(k)
                else:
                    values[k] = v  # type: ignore[assignment]
            self._count("cache_miss" if missing else "cache_hit")
        if missing:
            if not self._up:
                raise self._fail("lookup (store down)")
            generation = cache.generation if cache is not None else 0
            prefix = self._cfg.key_prefix
            try:
                async with asyncio.timeout(self._timeout):
                    raw = await self._read([redis_key(prefix, kind, v) for kind, v in missing])
            except Exception as e:  # noqa: BLE001 - any failure: fail closed
                raise self._fail("lookup", e) from e
            pairs = list(zip(missing, raw))
            values.update(pairs)
            if cache is not None:
                cache.put_many(pairs, generation)
        for kind, value in keys:
            raw_value = values.get((kind, value))
            if raw_value is None:
                continue
            if kind != "sub" or sub_revokes(parse_not_before(raw_value), token):
                return kind
        return None

    # ------------------------------------------------------------------ writes

    def _invalidate(self, kind: str, value: str) -> None:
        if self._cache is not None:
            self._cache.invalidate((kind, value))

    async def add(self, entry: Entry) -> Entry:
        check_value(entry.kind, entry.value)
        key = redis_key(self._cfg.key_prefix, entry.kind, entry.value)
        try:
            async with asyncio.timeout(self._timeout * 3):
                await self._client.set(key, redis_value(entry), ex=max(1, entry.ttl))
                await self._client.publish(self._channel, message(entry.kind, entry.value))
        except Exception as e:  # noqa: BLE001
            raise self._fail("write", e) from e
        finally:
            self._invalidate(entry.kind, entry.value)
        return entry

    async def get(self, kind: str, value: str) -> Entry | None:
        check_value(kind, value)
        key = redis_key(self._cfg.key_prefix, kind, value)
        try:
            async with asyncio.timeout(self._timeout * 2):
                pipe = self._client.pipeline(transaction=False)
                pipe.get(key)
                pipe.ttl(key)
                raw, ttl = await pipe.execute()
        except Exception as e:  # noqa: BLE001
            raise self._fail("read", e) from e
        if raw is None:
            return None
        nbf = parse_not_before(raw) if kind == "sub" else None
        if nbf is not None and not math.isfinite(nbf):
            nbf = None                      # unparseable value: revokes every token of the sub
        return Entry(kind, value, None, nbf, int(ttl) if ttl is not None and ttl > 0 else -1)

    async def delete(self, kind: str, value: str) -> bool:
        check_value(kind, value)
        key = redis_key(self._cfg.key_prefix, kind, value)
        try:
            async with asyncio.timeout(self._timeout * 3):
                n = await self._client.delete(key)
                await self._client.publish(self._channel, message(kind, value))
        except Exception as e:  # noqa: BLE001
            raise self._fail("delete", e) from e
        finally:
            self._invalidate(kind, value)
        return bool(n)

    async def list(self, cursor: str | None, limit: int) -> tuple[list[Entry], str | None]:
        """A page of the entries under ``key_prefix`` (SCAN; see ``listing``)."""
        try:
            return await redis_store_page(self._client, self._cfg, cursor, limit,
                                          self._timeout * 4)
        except StoreError:
            raise self._fail("list") from None
