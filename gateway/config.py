"""YAML -> frozen, typed configuration (schema v1), validated once; the only reader of files/env.

Every error is a ``ConfigError`` naming the key path (``routes[0].auth``) and the fix.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping as TMapping
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError
from .patterns import PathPattern, PatternError

SCHEMA_VERSION = 1
_ENV = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_METHOD = re.compile(r"^[A-Z]+$")
COGNITO_POOL = re.compile(r"^(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)_[0-9A-Za-z]+$")

AUTH_MODES = ("policy", "authenticated", "public")
OPS = ("equals", "not_equal", "starts_with", "ends_with", "contains", "any_of", "regex", "exists")
ALLOWED_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                "EdDSA")


# --------------------------------------------------------------------------- the typed config

@dataclass(frozen=True)
class TlsConfig:
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class ListenConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    tls: TlsConfig = TlsConfig()
    grace_seconds: float = 30.0          # SIGTERM: in-flight requests may finish this long
    drain_delay_seconds: float = 0.0     # SIGTERM: keep accepting this long first (opt-in)
    max_body_bytes: int | None = None    # None: unlimited (bodies stream)


@dataclass(frozen=True)
class AdminConfig:
    host: str = "127.0.0.1"
    port: int = 9901
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class JwksSettings:
    refresh_seconds: float = 300
    unknown_kid_cooldown_seconds: float = 5
    timeout_seconds: float = 3
    max_bytes: int = 65536
    max_stale_seconds: float = 3600
    retry_seconds: float = 5


@dataclass(frozen=True)
class IdentitySource:
    id: str
    issuers: tuple[str, ...]              # exact `iss` values accepted (cognito: both forms)
    jwks_uri: str | None                  # None: found by OIDC discovery from the issuer
    cognito: bool = False
    region: str | None = None
    user_pool_id: str | None = None
    client_ids: tuple[str, ...] | None = ()   # None = `any` (explicit opt-out)
    token_use: tuple[str, ...] = ("access",)
    audiences: tuple[str, ...] | None = ()    # None = `any` (explicit opt-out)
    algorithms: tuple[str, ...] = ("RS256",)
    clock_skew_seconds: float = 60
    jwks: JwksSettings = JwksSettings()
    allow_insecure_http: bool = False
    token_types: tuple[str, ...] | None = None  # header `typ` allowlist (lower-cased)
    max_token_bytes: int = 8192

    @property
    def discovery_url(self) -> str:
        return self.issuers[0].rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Upstream:
    id: str
    url: str
    timeout_seconds: float = 30
    idle_timeout_seconds: float = 60

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def authority(self) -> str:
        return urlsplit(self.url).netloc


@dataclass(frozen=True)
class Route:
    id: str
    path: PathPattern
    methods: frozenset[str] | None        # None: every method
    upstream: str | None
    auth: str = "policy"
    required_scopes: tuple[str, ...] = ()
    action: str | None = None
    forward_user_token: bool = False
    identity_sources: tuple[str, ...] | None = None   # None: every source


@dataclass(frozen=True)
class Rule:
    claim: str
    op: str
    value: Any
    role: str
    path: str                              # e.g. mappings.pool-main.rules[0], for traces


@dataclass(frozen=True)
class TokenMapping:
    source: str = "groups"                 # groups | roles
    groups_claim: str = "cognito:groups"
    group_to_role: tuple[tuple[str, str], ...] = ()
    role_arn_to_role: tuple[tuple[str, str], ...] = ()
    precedence: tuple[str, ...] = ()


@dataclass(frozen=True)
class MappingConfig:
    mode: str = "default"                  # rules | token | default
    on_ambiguous: str = "default_role"     # default_role | deny
    rules: tuple[Rule, ...] = ()
    token: TokenMapping = TokenMapping()
    role_request_header: str | None = "x-gateway-role"


@dataclass(frozen=True)
class Statement:
    sid: str | None
    effect: str                            # allow | deny
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: tuple[tuple[str, tuple[tuple[str, tuple[Any, ...]], ...]], ...] = ()
    path: str = ""                         # roles.member.statements[0], for traces

    @property
    def label(self) -> str:
        return self.sid or self.path


@dataclass(frozen=True)
class Role:
    name: str
    statements: tuple[Statement, ...] = ()


@dataclass(frozen=True)
class Guardrail:
    name: str
    roles: tuple[str, ...]                 # glob patterns on role names ("*" = all)
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class RedisConfig:
    mode: str = "standalone"               # standalone | sentinel | cluster
    url: str = "redis://127.0.0.1:6379/0"
    sentinels: tuple[tuple[str, int], ...] = ()
    service_name: str | None = None
    key_prefix: str = "poolgate:"
    connect_timeout_ms: int = 200
    timeout_ms: int = 300
    password: str | None = field(default=None, repr=False)
    invalidation: str = "pubsub"           # pubsub (near-cache) | none (always ask Redis)

    def __repr__(self) -> str:  # mask credentials embedded in the URL
        masked = re.sub(r"//[^@/]*@", "//***@", self.url)
        return f"RedisConfig(mode={self.mode!r}, url={masked!r}, key_prefix={self.key_prefix!r})"


@dataclass(frozen=True)
class RevocationConfig:
    store: str = "memory"                  # none | memory | redis
    redis: RedisConfig = RedisConfig()
    on_error: str = "deny"                 # deny (503) | allow
    max_token_lifetime_seconds: int = 86400


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key_file: str


@dataclass(frozen=True)
class CredentialConfig:
    header: str = "X-Gateway-Credential"
    issuer: str = "poolgate"
    algorithm: str = "ES256"               # ES256 | Ed25519
    signing_keys: tuple[SigningKey, ...] = ()
    ttl_seconds: int = 300
    identity_headers: tuple[tuple[str, str], ...] = (("X-Auth-Sub", "${jwt:sub}"),
                                                     ("X-Auth-Role", "${role}"))
    request_binding: bool = False          # htm/htu claims (turns credential caching off)
    enabled: bool = True


@dataclass(frozen=True)
class MiddlewareConfig:
    default: str = "authenticated"         # authenticated | policy
    service: str | None = None


@dataclass(frozen=True)
class LoggingConfig:
    access_log: bool = True
    level: str = "info"


@dataclass(frozen=True)
class Config:
    version: int
    listen: ListenConfig
    admin: AdminConfig
    identity_sources: tuple[IdentitySource, ...]
    upstreams: TMapping[str, Upstream]
    routes: tuple[Route, ...]
    mappings: TMapping[str, MappingConfig]
    principal_tags: TMapping[str, tuple[tuple[str, str], ...]]
    default_role: str | None
    guest_role: str | None
    roles: TMapping[str, Role]
    guardrails: tuple[Guardrail, ...]
    revocation: RevocationConfig
    downstream_credential: CredentialConfig
    middleware: MiddlewareConfig
    logging: LoggingConfig
    source: str | None = None              # the file it came from, for messages
    warnings: tuple[str, ...] = ()         # soft problems found while loading (unset env in check)

    def source_by_id(self, source_id: str) -> IdentitySource:
        for s in self.identity_sources:
            if s.id == source_id:
                return s
        raise KeyError(source_id)


# --------------------------------------------------------------------------- reading

_MISSING: Any = object()


class _EnvStr(str):
    """A string that came from a whole-scalar ``${NAME}``: may become a number or bool."""


class _Node:
    """A mapping being read; tracks the key path and refuses unknown keys."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a mapping, got {_kind(data)}")
        for k in data:
            if not isinstance(k, str):
                raise ConfigError(path, f"keys must be strings, got {k!r}")
        self.data: dict[str, Any] = data
        self.path = path
        self.seen: set[str] = set()

    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None and default is not _MISSING:
            if default is _MISSING:
                raise ConfigError(self.sub(key), "is required")
            return default
        return self.data[key]

    def node(self, key: str, *, required: bool = False) -> "_Node":
        value = self.raw(key, _MISSING if required else {})
        return _Node(value, self.sub(key))

    def str(self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] | None = None,
            nonempty: bool = True) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return _as_str(value, self.sub(key), choices=choices, nonempty=nonempty)

    def int(self, key: str, default: Any = _MISSING, *, lo: int | None = None,
            hi: int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return _as_int(value, self.sub(key), lo, hi)

    def num(self, key: str, default: Any = _MISSING, *, lo: float | None = None,
            hi: float | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return _as_num(value, self.sub(key), lo, hi)

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return _as_bool(value, self.sub(key))

    def strs(self, key: str, default: Any = _MISSING, *, nonempty: bool = False,
             choices: tuple[str, ...] | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        path = self.sub(key)
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list of strings, got {_kind(value)}")
        if nonempty and not value:
            raise ConfigError(path, "must not be empty")
        return tuple(_as_str(v, f"{path}[{i}]", choices=choices) for i, v in enumerate(value))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen)) or "none"
            raise ConfigError(self.sub(unknown[0]), f"unknown key (known keys here: {known})")


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a bool", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def _as_str(v: Any, path: str, *, choices: tuple[str, ...] | None = None,
            nonempty: bool = True) -> str:
    if not isinstance(v, str):
        raise ConfigError(path, f"expected a string, got {_kind(v)}")
    if nonempty and not v:
        raise ConfigError(path, "must not be empty")
    if choices is not None and v not in choices:
        raise ConfigError(path, f"must be one of {', '.join(choices)} (got {v!r})")
    return str(v)


