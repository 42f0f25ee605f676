"""The AWS room: an admitted principal -> temporary AWS credentials (cached), per AWS.md.

Called only after the pipeline admitted the request (verified, not revoked, role mapped), so a
revoked user never reaches it. Credentials are obtained only for a role with ``aws.role_arn``
(else ``403 no_aws_role``); guests only if the guest role has ``aws``.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Callable

from ..errors import Forbidden
from .cache import CredentialCache, _Entry
from .render import RoleTemplates, compile_role, session_name, source_identity
from .sts import AwsClients, AwsCredentials, StsRequest

if TYPE_CHECKING:
    from ..config import Config
    from ..principal import Principal

MAX_ENTRIES = 10000


class AwsRoom:
    """Built once per engine; ``upstreams`` is empty and nothing is started without ``aws:``."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time,
                 clients: AwsClients | None = None, max_entries: int = MAX_ENTRIES) -> None:
        cfg = config.aws
        self.config = config
        self.cfg = cfg
        self.upstreams = dict(cfg.upstreams) if cfg is not None else {}
        self.endpoint_enabled = bool(cfg is not None and cfg.credentials_endpoint)
        self.templates: dict[str, RoleTemplates] = (
            {name: compile_role(r.role_arn, r.session_policy, r.session_tags)
             for name, r in cfg.roles.items()} if cfg is not None else {})
        self.clients = clients if clients is not None else (
            AwsClients(cfg) if cfg is not None else None)
        self.cache: CredentialCache[AwsCredentials] = CredentialCache(
            max_entries=max_entries,
            refresh_before=float(cfg.refresh_before_seconds) if cfg is not None else 300.0,
            expiry_of=lambda c: c.expiration, clock=clock)
        self.body_limit = config.listen.limits.buffer_body_bytes   # signed with its hash up to this
        # one token always renders the same (its claims are fixed): rendered once per token
        self._requests: dict[tuple[bytes, str | None], tuple[Hashable, StsRequest]] = {}

    def close(self) -> None:
        if self.clients is not None:
            self.clients.close()

    # -- credentials ------------------------------------------------------------------------

    def request_for(self, principal: Principal) -> tuple[Hashable, StsRequest]:
        """The cache key and the STS request for this principal; pure (403s here)."""
        role = principal.role
        tpl = self.templates.get(role) if role is not None else None
        if tpl is None or self.cfg is None:
            raise Forbidden(f"role {role or '(none)'} has no aws.role_arn",
                            code="no_aws_role")
        policy, tags = tpl.render(principal.claims, principal.tags)
        sub = principal.sub
        req = StsRequest(role_arn=tpl.role_arn, session_name=session_name(sub),
                         source_identity=source_identity(sub) if sub is not None else None,
                         policy=policy, tags=tags, duration_seconds=self.cfg.duration_seconds)
        return (tpl.role_arn, policy, tags, sub), req

    async def credentials(self, principal: Principal) -> _Entry[AwsCredentials]:
        """Cached credentials for an admitted principal (single-flight on a miss)."""
        token = principal.token
        memo = (token.token_hash, principal.role) if token is not None else None
        found = self._requests.get(memo) if memo is not None else None
        if found is None:
            found = self.request_for(principal)
            if memo is not None:
                if len(self._requests) >= MAX_ENTRIES:
                    self._requests.clear()
                self._requests[memo] = found
        key, req = found
        entry = self.cache.peek(key)
        if entry is not None:
            return entry
        id_token = provider = None
        if self.cfg is not None and self.cfg.flow == "identity_pool":
            id_token, provider = self._login(principal)
        clients = self.clients
        assert clients is not None

        async def fetch() -> AwsCredentials:
            return await clients.fetch(req, id_token=id_token, provider=provider)

        return await self.cache.get(key, fetch)

    def _login(self, principal: Principal) -> tuple[str, str]:
        """The ``Logins`` entry for the identity_pool flow: the user's own id token."""
        token = principal.token
        if token is None or principal.source_id is None:
            raise Forbidden("the identity_pool flow needs a signed-in user's id token",
                            code="aws_needs_id_token")
        source = self.config.source_by_id(principal.source_id)
        if source.cognito:
            if token.claims.get("token_use") != "id":
                raise Forbidden("the identity_pool flow needs an id token (token_use: id)",
                                code="aws_needs_id_token")
            provider = f"cognito-idp.{source.region}.amazonaws.com/{source.user_pool_id}"
        else:
            provider = source.issuers[0].split("://", 1)[-1].rstrip("/")
        return token.raw, provider

    def signer(self, entry: _Entry[AwsCredentials], service: str, region: str) -> Any:
        """botocore's SigV4 signer for these credentials (S3's own variant for s3), kept on
        the cache entry so a hit costs no construction."""
        key = (service, region)
        auth = entry.extra.get(key)
        if auth is None:
            from .sigv4 import make_signer
            auth = entry.extra[key] = make_signer(entry.value, service, region)
        return auth
