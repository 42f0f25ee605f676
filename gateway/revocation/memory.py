"""The embedded revocation store: one process, entries in a dict, expired lazily and swept."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Callable

from ..metrics import Metrics
from ..principal import VerifiedToken
from .entries import Entry, StoreError, check_value, sub_revokes, token_keys
from .listing import memory_page

log = logging.getLogger("poolgate.revocation")


class MemoryStore:
    """Entries keyed by (kind, value) with an absolute expiry on the injected clock.

    Bounded: expired entries are dropped on lookup and by a sweep every ``sweep_seconds``;
    when ``max_entries`` live entries exist a new one is refused (``StoreError``) rather than
    evicting a revocation.
    """

    name = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.time, metrics: Metrics | None = None,
                 max_entries: int = 1_000_000, sweep_seconds: float = 60) -> None:
        self._clock = clock
        self._metrics = metrics
        self._max = max_entries
        self._sweep_seconds = sweep_seconds
        self._entries: dict[tuple[str, str], tuple[Entry, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self.generation = 0               # moves on every write: earlier answers may differ

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._sweeper(), name="poolgate-revocation-sweep")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def healthy(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._entries)

    def sweep(self) -> int:
        now = self._clock()
        dead = [k for k, (_, until) in self._entries.items() if until < now]
        for k in dead:
            del self._entries[k]
        return len(dead)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            n = self.sweep()
            if n:
                log.debug("revocation sweep dropped %d expired entries", n)

    def _live(self, kind: str, value: str, now: float) -> Entry | None:
        item = self._entries.get((kind, value))
        if item is None:
            return None
        entry, until = item
        if until < now:             # live at its last instant, as in Redis (now > when)
            del self._entries[(kind, value)]
            return None
        return entry

    async def revoked(self, token: VerifiedToken) -> str | None:
        started = time.perf_counter()
        now = self._clock()
        found: str | None = None
        for kind, value in token_keys(token):
            entry = self._live(kind, value, now)
            if entry is None:
                continue
            if kind != "sub" or sub_revokes(entry.not_before, token):
                found = kind
                break
        if self._metrics is not None:
            m = self._metrics
            m.child(m.revocation_lookups, "hit" if found else "miss").inc()
            m.child(m.revocation_seconds, token.source_id).observe(
                time.perf_counter() - started)
        return found

    async def add(self, entry: Entry) -> Entry:
        now = self._clock()
        key = (entry.kind, check_value(entry.kind, entry.value))
        if key not in self._entries and len(self._entries) >= self._max:
            self.sweep()
            if len(self._entries) >= self._max:
                if self._metrics is not None:
                    self._metrics.revocation_errors.labels(store=self.name).inc()
                raise StoreError(f"revocation list full ({self._max} live entries)")
        self._entries[key] = (entry, now + entry.ttl)      # last write wins, as in Redis
        self.generation += 1
        return entry

    async def get(self, kind: str, value: str) -> Entry | None:
        now = self._clock()
        entry = self._live(kind, value, now)
        if entry is None:
            return None
        _, until = self._entries[(kind, value)]
        return Entry(entry.kind, entry.value, entry.exp, entry.not_before,
                     max(1, int(until - now + 0.999)))

    async def delete(self, kind: str, value: str) -> bool:
        found = self._live(kind, value, self._clock()) is not None
        self._entries.pop((kind, value), None)
        self.generation += 1
        return found

    async def list(self, cursor: str | None, limit: int) -> tuple[list[Entry], str | None]:
        """A page of the entries in force now (see ``listing``)."""
        now = self._clock()
        live = (((k), max(1, int(until - now + 0.999)))
                for k, (_, until) in list(self._entries.items()) if until > now)
        return memory_page(live, cursor, limit)
