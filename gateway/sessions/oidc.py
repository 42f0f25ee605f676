"""The OAuth 2.0 / OIDC client (authlib): authorization URL (PKCE S256 + state + nonce), code
exchange, refresh, revocation, id-token checks, and the provider's endpoints (Cognito's are
derived from the managed-login domain; a generic provider's come from discovery)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

import warnings

import authlib.deprecate  # noqa: F401 (installs its own "always" filter; ours must come after)
import httpx

with warnings.catch_warnings():     # authlib 1.9 prefers `httpx2`; plain httpx is what we ship
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc.errors import JoseError

from ..config.sessions import SessionsConfig
from ..errors import GatewayError
from ..verify.token import check_header, parse_json_object, split_compact, verify_signature

TIMEOUT = 5.0


class ProviderDown(Exception):
    """The provider could not be reached or answered garbage: the session is kept."""


class GrantRefused(Exception):
    """The provider refused a grant (``invalid_grant``: code reused, verifier wrong, refresh
    token revoked or expired)."""

    def __init__(self, error: str, description: str = "") -> None:
        self.error = error
        super().__init__(f"{error}: {description}" if description else error)


class IdTokenRejected(Exception):
    """The id token failed its checks (signature, iss, aud, nonce, exp)."""


@dataclass(frozen=True)
class Endpoints:
    authorize: str
    token: str
    revoke: str | None
    logout: str | None            # Cognito /logout or OIDC end_session_endpoint
    cognito: bool


def cognito_endpoints(domain: str) -> Endpoints:
    return Endpoints(authorize=f"{domain}/oauth2/authorize", token=f"{domain}/oauth2/token",
                     revoke=f"{domain}/oauth2/revoke", logout=f"{domain}/logout", cognito=True)


class OidcClient:
    """One authlib client (it is an httpx.AsyncClient) for every session of this gateway."""

    def __init__(self, cfg: SessionsConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        p = cfg.provider
        self._clock = clock
        self.endpoints: Endpoints | None = (cognito_endpoints(p.cognito_domain)
                                            if p.cognito_domain else None)
        kw: dict[str, Any] = {"timeout": TIMEOUT, "follow_redirects": False}
        if transport is not None:
            kw["transport"] = transport
        self.client = AsyncOAuth2Client(
            client_id=p.client_id, client_secret=p.client_secret,
            token_endpoint_auth_method="client_secret_basic" if p.client_secret else "none",
            revocation_endpoint_auth_method="client_secret_basic" if p.client_secret else "none",
            redirect_uri=cfg.redirect_uri, code_challenge_method="S256", **kw)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def discover(self) -> Endpoints:
        """The endpoints (a generic provider's discovery document is fetched once)."""
        if self.endpoints is not None:
            return self.endpoints
        url = self.cfg.provider.discovery_url
        assert url is not None
        try:
            r = await self.client.request("GET", url, withhold_token=True)
            doc = r.json()
            self.endpoints = Endpoints(authorize=doc["authorization_endpoint"],
                                       token=doc["token_endpoint"],
                                       revoke=doc.get("revocation_endpoint"),
                                       logout=doc.get("end_session_endpoint"), cognito=False)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            raise ProviderDown(f"discovery failed: {type(e).__name__}") from None
        return self.endpoints

    async def authorization_url(self, state: str, verifier: str, nonce: str) -> str:
        ep = await self.discover()
        url, _ = self.client.create_authorization_url(
            ep.authorize, state=state, code_verifier=verifier, nonce=nonce,
            scope=" ".join(self.cfg.provider.scopes))
        return str(url)

    async def exchange(self, code: str, verifier: str) -> dict[str, Any]:
        ep = await self.discover()
        return await self._token(ep.token, grant_type="authorization_code", code=code,
                                 code_verifier=verifier, redirect_uri=self.cfg.redirect_uri)

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        ep = await self.discover()
        return await self._token(ep.token, grant_type="refresh_token",
                                 refresh_token=refresh_token)

    async def _token(self, url: str, **kw: Any) -> dict[str, Any]:
        try:
            token = await self.client.fetch_token(url, **kw)
        except OAuthError as e:
            raise GrantRefused(e.error or "invalid_grant", e.description or "") from None
        except (httpx.HTTPError, ValueError) as e:     # unreachable, timeout, not JSON (a 5xx)
            raise ProviderDown(f"token endpoint: {type(e).__name__}") from None
        if not isinstance(token, Mapping) or not isinstance(token.get("access_token"), str):
            raise ProviderDown("token endpoint answered without an access_token")
        return dict(token)

    async def revoke(self, refresh_token: str) -> bool:
        """RFC 7009 revocation of the refresh token (and, at Cognito, its token family)."""
        ep = await self.discover()
        if ep.revoke is None:
            return False
        try:
            r = await self.client.revoke_token(ep.revoke, token=refresh_token,
                                               token_type_hint="refresh_token")
        except httpx.HTTPError:
            return False
        return bool(r.status_code == 200)

    def logout_url(self) -> str | None:
        """Cognito: ``/logout?client_id=..&logout_uri=..`` (built here: authlib has no
        ``logout_uri``); generic OIDC: ``end_session_endpoint`` with the post-logout URI."""
        ep = self.endpoints
        if ep is None or ep.logout is None:
            return None
        if ep.cognito:
            q = {"client_id": self.cfg.provider.client_id, "logout_uri": self.cfg.logout_uri}
        else:
            q = {"client_id": self.cfg.provider.client_id,
                 "post_logout_redirect_uri": self.cfg.logout_uri}
        return f"{ep.logout}{'&' if '?' in ep.logout else '?'}{urlencode(q)}"


async def check_id_token(id_token: str, *, nonce: str, issuers: tuple[str, ...],
                         client_id: str, get_key: Any, algorithms: tuple[str, ...],
                         source_id: str, now: float, leeway: float) -> dict[str, Any]:
    """Signature with the identity source's keys, then iss/aud/exp/nonce (authlib's rules)."""
    try:
        jws = split_compact(id_token)
        alg, kid = check_header(jws.header, frozenset(algorithms))
        key = await get_key(source_id, kid, alg)
        verify_signature(alg, key, jws.signing_input, jws.signature)
        claims = parse_json_object(jws.payload)
    except GatewayError as e:
        raise IdTokenRejected(f"id token: {e.code}") from None
    options: dict[str, Any] = {"iss": {"essential": True, "values": list(issuers)},
                               "aud": {"essential": True, "value": client_id}}
    try:
        CodeIDToken(claims, jws.header, options, {"nonce": nonce}).validate(now=int(now),
                                                                           leeway=int(leeway))
    except JoseError as e:
        raise IdTokenRejected(f"id token: {e.error}") from None
    if claims.get("token_use", "id") != "id":
        raise IdTokenRejected("id token: token_use is not id")
    return claims
