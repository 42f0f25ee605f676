"""The only JWKS I/O: fetch, discover, refresh and hold each identity source's public keys.

One fetch at a time per URL (concurrent callers share the in-flight fetch); parsed keys are
replaced on every successful fetch; stale keys are served for a bounded time while the IdP is
down; an unknown ``kid`` triggers at most one refetch per cooldown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import httpx

from ..config import IdentitySource, is_loopback
from ..errors import InvalidToken, Unavailable
from ..metrics import Metrics
from .keys import Jwk, check_key_alg, keep_unchanged, parse_jwks

__all__ = ["JwksManager", "FetchError"]

log = logging.getLogger("poolgate.jwks")
MAX_FETCH_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30.0


class FetchError(Exception):
    """A JWKS or discovery fetch that did not produce a usable document."""


def _url_allowed(url: str, allow_http: bool) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and bool(parts.hostname) and (
        allow_http or is_loopback(parts.hostname))


@dataclass(eq=False)
class _Source:
    cfg: IdentitySource
    url: str | None                         # resolved JWKS URL (None until discovered)
    keys: dict[str, Jwk] = field(default_factory=dict)
    fetched_at: float | None = None         # clock() of the last successful fetch
    error: str | None = None
    failures: int = 0
    next_attempt: float = 0.0

    stale_limit: float = 0.0

    def __post_init__(self) -> None:
        j = self.cfg.jwks
        # never expire keys before the next refresh could have replaced them
        self.stale_limit = max(j.max_stale_seconds, j.refresh_seconds + min(j.timeout_seconds, 5.0))


class JwksManager:
    """Per identity source key sets, fetched with httpx, bound to the source's issuers."""

    def __init__(self, sources: Sequence[IdentitySource], *, client: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.monotonic, metrics: Metrics | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self._sources = {s.id: _Source(s, s.jwks_uri) for s in sources}
        self._own_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(follow_redirects=False)
        self._clock = clock
        self._sleep = sleep
        self._metrics = metrics
        self._inflight: dict[str, asyncio.Future[Any]] = {}     # url -> shared fetch
        self._last_fetch: dict[str, float] = {}                  # url -> clock() of last start
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._started = False
        if metrics is not None:     # key count and age computed when /metrics is scraped
            metrics.collect_hooks["jwks"] = self.update_gauges

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start prefetch + background refresh; returns at once, never raises for the IdP."""
        if self._started:
            return
        self._started = True
        for st in self._sources.values():
            self._tasks.append(asyncio.create_task(self._run(st), name=f"jwks:{st.cfg.id}"))

    async def aclose(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        self._started = False
        if self._own_client:
            await self._client.aclose()

    async def _run(self, st: _Source) -> None:
        while True:
            now = self._clock()
            due = st.next_attempt if st.error is not None else (
                (st.fetched_at + st.cfg.jwks.refresh_seconds) if st.fetched_at is not None else now)
            if due > now:
                await self._sleep(due - now)
                continue
            await self.refresh(st.cfg.id)

    # ------------------------------------------------------------------ state

    def _usable(self, st: _Source, now: float) -> dict[str, Jwk] | None:
        if st.fetched_at is None or not st.keys or now - st.fetched_at > st.stale_limit:
            return None
        return st.keys

    def ready(self) -> bool:
        now = self._clock()
        return all(self._usable(st, now) is not None for st in self._sources.values())

    def update_gauges(self) -> None:
        """``poolgate_jwks_keys`` (usable keys now) and ``poolgate_jwks_key_age_seconds``."""
        if self._metrics is None:
            return
        now = self._clock()
        for sid, st in self._sources.items():
            usable = self._usable(st, now)
            self._metrics.jwks_keys.labels(source=sid).set(len(usable) if usable else 0)
            if st.fetched_at is not None:
                self._metrics.jwks_age.labels(source=sid).set(max(0.0, now - st.fetched_at))
            self._metrics.jwks_max_stale.labels(source=sid).set(st.cfg.jwks.max_stale_seconds)

    def status(self) -> dict[str, dict[str, Any]]:
        now = self._clock()
        out = {}
        for sid, st in self._sources.items():
            age = None if st.fetched_at is None else max(0.0, now - st.fetched_at)
            out[sid] = {"ready": self._usable(st, now) is not None, "keys": len(st.keys),
                        "age_seconds": age, "error": st.error, "jwks_uri": st.url}
        return out

    async def wait_ready(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
        return True

    def lookup(self, source_id: str, kid: str) -> Jwk | None:
        """Sync fast path: the current usable key for (source, kid), or None."""
        st = self._sources.get(source_id)
        if st is None or st.fetched_at is None or self._clock() - st.fetched_at > st.stale_limit:
            return None
        return st.keys.get(kid)

    def _retry_after(self, st: _Source) -> int:
        return max(1, min(60, int(st.next_attempt - self._clock() + 0.999)))

    async def get_jwk(self, source_id: str, kid: str, alg: str) -> Jwk:
        st = self._sources[source_id]
        now = self._clock()
        if self._usable(st, now) is None and not self._started and st.failures == 0 \
                and st.fetched_at is None:
            await self.refresh(source_id)       # used without start() (CLI, tests): load once
            now = self._clock()
        keys = self._usable(st, now)
        if keys is None:
            raise Unavailable(f"signing keys for identity source {source_id} are unavailable",
                              code="jwks_unavailable", retry_after=self._retry_after(st))
        jwk = keys.get(kid)
        if jwk is None:
            url = st.url
            inflight = self._inflight.get(url) if url else None
            last = self._last_fetch.get(url or "", float("-inf"))
            if inflight is not None:
                await asyncio.shield(inflight)
            elif now - last >= st.cfg.jwks.unknown_kid_cooldown_seconds:
                await self.refresh(source_id)
            keys = self._usable(st, self._clock()) or {}
            jwk = keys.get(kid)
            if jwk is None:
                raise InvalidToken("token key id is not in the issuer's key set", code="unknown_kid")
        check_key_alg(jwk, alg)
        return jwk

    async def get_key(self, source_id: str, kid: str, alg: str) -> Any:
        """The cryptography public key to verify with (see module docstring for errors)."""
        return (await self.get_jwk(source_id, kid, alg)).key

    # ------------------------------------------------------------------ fetching

    async def refresh(self, source_id: str) -> bool:
        """Fetch (or join the in-flight fetch of) this source's JWKS; True on success."""
        st = self._sources[source_id]
        try:
            if st.url is None:
                st.url = await self._discover(st)
            keys = await self._shared_fetch(st.url, st)
        except FetchError as exc:
            self._failed(st, str(exc))
            return False
        except Exception as exc:        # a bug must not kill the refresh loop: log, retry
            log.exception("jwks refresh error source=%s", source_id)
            self._failed(st, f"{type(exc).__name__}: {exc}")
            return False
        now = self._clock()
        keys = keep_unchanged(st.keys, keys)     # cached tokens stay valid across refreshes
        st.keys, st.fetched_at, st.error, st.failures = keys, now, None, 0
        if self._metrics is not None:
            self._metrics.jwks_fetches.labels(source=source_id, result="ok").inc()
            self._metrics.jwks_keys.labels(source=source_id).set(len(keys))
            self._metrics.jwks_age.labels(source=source_id).set(0)
        self._changed.set()
        return True

    def _failed(self, st: _Source, reason: str) -> None:
        st.failures += 1
        st.error = reason
        j = st.cfg.jwks
        delay = min(j.retry_seconds * 2 ** min(st.failures - 1, 16),
                    max(j.retry_seconds, MAX_BACKOFF_SECONDS))
        st.next_attempt = self._clock() + delay
        if st.cfg.jwks_uri is None:
            st.url = None                        # rediscover next time
        log.warning("jwks fetch failed source=%s url=%s error=%s retry_in=%.1fs",
                    st.cfg.id, st.url or st.cfg.discovery_url, reason, delay)
        if self._metrics is not None:
            self._metrics.jwks_fetches.labels(source=st.cfg.id, result="error").inc()
            self._metrics.jwks_keys.labels(source=st.cfg.id).set(
                len(st.keys) if self._usable(st, self._clock()) else 0)
        self._changed.set()

    async def _shared_fetch(self, url: str, st: _Source) -> dict[str, Jwk]:
        fut = self._inflight.get(url)
        if fut is None:
            self._last_fetch[url] = self._clock()
            fut = asyncio.ensure_future(self._fetch_jwks(url, st))
            self._inflight[url] = fut
            fut.add_done_callback(lambda _f: self._inflight.pop(url, None))
        doc = await asyncio.shield(fut)
        keys, skipped = parse_jwks(doc)             # each source gets its own parsed keys
        for kid, reason in skipped:
            log.warning("jwks key skipped source=%s url=%s kid=%s reason=%s",
                        st.cfg.id, url, kid, reason)
        if not keys:
            raise FetchError("no usable keys in the key set")
        return keys

    async def _fetch_jwks(self, url: str, st: _Source) -> Any:
        doc = await self._get_json(url, st)
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise FetchError('not a JWK Set (expected {"keys": [...]})')
        return doc

    async def _discover(self, st: _Source) -> str:
        issuer = st.cfg.issuers[0]
        doc = await self._get_json(st.cfg.discovery_url, st)
        if not isinstance(doc, dict) or doc.get("issuer") != issuer:
            raise FetchError("discovery document issuer does not match the configured issuer")
        uri = doc.get("jwks_uri")
        if not isinstance(uri, str) or not _url_allowed(uri, st.cfg.allow_insecure_http):
            raise FetchError("discovery document has no acceptable (https) jwks_uri")
        return uri

    async def _get_json(self, url: str, st: _Source) -> Any:
        j = st.cfg.jwks
        if not _url_allowed(url, st.cfg.allow_insecure_http):
            raise FetchError("refusing a non-https URL (http only for loopback hosts)")
        limit = min(j.timeout_seconds, MAX_FETCH_SECONDS)
        try:
            async with asyncio.timeout(limit):
                body = await self._read(url, j.max_bytes, limit)
        except TimeoutError:
            raise FetchError(f"timed out after {limit:g}s") from None
        except FetchError:
            raise
        except Exception as exc:     # httpx errors, bad URLs: never fatal, always logged
            raise FetchError(f"{type(exc).__name__}: {exc}") from None
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise FetchError("response is not JSON") from None

    async def _read(self, url: str, max_bytes: int, limit: float) -> bytes:
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip, identity"}
        req = self._client.build_request("GET", url, headers=headers, timeout=httpx.Timeout(limit))
        resp = await self._client.send(req, stream=True, follow_redirects=False)
        try:
            if resp.status_code != 200:
                raise FetchError(f"HTTP {resp.status_code}")
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"response larger than {max_bytes} bytes")
            buf = bytearray()
            try:
                async for chunk in resp.aiter_raw():
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise FetchError(f"response larger than {max_bytes} bytes")
            except httpx.StreamConsumed:     # an in-memory response (mock transports)
                buf = bytearray(resp.content)
                if len(buf) > max_bytes:
                    raise FetchError(f"response larger than {max_bytes} bytes") from None
        finally:
            await resp.aclose()
        encoding = resp.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return bytes(buf)
        if encoding != "gzip":
            raise FetchError(f"unsupported content-encoding {encoding!r}")
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = d.decompress(bytes(buf), max_bytes + 1)
        except zlib.error:
            raise FetchError("bad gzip body") from None
        if len(out) > max_bytes or d.unconsumed_tail:
            raise FetchError(f"response larger than {max_bytes} bytes")
        return out
