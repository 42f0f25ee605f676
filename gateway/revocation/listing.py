"""``GET /revocations`` without a query: the active entries, a page at a time.

A page is ``{"entries": [{"kind", "value", "ttl"}...], "next": <cursor or null>}``; the cursor
is opaque to clients. Memory store: entries in (kind, value) order, the cursor names the last
one returned (deletes between pages skip nothing). Redis: ``SCAN`` over ``<key_prefix>*``
(each primary in turn in Cluster mode), so an entry present for the whole listing is returned
at least once and a page may hold a few more or fewer than asked.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
from typing import Any, Iterable

from .entries import KIND_OF_SEGMENT, Entry, StoreError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_SCAN_CALLS = 50          # bounds one page's work however sparse the prefix is


class CursorError(ValueError):
    """A cursor this gateway did not hand out."""


def encode_cursor(state: Any) -> str:
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CursorError("cursor is not one this gateway handed out") from None


def page_json(entries: Iterable[Entry], next_cursor: str | None) -> dict[str, Any]:
    return {"entries": [{"kind": e.kind, "value": e.value, "ttl": e.ttl} for e in entries],
            "next": next_cursor}


# --------------------------------------------------------------------------- memory

def memory_page(live: Iterable[tuple[tuple[str, str], int]], cursor: str | None,
                limit: int) -> tuple[list[Entry], str | None]:
    """``live``: ((kind, value), ttl) of the entries in force now."""
    after = decode_cursor(cursor)
    if after is not None:
        if not (isinstance(after, list) and len(after) == 2
                and all(isinstance(x, str) for x in after)):
            raise CursorError("cursor is not one this gateway handed out")
        after = tuple(after)
    items = (item for item in live if after is None or item[0] > after)
    page = heapq.nsmallest(limit + 1, items, key=lambda item: item[0])
    more = len(page) > limit
    page = page[:limit]
    entries = [Entry(k, v, None, None, ttl) for (k, v), ttl in page]
    return entries, encode_cursor(list(page[-1][0])) if more and page else None


# --------------------------------------------------------------------------- redis

def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def redis_page(clients: list[Any], prefix: str, cursor: str | None, limit: int,
                     timeout: float) -> tuple[list[Entry], str | None]:
    """``clients``: one client per node to scan (one for standalone / Sentinel)."""
    state = decode_cursor(cursor) or [0, 0]
    if not (isinstance(state, list) and len(state) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in state)
            and state[0] < max(1, len(clients))):
        raise CursorError("cursor is not one this gateway handed out")
    node, scan = state
    match = _glob_escape(prefix) + "*"
    found: dict[str, int] = {}                 # key -> index of the node that holds it
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_SCAN_CALLS):
                scan, batch = await clients[node].scan(scan, match=match, count=limit)
                for k in batch:                # SCAN may return a key twice
                    if _kind_of(k, prefix) is not None:
                        found.setdefault(k, node)
                if scan == 0:
                    node, scan = node + 1, 0
                    if node >= len(clients):
                        break
                if len(found) >= limit:
                    break
            entries = []
            for where in sorted(set(found.values())):
                keys = [k for k, n in found.items() if n == where]
                pipe = clients[where].pipeline(transaction=False)
                for k in keys:
                    pipe.ttl(k)
                for key, ttl in zip(keys, await pipe.execute()):
                    if ttl == -2:              # gone (expired or deleted) since the SCAN
                        continue
                    kind, value = _kind_of(key, prefix)  # type: ignore[misc]
                    entries.append(Entry(kind, value, None, None, int(ttl) if ttl > 0 else -1))
    except TimeoutError:
        raise StoreError("redis listing timed out") from None
    except Exception as e:  # noqa: BLE001 - translated here, where redis is called
        raise StoreError(f"redis listing failed: {type(e).__name__}") from e
    done = node >= len(clients)
    return entries, None if done else encode_cursor([node, scan])


def _kind_of(key: str, prefix: str) -> tuple[str, str] | None:
    if not key.startswith(prefix):
        return None
    seg, sep, value = key[len(prefix):].partition(":")
    if not sep or not value or seg not in KIND_OF_SEGMENT:
        return None
    return KIND_OF_SEGMENT[seg], value


async def redis_store_page(client: Any, cfg: Any, cursor: str | None, limit: int,
                           timeout: float) -> tuple[list[Entry], str | None]:
    """A page from the store's client: itself (standalone, Sentinel) or one plain client per
    primary (Cluster: SCAN is per node), closed afterwards."""
    if cfg.mode != "cluster":
        return await redis_page([client], cfg.key_prefix, cursor, limit, timeout)
    from .clients import node_client  # noqa: PLC0415
    primaries = sorted((n.host, n.port) for n in client.get_primaries())
    if not primaries:
        raise StoreError("cluster topology not known yet")
    nodes = [node_client(cfg, host, port) for host, port in primaries]
    try:
        return await redis_page(nodes, cfg.key_prefix, cursor, limit, timeout)
    finally:
        for n in nodes:
            try:
                await n.aclose()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass
