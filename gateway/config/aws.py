"""The AWS credentials config (AWS.md): top-level ``aws:``, ``roles.*.aws``, ``upstreams.*.aws_sigv4``
and ``credentials_endpoint``, parsed into one frozen ``AwsConfig`` on ``Config.aws``.

The keys live in other sections' mappings, so ``take_aws_keys`` lifts them out of the raw
document before those sections are parsed (their parsers refuse unknown keys), and
``parse_aws`` validates them once the rest of the config (role and upstream names) is known.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError
from .reader import _check_url, _kind, _Node

FLOWS = ("assume_role", "identity_pool")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$", re.ASCII)
_POOL_ID = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+:[0-9a-f-]+$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TAG_KEY = re.compile(r"^[\w.:/=+@-]{1,128}$", re.ASCII)
_VAR = re.compile(r"\$\{([^}]*)\}")
_STATEMENT_KEYS = ("Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                   "Condition", "Principal", "NotPrincipal")
POLICY_MAX_CHARS = 2048          # STS: the plain-text session policy, whitespace removed


@dataclass(frozen=True)
class SigV4Upstream:
    service: str
    region: str


@dataclass(frozen=True)
class RoleAws:
    role_arn: str
    session_tags: tuple[tuple[str, str], ...] = ()     # (tag key, template)
    session_policy: str | None = None                  # compact JSON with ${jwt:}/${tag:} left in


@dataclass(frozen=True)
class AwsConfig:
    region: str
    endpoint_url: str | None = None
    flow: str = "assume_role"
    identity_pool_id: str | None = None
    duration_seconds: int = 900
    refresh_before_seconds: int = 300
    roles: Mapping[str, RoleAws] = field(default_factory=dict)
    upstreams: Mapping[str, SigV4Upstream] = field(default_factory=dict)
    credentials_endpoint: bool = False


def take_aws_keys(data: Any) -> dict[str, Any]:
    """Remove the AWS keys from the raw document (in place) and return them for ``parse_aws``."""
    out: dict[str, Any] = {"roles": {}, "upstreams": {}}
    if not isinstance(data, dict):
        return out
    for key in ("aws", "credentials_endpoint"):
        if key in data:
            out[key] = data.pop(key)
    for section, key in (("roles", "aws"), ("upstreams", "aws_sigv4")):
        items = data.get(section)
        if isinstance(items, dict):
            for name, value in items.items():
                if isinstance(value, dict) and key in value:
                    out[section][name] = value.pop(key)
    return out


def parse_aws(parts: Mapping[str, Any], *, roles: Mapping[str, Any],
              upstreams: Mapping[str, Any]) -> AwsConfig | None:
    """Validate what ``take_aws_keys`` lifted out; None when nothing AWS is configured."""
    endpoint = False
    if parts.get("credentials_endpoint") is not None:
        en = _Node(parts["credentials_endpoint"], "credentials_endpoint")
        endpoint = en.bool("enabled", False)
        en.done()
    role_parts = {k: v for k, v in parts["roles"].items() if v is not None}
    up_parts = {k: v for k, v in parts["upstreams"].items() if v is not None}
    if parts.get("aws") is None:
        if role_parts:
            first = next(iter(role_parts))
            raise ConfigError(f"roles.{first}.aws", "needs the top-level aws: section "
                                                   "(region, flow)")
        if up_parts:
            first = next(iter(up_parts))
            raise ConfigError(f"upstreams.{first}.aws_sigv4", "needs the top-level aws: "
                                                              "section (region, flow)")
        if endpoint:
            raise ConfigError("credentials_endpoint.enabled", "needs the top-level aws: "
                                                              "section (region, flow)")
        return None
    n = _Node(parts["aws"], "aws")
    if importlib.util.find_spec("botocore") is None:
        raise ConfigError("aws", "needs botocore (STS and the SigV4 signer): "
                                 "pip install 'poolgate[aws]'")
    region = n.str("region")
    if not _REGION.match(region):
        raise ConfigError("aws.region", f"{region!r} is not an AWS region (like eu-west-1)")
    endpoint_url = n.str("endpoint_url", None)
    if endpoint_url is not None:
        _check_url(endpoint_url, "aws.endpoint_url", allow_http=False, what="endpoint_url")
    flow = n.str("flow", "assume_role", choices=FLOWS)
    pool = n.str("identity_pool_id", None)
    if flow == "identity_pool" and pool is None:
        raise ConfigError("aws.identity_pool_id", "is required for flow: identity_pool "
                                                  "(like eu-west-1:0000-...)")
    if pool is not None and not _POOL_ID.match(pool):
        raise ConfigError("aws.identity_pool_id", f"{pool!r} is not an identity pool id "
                                                  "(<region>:<uuid>)")
    duration = n.int("duration_seconds", 900, lo=900, hi=3600)
    lifetime = duration if flow == "assume_role" else 3600
    refresh = n.int("refresh_before_seconds", 300, lo=0, hi=3600)
    if refresh >= lifetime:
        raise ConfigError("aws.refresh_before_seconds", f"must be below the credentials' "
                                                        f"lifetime ({lifetime} s)")
    n.done()
    role_cfg = {}
    for name, raw in role_parts.items():
        if name not in roles:
            continue                 # the roles parser reports unknown shapes itself
        role_cfg[name] = r = _role(_Node(raw, f"roles.{name}.aws"))
        if flow == "identity_pool" and (r.session_policy or r.session_tags):
            raise ConfigError(f"roles.{name}.aws", "session_policy and session_tags apply to "
                                                   "flow: assume_role (with identity_pool, "
                                                   "Cognito applies the role's policy and the "
                                                   "pool's principal tags)")
    ups = {}
    for uid, raw in up_parts.items():
        if uid not in upstreams:
            continue
        un = _Node(raw, f"upstreams.{uid}.aws_sigv4")
        service = un.str("service")
        if not _SERVICE.match(service):
            raise ConfigError(un.sub("service"), f"{service!r} is not an AWS service name "
                                                 "(like s3, execute-api, lambda)")
        up_region = un.str("region", region)
        if not _REGION.match(up_region):
            raise ConfigError(un.sub("region"), f"{up_region!r} is not an AWS region")
        un.done()
        ups[uid] = SigV4Upstream(service=service, region=up_region)
    return AwsConfig(region=region, endpoint_url=endpoint_url, flow=flow,
                     identity_pool_id=pool, duration_seconds=duration,
                     refresh_before_seconds=refresh, roles=role_cfg, upstreams=ups,
                     credentials_endpoint=endpoint)


def _role(n: _Node) -> RoleAws:
    arn = n.str("role_arn")
    if not _ROLE_ARN.match(arn):
        raise ConfigError(n.sub("role_arn"), f"{arn!r} is not an IAM role ARN "
                                             "(arn:aws:iam::<account>:role/<name>)")
    tn = n.node("session_tags")
    tags = []
    for key in tn.data:
        value = tn.str(key, nonempty=False)
        if not _TAG_KEY.match(key):
            raise ConfigError(tn.sub(key), "is not a valid session tag key")
        _check_vars(value, tn.sub(key))
        tags.append((key, value))
    tn.done()
    if len(tags) > 50:
        raise ConfigError(n.sub("session_tags"), "at most 50 session tags (an STS limit)")
    policy = None
    raw = n.raw("session_policy", None)
    if raw is not None:
        policy = _policy(raw, n.sub("session_policy"))
    n.done()
    return RoleAws(role_arn=arn, session_tags=tuple(tags), session_policy=policy)


def _policy(raw: Any, path: str) -> str:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(path, f"expected a non-empty list of IAM statements, got {_kind(raw)}")
    for i, st in enumerate(raw):
        sp = f"{path}[{i}]"
        sn = _Node(st, sp)
        sn.str("Effect", choices=("Allow", "Deny"))
        if ("Action" in st) == ("NotAction" in st):
            raise ConfigError(sp, "needs exactly one of Action, NotAction")
        if ("Resource" in st) == ("NotResource" in st):
            raise ConfigError(sp, "needs exactly one of Resource, NotResource")
        for key in _STATEMENT_KEYS:
            if key in st:
                sn.raw(key)
                _walk_vars(st[key], f"{sp}.{key}")
        sn.done()
    text = json.dumps({"Version": "2012-10-17", "Statement": raw}, separators=(",", ":"))
    if len(text) > POLICY_MAX_CHARS:
        raise ConfigError(path, f"is {len(text)} characters as compact JSON; STS accepts at "
                                f"most {POLICY_MAX_CHARS}")
    return text


def _walk_vars(value: Any, path: str) -> None:
    if isinstance(value, str):
        _check_vars(value, path)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk_vars(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk_vars(k, path)
            _walk_vars(v, f"{path}.{k}")


def _check_vars(text: str, path: str) -> None:
    """``${jwt:<claim>}`` and ``${tag:<key>}`` are rendered per user; IAM's own variables
    (``${aws:username}``, ``${aws:PrincipalTag/x}``, ...) pass through to AWS; others are errors."""
    for m in _VAR.finditer(text):
        name = m.group(1)
        if name.startswith(("jwt:", "tag:")) and len(name) > 4:
            continue
        if name.startswith(("aws:", "s3:", "sts:", "cognito-identity.amazonaws.com:")):
            continue
        raise ConfigError(path, f"${{{name}}} cannot be used here (session policies render "
                                "${jwt:<claim>} and ${tag:<key>}; IAM variables such as "
                                "${aws:username} pass through)")
