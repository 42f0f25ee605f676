"""gateway/aws/render.py: per-user policy/tags rendering, session name, source identity."""

from __future__ import annotations

import json

import pytest

from gateway.aws.render import (
    Template,
    UnsafePolicyValue,
    compile_role,
    session_name,
    source_identity,
)

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": ["s3:GetObject"],
    "Resource": ["arn:aws:s3:::b/users/${jwt:sub}/${tag:tenant}/*"]}]}, separators=(",", ":"))


def test_render_inserts_safe_values_and_keeps_json_valid():
    role = compile_role("arn:aws:iam::123456789012:role/r", POLICY, (("tenant", "${tag:tenant}"),
                                                                    ("who", "u-${jwt:sub}")))
    policy, tags = role.render({"sub": "abc-123"}, {"tenant": "acme"})
    assert json.loads(policy)["Statement"][0]["Resource"] == ["arn:aws:s3:::b/users/abc-123/acme/*"]
    assert tags == (("tenant", "acme"), ("who", "u-abc-123"))


@pytest.mark.parametrize("value", [
    "*", "a*", "a?b", "${jwt:sub}", "$x", "a/b", "../x", 'a"b', "a'b", "a\\b", "a\nb", "a\x00",
    "a\x7f", "", None, ["a"], {"a": 1}, True, "x" * 257])
def test_unsafe_values_are_refused(value):
    t = Template.compile("arn:aws:s3:::b/users/${jwt:sub}/*")
    with pytest.raises(UnsafePolicyValue) as ei:
        t.render({"sub": value} if value is not None else {}, {})
    assert ei.value.code == "unsafe_policy_value" and ei.value.status == 403
    # the message names the variable, never the value
    if isinstance(value, str) and len(value) > 2 and "jwt" not in value:
        assert value not in ei.value.description


@pytest.mark.parametrize("value,expected", [("alice", "alice"), ("a.b@c-d_e+f=g,h", "a.b@c-d_e+f=g,h"),
                                            (42, "42"), ("Zoë", "Zoë")])
def test_safe_values(value, expected):
    assert Template.compile("x/${jwt:v}").render({"v": value}, {}) == f"x/{expected}"


def test_template_without_variables_is_returned_as_is():
    assert Template.compile("abc").render({}, {}) == "abc"


@pytest.mark.parametrize("sub,name", [
    ("abc-123", "abc-123"), ("a b/c:d", "a-b-c-d"), ("x", "u-x"), (None, "guest"),
    ("é" * 70, "-" * 64), ("f" * 100, "f" * 64)])
def test_session_name(sub, name):
    assert session_name(sub) == name


def test_source_identity_is_sub_when_sts_accepts_it():
    assert source_identity("0f9a-11ee@pool") == "0f9a-11ee@pool"
    assert source_identity("a b") == "a-b"
