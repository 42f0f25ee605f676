"""Browser sessions on the request path: the few calls the proxy/middleware make into this room.

``dispatch`` serves `/_poolgate/` (never forwarded); ``token`` turns the session cookie into
the access token the pipeline verifies (bearer and cookie together: 400); ``refusal`` turns a
missing-credentials 401 on a browser navigation into a 302 to sign-in; ``strip`` removes our
cookies before the request leaves the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import GatewayError, InvalidRequest, MissingToken
from .cookies import cookie_values, without_cookies
from .endpoints import PREFIX, SessionEndpoints, _send

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from ..principal import RequestFacts
    from .manager import SessionManager

Headers = list[tuple[bytes, bytes]]


class LoginRequired(MissingToken):
    """302 to `/_poolgate/login?rd=<path>`: a browser navigation with no session."""

    status = 302
    code = "login_required"

    def __init__(self, location: str) -> None:
        super().__init__("sign in first")
        self.extra_headers = [(b"location", location.encode("latin-1"))]

    def www_authenticate(self) -> str | None:
        return None


def reserved(scope: dict[str, Any]) -> bool:
    """`/_poolgate/` is reserved on every listener that runs the pipeline: never forwarded."""
    return scope["type"] == "http" and str(scope["path"]).startswith(PREFIX)


async def dispatch(gate: "SessionGate | None", scope: dict[str, Any], receive: Any,
                   send: Any) -> None:
    """Serve a reserved path: the session endpoints, or 404 when sessions are off."""
    if gate is None:
        await _send(send, 404, b"not found\n")
        return
    await gate.endpoints(scope, receive, send)


def carry_over(old: Any, new: Any) -> None:
    """Hot reload: a memory session store moves to the new engine (Redis needs nothing), so a
    reload signs nobody out. Sessions sealed with a key the new config dropped stay unreadable."""
    if old is None or new is None:
        return
    from .store import MemorySessionStore   # noqa: PLC0415
    if isinstance(old.manager.store, MemorySessionStore) and isinstance(new.manager.store,
                                                                         MemorySessionStore):
        new.manager.store = old.manager.store


class SessionGate:
    def __init__(self, manager: "SessionManager") -> None:
        self.manager = manager
        self.cfg = manager.cfg
        self.endpoints = SessionEndpoints(manager)
        self.names = frozenset({manager.cfg.cookie.name.encode(),
                                manager.cfg.prelogin_cookie.encode()})

    async def start(self) -> None:
        await self.manager.start()

    async def aclose(self) -> None:
        await self.manager.aclose()

    async def token(self, scope: dict[str, Any], facts: "RequestFacts",
                    pipeline: "Pipeline") -> str | None:
        """The session's (refreshed) access token when this route takes sessions, else None."""
        if scope["type"] != "http":
            return None
        headers: Headers = scope["headers"]
        try:
            route, _ = pipeline.route(facts.method, facts.path)
        except GatewayError:
            return None                         # the pipeline raises the same refusal
        if route.auth == "public":
            return None
        creds = route.credentials or ("bearer", "session")
        bearer = any(k.lower() == b"authorization" for k, _ in headers)
        if "session" not in creds:
            return None
        sid = self.endpoints.session_id(headers)
        if bearer:
            if sid is not None or cookie_values(headers, self.cfg.cookie.name):
                raise InvalidRequest("both a bearer token and a session cookie",
                                     code="multiple_authorization")
            if "bearer" not in creds:
                raise MissingToken(f"route {route.id} takes a browser session only",
                                   code="session_required")
            return None
        if sid is None:
            return None
        rec = await self.manager.current(sid)
        return rec.access if rec is not None else None

    async def token_for(self, headers: Headers) -> str | None:
        """The session's (refreshed) access token for a gateway-owned endpoint, which has no
        route (the AWS credentials endpoint): None without a session; with a bearer token too,
        400 ``multiple_authorization``, as on routes."""
        sid = self.endpoints.session_id(headers)
        if sid is None:
            return None
        if any(k.lower() == b"authorization" for k, _ in headers):
            raise InvalidRequest("both a bearer token and a session cookie",
                                 code="multiple_authorization")
        rec = await self.manager.current(sid)
        return rec.access if rec is not None else None

    def refusal(self, e: GatewayError, scope: dict[str, Any]) -> GatewayError:
        """A missing-credentials 401 on a GET navigation becomes a 302 to sign-in."""
        if (type(e) is not MissingToken or self.cfg.login_redirect != "html"
                or scope["type"] != "http" or scope["method"] not in ("GET", "HEAD")
                or not _navigation(scope["headers"])):
            return e
        path = scope.get("raw_path") or scope["path"].encode()
        target = path.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        r = LoginRequired(f"{PREFIX}login?rd={quote(target, safe='/')}")
        r.route = e.route
        return r

    def strip(self, headers: Headers) -> Headers:
        return without_cookies(headers, self.names)


def _navigation(headers: Headers) -> bool:
    """Sec-Fetch-Mode: navigate; without Sec-Fetch-Mode (old clients), Accept: text/html."""
    mode = accept = None
    for k, v in headers:
        k = k.lower()
        if k == b"sec-fetch-mode":
            mode = v
        elif k == b"accept":
            accept = v
    if mode is not None:
        return mode.strip().lower() == b"navigate"
    return accept is not None and b"text/html" in accept.lower()


__all__ = ["LoginRequired", "SessionGate", "carry_over", "dispatch", "reserved"]
