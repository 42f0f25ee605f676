"""The near-cache: recent Redis answers per key, kept fresh by the invalidation channel.

It caches negative answers too (most lookups are for tokens nobody revoked). It is only
consulted while the invalidation subscription is live (the store decides); every message,
every local write and every (re)subscription invalidates. A generation counter closes the race
where an invalidation arrives while a Redis read is in flight: such a read is not cached.
"""

from __future__ import annotations

import time
from typing import Callable

Key = tuple[str, str]                      # (kind, value)
_ABSENT = object()


class NearCache:
    def __init__(self, *, max_entries: int = 100_000, max_age: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._max_age = max_age
        self._clock = clock
        self._data: dict[Key, tuple[str | None, float]] = {}
        self.generation = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Key) -> object:
        """The cached raw Redis value (str, or None for absent), or ``MISSING``."""
        item = self._data.get(key)
        if item is None:
            return MISSING
        value, at = item
        if self._clock() - at > self._max_age:
            del self._data[key]
            return MISSING
        return value

    def put_many(self, items: list[tuple[Key, str | None]], generation: int) -> None:
        """Store answers read while ``generation`` was current; dropped if it moved since."""
        if generation != self.generation:
            return
        now = self._clock()
        for key, value in items:
            self._data.pop(key, None)          # re-insert at the end: oldest-first eviction
            if len(self._data) >= self._max:
                del self._data[next(iter(self._data))]
            self._data[key] = (value, now)

    def invalidate(self, key: Key) -> None:
        self.generation += 1
        self._data.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._data.clear()


MISSING = _ABSENT
