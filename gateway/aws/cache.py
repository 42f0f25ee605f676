"""The credential cache: single-flight, bounded LRU, refreshed before the credentials expire.

One entry per (role_arn, rendered policy, tags, sub). Concurrent misses for one key share one
fetch (100 requests of one user -> one STS call). From ``refresh_before`` seconds before
``Expiration`` a hit still answers from the cache while one background fetch replaces the
entry; within ``MIN_REMAINING`` seconds of expiry callers wait for the new credentials (never
hand out credentials about to die). Failed fetches are not cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

log = logging.getLogger("poolgate.aws")

T = TypeVar("T")
MIN_REMAINING = 60.0             # seconds of validity a handed-out credential keeps at least


class _Entry(Generic[T]):
    __slots__ = ("expires", "refresh_at", "value", "extra")

    def __init__(self, value: T, expires: float, refresh_at: float) -> None:
        self.value, self.expires, self.refresh_at = value, expires, refresh_at
        self.extra: dict[str, Any] = {}          # per-credential derived objects (signers)


class CredentialCache(Generic[T]):
    def __init__(self, *, max_entries: int = 10000, refresh_before: float = 300.0,
                 expiry_of: Callable[[T], float], clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.refresh_before = refresh_before
        self.expiry_of = expiry_of
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Future[_Entry[T]]] = {}
        self.fetches = 0

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: Hashable) -> _Entry[T] | None:
        """The fresh entry for key, or None; no I/O (the hot path's whole cost on a hit)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.clock()
        if now >= entry.refresh_at:
            if now >= entry.expires - MIN_REMAINING:
                return None
            self._refresh_in_background(key, entry)
        self._entries.move_to_end(key)
        return entry

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> _Entry[T]:
        entry = self.peek(key)
        if entry is not None:
            return entry
        fut = self._inflight.get(key)
        if fut is None:
            fut = self._start(key, fetch)
        # shield: one caller giving up (client gone) must not cancel the others' fetch
        return await asyncio.shield(fut)

    def invalidate(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    # -- internals ------------------------------------------------------------------------------

    def _start(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> asyncio.Future[_Entry[T]]:
        fut = asyncio.ensure_future(self._load(key, fetch))
        self._inflight[key] = fut
        fut.add_done_callback(lambda f: self._done(key, f))
        return fut

    def _done(self, key: Hashable, fut: asyncio.Future[_Entry[T]]) -> None:
        if self._inflight.get(key) is fut:
            del self._inflight[key]
        if not fut.cancelled():
            fut.exception()          # retrieved: a failed background refresh is not an error log

    async def _load(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> _Entry[T]:
        self.fetches += 1
        value = await fetch()
        expires = self.expiry_of(value)
        entry = _Entry(value, expires, max(self.clock(), expires - self.refresh_before))
        entry.extra["refetch"] = fetch
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry

    def _refresh_in_background(self, key: Hashable, entry: _Entry[T]) -> None:
        if key in self._inflight:
            return
        fetch = entry.extra.get("refetch")
        if fetch is not None:
            self._start(key, fetch)
