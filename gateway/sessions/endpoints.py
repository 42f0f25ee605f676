"""The `/_poolgate/` endpoints (login, callback, logout, session) as one pure-ASGI app, and the
admin `DELETE /sessions?sub=` handler. Refusals are short text, never a redirect."""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ..errors import GatewayError
from . import prelogin
from .cookies import clear_cookie, cookie_values, set_cookie
from .manager import LoginRefused

if TYPE_CHECKING:
    from .manager import SessionManager

log = logging.getLogger("poolgate.sessions")
PREFIX = "/_poolgate/"
Headers = list[tuple[bytes, bytes]]


def _query(scope: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                          keep_blank_values=True):
        out.setdefault(k, v)           # the first value wins; later duplicates are ignored
    return out


def _header(headers: Headers, name: bytes) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return None


async def _send(send: Any, status: int, body: bytes = b"", *, ctype: bytes = b"text/plain; "
                b"charset=utf-8", extra: Headers = ()) -> None:  # type: ignore[assignment]
    headers = [(b"content-type", ctype), (b"cache-control", b"no-store"),
               (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SessionEndpoints:
    """``GET login``, ``GET callback``, ``POST logout``, ``GET session`` under ``/_poolgate/``."""

    def __init__(self, manager: "SessionManager") -> None:
        self.m = manager
        self.cfg = manager.cfg
        self.origin = manager.cfg.public_url

    def session_id(self, headers: Headers) -> str | None:
        values = cookie_values(headers, self.cfg.cookie.name)
        return values[0] if values and 20 <= len(values[0]) <= 64 else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path, method = scope["path"], scope["method"]
        handler = {("login", "GET"): self.login, ("callback", "GET"): self.callback,
                   ("logout", "POST"): self.logout, ("session", "GET"): self.session,
                   }.get((path[len(PREFIX):], method))
        if handler is None:
            known = path[len(PREFIX):] in ("login", "callback", "logout", "session")
            await _send(send, 405 if known else 404,
                        b"method not allowed\n" if known else b"not found\n")
            return
        try:
            await handler(scope, send)
        except LoginRefused as e:
            log.info("sign-in refused: %s", e.code)
            await _send(send, e.status, f"sign-in refused ({e.code}): {e.text}\n".encode())
        except GatewayError as e:
            await _send(send, e.status, f"{e.code}: {e.description}\n".encode(),
                        extra=[(b"retry-after", str(e.retry_after).encode())]
                        if e.retry_after else [])

    async def login(self, scope: dict[str, Any], send: Any) -> None:
        rd = prelogin.safe_return_path(_query(scope).get("rd"))
        if rd is None:
            raise LoginRefused(400, "bad_rd", "rd must be a path on this site (like /app)")
        old = cookie_values(scope["headers"], self.cfg.prelogin_cookie)
        url, value = await self.m.begin(rd, old[0] if old else None)
        await _send(send, 302, extra=[
            (b"location", url.encode("latin-1")),
            (b"set-cookie", set_cookie(self.cfg.prelogin_cookie, value, same_site="lax",
                                       max_age=prelogin.MAX_AGE))])

    async def callback(self, scope: dict[str, Any], send: Any) -> None:
        old = cookie_values(scope["headers"], self.cfg.prelogin_cookie)
        sid, rd, rest = await self.m.finish(_query(scope), old[0] if old else None)
        previous = self.session_id(scope["headers"])
        if previous is not None:          # signing in again replaces this browser's session
            try:
                await self.m.end(previous)
            except GatewayError:
                log.warning("could not end the replaced session")
        pre = (set_cookie(self.cfg.prelogin_cookie, rest, same_site="lax",
                          max_age=prelogin.MAX_AGE) if rest
               else clear_cookie(self.cfg.prelogin_cookie, same_site="lax"))
        await _send(send, 302, extra=[
            (b"location", rd.encode("latin-1")),
            (b"set-cookie", set_cookie(self.cfg.cookie.name, sid,
                                       same_site=self.cfg.cookie.same_site)),
            (b"set-cookie", pre)])

    def _same_origin(self, headers: Headers) -> bool:
        origin = _header(headers, b"origin")
        if origin is not None and origin != "null":
            return hmac.compare_digest(origin.rstrip("/"), self.origin)
        site = _header(headers, b"sec-fetch-site")
        if site is not None:
            return site == "same-origin"
        referer = _header(headers, b"referer")
        if referer is not None:
            p = urlsplit(referer)
            return f"{p.scheme}://{p.netloc}" == self.origin
        return False

    async def logout(self, scope: dict[str, Any], send: Any) -> None:
        if not self._same_origin(scope["headers"]):
            await _send(send, 403, b"sign-out refused (csrf): not a same-origin request\n")
            return
        sid = self.session_id(scope["headers"])
        if sid is not None:
            await self.m.end(sid)
        target = self.m.oidc.logout_url() or self.cfg.logout_uri
        await _send(send, 302, extra=[
            (b"location", target.encode("latin-1")),
            (b"set-cookie", clear_cookie(self.cfg.cookie.name,
                                         same_site=self.cfg.cookie.same_site))])

    async def session(self, scope: dict[str, Any], send: Any) -> None:
        sid = self.session_id(scope["headers"])
        rec = await self.m.current(sid) if sid is not None else None
        if rec is None:
            await _send(send, 401, b'{"error":"no_session"}', ctype=b"application/json")
            return
        body = {"sub": rec.sub, "role": rec.role,
                "expires_at": (int(rec.abs_exp) if self.cfg.absolute_timeout_seconds
                               else None),
                "idle_expires_at": int(rec.last_seen + self.cfg.idle_timeout_seconds)}
        await _send(send, 200, json.dumps(body).encode(), ctype=b"application/json")


async def admin_end_sessions(manager: "SessionManager | None", admin_token: str | None,
                             headers: Headers, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """``DELETE /sessions?sub=S`` (admin token): (status, JSON body)."""
    auth = _header(headers, b"authorization") or ""
    scheme, _, given = auth.partition(" ")
    if not admin_token or scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), admin_token.encode()):
        return 401, {"error": "unauthorized", "error_description": "admin token required"}
    if manager is None:
        return 409, {"error": "conflict", "error_description": "sessions are not configured"}
    sub = query.get("sub")
    if not sub or set(query) != {"sub"} or len(sub) > 256:
        return 400, {"error": "invalid_request", "error_description": "give exactly ?sub=<sub>"}
    try:
        ended = await manager.end_all(sub)
    except GatewayError as e:
        return e.status, {"error": e.error, "reason": e.code}
    return 200, {"ended": ended}
