"""The admin listener: healthz, readyz, metrics, the credential JWKS and the revocations API.

None of these is served on the proxy listener. Only /revocations needs the admin token.
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .engine import Engine
from .revocation.api import revocations_endpoint
from .revocation.entries import entry_lifetime

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"


def build_admin_app(current: Callable[[], Engine]) -> Starlette:
    """``current`` returns the live engine (it changes on hot reload)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, detail = current().readiness()
        return JSONResponse(detail, status_code=200 if ok else 503,
                            headers=None if ok else {"Retry-After": "5"})

    async def metrics(request: Request) -> Response:
        return Response(current().metrics.exposition(), media_type=CONTENT_TYPE_METRICS)

    async def jwks(request: Request) -> Response:
        signer = current().signer
        keys = signer.public_jwks() if signer is not None else {"keys": []}
        return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"})

    handlers: dict[int, Any] = {}

    def handler_for(engine: Engine) -> Any:
        """Built once per engine (a reload makes a new one)."""
        handler = handlers.get(id(engine))
        if handler is None:
            cfg = engine.config
            skews = {iss: s.clock_skew_seconds for s in cfg.identity_sources for iss in s.issuers}
            top = max(skews.values(), default=60.0)
            handler = revocations_endpoint(
                lambda: engine.store, admin_token=cfg.admin.token, config=cfg.revocation,
                clock=engine.clock, skew=top, token_verifier=engine.verifier.verify_for_revocation,
                skew_for_token=lambda claims: skews.get(claims.get("iss"), top),
                max_token_lifetime=entry_lifetime(cfg.revocation.max_token_lifetime_seconds,
                                                  cfg.identity_sources))
            handlers.clear()
            handlers[id(engine)] = handler
        return handler

    async def revocations(request: Request) -> Response:
        return await handler_for(current())(request)

    async def sessions(request: Request) -> Response:   # DELETE /sessions?sub= (SESSIONS.md)
        from .sessions.endpoints import admin_end_sessions  # noqa: PLC0415
        engine = current()
        status, body = await admin_end_sessions(
            engine.sessions.manager if engine.sessions else None, engine.config.admin.token,
            request.scope["headers"], dict(request.query_params))
        return JSONResponse(body, status_code=status)

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("not found", status_code=404)

    return Starlette(routes=[
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET", "HEAD"]),
        Route("/revocations", revocations, methods=["GET", "POST", "DELETE"]),
        Route("/sessions", sessions, methods=["DELETE"]),
    ], exception_handlers={404: not_found})
