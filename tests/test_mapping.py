"""Claims -> role: rule operators, rules/token/default modes, role requests, tags (gateway/mapping.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.config import Rule, parse_config
from gateway.errors import Forbidden
from gateway.mapping import RoleChoice, RoleMapper, rule_matcher

G = "cognito:groups"


@pytest.mark.parametrize(("op", "value", "claims", "expected"), [
    ("equals", "a", {"c": "a"}, True),
    ("equals", "a", {"c": "b"}, False),
    ("equals", "a", {"c": ["b", "a"]}, True),
    ("equals", "a", {}, False),
    ("equals", "a", {"c": None}, False),
    ("equals", "42", {"c": 42}, True),
    ("equals", "true", {"c": True}, True),
    ("equals", "", {"c": ""}, True),
    ("not_equal", "a", {"c": "b"}, True),
    ("not_equal", "a", {"c": "a"}, False),
    ("not_equal", "a", {"c": ["b", "c"]}, True),
    ("not_equal", "a", {"c": ["b", "a"]}, False),
    ("not_equal", "a", {}, False),                   # as Cognito: missing never matches
    ("not_equal", "a", {"c": []}, True),
    ("starts_with", "ad", {"c": "admins"}, True),
    ("starts_with", "ad", {"c": ["x", "admins"]}, True),
    ("starts_with", "ad", {"c": "badmins"}, False),
    ("starts_with", "ad", {}, False),
    ("ends_with", "ins", {"c": "admins"}, True),
    ("ends_with", "ins", {"c": ["admin"]}, False),
    ("ends_with", "ins", {}, False),
    ("contains", "admins", {"c": "superadmins"}, True),        # scalar: substring
    ("contains", "admins", {"c": ["superadmins"]}, False),     # list: membership
    ("contains", "admins", {"c": ["x", "admins"]}, True),
    ("contains", "admins", {}, False),
    ("any_of", ("a", "b"), {"c": "b"}, True),
    ("any_of", ("a", "b"), {"c": "c"}, False),
    ("any_of", ("a", "b"), {"c": ["c", "a"]}, True),
    ("any_of", ("a", "b"), {"c": []}, False),
    ("any_of", ("a", "b"), {}, False),
    ("regex", re.compile(r"t\d+"), {"c": "t42"}, True),
    ("regex", re.compile(r"t\d+"), {"c": "xt42"}, False),      # full match
    ("regex", re.compile(r"t\d+"), {"c": "t42x"}, False),
    ("regex", re.compile(r"t\d+"), {"c": ["x", "t1"]}, True),
    ("regex", re.compile(r"t\d+"), {}, False),
    ("exists", None, {"c": "x"}, True),
    ("exists", None, {"c": []}, True),
    ("exists", None, {"c": None}, False),
    ("exists", None, {}, False),
])
def test_rule_operators(op: str, value: Any, claims: dict[str, Any], expected: bool) -> None:
    rule = Rule(claim="c", op=op, value=value, role="r", path="mappings.x.rules[0]")
    assert rule_matcher(rule)(claims) is expected


@pytest.mark.parametrize(("op", "value", "scope", "expected"), [
    ("contains", "read", "read write", True),
    ("contains", "read", "readonly write", False),
    ("equals", "write", "read write", True),
    ("not_equal", "admin", "read write", True),
])
def test_scope_claim_is_a_space_split_list(op: str, value: str, scope: str, expected: bool) -> None:
    rule = Rule(claim="scope", op=op, value=value, role="r", path="p")
    assert rule_matcher(rule)({"scope": scope}) is expected


def mapper(mapping: dict[str, Any] | None, *, default: str | None = "basic",
           guest: str | None = None, tags: dict[str, str] | None = None) -> RoleMapper:
    roles = ["basic", "admin", "manager", "premium", "free", "staff", "guest"]
    data: dict[str, Any] = {
        "version": 1,
        "identity_sources": [{"id": "idp", "issuer": "http://127.0.0.1:1/", "audiences": ["api"],
                              "jwks_uri": "http://127.0.0.1:1/jwks.json"}],
        "roles": {r: {"statements": []} for r in roles},
        "default_role": default, "guest_role": guest,
        "mappings": {"idp": mapping} if mapping is not None else {},
        "principal_tags": {"idp": tags} if tags else {}}
    return RoleMapper(parse_config(data, env={}))


RULES = {"mode": "rules", "rules": [
    {"claim": G, "op": "contains", "value": "admins", "role": "admin"},
    {"claim": "custom:role", "op": "equals", "value": "manager", "role": "manager"},
    {"claim": "custom:role", "op": "exists", "role": "basic"}]}


def test_rules_mode_traced_lists_every_matching_rule() -> None:
    """explain (trace_all) and a role request see every candidate; the request path does not
    evaluate rules after the first match."""
    m = mapper({**RULES, "on_ambiguous": "default_role"})
    claims = {G: ["admins"], "custom:role": "manager"}
    assert m.choose("idp", claims).candidates == ("admin",)
    m.trace_all = True
    assert m.choose("idp", claims) == RoleChoice(
        "admin", "mappings.idp.rules[0]", "rule_matched", ("admin", "manager", "basic"))


@pytest.mark.parametrize(("claims", "requested", "on_ambiguous", "expected"), [
    # no role requested: the first matching rule decides, later rules are not evaluated
    ({G: ["admins"], "custom:role": "manager"}, None, "default_role",
     RoleChoice("admin", "mappings.idp.rules[0]", "rule_matched", ("admin",))),
    ({"custom:role": "manager"}, None, "default_role",
     RoleChoice("manager", "mappings.idp.rules[1]", "rule_matched", ("manager",))),
    ({G: ["admins"], "custom:role": "manager"}, "manager", "default_role",
     RoleChoice("manager", "role_request", "role_requested", ("admin", "manager", "basic"))),
    ({G: ["superadmins"]}, None, "default_role",
     RoleChoice("basic", "default_role", "default_role", ("basic",))),
    ({}, "basic", "default_role", RoleChoice("basic", "role_request", "role_requested", ("basic",))),
])
def test_rules_mode(claims: dict[str, Any], requested: str | None, on_ambiguous: str,
                    expected: RoleChoice) -> None:
    m = mapper({**RULES, "on_ambiguous": on_ambiguous})
    assert m.choose("idp", claims, requested) == expected


@pytest.mark.parametrize(("mapping", "default", "claims", "requested", "code"), [
    ({**RULES, "on_ambiguous": "deny"}, "basic", {}, None, "ambiguous_role"),
    ({**RULES, "on_ambiguous": "deny"}, "basic", {}, "basic", "role_not_eligible"),
    ({**RULES, "on_ambiguous": "default_role"}, None, {}, None, "no_role"),
    (RULES, "basic", {"custom:role": "manager"}, "admin", "role_not_eligible"),
    (RULES, "basic", {G: ["admins"]}, "basic", "role_not_eligible"),   # only matching rules
    ({"mode": "default"}, None, {}, None, "no_role"),
    ({"mode": "default"}, "basic", {}, "admin", "role_not_eligible"),
])
def test_mapping_refusals(mapping: dict[str, Any], default: str | None, claims: dict[str, Any],
                          requested: str | None, code: str) -> None:
    with pytest.raises(Forbidden) as e:
        mapper(mapping, default=default).choose("idp", claims, requested)
    assert e.value.code == code and e.value.status == 403


def token(precedence: list[str] | None = None, on_ambiguous: str = "deny", **extra: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"source": "groups",
                         "group_to_role": {"premium": "premium", "family": "premium",
                                           "free": "free", "staff": "staff"}, **extra}
    if precedence is not None:
        t["precedence"] = precedence
    return {"mode": "token", "on_ambiguous": on_ambiguous, "token": t}


@pytest.mark.parametrize(("mapping", "claims", "requested", "expected"), [
    (token(), {G: ["free"]}, None, RoleChoice("free", "group:free", "token_group", ("free",))),
    (token(), {G: ["premium", "family"]}, None,
     RoleChoice("premium", "group:premium", "token_group", ("premium",))),
    (token(["staff", "premium", "free"]), {G: ["free", "premium"]}, None,
     RoleChoice("premium", "group:premium", "token_precedence", ("free", "premium"))),
    (token(), {G: ["staff", "premium"]}, "premium",
     RoleChoice("premium", "role_request", "role_requested", ("staff", "premium"))),
    (token(on_ambiguous="default_role"), {G: ["vip"]}, None,
     RoleChoice("basic", "default_role", "default_role", ("basic",))),
    (token(on_ambiguous="default_role"), {G: ["staff", "free"]}, None,
     RoleChoice("basic", "default_role", "default_role", ("staff", "free", "basic"))),
    (token(), {G: "staff"}, None, RoleChoice("staff", "group:staff", "token_group", ("staff",))),
    (token(groups_claim="groups"), {"groups": ["free"]}, None,
     RoleChoice("free", "group:free", "token_group", ("free",))),
])
def test_token_mode_groups(mapping: dict[str, Any], claims: dict[str, Any], requested: str | None,
                           expected: RoleChoice) -> None:
    assert mapper(mapping).choose("idp", claims, requested) == expected


@pytest.mark.parametrize(("mapping", "claims", "requested", "code"), [
    (token(), {G: ["vip"]}, None, "ambiguous_role"),
    (token(), {}, None, "ambiguous_role"),
    (token(), {G: ["staff", "premium"]}, None, "ambiguous_role"),
    (token(["admin"]), {G: ["staff", "premium"]}, None, "ambiguous_role"),
    (token(["staff"]), {G: ["premium"]}, "staff", "role_not_eligible"),
    (token(), {G: ["vip"]}, "free", "role_not_eligible"),
])
def test_token_mode_refusals(mapping: dict[str, Any], claims: dict[str, Any],
                             requested: str | None, code: str) -> None:
    with pytest.raises(Forbidden) as e:
        mapper(mapping).choose("idp", claims, requested)
    assert e.value.code == code


ARN = "arn:aws:iam::123456789012:role/"
ROLES = {"mode": "token", "on_ambiguous": "deny", "token": {
    "source": "roles", "precedence": ["staff"],
    "role_arn_to_role": {ARN + "Staff": "staff", ARN + "Premium": "premium", ARN + "Free": "free"}}}


@pytest.mark.parametrize(("claims", "expected"), [
    ({"cognito:preferred_role": ARN + "Premium", "cognito:roles": [ARN + "Premium", ARN + "Staff"]},
     RoleChoice("premium", "cognito:preferred_role", "token_preferred_role", ("premium", "staff"))),
    ({"cognito:roles": [ARN + "Free", ARN + "Unknown"]},
     RoleChoice("free", "cognito:roles", "token_roles", ("free",))),
    ({"cognito:preferred_role": ARN + "Unknown", "cognito:roles": [ARN + "Free", ARN + "Staff"]},
     RoleChoice("staff", "cognito:roles", "token_precedence", ("free", "staff"))),
])
def test_token_mode_roles(claims: dict[str, Any], expected: RoleChoice) -> None:
    assert mapper(ROLES).choose("idp", claims) == expected


def test_token_mode_roles_tie_is_ambiguous() -> None:
    with pytest.raises(Forbidden) as e:
        mapper(ROLES).choose("idp", {"cognito:roles": [ARN + "Free", ARN + "Premium"]})
    assert e.value.code == "ambiguous_role"


def test_default_mode_and_unmapped_source() -> None:
    assert mapper({"mode": "default"}).choose("idp", {"sub": "u"}) == RoleChoice(
        "basic", "default_role", "default_role", ("basic",))
    assert mapper(None).choose("other-source", {"sub": "u"}).role == "basic"


@pytest.mark.parametrize(("guest", "requested", "expected"), [
    ("guest", None, RoleChoice("guest", "guest_role", "guest_role", ("guest",))),
    ("guest", "guest", RoleChoice("guest", "guest_role", "guest_role", ("guest",))),
    (None, None, RoleChoice(None, None, "no_guest_role", ())),
    (None, "admin", RoleChoice(None, None, "no_guest_role", ())),
])
def test_guest(guest: str | None, requested: str | None, expected: RoleChoice) -> None:
    m = mapper(RULES, guest=guest)
    assert m.choose(None, None, requested) == expected
    assert m.choose("idp", None, requested) == expected


def test_guest_may_not_request_another_role() -> None:
    with pytest.raises(Forbidden) as e:
        mapper(RULES, guest="guest").choose(None, None, "admin")
    assert e.value.code == "role_not_eligible"


def test_requested_role_is_stripped_and_empty_means_none() -> None:
    m = mapper(RULES)
    assert m.choose("idp", {G: ["admins"]}, "  ").role == "admin"
    assert m.choose("idp", {G: ["admins"], "custom:role": "x"}, " basic ").role == "basic"


def test_tags_keep_scalar_claims_only() -> None:
    m = mapper(RULES, tags={"tenant": "custom:tenant_id", "level": "custom:level",
                            "ok": "email_verified", "groups": G, "gone": "custom:gone",
                            "obj": "address"})
    claims = {"custom:tenant_id": "t1", "custom:level": 3, "email_verified": True,
              G: ["a"], "address": {"x": 1}}
    assert m.tags("idp", claims) == {"tenant": "t1", "level": "3", "ok": "true"}
    assert m.tags(None, None) == {} and m.tags("other", claims) == {}


# --------------------------------------------------------------------------- rule index

def _brute_first(src, claims):   # noqa: ANN001, ANN202 - the reference: every rule, in order
    return next((i for i, (test, _r) in enumerate(src.rules) if test(claims)), None)


def test_indexed_first_match_agrees_with_testing_every_rule_in_order() -> None:
    """The rule index (exact values, membership, affixes) finds the same first rule as trying
    the rules one by one, for rules of every op over scalar, list and missing claims."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    from gateway.mapping import _Source
    from gateway.config import parse_config

    words = st.sampled_from(["a", "ab", "b", "ba", "admins", "x1", "1", ""])
    claim_names = st.sampled_from(["c1", "c2", "cognito:groups"])
    rule = st.one_of(
        st.builds(lambda c, op, v: {"claim": c, "op": op, "value": v, "role": "r"},
                  claim_names, st.sampled_from(["equals", "not_equal", "starts_with",
                                                "ends_with", "contains"]),
                  words.filter(bool)),
        st.builds(lambda c, v: {"claim": c, "op": "any_of", "value": v, "role": "r"},
                  claim_names, st.lists(words.filter(bool), min_size=1, max_size=3)),
        st.builds(lambda c: {"claim": c, "op": "exists", "role": "r"}, claim_names),
        st.builds(lambda c, v: {"claim": c, "op": "regex", "value": v + ".*", "role": "r"},
                  claim_names, st.sampled_from(["a", "b", "x"])))
    claim_value = st.one_of(words, st.lists(words, max_size=3), st.integers(0, 2),
                            st.booleans(), st.none())
    claims_st = st.dictionaries(claim_names, claim_value, max_size=3)

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(st.lists(rule, min_size=1, max_size=12), claims_st)
    def check(rules: list[dict[str, Any]], claims: dict[str, Any]) -> None:
        cfg = parse_config({"version": 1,
                            "identity_sources": [{"id": "idp", "issuer": "http://127.0.0.1:1/",
                                                  "audiences": ["a"],
                                                  "jwks_uri": "http://127.0.0.1:1/j"}],
                            "roles": {"r": {"statements": []}},
                            "mappings": {"idp": {"mode": "rules", "rules": rules}}}, env={})
        src = _Source(cfg.mappings["idp"])
        assert src.first_match(claims) == _brute_first(src, claims)

    check()