def _as_int(v: Any, path: str, lo: int | None, hi: int | None) -> int:
    if isinstance(v, _EnvStr):
        try:
            v = int(v)
        except ValueError:
            raise ConfigError(path, f"expected an integer from the environment, got {str(v)!r}")
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(path, f"expected an integer, got {_kind(v)}")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise ConfigError(path, f"must be between {lo} and {hi} (got {v})")
    return v


def _as_num(v: Any, path: str, lo: float | None, hi: float | None) -> float:
    if isinstance(v, _EnvStr):
        try:
            v = float(v)
        except ValueError:
            raise ConfigError(path, f"expected a number from the environment, got {str(v)!r}")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ConfigError(path, f"expected a number, got {_kind(v)}")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise ConfigError(path, f"must be between {lo} and {hi} (got {v})")
    return float(v)


def _as_bool(v: Any, path: str) -> bool:
    if isinstance(v, _EnvStr) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if not isinstance(v, bool):
        raise ConfigError(path, f"expected true or false, got {_kind(v)}")
    return v


def _check_id(value: str, path: str) -> str:
    if not _ID.match(value):
        raise ConfigError(path, f"{value!r} is not a valid id (letters, digits, _ . : -)")
    return value


def is_loopback(host: str | None) -> bool:
    """localhost or a loopback address: where plain http is acceptable for key fetches."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(url: str, path: str, *, allow_http: bool, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(path, f"{what} must be an absolute http(s) URL (got {url!r})")
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise ConfigError(path, f"{what} must use https (http is accepted only for loopback "
                                "hosts, or with allow_insecure_http: true for local stacks)")
    return url


# --------------------------------------------------------------------------- env interpolation

def _interpolate(tree: Any, env: TMapping[str, str], missing: list[str]) -> Any:
    if isinstance(tree, dict):
        return {k: _interpolate(v, env, missing) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_interpolate(v, env, missing) for v in tree]
    if isinstance(tree, str) and "${" in tree:
        whole = _ENV.fullmatch(tree)

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                missing.append(name)
                return ""
            return env[name]

        out = _ENV.sub(repl, tree)
        if whole:
            if whole.group(1) not in env:
                return None     # unset whole-scalar: as if the key were absent
            return _EnvStr(out)
        return out
    return tree


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
        max_body_bytes=n.int("max_body_bytes", None, lo=0))
    n.done()
    return cfg


def _admin(n: _Node) -> AdminConfig:
    token = n.str("token", None, nonempty=False) or None
    if token is not None and len(token) < 16:
        raise ConfigError(n.sub("token"), "must be at least 16 characters "
                                          "(generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    cfg = AdminConfig(host=n.str("host", "127.0.0.1"), port=n.int("port", 9901, lo=0, hi=65535),
                      token=token)
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
        max_token_bytes=n.int("max_token_bytes", 8192, lo=256, hi=65536))
    n.done()
    return cfg


def _upstream(uid: str, value: Any, path: str) -> Upstream:
    n = _Node(value, path)
    url = n.str("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(n.sub("url"), f"must be an absolute http(s) URL (got {url!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(n.sub("url"), "carries no path, query or fragment in v1: the "
                                        "normalised request path is forwarded unchanged")
    up = Upstream(id=uid, url=f"{parts.scheme}://{parts.netloc}",
                  timeout_seconds=n.num("timeout_seconds", 30, lo=0.01, hi=3600),
                  idle_timeout_seconds=n.num("idle_timeout_seconds", 60, lo=0.01, hi=86400))
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
                identity_sources=n.strs("identity_sources", None, nonempty=True))
    n.done()
    return cfg


def _rule(value: Any, path: str) -> Rule:
    n = _Node(value, path)
    op = n.str("op", "equals", choices=OPS)
    claim = n.str("claim")
    role = n.str("role")
    if op == "exists":
        val = n.raw("value", None)
    elif op == "any_of":
        val = n.strs("value", nonempty=True)
    else:
        val = n.str("value", nonempty=op != "equals")
        if op == "regex":
            try:
                val = re.compile(val)
            except re.error as e:
                raise ConfigError(n.sub("value"), f"invalid regex: {e}")
    n.done()
    return Rule(claim=claim, op=op, value=val, role=role, path=path)


def _pairs(n: _Node, key: str) -> tuple[tuple[str, str], ...]:
    sub = n.node(key)
    out = tuple((k, sub.str(k)) for k in sub.data)
    sub.done()
    return out


def _mapping(n: _Node) -> MappingConfig:
    mode = n.str("mode", "default", choices=("rules", "token", "default"))
    rules_raw = n.raw("rules", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(n.sub("rules"), f"expected a list of rules, got {_kind(rules_raw)}")
    rules = tuple(_rule(r, f"{n.sub('rules')}[{i}]") for i, r in enumerate(rules_raw))
    t = n.node("token")
    token = TokenMapping(source=t.str("source", "groups", choices=("groups", "roles")),
                         groups_claim=t.str("groups_claim", "cognito:groups"),
                         group_to_role=_pairs(t, "group_to_role"),
                         role_arn_to_role=_pairs(t, "role_arn_to_role"),
                         precedence=t.strs("precedence", ()))
    t.done()
    rr = n.raw("role_request", {"header": "X-Gateway-Role"})
    header: str | None
    if rr is False:
        header = None
    else:
        rn = _Node(rr, n.sub("role_request"))
        header = rn.str("header", "X-Gateway-Role")
        if not _HEADER.match(header):
            raise ConfigError(rn.sub("header"), f"{header!r} is not a header name")
        rn.done()
    if mode == "rules" and not rules:
        raise ConfigError(n.sub("rules"), "mode: rules needs at least one rule")
    cfg = MappingConfig(mode=mode, on_ambiguous=n.str("on_ambiguous", "default_role",
                                                      choices=("default_role", "deny")),
                        rules=rules, token=token,
                        role_request_header=header.lower() if header else None)
    n.done()
    return cfg


_COND_BASE = ("StringEquals", "StringNotEquals", "StringLike", "StringNotLike",
              "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
              "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
              "NumericGreaterThan", "NumericGreaterThanEquals",
              "DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals",
              "DateGreaterThan", "DateGreaterThanEquals",
              "Bool", "IpAddress", "NotIpAddress", "Null")
_COND_KEY = re.compile(r"^(jwt:.+|tag:.+|path:.+|req:source_ip|req:secure|req:time|req:header/.+)$")


def condition_operator_base(op: str) -> str:
    """Strip ``ForAnyValue:``/``ForAllValues:`` and ``IfExists`` from a condition operator."""
    base = op.split(":", 1)[1] if op.startswith(("ForAnyValue:", "ForAllValues:")) else op
    return base[:-len("IfExists")] if base.endswith("IfExists") else base


def _condition(value: Any, path: str) -> tuple[tuple[str, tuple[tuple[str, tuple[Any, ...]], ...]], ...]:
    n = _Node(value, path)
    out = []
    for op in n.data:
        n.seen.add(op)
        base = condition_operator_base(op)
        if base not in _COND_BASE or (base == "Null" and op != "Null"):
            raise ConfigError(f"{path}.{op}", f"unknown condition operator (supported: "
                                              f"{', '.join(_COND_BASE)}, with ForAnyValue:/"
                                              "ForAllValues: and ...IfExists)")
        kn = _Node(n.data[op], f"{path}.{op}")
        keys = []
        for key, vals in kn.data.items():
            kn.seen.add(key)
            kp = f"{path}.{op}.{key}"
            if not _COND_KEY.match(key):
                raise ConfigError(kp, "unknown condition key (jwt:<claim>, tag:<key>, "
                                      "path:<name>, req:source_ip, req:secure, req:time, "
                                      "req:header/<name>)")
            vals = vals if isinstance(vals, list) else [vals]
            for v in vals:
                if isinstance(v, (dict, list)) or v is None:
                    raise ConfigError(kp, "values must be scalars or a list of scalars")
            if base in ("IpAddress", "NotIpAddress"):
                try:
                    vals = [ipaddress.ip_network(str(v), strict=False) for v in vals]
                except ValueError as e:
                    raise ConfigError(kp, f"not an IP network: {e}")
            keys.append((key, tuple(vals)))
        out.append((op, tuple(keys)))
    return tuple(out)


def _statements(value: Any, path: str) -> tuple[Statement, ...]:
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of statements, got {_kind(value)}")
    out = []
    for i, raw in enumerate(value):
        sp = f"{path}[{i}]"
        n = _Node(raw, sp)
        acts = n.raw("action")
        acts = [acts] if isinstance(acts, str) else acts
        res = n.raw("resource")
        res = [res] if isinstance(res, str) else res
        n.data["action"], n.data["resource"] = acts, res
        actions = n.strs("action", nonempty=True)
        resources = n.strs("resource", nonempty=True)
        for j, r in enumerate(resources):
            up, sep, pat = r.partition(":")
            if not sep or not pat.startswith("/") and pat != "*":
                raise ConfigError(f"{sp}.resource[{j}]", f"{r!r} must be <upstream id>:<path "
                                                         "pattern>, e.g. orders:/tenants/**")
        cond = n.raw("condition", {})
        st = Statement(sid=n.str("sid", None), effect=n.str("effect", choices=("allow", "deny")),
                       actions=tuple(a.lower() for a in actions), resources=resources,
                       condition=_condition(cond, n.sub("condition")), path=sp)
        n.done()
        out.append(st)
    return tuple(out)


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
    url = n.str("url", "redis://127.0.0.1:6379/0")
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
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


# --------------------------------------------------------------------------- the whole file

def parse_config(data: Any, *, source: str | None = None,
                 env: TMapping[str, str] | None = None, strict_env: bool = True) -> Config:
    """Validate a parsed YAML document into a frozen ``Config``."""
    missing: list[str] = []
    data = _interpolate(data, os.environ if env is None else env, missing)
    warnings = []
    if missing:
        names = ", ".join(sorted(set(missing)))
        if strict_env:
            raise ConfigError("", f"environment variable(s) not set: {names}")
        warnings.append(f"environment variable(s) not set: {names}")
    root = _Node(data if data is not None else {}, "")
    version = root.int("version")
    if version != SCHEMA_VERSION:
        raise ConfigError("version", f"unsupported schema version {version} (this poolgate "
                                     f"reads version {SCHEMA_VERSION})")

    sources_raw = root.raw("identity_sources", [])
    if not isinstance(sources_raw, list):
        raise ConfigError("identity_sources", "expected a list of identity sources")
    sources = tuple(_identity_source(_Node(s, f"identity_sources[{i}]"))
                    for i, s in enumerate(sources_raw))
    _unique([s.id for s in sources], "identity_sources", "id")
    ids = {s.id for s in sources}

    up_node = root.node("upstreams")
    upstreams = {}
    for uid in up_node.data:
        _check_id(uid, up_node.sub(uid))
        if ":" in uid:
            raise ConfigError(up_node.sub(uid), "an upstream id cannot contain ':' (resources "
                                                "are written <upstream id>:<path pattern>)")
        upstreams[uid] = _upstream(uid, up_node.raw(uid), up_node.sub(uid))

    routes_raw = root.raw("routes", [])
    if not isinstance(routes_raw, list):
        raise ConfigError("routes", "expected a list of routes")
    routes = tuple(_route(_Node(r, f"routes[{i}]"), i) for i, r in enumerate(routes_raw))
    _unique([r.id for r in routes], "routes", "id")

    roles_node = root.node("roles")
    roles = {}
    for name in roles_node.data:
        rn = _Node(roles_node.raw(name) or {}, roles_node.sub(name))
        roles[name] = Role(name=name, statements=_statements(rn.raw("statements", []),
                                                             rn.sub("statements")))
        rn.done()

    guard_raw = root.raw("guardrails", [])
    if not isinstance(guard_raw, list):
        raise ConfigError("guardrails", "expected a list of guardrails")
    guardrails = []
    for i, g in enumerate(guard_raw):
        gn = _Node(g, f"guardrails[{i}]")
        at = gn.node("applies_to")
        groles = at.strs("roles", ("*",))
        at.done()
        guardrails.append(Guardrail(name=gn.str("name", f"guardrails[{i}]"), roles=groles,
                                    statements=_statements(gn.raw("statements"), gn.sub("statements"))))
        gn.done()

    map_node = root.node("mappings")
    mappings = {}
    for src in map_node.data:
        if src not in ids:
            raise ConfigError(map_node.sub(src), f"no identity source with id {src!r}")
        mappings[src] = _mapping(_Node(map_node.raw(src), map_node.sub(src)))

    tags_node = root.node("principal_tags")
    principal_tags = {}
    for src in tags_node.data:
        if src not in ids:
            raise ConfigError(tags_node.sub(src), f"no identity source with id {src!r}")
        principal_tags[src] = _pairs(tags_node, src)

    cfg = Config(
        version=version, listen=_listen(root.node("listen")), admin=_admin(root.node("admin")),
        identity_sources=sources, upstreams=upstreams, routes=routes, mappings=mappings,
        principal_tags=principal_tags, default_role=root.str("default_role", None),
        guest_role=root.str("guest_role", None), roles=roles, guardrails=tuple(guardrails),
        revocation=_revocation(root.node("revocation")),
        downstream_credential=_credential(root.node("downstream_credential")),
        middleware=_middleware(root.node("middleware")), logging=_logging(root.node("logging")),
        source=source, warnings=tuple(warnings))
    root.done()
    _check_references(cfg)
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


def _unique(values: list[str], path: str, what: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ConfigError(f"{path}[{i}].{what}", f"duplicate {what} {v!r}")
        seen.add(v)


def _check_references(cfg: Config) -> None:
    """Undefined upstreams, roles and identity sources are errors, not lint warnings."""
    ids = {s.id for s in cfg.identity_sources}
    for i, r in enumerate(cfg.routes):
        if r.upstream is None:
            raise ConfigError(f"routes[{i}].upstream", "is required")
        if r.upstream not in cfg.upstreams:
            raise ConfigError(f"routes[{i}].upstream",
                              f"no upstream {r.upstream!r} (defined: {', '.join(cfg.upstreams) or 'none'})")
        for j, s in enumerate(r.identity_sources or ()):
            if s not in ids:
                raise ConfigError(f"routes[{i}].identity_sources[{j}]", f"no identity source {s!r}")
        if r.auth != "public" and not cfg.identity_sources and cfg.guest_role is None:
            raise ConfigError(f"routes[{i}].auth", "needs a token, but no identity_sources are "
                                                   "configured (add one, or make the route public)")

    def need_role(name: str | None, path: str) -> None:
        if name is not None and name not in cfg.roles:
            raise ConfigError(path, f"no role {name!r} under roles: "
                                    f"(defined: {', '.join(cfg.roles) or 'none'})")

    need_role(cfg.default_role, "default_role")
    need_role(cfg.guest_role, "guest_role")
    for src, m in cfg.mappings.items():
        for rule in m.rules:
            need_role(rule.role, f"{rule.path}.role")
        for g, role in m.token.group_to_role:
            need_role(role, f"mappings.{src}.token.group_to_role.{g}")
        for arn, role in m.token.role_arn_to_role:
            need_role(role, f"mappings.{src}.token.role_arn_to_role.{arn}")
        for i, role in enumerate(m.token.precedence):
            need_role(role, f"mappings.{src}.token.precedence[{i}]")
    if cfg.middleware.service is not None and cfg.middleware.service not in cfg.upstreams:
        # the middleware's service id names resources; it need not be a proxied upstream
        pass


def load_config(path: str | os.PathLike[str], *, strict_env: bool = True,
                env: TMapping[str, str] | None = None) -> Config:
    """Read and validate a poolgate YAML config file (the public loader)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("", f"cannot read config file {str(p)!r}: {e.strerror or e}")
    return loads_config(text, source=str(p), strict_env=strict_env, env=env)


def loads_config(text: str, *, source: str | None = None, strict_env: bool = True,
                 env: TMapping[str, str] | None = None) -> Config:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError("", f"not valid YAML: {e}")
    return parse_config(data, source=source, env=env, strict_env=strict_env)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silently shadowed key is a config bug)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                    key_node.start_mark)
        keys.add(key)
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

Factory = Callable[[Config], Any]
