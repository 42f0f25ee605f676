"""The only AWS API I/O: STS AssumeRole and Cognito Identity GetId + GetCredentialsForIdentity.

botocore clients run in a small bounded thread pool (``run_in_executor``), never on the event
loop. Calls have bounded connect/read timeouts and botocore's ``standard`` retry mode
(exponential backoff with jitter on throttling and connection errors). Failures become the
gateway's errors here: unreachable or throttled -> 503 with Retry-After (fail closed);
``AccessDenied`` (the role's trust policy) -> 403 ``aws_role_denied``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ..config.aws import AwsConfig
from ..errors import BadGateway, Forbidden, Unavailable

log = logging.getLogger("poolgate.aws")

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
MAX_ATTEMPTS = 3                 # botocore standard mode: 1 call + 2 retries with backoff
POOL_THREADS = 4
FETCH_DEADLINE = 10.0            # one whole fetch, retries included, as a caller waits for it
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "NotAuthorizedException",
                     "InvalidIdentityPoolConfigurationException"})
_THROTTLED = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException",
                        "RequestLimitExceeded", "ServiceUnavailable", "InternalError",
                        "InternalErrorException", "RegionDisabledException"})


@dataclass(frozen=True)
class AwsCredentials:
    """Temporary credentials; the secret parts never appear in ``repr`` (logs, tracebacks)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: float                      # epoch seconds
    role_arn: str

    def as_container_json(self) -> dict[str, str]:
        """The AWS container-credentials shape every SDK reads."""
        exp = datetime.fromtimestamp(self.expiration, tz=timezone.utc)
        return {"AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
                "Token": self.session_token,
                "Expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ"), "RoleArn": self.role_arn}


@dataclass(frozen=True)
class StsRequest:
    """What one credentials fetch sends (no secrets: the id token is passed separately)."""

    role_arn: str
    session_name: str
    source_identity: str | None
    policy: str | None
    tags: tuple[tuple[str, str], ...]
    duration_seconds: int


def quiet_botocore() -> None:
    """botocore's DEBUG lines carry secrets (the canonical request with the session token, STS
    response bodies with the secret key): keep them off even under a host app's DEBUG root."""
    lg = logging.getLogger("botocore")
    if lg.getEffectiveLevel() < logging.INFO:
        lg.setLevel(logging.INFO)


class AwsClients:
    """Lazily built botocore clients (in the pool: building one takes tens of ms)."""

    def __init__(self, cfg: AwsConfig, *, threads: int = POOL_THREADS,
                 session_factory: Callable[[], Any] | None = None) -> None:
        self.cfg = cfg
        quiet_botocore()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="poolgate-aws")
        self._session_factory = session_factory
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _client(self, name: str) -> Any:
        with self._lock:
            return self._clients.get(name) or self._build(name)

    def _build(self, name: str) -> Any:
        import botocore.session
        from botocore import UNSIGNED
        from botocore.config import Config
        session = (self._session_factory or botocore.session.get_session)()
        conf = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                      retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                      # GetId / GetCredentialsForIdentity are public: the user's token
                      # (Logins) authenticates them, not the gateway's own keys
                      signature_version=UNSIGNED if name == "cognito-identity" else None)
        client = session.create_client(name, region_name=self.cfg.region,
                                       endpoint_url=self.cfg.endpoint_url, config=conf)
        self._clients[name] = client
        return client

    async def fetch(self, req: StsRequest, *, id_token: str | None = None,
                    provider: str | None = None) -> AwsCredentials:
        loop = asyncio.get_running_loop()
        call = (self._assume_role if self.cfg.flow == "assume_role" else
                lambda r: self._identity_pool(r, id_token, provider))
        try:
            async with asyncio.timeout(FETCH_DEADLINE):
                return await loop.run_in_executor(self.pool, _translated, call, req)
        except TimeoutError:
            # the pool thread finishes (or times out) on its own; this request fails closed now
            log.warning("AWS credentials call for %s took over %.0f s", req.role_arn,
                        FETCH_DEADLINE)
            raise Unavailable("AWS credentials service too slow", code="aws_unavailable",
                              retry_after=2) from None

    # -- in the pool ---------------------------------------------------------------------------

    def _assume_role(self, req: StsRequest) -> AwsCredentials:
        kw: dict[str, Any] = {"RoleArn": req.role_arn, "RoleSessionName": req.session_name,
                              "DurationSeconds": req.duration_seconds}
        if req.source_identity is not None:
            kw["SourceIdentity"] = req.source_identity
        if req.policy is not None:
            kw["Policy"] = req.policy
        if req.tags:
            kw["Tags"] = [{"Key": k, "Value": v} for k, v in req.tags]
        c = self._client("sts").assume_role(**kw)["Credentials"]
        return AwsCredentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"],
                              _epoch(c["Expiration"]), req.role_arn)

    def _identity_pool(self, req: StsRequest, id_token: str | None,
                       provider: str | None) -> AwsCredentials:
        assert id_token is not None and provider is not None
        client = self._client("cognito-identity")
        logins = {provider: id_token}
        identity = client.get_id(IdentityPoolId=self.cfg.identity_pool_id,
                                 Logins=logins)["IdentityId"]
        c = client.get_credentials_for_identity(IdentityId=identity, Logins=logins,
                                                CustomRoleArn=req.role_arn)["Credentials"]
        return AwsCredentials(c["AccessKeyId"], c["SecretKey"], c["SessionToken"],
                              _epoch(c["Expiration"]), req.role_arn)


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _translated(call: Callable[[StsRequest], AwsCredentials], req: StsRequest) -> AwsCredentials:
    """Run one call; botocore's exceptions become the gateway's (no secrets in messages)."""
    from botocore import exceptions as bx
    try:
        return call(req)
    except bx.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _DENIED:
            log.warning("AWS refused the role %s (%s): check its trust policy", req.role_arn, code)
            raise Forbidden(f"AWS refused the role for this user ({code})",
                            code="aws_role_denied") from None
        if code in _THROTTLED or status >= 500:
            log.warning("AWS credentials service unavailable for %s: %s", req.role_arn, code)
            raise Unavailable("AWS credentials service unavailable", code="aws_unavailable",
                              retry_after=2) from None
        log.warning("AWS rejected the credentials request for %s: %s", req.role_arn, code)
        raise BadGateway(f"AWS rejected the credentials request ({code})",
                         code="aws_request_rejected") from None
    except (bx.NoCredentialsError, bx.PartialCredentialsError):
        log.error("the gateway has no AWS credentials of its own (env, web identity, "
                  "container or instance profile) to call sts:AssumeRole")
        raise Unavailable("the gateway has no AWS credentials", code="aws_unavailable",
                          retry_after=5) from None
    except bx.BotoCoreError as e:                 # connect/read timeouts, endpoint unreachable
        log.warning("AWS credentials service unreachable for %s: %s", req.role_arn,
                    type(e).__name__)
        raise Unavailable("AWS credentials service unreachable", code="aws_unavailable",
                          retry_after=2) from None
