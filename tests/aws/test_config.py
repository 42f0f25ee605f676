"""gateway/config/aws.py: the AWS keys (AWS.md), validated with their key paths."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError

ARN = "arn:aws:iam::123456789012:role/app-member"


def base(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "version": 1,
        "identity_sources": [{"id": "pool", "issuer": "https://idp.example/",
                              "jwks_uri": "https://idp.example/jwks", "audiences": ["a"]}],
        "upstreams": {"files": {"url": "https://s3.eu-west-1.amazonaws.com",
                                "aws_sigv4": {"service": "s3", "region": "eu-west-1"}},
                      "app": {"url": "http://127.0.0.1:9001"}},
        "routes": [{"id": "r", "match": {"path": "/**"}, "upstream": "files"}],
        "default_role": "member",
        "roles": {"member": {
            "aws": {"role_arn": ARN, "session_tags": {"tenant": "${tag:tenant}"},
                    "session_policy": [{"Effect": "Allow", "Action": ["s3:GetObject"],
                                        "Resource": ["arn:aws:s3:::b/users/${jwt:sub}/*"]}]},
            "statements": [{"effect": "allow", "action": ["http:*"], "resource": ["files:/**"]}]},
            "plain": {"statements": []}},
        "aws": {"region": "eu-west-1", "flow": "assume_role"},
        "credentials_endpoint": {"enabled": True},
    }
    cfg.update(over)
    return cfg


def test_full_section_parses():
    cfg = parse_config(base())
    aws = cfg.aws
    assert aws is not None and aws.region == "eu-west-1" and aws.flow == "assume_role"
    assert aws.duration_seconds == 900 and aws.refresh_before_seconds == 300
    assert aws.credentials_endpoint is True
    assert aws.upstreams["files"].service == "s3" and "app" not in aws.upstreams
    member = aws.roles["member"]
    assert member.role_arn == ARN and member.session_tags == (("tenant", "${tag:tenant}"),)
    policy = json.loads(member.session_policy)
    assert policy["Version"] == "2012-10-17"
    assert policy["Statement"][0]["Resource"] == ["arn:aws:s3:::b/users/${jwt:sub}/*"]
    assert "plain" not in aws.roles
    # the lifted keys do not leak into the other sections' parsers
    assert cfg.roles["member"].statements and cfg.upstreams["files"].url.startswith("https://")


def test_no_aws_anywhere_is_none():
    cfg = base()
    for k in ("aws", "credentials_endpoint"):
        cfg.pop(k)
    del cfg["roles"]["member"]["aws"]
    del cfg["upstreams"]["files"]["aws_sigv4"]
    assert parse_config(cfg).aws is None


def _mutate(path: str, value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(base())
    node = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if value is KeyError:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return cfg


@pytest.mark.parametrize("path,value,error_path", [
    ("aws.flow", "identity_pool", "aws.identity_pool_id"),
    ("aws.flow", "sts", "aws.flow"),
    ("aws.identity_pool_id", "not-a-pool", "aws.identity_pool_id"),
    ("aws.duration_seconds", 899, "aws.duration_seconds"),
    ("aws.duration_seconds", 3601, "aws.duration_seconds"),
    ("aws.refresh_before_seconds", 900, "aws.refresh_before_seconds"),
    ("aws.region", "Europe", "aws.region"),
    ("aws.region", KeyError, "aws.region"),
    ("aws.endpoint_url", "http://sts.example.com", "aws.endpoint_url"),
    ("aws.colour", "blue", "aws.colour"),
    ("roles.member.aws.role_arn", "app-member", "roles.member.aws.role_arn"),
    ("roles.member.aws.role_arn", KeyError, "roles.member.aws.role_arn"),
    ("roles.member.aws.session_policy", {"Effect": "Allow"}, "roles.member.aws.session_policy"),
    ("roles.member.aws.session_policy", [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}],
     "roles.member.aws.session_policy[0].Effect"),
    ("roles.member.aws.session_policy", [{"Effect": "Allow", "Resource": "*"}],
     "roles.member.aws.session_policy[0]"),
    ("roles.member.aws.session_policy",
     [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${path:id}"}],
     "roles.member.aws.session_policy[0].Resource"),
    ("roles.member.aws.session_tags", {"tenant": "${role}"}, "roles.member.aws.session_tags.tenant"),
    ("roles.member.aws.extra", 1, "roles.member.aws.extra"),
    ("upstreams.files.aws_sigv4", {"region": "eu-west-1"}, "upstreams.files.aws_sigv4.service"),
    ("upstreams.files.aws_sigv4", {"service": "S3!"}, "upstreams.files.aws_sigv4.service"),
    ("credentials_endpoint", {"enabled": "yes"}, "credentials_endpoint.enabled"),
])
def test_errors_name_the_key(path, value, error_path):
    with pytest.raises(ConfigError) as ei:
        parse_config(_mutate(path, value))
    assert ei.value.path == error_path, ei.value


def test_identity_pool_flow_needs_no_session_policy():
    cfg = _mutate("aws.flow", "identity_pool")
    cfg["aws"]["identity_pool_id"] = "eu-west-1:11111111-2222-3333-4444-555555555555"
    with pytest.raises(ConfigError) as ei:
        parse_config(cfg)
    assert ei.value.path == "roles.member.aws"
    del cfg["roles"]["member"]["aws"]["session_policy"]
    del cfg["roles"]["member"]["aws"]["session_tags"]
    aws = parse_config(cfg).aws
    assert aws.flow == "identity_pool" and aws.identity_pool_id.startswith("eu-west-1:")


@pytest.mark.parametrize("drop_top,where", [
    ("roles", "roles.member.aws"), ("upstreams", "upstreams.files.aws_sigv4"),
    ("endpoint", "credentials_endpoint.enabled")])
def test_aws_keys_need_the_top_level_section(drop_top, where):
    cfg = base()
    del cfg["aws"]
    if drop_top != "roles":
        del cfg["roles"]["member"]["aws"]
    if drop_top == "endpoint":
        del cfg["upstreams"]["files"]["aws_sigv4"]
    with pytest.raises(ConfigError) as ei:
        parse_config(cfg)
    assert ei.value.path == where


def test_sigv4_region_defaults_to_the_aws_region_and_iam_variables_pass():
    cfg = base()
    cfg["upstreams"]["files"]["aws_sigv4"] = {"service": "execute-api"}
    cfg["roles"]["member"]["aws"]["session_policy"][0]["Resource"] = [
        "arn:aws:s3:::b/${aws:PrincipalTag/tenant}/*"]
    aws = parse_config(cfg).aws
    assert aws.upstreams["files"].region == "eu-west-1"
    assert "${aws:PrincipalTag/tenant}" in aws.roles["member"].session_policy


def test_oversized_session_policy_is_refused_at_load():
    cfg = base()
    cfg["roles"]["member"]["aws"]["session_policy"] = [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::b/{i:04d}/*"}
        for i in range(60)]
    with pytest.raises(ConfigError) as ei:
        parse_config(cfg)
    assert ei.value.path == "roles.member.aws.session_policy" and "2048" in ei.value.message
