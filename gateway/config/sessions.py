"""The `sessions:` section (browser sessions, SESSIONS.md): its typed form and its parser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from .reader import _Node, _check_url, is_loopback

CREDENTIALS = ("bearer", "session")
_COOKIE_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")   # an RFC 6265 token
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class ProviderConfig:
    """Where sign-in happens: a Cognito managed-login domain, or an OIDC discovery URL."""

    client_id: str
    cognito_domain: str | None = None
    discovery_url: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ("openid", "email", "profile")


@dataclass(frozen=True)
class CookieConfig:
    name: str = "__Host-poolgate"
    same_site: str = "lax"                 # lax | strict


@dataclass(frozen=True)
class SessionsConfig:
    identity_source: str
    provider: ProviderConfig
    public_url: str
    encryption_keys: tuple[bytes, ...] = field(repr=False)
    store: str = "memory"                  # memory | redis (revocation.redis settings)
    cookie: CookieConfig = CookieConfig()
    idle_timeout_seconds: int = 28800
    absolute_timeout_seconds: int | None = None   # None: the refresh token's own lifetime
    refresh_before_seconds: int = 120
    login_redirect: str = "html"           # html | never
    after_logout_url: str = "/"

    @property
    def redirect_uri(self) -> str:
        return self.public_url + "/_poolgate/callback"

    @property
    def logout_uri(self) -> str:
        """``after_logout_url`` made absolute against ``public_url``."""
        if self.after_logout_url.startswith("/"):
            return self.public_url + self.after_logout_url
        return self.after_logout_url

    @property
    def prelogin_cookie(self) -> str:
        return self.cookie.name + "-login"


def parse_sessions(root: _Node) -> SessionsConfig | None:
    """``sessions:`` (absent or null: browser sessions are off)."""
    raw = root.raw("sessions", None)
    if raw is None:
        return None
    n = _Node(raw, root.sub("sessions"))
    public_url = _public_url(n)
    cfg = SessionsConfig(
        identity_source=n.str("identity_source"), provider=_provider(n.node("provider",
                                                                            required=True)),
        public_url=public_url, encryption_keys=_keys(n),
        store=n.str("store", "memory", choices=("memory", "redis")),
        cookie=_cookie(n.node("cookie")),
        idle_timeout_seconds=n.int("idle_timeout_seconds", 28800, lo=60, hi=366 * 86400),
        absolute_timeout_seconds=n.int("absolute_timeout_seconds", None, lo=60,
                                       hi=10 * 366 * 86400),
        refresh_before_seconds=n.int("refresh_before_seconds", 120, lo=0, hi=3600),
        login_redirect=n.str("login_redirect", "html", choices=("html", "never")),
        after_logout_url=_after_logout(n))
    n.done()
    return cfg


def _public_url(n: _Node) -> str:
    url = n.str("public_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(n.sub("public_url"), f"must be an absolute http(s) origin (got {url!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(n.sub("public_url"), "must be an origin only (scheme://host[:port]): "
                                               "the endpoints live under /_poolgate/")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(n.sub("public_url"), "must use https (http:// is accepted only for a "
                                               "loopback host)")
    return f"{parts.scheme}://{parts.netloc}"


def _provider(n: _Node) -> ProviderConfig:
    domain = n.str("cognito_domain", None)
    discovery = n.str("discovery_url", None)
    if (domain is None) == (discovery is None):
        raise ConfigError(n.path, "set exactly one of cognito_domain (managed login) or "
                                  "discovery_url (generic OIDC)")
    if domain is not None:
        _check_url(domain, n.sub("cognito_domain"), allow_http=False, what="cognito_domain")
        parts = urlsplit(domain)
        if parts.path not in ("", "/") or parts.query:
            raise ConfigError(n.sub("cognito_domain"), "must be the domain's origin only "
                                                       "(https://<prefix>.auth.<region>.amazoncognito.com)")
        domain = f"{parts.scheme}://{parts.netloc}"
    if discovery is not None:
        _check_url(discovery, n.sub("discovery_url"), allow_http=False, what="discovery_url")
    scopes = n.strs("scopes", ("openid", "email", "profile"), nonempty=True)
    if "openid" not in scopes:
        raise ConfigError(n.sub("scopes"), "must include openid (the id token carries the nonce)")
    cfg = ProviderConfig(client_id=n.str("client_id"), cognito_domain=domain,
                         discovery_url=discovery,
                         client_secret=n.str("client_secret", None, nonempty=False) or None,
                         scopes=tuple(scopes))
    n.done()
    return cfg


def _keys(n: _Node) -> tuple[bytes, ...]:
    raw = n.strs("encryption_keys", nonempty=True)
    out = []
    for i, k in enumerate(raw):
        b = k.encode("utf-8")
        if len(b) < MIN_KEY_BYTES:
            raise ConfigError(f"{n.sub('encryption_keys')}[{i}]",
                              f"must be at least {MIN_KEY_BYTES} bytes (generate one: python -c "
                              "'import secrets; print(secrets.token_urlsafe(32))')")
        out.append(b)
    if len(set(out)) != len(out):
        raise ConfigError(n.sub("encryption_keys"), "keys must be distinct")
    return tuple(out)


def _cookie(n: _Node) -> CookieConfig:
    name = n.str("name", "__Host-poolgate")
    path = n.sub("name")
    if not _COOKIE_NAME.match(name):
        raise ConfigError(path, f"{name!r} is not a cookie name (RFC 6265 token, <= 64 chars)")
    low = name.lower()
    if low.startswith("__host-") and not name.startswith("__Host-") or \
            low.startswith("__secure-") and not name.startswith("__Secure-"):
        raise ConfigError(path, "write the prefix exactly __Host- or __Secure- (browsers "
                                "treat a mis-cased prefix inconsistently)")
    if name.startswith("__") and not name.startswith(("__Host-", "__Secure-")):
        raise ConfigError(path, "the only cookie-name prefixes are __Host- and __Secure-")
    if name in ("__Host-", "__Secure-"):
        raise ConfigError(path, "needs a name after the prefix")
    cfg = CookieConfig(name=name, same_site=n.str("same_site", "lax", choices=("lax", "strict")))
    n.done()
    return cfg


def _after_logout(n: _Node) -> str:
    url = n.str("after_logout_url", "/")
    if url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    _check_url(url, n.sub("after_logout_url"), allow_http=False, what="after_logout_url")
    return url


def check_sessions(cfg: Any) -> None:
    """Cross-references: the identity source exists; session routes need a sessions section."""
    s: SessionsConfig | None = cfg.sessions
    for i, r in enumerate(cfg.routes):
        creds = getattr(r, "credentials", None)
        if creds is not None and "session" in creds and s is None:
            raise ConfigError(f"routes[{i}].credentials", "session needs a sessions: section")
    if s is None:
        return
    ids = [src.id for src in cfg.identity_sources]
    if s.identity_source not in ids:
        raise ConfigError("sessions.identity_source",
                          f"no identity source {s.identity_source!r} (defined: "
                          f"{', '.join(ids) or 'none'})")
    if s.store == "redis" and cfg.revocation.store != "redis":
        raise ConfigError("sessions.store", "redis uses the revocation.redis settings: set "
                                            "revocation.store: redis too")
    source = cfg.source_by_id(s.identity_source)
    if source.client_ids and s.provider.client_id not in (source.client_ids or ()):
        raise ConfigError("sessions.provider.client_id",
                          f"must be one of identity_sources[{ids.index(s.identity_source)}]"
                          ".client_ids (the session's access tokens carry it)")
