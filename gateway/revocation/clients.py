"""redis-py clients for each ``revocation.redis.mode`` (standalone, sentinel, cluster)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ..config import RedisConfig


def client_kwargs(cfg: RedisConfig) -> dict[str, Any]:
    """Socket timeouts from the config; one immediate retry (a pooled connection that went
    stale across a Redis restart reconnects once); the health loop does the patient retrying."""
    kw: dict[str, Any] = {"socket_connect_timeout": cfg.connect_timeout_ms / 1000,
                          "socket_timeout": cfg.timeout_ms / 1000, "decode_responses": True,
                          "retry": Retry(NoBackoff(), 1)}
    if cfg.password:
        kw["password"] = cfg.password
    return kw


def make_client(cfg: RedisConfig) -> Any:
    """The data client (no I/O until first use)."""
    if cfg.mode == "cluster":
        return RedisCluster.from_url(cfg.url, **client_kwargs(cfg))
    if cfg.mode == "sentinel":
        sentinel_kw = {"socket_connect_timeout": cfg.connect_timeout_ms / 1000,
                       "socket_timeout": cfg.timeout_ms / 1000}
        sentinel = Sentinel(list(cfg.sentinels), sentinel_kwargs=sentinel_kw,
                            **client_kwargs(cfg))
        return sentinel.master_for(cfg.service_name)
    return aredis.Redis.from_url(cfg.url, **client_kwargs(cfg))


def node_client(cfg: RedisConfig, host: str, port: int) -> aredis.Redis:
    """A plain client for one cluster node (same scheme and credentials as the seed URL)."""
    parts = urlsplit(cfg.url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + f"{host}:{port}"
    return aredis.Redis.from_url(urlunsplit((parts.scheme, netloc, "", "", "")),
                                 **client_kwargs(cfg))


class ConnectHook:
    """Wraps a pubsub's ``on_connect`` (which resubscribes) to run ``before`` first.

    redis-py reconnects a pubsub connection by itself and resubscribes, silently losing what
    was published in between; the near-cache must hear about every such (re)connect. redis-py
    keeps only a weak reference to the callback, so the caller must hold this object.
    """

    def __init__(self, before: Callable[[], None],
                 inner: Callable[[Any], Awaitable[None]]) -> None:
        self.before, self.inner = before, inner

    async def on_connect(self, conn: Any) -> None:
        self.before()
        await self.inner(conn)
