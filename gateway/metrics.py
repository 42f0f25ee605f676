"""The Prometheus metrics catalogue: one object per gateway, injected, never a module global.

Each gateway owns its registry so that two gateways in one process (tests, the demo) do not
collide; under ``serve --workers N`` the admin endpoint collects all workers through
prometheus-client's multiprocess mode instead (PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from typing import Any, Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
FLUSH_SECONDS = 0.25              # batched request observations reach the metrics this late at most


class Metrics:
    """All of poolgate's metrics (see README "Metrics")."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        # name -> callable that sets gauges to their current value: run on every scrape, so a
        # gauge is true when collected (not when some other code path last touched it)
        self.collect_hooks: dict[str, Callable[[], None]] = {}
        self.requests = Counter("poolgate_requests_total", "Requests answered, by route and status",
                                ["route", "method", "status"], registry=r)
        self.decisions = Counter("poolgate_decisions_total",
                                 "Authorization decisions by outcome and stable reason code",
                                 ["decision", "code"], registry=r)
        self.request_seconds = Histogram("poolgate_request_duration_seconds",
                                         "Time from request to response start, by route",
                                         ["route"], buckets=_LATENCY, registry=r)
        self.upstream_seconds = Histogram("poolgate_upstream_duration_seconds",
                                          "Upstream time to response headers", ["upstream"],
                                          buckets=_LATENCY, registry=r)
        self.upstream_errors = Counter("poolgate_upstream_errors_total",
                                       "Upstream connect errors and timeouts",
                                       ["upstream", "code"], registry=r)
        self.jwks_fetches = Counter("poolgate_jwks_fetches_total", "JWKS fetches by result",
                                    ["source", "result"], registry=r)
        self.jwks_keys = Gauge("poolgate_jwks_keys", "Usable keys loaded per identity source",
                               ["source"], registry=r, multiprocess_mode="max")
        self.jwks_age = Gauge("poolgate_jwks_key_age_seconds",
                              "Seconds since the key set was last fetched successfully",
                              ["source"], registry=r, multiprocess_mode="max")
        self.token_cache = Counter("poolgate_token_cache_total", "Verified-token cache lookups",
                                   ["result"], registry=r)
        self.revocation_lookups = Counter("poolgate_revocation_lookups_total",
                                          "Revocation lookups by result (hit = revoked)",
                                          ["result"], registry=r)
        self.revocation_errors = Counter("poolgate_revocation_errors_total",
                                         "Revocation store errors", ["store"], registry=r)
        self.revocation_seconds = Histogram("poolgate_revocation_lookup_seconds",
                                            "Revocation lookup latency", ["source"],
                                            buckets=_LATENCY, registry=r)
        self.credentials_signed = Counter("poolgate_credentials_signed_total",
                                          "Downstream credentials signed (cache misses)",
                                          ["upstream"], registry=r)
        self.reloads = Counter("poolgate_config_reloads_total", "Config reloads by result",
                               ["result"], registry=r)
        self.jwks_max_stale = Gauge("poolgate_jwks_max_stale_seconds",
                                    "Configured jwks.max_stale_seconds per identity source "
                                    "(keys older than this are not used)", ["source"],
                                    registry=r, multiprocess_mode="max")
        self.revocation_up = Gauge("poolgate_revocation_store_up",
                                   "1 while the revocation store answers, else 0 "
                                   "(absent with store: none)", ["store"], registry=r,
                                   multiprocess_mode="min")

        # per-request observations, summed here and applied to the metrics in batches
        self._pending: dict[tuple[str, str, str, str, str], list[Any]] = {}
        self._counts: dict[Any, int] = {}                 # counter child -> increments
        self._observed: dict[Any, list[Any]] = {}         # histogram child -> tally
        self._flush_handle: asyncio.TimerHandle | None = None

    def request_done(self, route: str, method: str, status: str, decision: str, code: str,
                     seconds: float) -> None:
        """One answered request: ``requests``, ``decisions`` and ``request_seconds``, batched.

        A dict update per request instead of three metric updates (each takes a lock and
        several calls in prometheus-client); applied at most FLUSH_SECONDS later, and before
        every scrape."""
        key = (route, method, status, decision, code)
        tally = self._pending.get(key)
        if tally is None:
            tally = self._pending[key] = [0, 0.0, [0] * (len(_LATENCY) + 1)]
        tally[0] += 1
        tally[1] += seconds
        tally[2][bisect_left(_LATENCY, seconds)] += 1
        if self._flush_handle is None:
            self._schedule_flush()

    def count(self, child: Any) -> None:
        """``child.inc()``, batched like ``request_done`` (a dict update, not a locked metric
        update): for counters touched on every request, e.g. the token cache's hits."""
        counts = self._counts
        counts[child] = counts.get(child, 0) + 1
        if self._flush_handle is None:
            self._schedule_flush()

    def observe(self, child: Any, seconds: float) -> None:
        """``child.observe(seconds)`` for a histogram child with the latency buckets, batched."""
        tally = self._observed.get(child)
        if tally is None:
            tally = self._observed[child] = [0.0, [0] * (len(_LATENCY) + 1)]
        tally[0] += seconds
        tally[1][bisect_left(_LATENCY, seconds)] += 1
        if self._flush_handle is None:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_handle = loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Apply the pending request observations (the scrape calls this first)."""
        self._flush_handle = None
        counts, self._counts = self._counts, {}
        for child, n in counts.items():
            child.inc(n)
        observed, self._observed = self._observed, {}
        for hist, (total, buckets) in observed.items():
            _apply(hist, total, buckets)
        pending, self._pending = self._pending, {}
        for (route, method, status, decision, code), (n, total, buckets) in pending.items():
            self.child(self.requests, route, method, status).inc(n)
            self.child(self.decisions, decision, code).inc(n)
            _apply(self.child(self.request_seconds, route), total, buckets)

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, cached: labels() costs microseconds on every request.
        Label values are bounded by config (routes, codes, upstreams) and normalised methods."""
        key = (id(metric), values)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*values)
        return c

    def refresh(self) -> None:
        """Bring every computed gauge up to date (the collect hooks)."""
        for hook in list(self.collect_hooks.values()):
            hook()

    def exposition(self) -> bytes:
        """The text exposition, gauges computed now; all workers' values when running
        multiprocess (each worker's gauges as of its last scrape or change, ``max`` wins)."""
        self.flush()
        self.refresh()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
            return generate_latest(reg)
        return generate_latest(self.registry)


def _apply(hist: Any, total: float, buckets: list[int]) -> None:
    """Add a tally (sum, per-bucket counts for _LATENCY and +Inf) to a histogram child."""
    hist._sum.inc(total)
    for i, count in enumerate(buckets):
        if count:
            hist._buckets[i].inc(count)
