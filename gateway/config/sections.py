"""One function per config section: a ``_Node`` in, a frozen dataclass out."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit


from ..errors import ConfigError
from ..redact import mask_url
from ..patterns import PathPattern, PatternError
from .reader import (_MISSING, _Node, _check_id, _check_url, quote_userinfo)
from .schema import (
    ALLOWED_ALGS, AUTH_MODES, AdminConfig, COGNITO_POOL, CredentialConfig, IdentitySource,
    JwksSettings, ListenConfig, ListenLimits, LoggingConfig, MiddlewareConfig, RedisConfig, RevocationConfig,
    Route, SigningKey, TlsConfig, Upstream, _HEADER, _METHOD,
)
from .sessions import CREDENTIALS
from .access import _mapping, _statements, condition_operator_base  # noqa: F401

# --------------------------------------------------------------------------- sections

def _listen(n: _Node) -> ListenConfig:
    proxies = []
    for i, p in enumerate(n.strs("trusted_proxies", ())):
        try:
            proxies.append(ipaddress.ip_network(p, strict=False))
        except ValueError:
            raise ConfigError(f"{n.sub('trusted_proxies')}[{i}]",
                              f"{p!r} is not an IP address or CIDR network")
    tls_n = n.node("tls")
    tls = TlsConfig(tls_n.str("cert_file", None), tls_n.str("key_file", None))
    tls_n.done()
    if (tls.cert_file is None) != (tls.key_file is None):
        raise ConfigError(tls_n.path, "set both cert_file and key_file, or neither")
    cfg = ListenConfig(
        host=n.str("host", "0.0.0.0"), port=n.int("port", 8080, lo=0, hi=65535),
        trusted_proxies=tuple(proxies), tls=tls,
        grace_seconds=n.num("grace_seconds", 30.0, lo=0, hi=3600),
        drain_delay_seconds=n.num("drain_delay_seconds", 0.0, lo=0, hi=600),
        max_body_bytes=n.int("max_body_bytes", None, lo=0),
        limits=_limits(n.node("limits")))
    n.done()
    return cfg


def _limits(n: _Node) -> ListenLimits:
    cfg = ListenLimits(
        max_request_line_bytes=n.int("max_request_line_bytes", 8192, lo=256, hi=1 << 20),
        max_header_bytes=n.int("max_header_bytes", 32768, lo=1024, hi=1 << 22),
        max_headers=n.int("max_headers", 100, lo=8, hi=10000),
        header_timeout_seconds=n.num("header_timeout_seconds", 10.0, lo=0.1, hi=3600),
        keepalive_timeout_seconds=n.num("keepalive_timeout_seconds", 15.0, lo=0.1, hi=3600),
        body_timeout_seconds=n.num("body_timeout_seconds", 30.0, lo=0.1, hi=3600),
        buffer_body_bytes=n.int("buffer_body_bytes", 65536, lo=0, hi=1 << 26),
        min_body_rate_bytes_per_second=n.int("min_body_rate_bytes_per_second", 1024, lo=0),
        max_connections=n.int("max_connections", 10000, lo=1, hi=1 << 20))
    n.done()
    return cfg


def _admin(n: _Node) -> AdminConfig:
    token = n.str("token", None, nonempty=False) or None
    if token is not None and len(token) < 16:
        raise ConfigError(n.sub("token"), "must be at least 16 characters "
                                          "(generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    cfg = AdminConfig(host=n.str("host", "127.0.0.1"), port=n.int("port", 9901, lo=0, hi=65535),
                      token=token, max_connections=n.int("max_connections", 256, lo=1,
                                                         hi=1 << 20))
    n.done()
    return cfg


def _jwks(n: _Node) -> JwksSettings:
    cfg = JwksSettings(
        refresh_seconds=n.num("refresh_seconds", 300, lo=1, hi=86400),
        unknown_kid_cooldown_seconds=n.num("unknown_kid_cooldown_seconds", 5, lo=0, hi=10),
        timeout_seconds=n.num("timeout_seconds", 3, lo=0.1, hi=5),
        max_bytes=n.int("max_bytes", 65536, lo=1024, hi=4 * 1024 * 1024),
        max_stale_seconds=n.num("max_stale_seconds", 3600, lo=0, hi=7 * 86400),
        retry_seconds=n.num("retry_seconds", 5, lo=0.1, hi=300))
    n.done()
    return cfg


def _any_or_list(n: _Node, key: str) -> tuple[str, ...] | None:
    value = n.raw(key, [])
    if value == "any":
        return None
    if isinstance(value, str):
        raise ConfigError(n.sub(key), "expected a list of strings, or the explicit opt-out `any`")
    return tuple(n.strs(key, ()))


def _identity_source(n: _Node) -> IdentitySource:
    sid = _check_id(n.str("id"), n.sub("id"))
    allow_http = n.bool("allow_insecure_http", False)
    jwks_uri = n.str("jwks_uri", None)
    cognito = n.raw("cognito", None)
    region = pool = None
    if cognito is not None:
        cn = _Node(cognito, n.sub("cognito"))
        region = cn.str("region")
        pool = cn.str("user_pool_id")
        cn.done()
        m = COGNITO_POOL.match(pool)
        if not m:
            raise ConfigError(cn.sub("user_pool_id"), f"{pool!r} is not a user pool id "
                                                      "(like eu-west-1_AbCdEf123)")
        if m.group("region") != region:
            raise ConfigError(cn.sub("region"), f"does not match the pool id's region "
                                                f"{m.group('region')!r}")
        if "issuer" in n.data:
            raise ConfigError(n.sub("issuer"), "set either cognito or issuer, not both "
                                               "(the cognito shorthand derives the issuer)")
        issuers = (f"https://cognito-idp.{region}.amazonaws.com/{pool}",
                   f"https://issuer-cognito-idp.{region}.amazonaws.com/{pool}")
        if jwks_uri is None:
            jwks_uri = f"{issuers[0]}/.well-known/jwks.json"
        token_use = n.strs("token_use", ("access",), nonempty=True, choices=("access", "id"))
        client_ids = _any_or_list(n, "client_ids")
        if client_ids == ():
            raise ConfigError(n.sub("client_ids"), "list the app client ids whose tokens are "
                                                   "accepted, or write `client_ids: any` to skip "
                                                   "the check explicitly")
        audiences = n.strs("audiences", ())
    else:
        issuer = n.str("issuer", None)
        if issuer is None:
            raise ConfigError(n.sub("issuer"), "is required (or use the cognito: {region, "
                                               "user_pool_id} shorthand)")
        _check_url(issuer, n.sub("issuer"), allow_http=True, what="issuer")
        issuers = (issuer,)
        if "token_use" in n.data:
            raise ConfigError(n.sub("token_use"), "applies to cognito sources only")
        n.seen.add("token_use")
        token_use = ()
        client_ids = tuple(n.strs("client_ids", ()))
        audiences = _any_or_list(n, "audiences")
        if audiences == ():
            raise ConfigError(n.sub("audiences"), "a generic OIDC source needs a non-empty "
                                                  "audiences list, or the explicit `audiences: any`")
        if jwks_uri is None:
            _check_url(issuer, n.sub("issuer"), allow_http=allow_http, what="issuer (for discovery)")
    if jwks_uri is not None:
        _check_url(jwks_uri, n.sub("jwks_uri"), allow_http=allow_http, what="jwks_uri")
    algs = n.strs("algorithms", ("RS256",), nonempty=True)
    for i, a in enumerate(algs):
        if a not in ALLOWED_ALGS:
            raise ConfigError(f"{n.sub('algorithms')}[{i}]",
                              f"{a!r} is not allowed (asymmetric only: {', '.join(ALLOWED_ALGS)}; "
                              "none and HMAC algorithms are never accepted)")
    types = n.strs("token_types", None)
    cfg = IdentitySource(
        id=sid, issuers=issuers, jwks_uri=jwks_uri, cognito=cognito is not None,
        region=region, user_pool_id=pool, client_ids=client_ids, token_use=tuple(token_use),
        audiences=audiences, algorithms=tuple(algs),
        clock_skew_seconds=n.num("clock_skew_seconds", 60, lo=0, hi=600),
        jwks=_jwks(n.node("jwks")), allow_insecure_http=allow_http,
        token_types=tuple(t.lower() for t in types) if types is not None else None,
        max_token_bytes=n.int("max_token_bytes", 8192, lo=256, hi=65536),
        max_token_lifetime_seconds=n.int("max_token_lifetime_seconds", 86400, lo=60,
                                         hi=10 * 365 * 86400))
    n.done()
    return cfg


def _upstream(uid: str, value: Any, path: str) -> Upstream:
    n = _Node(value, path)
    url = n.str("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(n.sub("url"), f"must be an absolute http(s) URL (got "
                                        f"{mask_url(url)!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(n.sub("url"), "carries no path, query or fragment in v1: the "
                                        "normalised request path is forwarded unchanged")
    up = Upstream(id=uid, url=f"{parts.scheme}://{parts.netloc}",
                  timeout_seconds=n.num("timeout_seconds", 30, lo=0.01, hi=3600),
                  idle_timeout_seconds=n.num("idle_timeout_seconds", 60, lo=0.01, hi=86400),
                  max_connections=n.int("max_connections", 1024, lo=1, hi=1 << 20))
    n.done()
    return up


def _route(n: _Node, index: int) -> Route:
    rid = _check_id(n.str("id", f"route-{index}"), n.sub("id"))
    m = n.node("match", required=True)
    try:
        path = PathPattern.compile(m.str("path"))
    except PatternError as e:
        raise ConfigError(m.sub("path"), str(e))
    methods = m.strs("methods", None, nonempty=True)
    if methods is not None:
        for i, meth in enumerate(methods):
            if not _METHOD.match(meth.upper()):
                raise ConfigError(f"{m.sub('methods')}[{i}]", f"{meth!r} is not an HTTP method")
        methods = frozenset(x.upper() for x in methods)
    m.done()
    auth = n.str("auth", "policy", choices=AUTH_MODES)
    cfg = Route(id=rid, path=path, methods=methods, upstream=n.str("upstream", None), auth=auth,
                required_scopes=n.strs("required_scopes", ()), action=n.str("action", None),
                forward_user_token=n.bool("forward_user_token", False),
                identity_sources=n.strs("identity_sources", None, nonempty=True),
                credentials=n.strs("credentials", None, nonempty=True, choices=CREDENTIALS))
    n.done()
    return cfg


def _signing_key(value: Any, path: str) -> SigningKey:
    n = _Node(value, path)
    k = SigningKey(kid=n.str("kid"), private_key_file=n.str("private_key_file"))
    n.done()
    return k


def _credential(n: _Node) -> CredentialConfig:
    keys_raw = n.raw("signing_keys", [])
    if not isinstance(keys_raw, list):
        raise ConfigError(n.sub("signing_keys"), "expected a list of {kid, private_key_file}")
    keys = tuple(_signing_key(k, f"{n.sub('signing_keys')}[{i}]") for i, k in enumerate(keys_raw))
    kids = [k.kid for k in keys]
    if len(set(kids)) != len(kids):
        raise ConfigError(n.sub("signing_keys"), "kids must be unique")
    header = n.str("header", "X-Gateway-Credential")
    if not _HEADER.match(header):
        raise ConfigError(n.sub("header"), f"{header!r} is not a header name")
    ih_raw = n.raw("identity_headers", _MISSING if False else None)
    if ih_raw is None:
        ih = CredentialConfig.identity_headers
    else:
        ihn = _Node(ih_raw, n.sub("identity_headers"))
        ih = tuple((k, ihn.str(k, nonempty=False)) for k in ihn.data)
        ihn.done()
        for k, _ in ih:
            if not _HEADER.match(k):
                raise ConfigError(f"{ihn.path}.{k}", "is not a header name")
    cfg = CredentialConfig(
        header=header, issuer=n.str("issuer", "poolgate"),
        algorithm=n.str("algorithm", "ES256", choices=("ES256", "Ed25519")),
        signing_keys=keys, ttl_seconds=n.int("ttl_seconds", 300, lo=1, hi=3600),
        identity_headers=ih, request_binding=n.bool("request_binding", False),
        enabled=n.bool("enabled", True))
    n.done()
    return cfg


def _redis(n: _Node) -> RedisConfig:
    mode = n.str("mode", "standalone", choices=("standalone", "sentinel", "cluster"))
    url = quote_userinfo(n.str("url", "redis://127.0.0.1:6379/0"))
    if url.partition("://")[0] not in ("redis", "rediss", "unix"):
        raise ConfigError(n.sub("url"), "must be a redis://, rediss:// or unix:// URL")
    sentinels = []
    for i, s in enumerate(n.strs("sentinels", ())):
        host, sep, port = s.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"{n.sub('sentinels')}[{i}]", f"{s!r} must be host:port")
        sentinels.append((host.strip("[]"), int(port)))
    service = n.str("service_name", None)
    if mode == "sentinel" and (not sentinels or not service):
        raise ConfigError(n.path, "mode: sentinel needs sentinels: [host:port, ...] and service_name")
    cfg = RedisConfig(mode=mode, url=url, sentinels=tuple(sentinels), service_name=service,
                      key_prefix=n.str("key_prefix", "poolgate:", nonempty=False),
                      connect_timeout_ms=n.int("connect_timeout_ms", 200, lo=1, hi=60000),
                      timeout_ms=n.int("timeout_ms", 300, lo=1, hi=60000),
                      password=n.str("password", None, nonempty=False) or None,
                      invalidation=n.str("invalidation", "pubsub", choices=("pubsub", "none")))
    n.done()
    return cfg


def _revocation(n: _Node) -> RevocationConfig:
    cfg = RevocationConfig(store=n.str("store", "memory", choices=("none", "memory", "redis")),
                           redis=_redis(n.node("redis")),
                           on_error=n.str("on_error", "deny", choices=("deny", "allow")),
                           max_token_lifetime_seconds=n.int("max_token_lifetime_seconds", 86400,
                                                            lo=60, hi=10 * 365 * 86400))
    n.done()
    return cfg


def _middleware(n: _Node) -> MiddlewareConfig:
    cfg = MiddlewareConfig(default=n.str("default", "authenticated",
                                         choices=("authenticated", "policy")),
                           service=n.str("service", None))
    n.done()
    if cfg.default == "policy" and cfg.service is None:
        raise ConfigError(n.sub("service"), "is required when middleware.default is policy "
                                            "(statements name it: <service>:/path)")
    return cfg


def _logging(n: _Node) -> LoggingConfig:
    cfg = LoggingConfig(access_log=n.bool("access_log", True),
                        level=n.str("level", "info", choices=("debug", "info", "warning", "error")))
    n.done()
    return cfg
