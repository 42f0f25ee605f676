"""The engine: every long-lived part built from one config, started and stopped together.

The proxy and the middleware both run on an ``Engine``; hot reload builds a new one and swaps.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import httpx

from .admissions import AdmissionCache
from .aws import AwsRoom
from .config import Config
from .forward.credential import CredentialSigner
from .forward.identity import IdentityHeaders
from .mapping import RoleMapper
from .logs import ensure_logging
from .metrics import Metrics
from .pipeline import Pipeline
from .policy import PolicyEngine
from .revocation import RevocationStore, build_store
from .routes import Router
from .verify import JwksManager, Verifier

log = logging.getLogger("poolgate")


class Engine:
    """Config -> router, verifier (+ JWKS), revocation store, mapper, policy, signer."""

    def __init__(self, config: Config, *, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time,
                 http_client: httpx.AsyncClient | None = None,
                 allow_generated_key: bool = True, middleware_mode: bool = False,
                 store: RevocationStore | None | str = "build",
                 signer: CredentialSigner | None = None) -> None:
        self.config = config
        self._middleware_mode = middleware_mode
        self.metrics = metrics if metrics is not None else Metrics()
        self.clock = clock
        self.router = Router(config.routes)
        self.jwks = JwksManager(config.identity_sources, client=http_client,
                                metrics=self.metrics)
        self.verifier = Verifier(config.identity_sources, self.jwks, clock=clock,
                                 metrics=self.metrics)
        self.store: RevocationStore | None = (
            build_store(config.revocation, clock=clock, metrics=self.metrics,
                        skew=_max_skew(config)) if store == "build" else store)  # type: ignore[assignment]
        self.mapper = RoleMapper(config)
        self.policy = PolicyEngine(config)
        self.signer = signer if signer is not None else (
            CredentialSigner(config.downstream_credential, clock=clock,
                             allow_generated=allow_generated_key)
            if config.downstream_credential.enabled and not middleware_mode else None)
        self.identity = IdentityHeaders(config.downstream_credential.identity_headers)
        # a credential served from an admission keeps at least half its refresh margin
        hold = self.signer.margin / 2 if self.signer is not None else 30.0
        self.admissions = AdmissionCache(config, hold_seconds=hold, clock=clock)
        mw = config.middleware
        self.pipeline = Pipeline(config, router=self.router, verifier=self.verifier,
                                 revocation=self.store, mapper=self.mapper, policy=self.policy,
                                 fallback_auth=mw.default if middleware_mode else None,
                                 fallback_service=mw.service if middleware_mode else None)
        self.sessions = None
        if config.sessions is not None:      # the sessions room (SESSIONS.md) and its OAuth
            from .sessions import build_sessions   # noqa: PLC0415 client load only when used
            self.sessions = build_sessions(self)
        self.aws = AwsRoom(config, clock=clock)     # AWS.md; inert without an aws: section
        self.started = False
        self.metrics.collect_hooks["revocation"] = self._store_gauge

    def _store_gauge(self) -> None:
        """``poolgate_revocation_store_up``, computed when /metrics is scraped."""
        if self.store is not None:
            self.metrics.revocation_up.labels(store=self.store.name).set(
                1 if self.store.healthy() else 0)

    async def start(self) -> None:
        """Start background work (JWKS prefetch/refresh, store connections). Never blocks on
        an unreachable IdP or store: readiness reports them instead."""
        if self.started:
            return
        self.started = True
        if self._middleware_mode:
            ensure_logging(self.config.logging.level)     # JSON under a plain `uvicorn app:app`
        await self.jwks.start()
        if self.store is not None:
            await self.store.start()
        if self.sessions is not None:
            await self.sessions.start()

    async def aclose(self) -> None:
        if not self.started:
            return
        self.started = False
        await self.jwks.aclose()
        if self.sessions is not None:
            await self.sessions.aclose()
        self.aws.close()
        if self.store is not None:
            await self.store.aclose()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every identity source has usable keys and the store answers."""
        jwks = self.jwks.status()
        store_ok = self.store.healthy() if self.store is not None else True
        # with on_error: allow a store outage must not take every replica out of the load
        # balancer at once (that would defeat the explicit opt-out); the body still says so
        ok = self.jwks.ready() and (store_ok or self.config.revocation.on_error == "allow")
        detail = {"ready": ok, "identity_sources": jwks,
                  "revocation": {"store": self.config.revocation.store, "healthy": store_ok}}
        return ok, detail


def _max_skew(config: Config) -> float:
    return max((s.clock_skew_seconds for s in config.identity_sources), default=60.0)
