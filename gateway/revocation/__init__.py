"""Step 3, revoked?: the deny list (jti, origin_jti, sub + not_before) and its stores.

``revoked(token)`` answers None or the kind that matched (``jti`` | ``origin_jti`` | ``sub``)
and raises ``StoreError`` when the store cannot answer (the caller fails closed, or allows
with ``on_error: allow``). The Redis key format is documented in ``entries``.
"""

from __future__ import annotations

import time
from typing import Callable

from ..config import RevocationConfig
from ..metrics import Metrics
from .entries import (KINDS, Entry, EntryError, RevocationStore, StoreError, make_entry,
                      sub_revokes, token_keys)
from .memory import MemoryStore

__all__ = ["KINDS", "Entry", "EntryError", "MemoryStore", "RevocationStore", "StoreError",
           "build_store", "make_entry", "sub_revokes", "token_keys"]


def build_store(config: RevocationConfig, *, clock: Callable[[], float] = time.time,
                metrics: Metrics | None = None, skew: float = 60) -> RevocationStore | None:
    """The configured store (not started: call ``await store.start()`` in lifespan), or None.

    ``skew`` is accepted for a uniform signature; entries carry their own TTL.
    """
    del skew
    if config.store == "none":
        return None
    if config.store == "memory":
        return MemoryStore(clock=clock, metrics=metrics)
    from .redis_store import RedisStore   # redis is imported only when configured
    return RedisStore(config.redis, metrics=metrics)
