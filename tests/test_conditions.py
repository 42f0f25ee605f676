"""Condition truth tables (gateway/conditions.py), evaluated through PolicyEngine."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.conditions import claim_values, read_claim, scalar_text
from gateway.config import Route, parse_config
from gateway.errors import ConfigError
from gateway.patterns import PathPattern
from gateway.policy import PolicyEngine
from gateway.principal import RequestFacts

NOW = 1_700_000_000.0          # 2023-11-14T22:13:20Z
ROUTE = Route(id="r", path=PathPattern.compile("/**"), methods=None, upstream="orders")


def engine(statements: list[dict[str, Any]]) -> PolicyEngine:
    cfg = parse_config({
        "version": 1,
        "identity_sources": [{"id": "idp", "issuer": "http://127.0.0.1:1/", "audiences": ["api"],
                              "jwks_uri": "http://127.0.0.1:1/jwks.json"}],
        "upstreams": {"orders": {"url": "http://127.0.0.1:9"}},
        "routes": [{"id": "r", "match": {"path": "/**"}, "upstream": "orders"}],
        "roles": {"r": {"statements": statements}}, "default_role": "r"}, env={})
    return PolicyEngine(cfg)


def run(statements: list[dict[str, Any]], *, claims: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None, path_params: dict[str, str] | None = None,
        ip: str = "10.0.0.1", secure: bool = True, now: float = NOW,
        headers: dict[str, str] | None = None) -> bool:
    facts = RequestFacts(method="GET", path="/x", source_ip=ip, secure=secure, now=now,
                         headers=headers or {})
    d = engine(statements).evaluate(
        role="r", route=ROUTE, upstream="orders", facts=facts, claims=claims or {},
        tags=tags or {}, path_params=path_params or {}, scopes=(), token_use=None,
        decision_id="t")
    return d.allowed


def allowed_if(condition: dict[str, Any], **ctx: Any) -> bool:
    return run([{"effect": "allow", "action": "http:*", "resource": "orders:/**",
                 "condition": condition}], **ctx)


def denied_if(condition: dict[str, Any], **ctx: Any) -> bool:
    return not run([{"effect": "allow", "action": "http:*", "resource": "orders:/**"},
                    {"effect": "deny", "action": "http:*", "resource": "orders:/**",
                     "condition": condition}], **ctx)


G = "jwt:cognito:groups"
TABLE = [
    # StringEquals: values OR, keys AND, list claims: some element
    ({"StringEquals": {"jwt:t": "t1"}}, {"claims": {"t": "t1"}}, True),
    ({"StringEquals": {"jwt:t": "t1"}}, {"claims": {"t": "t2"}}, False),
    ({"StringEquals": {"jwt:t": "t1"}}, {}, False),
    ({"StringEquals": {"jwt:t": ["t1", "t2"]}}, {"claims": {"t": "t2"}}, True),
    ({"StringEquals": {"jwt:a": "1", "jwt:b": "2"}}, {"claims": {"a": "1", "b": "2"}}, True),
    ({"StringEquals": {"jwt:a": "1", "jwt:b": "2"}}, {"claims": {"a": "1", "b": "3"}}, False),
    ({"StringEquals": {"jwt:a": "1"}, "Bool": {"req:secure": True}},
     {"claims": {"a": "1"}, "secure": False}, False),
    ({"StringEquals": {G: "admins"}}, {"claims": {"cognito:groups": ["x", "admins"]}}, True),
    ({"StringEquals": {"jwt:level": "3"}}, {"claims": {"level": 3}}, True),
    ({"StringEquals": {"jwt:level": 3}}, {"claims": {"level": 3}}, True),
    ({"StringEquals": {"jwt:ok": "true"}}, {"claims": {"ok": True}}, True),
    ({"StringEquals": {"jwt:scope": "write"}}, {"claims": {"scope": "read write"}}, True),
    ({"StringEquals": {G: "a"}}, {"claims": {"cognito:groups": []}}, False),
    # StringNotEquals: NOR over values and elements; missing key is true
    ({"StringNotEquals": {"jwt:t": "t1"}}, {"claims": {"t": "t2"}}, True),
    ({"StringNotEquals": {"jwt:t": "t1"}}, {"claims": {"t": "t1"}}, False),
    ({"StringNotEquals": {"jwt:t": "t1"}}, {}, True),
    ({"StringNotEquals": {"jwt:t": ["t1", "t2"]}}, {"claims": {"t": "t2"}}, False),
    ({"StringNotEquals": {"jwt:t": ["t1", "t2"]}}, {"claims": {"t": "t3"}}, True),
    ({"StringNotEquals": {G: "b"}}, {"claims": {"cognito:groups": ["a", "b"]}}, False),
    ({"StringNotEquals": {G: "c"}}, {"claims": {"cognito:groups": ["a", "b"]}}, True),
    # IgnoreCase
    ({"StringEqualsIgnoreCase": {"jwt:t": "T1"}}, {"claims": {"t": "t1"}}, True),
    ({"StringNotEqualsIgnoreCase": {"jwt:t": "T1"}}, {"claims": {"t": "t1"}}, False),
    ({"StringEquals": {"jwt:t": "T1"}}, {"claims": {"t": "t1"}}, False),
    # StringLike: * and ? (crossing /), case-sensitive, full match
    ({"StringLike": {"jwt:t": "t*"}}, {"claims": {"t": "t9"}}, True),
    ({"StringLike": {"jwt:t": "x*"}}, {"claims": {"t": "t9"}}, False),
    ({"StringLike": {"jwt:t": "a?c"}}, {"claims": {"t": "abc"}}, True),
    ({"StringLike": {"jwt:t": "a?c"}}, {"claims": {"t": "abbc"}}, False),
    ({"StringLike": {"jwt:t": "a/*"}}, {"claims": {"t": "a/b/c"}}, True),
    ({"StringLike": {"jwt:t": "a.c"}}, {"claims": {"t": "abc"}}, False),
    ({"StringNotLike": {"jwt:t": ["x*", "y*"]}}, {"claims": {"t": "t9"}}, True),
    ({"StringNotLike": {"jwt:t": ["x*", "t*"]}}, {"claims": {"t": "t9"}}, False),
    # Numeric
    ({"NumericEquals": {"jwt:n": 3}}, {"claims": {"n": 3}}, True),
    ({"NumericEquals": {"jwt:n": "3"}}, {"claims": {"n": "3.0"}}, True),
    ({"NumericNotEquals": {"jwt:n": 3}}, {"claims": {"n": 4}}, True),
    ({"NumericLessThan": {"jwt:n": 3}}, {"claims": {"n": 3}}, False),
    ({"NumericLessThanEquals": {"jwt:n": 3}}, {"claims": {"n": 3}}, True),
    ({"NumericGreaterThan": {"jwt:n": 3}}, {"claims": {"n": 4}}, True),
    ({"NumericGreaterThanEquals": {"jwt:n": 3}}, {"claims": {"n": 2}}, False),
    ({"NumericEquals": {"jwt:n": 3}}, {"claims": {"n": "abc"}}, False),
    ({"NumericLessThan": {"jwt:n": 3}}, {"claims": {"n": True}}, False),
    ({"NumericLessThan": {"jwt:n": 3}}, {}, False),
    # Date: ISO 8601 (naive = UTC) or epoch; req:time is the injected clock
    ({"DateLessThan": {"req:time": "2030-01-01T00:00:00Z"}}, {}, True),
    ({"DateGreaterThan": {"req:time": "2030-01-01T00:00:00Z"}}, {}, False),
    ({"DateGreaterThan": {"req:time": 1_600_000_000}}, {}, True),
    ({"DateEquals": {"req:time": "2023-11-14T22:13:20"}}, {}, True),
    ({"DateNotEquals": {"req:time": "2023-11-14T22:13:20+00:00"}}, {}, False),
    ({"DateLessThanEquals": {"jwt:updated": "2023-01-01T00:00:00Z"}},
     {"claims": {"updated": "2022-06-01T12:00:00+02:00"}}, True),
    ({"DateGreaterThanEquals": {"jwt:updated": "2023-01-01T00:00:00Z"}},
     {"claims": {"updated": "not a date"}}, False),
    # Bool
    ({"Bool": {"req:secure": True}}, {"secure": True}, True),
    ({"Bool": {"req:secure": True}}, {"secure": False}, False),
    ({"Bool": {"req:secure": "false"}}, {"secure": False}, True),
    ({"Bool": {"jwt:email_verified": True}}, {"claims": {"email_verified": "True"}}, True),
    ({"Bool": {"jwt:email_verified": True}}, {}, False),
    # IpAddress / NotIpAddress, v4 and v6; several networks OR, negated NOR
    ({"IpAddress": {"req:source_ip": "203.0.113.0/24"}}, {"ip": "203.0.113.9"}, True),
    ({"IpAddress": {"req:source_ip": "203.0.113.0/24"}}, {"ip": "198.51.100.7"}, False),
    ({"IpAddress": {"req:source_ip": ["10.0.0.0/8", "2001:db8::/32"]}}, {"ip": "2001:db8::1"}, True),
    ({"IpAddress": {"req:source_ip": "::1/128"}}, {"ip": "::1"}, True),
    ({"IpAddress": {"req:source_ip": "2001:db8::/32"}}, {"ip": "10.0.0.1"}, False),
    ({"NotIpAddress": {"req:source_ip": "203.0.113.0/24"}}, {"ip": "198.51.100.7"}, True),
    ({"NotIpAddress": {"req:source_ip": "203.0.113.0/24"}}, {"ip": "203.0.113.1"}, False),
    ({"NotIpAddress": {"req:source_ip": ["10.0.0.0/8", "::1/128"]}}, {"ip": "::1"}, False),
    ({"IpAddress": {"req:source_ip": "0.0.0.0/0"}}, {"ip": "not-an-ip"}, False),
    ({"NotIpAddress": {"req:source_ip": "10.0.0.0/8"}}, {"ip": ""}, True),
    # ...IfExists: missing is true, present is judged
    ({"StringEqualsIfExists": {"jwt:t": "t1"}}, {}, True),
    ({"StringEqualsIfExists": {"jwt:t": "t1"}}, {"claims": {"t": "t2"}}, False),
    ({"StringEqualsIfExists": {"jwt:t": "t1"}}, {"claims": {"t": "t1"}}, True),
    ({"NumericLessThanIfExists": {"jwt:n": 3}}, {"claims": {"n": 9}}, False),
    # Null
    ({"Null": {"jwt:t": True}}, {}, True),
    ({"Null": {"jwt:t": True}}, {"claims": {"t": "x"}}, False),
    ({"Null": {"jwt:t": False}}, {"claims": {"t": "x"}}, True),
    ({"Null": {"jwt:t": "false"}}, {}, False),
    ({"Null": {"jwt:t": True}}, {"claims": {"t": None}}, True),
    ({"Null": {G: True}}, {"claims": {"cognito:groups": []}}, True),
    # ForAnyValue / ForAllValues with missing and empty lists
    ({"ForAnyValue:StringEquals": {G: ["b", "c"]}}, {"claims": {"cognito:groups": ["a", "b"]}}, True),
    ({"ForAnyValue:StringEquals": {G: ["c"]}}, {"claims": {"cognito:groups": ["a", "b"]}}, False),
    ({"ForAnyValue:StringEquals": {G: ["c"]}}, {}, False),
    ({"ForAnyValue:StringEquals": {G: ["c"]}}, {"claims": {"cognito:groups": []}}, False),
    ({"ForAnyValue:StringNotEquals": {G: ["a"]}}, {"claims": {"cognito:groups": ["a", "b"]}}, True),
    ({"ForAnyValue:StringNotEquals": {G: ["a"]}}, {"claims": {"cognito:groups": ["a"]}}, False),
    ({"ForAnyValue:StringNotEquals": {G: ["a"]}}, {}, False),
    ({"ForAnyValue:StringLike": {G: ["adm*"]}}, {"claims": {"cognito:groups": ["x", "admins"]}}, True),
    ({"ForAllValues:StringEquals": {G: ["a", "b", "c"]}}, {"claims": {"cognito:groups": ["a", "b"]}}, True),
    ({"ForAllValues:StringEquals": {G: ["a", "b"]}}, {"claims": {"cognito:groups": ["a", "d"]}}, False),
    ({"ForAllValues:StringEquals": {G: ["a"]}}, {}, True),
    ({"ForAllValues:StringEquals": {G: ["a"]}}, {"claims": {"cognito:groups": []}}, True),
    ({"ForAllValues:StringNotEquals": {G: ["c"]}}, {"claims": {"cognito:groups": ["a", "b"]}}, True),
    ({"ForAllValues:StringNotEquals": {G: ["a"]}}, {"claims": {"cognito:groups": ["a", "b"]}}, False),
    ({"ForAnyValue:StringEqualsIfExists": {G: ["c"]}}, {}, True),
    # other keys: tag:, path:, req:header/ (name case-insensitive)
    ({"StringEquals": {"tag:tenant": "t1"}}, {"tags": {"tenant": "t1"}}, True),
    ({"StringEquals": {"path:id": "7"}}, {"path_params": {"id": "7"}}, True),
    ({"StringEquals": {"req:header/X-Env": "prod"}}, {"headers": {"x-env": "prod"}}, True),
    ({"StringEquals": {"req:header/X-Env": "prod"}}, {}, False),
    ({"StringEquals": {"req:source_ip": "10.0.0.1"}}, {}, True),
    # variables in values are substituted (literally for StringLike)
    ({"StringEquals": {"jwt:t": "${tag:tenant}"}}, {"claims": {"t": "t1"}, "tags": {"tenant": "t1"}}, True),
    ({"StringEquals": {"jwt:t": "${tag:tenant}"}}, {"claims": {"t": "t1"}, "tags": {"tenant": "t2"}}, False),
    ({"StringEquals": {"jwt:t": "${jwt:cognito:groups}"}},
     {"claims": {"t": "b", "cognito:groups": ["a", "b"]}}, True),
    ({"StringLike": {"req:header/x-p": "${jwt:p}/*"}},
     {"claims": {"p": "a"}, "headers": {"x-p": "a/b"}}, True),
    ({"StringLike": {"req:header/x-p": "${jwt:p}/x"}},
     {"claims": {"p": "*"}, "headers": {"x-p": "abc/x"}}, False),
    ({"StringLike": {"req:header/x-p": "${jwt:p}/x"}},
     {"claims": {"p": "*"}, "headers": {"x-p": "*/x"}}, True),
]


@pytest.mark.parametrize(("condition", "ctx", "expected"), TABLE,
                         ids=[f"{i}-{next(iter(c))}" for i, (c, _, _) in enumerate(TABLE)])
def test_condition_truth_table(condition: dict[str, Any], ctx: dict[str, Any], expected: bool) -> None:
    assert allowed_if(condition, **ctx) is expected
    assert denied_if(condition, **ctx) is expected


UNRESOLVED = {"StringEquals": {"jwt:t": "${tag:missing}"}}


def test_unresolved_variable_in_a_condition_disables_an_allow() -> None:
    assert allowed_if(UNRESOLVED, claims={"t": ""}) is False


def test_unresolved_variable_in_a_condition_makes_a_deny_apply() -> None:
    assert denied_if(UNRESOLVED, claims={"t": "x"}) is True
    # ...but the deny's other conditions are still judged
    both = {**UNRESOLVED, "Bool": {"req:secure": True}}
    assert denied_if(both, secure=False) is False


@pytest.mark.parametrize(("condition", "message"), [
    ({"NumericEquals": {"jwt:n": "abc"}}, "NumericEquals"),
    ({"DateLessThan": {"req:time": "tomorrow"}}, "DateLessThan"),
])
def test_bad_static_condition_values_are_config_errors(condition: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        engine([{"effect": "allow", "action": "http:*", "resource": "orders:/**",
                 "condition": condition}])


@pytest.mark.parametrize(("value", "text"), [
    ("a", "a"), (3, "3"), (2.5, "2.5"), (True, "true"), (False, "false"), (None, None),
    ({"k": 1}, None), ([1], None)])
def test_scalar_text(value: Any, text: str | None) -> None:
    assert scalar_text(value) == text


@pytest.mark.parametrize(("claims", "name", "expected"), [
    ({"g": ["a", 1, True, {"x": 1}]}, "g", (("a", "1", "true"), True)),
    ({"scope": "read  write"}, "scope", (("read", "write"), True)),
    ({"t": "x"}, "t", (("x",), False)),
    ({"t": None}, "t", None),
    ({}, "t", None),
    ({"t": {"a": 1}}, "t", ((), False)),
])
def test_read_claim(claims: dict[str, Any], name: str, expected: Any) -> None:
    assert read_claim(claims, name) == expected


def test_claim_values_treats_empty_lists_as_missing() -> None:
    assert claim_values({"g": []}, "g") is None
    assert claim_values({"g": ["a"]}, "g") == ("a",)
