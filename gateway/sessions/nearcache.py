"""A short-lived local copy of sessions read from Redis: a browser's burst of requests costs
one Redis round trip, not one each. Entries live HOLD_SECONDS (well inside the 1 s in which a
sign-out on another replica must be refused; the revocation list refuses its tokens too)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from .record import Record

HOLD_SECONDS = 0.4
MAX_ENTRIES = 10_000


class RecordCache:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 hold: float = HOLD_SECONDS) -> None:
        self._clock = clock
        self._hold = hold
        self._items: OrderedDict[str, tuple[Record, float]] = OrderedDict()

    def get(self, h: str) -> Record | None:
        item = self._items.get(h)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._items[h]
            return None
        return item[0]

    def put(self, h: str, rec: Record) -> None:
        self._items[h] = (rec, self._clock() + self._hold)
        self._items.move_to_end(h)
        if len(self._items) > MAX_ENTRIES:
            self._items.popitem(last=False)

    def pop(self, h: str) -> None:
        self._items.pop(h, None)
