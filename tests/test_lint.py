"""Config lint findings (gateway/lint.py): each one names its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config, parse_config
from gateway.lint import lint

FIXTURES = Path(__file__).parent / "fixtures"


def findings(**overrides: Any) -> list[str]:
    data: dict[str, Any] = {
        "version": 1,
        "identity_sources": [{"id": "pool", "cognito": {"region": "eu-west-1",
                                                        "user_pool_id": "eu-west-1_Abc"},
                              "jwks_uri": "http://127.0.0.1:1/jwks.json", "client_ids": ["c"]}],
        "upstreams": {"orders": {"url": "http://127.0.0.1:9"}},
        "routes": [{"id": "o", "match": {"path": "/tenants/{tenant_id}/orders/**"},
                    "upstream": "orders"}],
        "mappings": {"pool": {"mode": "rules", "rules": [
            {"claim": "cognito:groups", "op": "contains", "value": "admins", "role": "admin"}]}},
        "principal_tags": {"pool": {"tenant": "custom:tenant_id"}},
        "default_role": "member",
        "roles": {"admin": {"statements": [{"sid": "All", "effect": "allow", "action": "http:*",
                                            "resource": "orders:/**"}]},
                  "member": {"statements": [{"sid": "Own", "effect": "allow", "action": "http:GET",
                                             "resource": "orders:/tenants/${tag:tenant}/**"}]}},
    }
    data.update(overrides)
    return lint(parse_config(data, env={}))


def stmt(resource: str = "orders:/**", sid: str | None = None, **kw: Any) -> dict[str, Any]:
    s = {"effect": "allow", "action": "http:GET", "resource": resource, **kw}
    if sid is not None:
        s["sid"] = sid
    return s


def roles(**extra: list[dict[str, Any]]) -> dict[str, Any]:
    base = {"admin": [stmt(sid="All")], "member": [stmt(sid="Own")]}
    base.update(extra)
    return {name: {"statements": sts} for name, sts in base.items()}


def test_clean_config_and_worked_examples_have_no_findings() -> None:
    assert findings() == []
    for name in ("example1.yaml", "example2.yaml"):
        assert lint(load_config(FIXTURES / name)) == []


@pytest.mark.parametrize(("rule", "unreachable"), [
    ({"claim": "sub", "op": "exists", "role": "member"}, True),
    ({"claim": "iss", "op": "regex", "value": ".*", "role": "member"}, True),
    ({"claim": "exp", "op": "exists", "role": "member"}, True),
    ({"claim": "custom:x", "op": "exists", "role": "member"}, False),
    ({"claim": "sub", "op": "regex", "value": "u-.*", "role": "member"}, False),
])
def test_rules_after_an_always_true_rule_are_unreachable(rule: dict[str, Any], unreachable: bool) -> None:
    rules = [rule, {"claim": "cognito:groups", "op": "contains", "value": "admins", "role": "admin"}]
    out = findings(mappings={"pool": {"mode": "rules", "rules": rules}})
    hit = [f for f in out if f.startswith("mappings.pool.rules[1]: unreachable: "
                                          "mappings.pool.rules[0]")]
    assert bool(hit) is unreachable, out


def test_rules_ignored_outside_rules_mode() -> None:
    out = findings(mappings={"pool": {"mode": "default", "rules": [
        {"claim": "sub", "op": "exists", "role": "admin"}]}})
    assert "mappings.pool.rules: ignored because mode is default" in out


def test_duplicate_sids_unnamed_ignored() -> None:
    out = findings(roles=roles(admin=[stmt(sid="A"), stmt(sid="A"), stmt(), stmt()]),
                   guardrails=[{"name": "g", "statements": [stmt(sid="G"), stmt(sid="G")]}])
    dup = [f for f in out if "duplicate sid" in f]
    assert [f.split(":")[0] for f in dup] == ["roles.admin.statements[1].sid",
                                              "guardrails[0].statements[1].sid"]


def test_role_without_statements_and_unreachable_role() -> None:
    out = findings(roles={**roles(), "auditor": {"statements": []}})
    assert any(f.startswith("roles.auditor: has no statements") for f in out)
    assert any(f.startswith("roles.auditor: info: not referenced") for f in out)
    assert not any(f.startswith(("roles.admin: info", "roles.member: info")) for f in out)


@pytest.mark.parametrize(("resource", "condition", "expected"), [
    ("orders:/tenants/${path:tenant_id}/**", None, None),
    ("orders:/x/${path:order_id}", None, "${path:order_id} never resolves: no route to orders"),
    ("orders:/t/${tag:tenant}/**", None, None),
    ("orders:/t/${tag:region}/**", None, "${tag:region} never resolves: no principal_tags"),
    ("orders:/t/${foo:bar}", None, "unknown policy variable ${foo:bar}"),
    ("orders:/t/${role:x}", None, "unknown policy variable ${role:x}"),
    ("orders:/t/${role}", None, None),
    ("orders:/**", {"StringEquals": {"tag:dept": "x"}}, "${tag:dept} never resolves"),
    ("orders:/**", {"StringEquals": {"jwt:t": "${path:nope}"}}, "${path:nope} never resolves"),
    ("orders:/**", {"ForAllValues:StringEquals": {"jwt:cognito:groups": ["a"]}},
     "ForAllValues is true when jwt:cognito:groups is missing or empty"),
    ("orders:/**", {"ForAnyValue:StringEquals": {"jwt:cognito:groups": ["a"]}}, None),
    ("ordres:/**", None, "no upstream matches 'ordres'"),
])
def test_statement_findings(resource: str, condition: dict[str, Any] | None,
                            expected: str | None) -> None:
    extra = {"condition": condition} if condition else {}
    out = findings(roles=roles(admin=[stmt(resource, sid="S", **extra)]))
    mine = [f for f in out if f.startswith("roles.admin.statements[0]")]
    if expected is None:
        assert mine == []
    else:
        assert any(expected in f for f in mine), out


def test_claims_in_guest_only_roles_never_resolve() -> None:
    out = findings(guest_role="guest", roles=roles(guest=[
        stmt("orders:/u/${jwt:sub}/**"), stmt("orders:/**", condition={"Null": {"tag:tenant": True}})]))
    assert any(f.startswith("roles.guest.statements[0].resource[0]: ${jwt:sub} never resolves: "
                            "this role is only assumed by guests") for f in out)
    assert any(f.startswith("roles.guest.statements[1].condition.Null.tag:tenant: ${tag:tenant}")
               for f in out)


def test_policy_route_whose_upstream_no_role_mentions() -> None:
    out = findings(upstreams={"orders": {"url": "http://127.0.0.1:9"},
                              "billing": {"url": "http://127.0.0.1:9"}},
                   routes=[{"id": "b", "match": {"path": "/b/**"}, "upstream": "billing"},
                           {"id": "p", "match": {"path": "/p/**"}, "upstream": "billing",
                            "auth": "public"}])
    assert [f for f in out if f.startswith("routes[")] == [
        ("routes[0].upstream: no role's statements mention upstream 'billing': this policy "
         "route denies everyone")]


def test_required_scopes_with_id_token_only_source() -> None:
    src = {"id": "pool", "cognito": {"region": "eu-west-1", "user_pool_id": "eu-west-1_Abc"},
           "jwks_uri": "http://127.0.0.1:1/jwks.json", "client_ids": ["c"], "token_use": ["id"]}
    out = findings(identity_sources=[src], routes=[
        {"id": "o", "match": {"path": "/**"}, "upstream": "orders", "required_scopes": ["a"]}])
    assert any(f.startswith("routes[0].required_scopes: identity source pool accepts only id "
                            "tokens") for f in out)
    both = {**src, "token_use": ["id", "access"]}
    assert not any("required_scopes" in f for f in findings(identity_sources=[both], routes=[
        {"id": "o", "match": {"path": "/**"}, "upstream": "orders", "required_scopes": ["a"]}]))


def test_token_mapping_findings() -> None:
    out = findings(mappings={"pool": {"mode": "token", "on_ambiguous": "deny", "token": {
        "group_to_role": {"admins": "admin"}, "precedence": ["member", "admin"]}}})
    assert any(f.startswith("mappings.pool.token.precedence[0]: role 'member' is never a "
                            "candidate") for f in out)
    out = findings(mappings={"pool": {"mode": "token", "on_ambiguous": "deny"}})
    assert any(f.startswith("mappings.pool.token.group_to_role: empty") for f in out)


def test_fallback_without_default_role() -> None:
    out = findings(default_role=None, roles=roles(member=[stmt(sid="Own")]))
    assert any(f.startswith("mappings.pool: falls back to default_role, which is not set")
               for f in out)


def test_guardrail_matching_no_role_is_info() -> None:
    out = findings(guardrails=[{"name": "g", "applies_to": {"roles": ["nobody*"]},
                                "statements": [stmt()]}])
    assert "guardrails[0].applies_to.roles: info: matches no role" in out


# --------------------------------------------------------------------------- slow patterns

@pytest.mark.parametrize("regex, slow", [
    ("^admin-.*$", False), ("[a-z]+@example\\.com", False), ("(ab)+", False),
    ("(a+)+$", True), (".*-.*-.*\\.csv", True), ("(x*)*y", True),
])
def test_backtracking_mapping_regex_is_flagged(regex: str, slow: bool) -> None:
    """A mapping rule's regex is the one configured regex left on request data (claims);
    path patterns, actions and StringLike are linear matchers and never flagged."""
    out = findings(mappings={"pool": {"mode": "rules", "rules": [
        {"claim": "email", "op": "regex", "value": regex, "role": "admin"}]}},
        routes=[{"id": "x", "match": {"path": "/exports/*-*-*.csv"}, "upstream": "orders"}])
    hits = [f for f in out if "may backtrack" in f]
    assert bool(hits) is slow, out
    if slow:
        assert hits[0].startswith("mappings.pool.rules[0].value")
