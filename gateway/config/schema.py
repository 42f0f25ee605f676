"""The typed configuration (schema v1): frozen dataclasses and the vocabulary of enum values."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping as TMapping
from functools import cached_property
from urllib.parse import urlsplit


from ..patterns import PathPattern
from .websocket import WebSocketConfig

if TYPE_CHECKING:
    from .aws import AwsConfig

SCHEMA_VERSION = 1
_ENV = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")   # ${NAME} or ${NAME:-default}
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
class ListenLimits:
    """``listen.limits`` (shared/LIMITS.md): chosen so that a legitimate client never meets them."""

    max_request_line_bytes: int = 8192
    max_header_bytes: int = 32768
    max_headers: int = 100
    header_timeout_seconds: float = 10.0
    keepalive_timeout_seconds: float = 15.0
    body_timeout_seconds: float = 30.0
    buffer_body_bytes: int = 65536
    min_body_rate_bytes_per_second: int = 1024
    max_connections: int = 10000


@dataclass(frozen=True)
class ListenConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    tls: TlsConfig = TlsConfig()
    grace_seconds: float = 30.0          # SIGTERM: in-flight requests may finish this long
    drain_delay_seconds: float = 0.0     # SIGTERM: keep accepting this long first (opt-in)
    max_body_bytes: int | None = None    # None: unlimited (bodies stream)
    limits: ListenLimits = ListenLimits()


@dataclass(frozen=True)
class AdminConfig:
    host: str = "127.0.0.1"
    port: int = 9901
    token: str | None = field(default=None, repr=False)
    max_connections: int = 256


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
    max_token_lifetime_seconds: int = 86400   # exp - iat (or exp - now) above this + skew: bad_exp

    @property
    def discovery_url(self) -> str:
        return self.issuers[0].rstrip("/") + "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Upstream:
    id: str
    url: str
    timeout_seconds: float = 30
    idle_timeout_seconds: float = 60
    max_connections: int = 1024          # the upstream connection pool's size

    # read per request by the proxy: parsed once (cached_property writes the instance dict,
    # which a frozen dataclass allows)
    @cached_property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @cached_property
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
    credentials: tuple[str, ...] | None = None        # bearer | session; None: both (sessions.py)


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
        from ..redact import mask_url  # noqa: PLC0415
        masked = mask_url(self.url)
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
    aws: "AwsConfig | None" = None         # AWS.md: temporary AWS credentials (config/aws.py)
    decisions: Any = None                  # DecisionsConfig | None (config/decisions.py)
    sessions: Any = None                   # config.sessions.SessionsConfig | None (browser sessions)
    websocket: WebSocketConfig = WebSocketConfig()

    def source_by_id(self, source_id: str) -> IdentitySource:
        for s in self.identity_sources:
            if s.id == source_id:
                return s
        raise KeyError(source_id)
