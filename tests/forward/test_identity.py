"""Identity headers rendered from a principal (gateway/forward/identity.py)."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import unquote

import pytest

from gateway.config import CredentialConfig
from gateway.errors import ConfigError
from gateway.forward.identity import IdentityHeaders, render_identity_headers
from gateway.principal import Principal, VerifiedToken

DEFAULT = CredentialConfig().identity_headers


def user(role: str | None = "member", tags: dict[str, str] | None = None,
         **claims: Any) -> Principal:
    c = {"sub": "u-123", "iss": "https://issuer", "exp": 2e9, **claims}
    token = VerifiedToken(raw="t", source_id="pool", issuer="https://issuer", header={},
                          claims=c, token_hash=hashlib.sha256(b"t").digest())
    return Principal(sub=c.get("sub"), role=role, claims=c, source_id="pool",
                     tags=tags or {}, token=token)


def guest(role: str | None = "guest") -> Principal:
    return Principal(sub=None, role=role, claims={}, source_id=None, tags={}, token=None)


def one(template: str, principal: Principal) -> bytes | None:
    out = render_identity_headers((("X-V", template),), principal=principal)
    assert len(out) <= 1
    return out[0][1] if out else None


def test_defaults_for_a_user() -> None:
    assert render_identity_headers(DEFAULT, principal=user()) == [
        (b"x-auth-sub", b"u-123"), (b"x-auth-role", b"member")]


def test_guest_leaves_out_what_does_not_resolve() -> None:
    assert render_identity_headers(DEFAULT, principal=guest()) == [(b"x-auth-role", b"guest")]


def test_nothing_resolves_without_a_role() -> None:
    assert render_identity_headers(DEFAULT, principal=guest(role=None)) == []


@pytest.mark.parametrize("template, expected", [
    ("${jwt:sub}", b"u-123"),
    ("${role}", b"member"),
    ("${tag:tenant}", b"t1"),
    ("tenant=${tag:tenant}; user=${jwt:sub}", b"tenant=t1; user=u-123"),
    ("static", b"static"),
    ("", b""),
    ("${jwt:cognito:username}", b"alice"),
    ("${jwt:n}", b"42"),
    ("${jwt:f}", b"1.5"),
    ("${jwt:verified}", b"true"),
    ("${jwt:off}", b"false"),
    ("${jwt:cognito:groups}", b"admins,staff"),
    ("${jwt:nums}", b"1,2"),
    ("${jwt:empty_list}", b""),
    ("${jwt:obj}", b"{\"a\":1}"),
    ("${jwt:missing}", None),
    ("before ${jwt:missing} after", None),        # one unresolved variable drops the header
    ("${jwt:null}", None),
    ("${tag:missing}", None),
])
def test_values(template: str, expected: bytes | None) -> None:
    p = user(tags={"tenant": "t1"}, n=42, f=1.5, verified=True, off=False,
             **{"cognito:username": "alice", "cognito:groups": ["admins", "staff"],
                "nums": [1, 2], "empty_list": [], "obj": {"a": 1}, "null": None})
    assert one(template, p) == expected


@pytest.mark.parametrize("value, expected", [
    ("plain visible ASCII ~!", b"plain visible ASCII ~!"),
    ("caf\u00e9", b"caf%C3%A9"),
    ("\u65e5\u672c", b"%E6%97%A5%E6%9C%AC"),
    ("evil\r\nX-Auth-Role: admin", b"evil%0D%0AX-Auth-Role: admin"),
    ("a\nb", b"a%0Ab"),
    ("nul\x00tab\t", b"nul%00tab%09"),
    ("del\x7f", b"del%7F"),
    ("100%", b"100%25"),                          # the escape itself: decoding is exact
    (" padded ", b"%20padded%20"),                # HTTP would strip outer whitespace
    ("\ud800", b"%ED%A0%80"),                     # a lone surrogate from JSON: still encoded
])
def test_percent_encoding(value: str, expected: bytes) -> None:
    got = one("${jwt:v}", user(v=value))
    assert got == expected
    assert b"\r" not in got and b"\n" not in got
    assert all(0x20 <= b < 0x7F for b in got)
    if value != "\ud800":
        assert unquote(got.decode("ascii")) == value


def test_list_elements_keep_their_commas_encoded() -> None:
    got = one("${jwt:g}", user(g=["a,b", "c\u00e9", "d%"]))
    assert got == b"a%2Cb,c%C3%A9,d%25"
    assert [unquote(x) for x in got.decode().split(",")] == ["a,b", "c\u00e9", "d%"]


def test_nested_list_elements_are_json() -> None:
    assert one("${jwt:g}", user(g=["a", None, [1, 2], {"k": "v"}])) == \
        b'a,null,[1%2C2],{"k":"v"}'


def test_scalar_commas_stay() -> None:
    assert one("${jwt:name}", user(name="Doe, Jane")) == b"Doe, Jane"


def test_role_and_tags_are_encoded_too() -> None:
    p = user(role="r\u00f4le", tags={"t": "x\r\ny"})
    assert one("${role}", p) == b"r%C3%B4le"
    assert one("${tag:t}", p) == b"x%0D%0Ay"


def test_names_are_lower_case_and_canonical() -> None:
    ih = IdentityHeaders((("X-Auth-Sub", "${jwt:sub}"), ("X_Tenant.Id", "${tag:tenant}")))
    assert ih.names == frozenset({b"x-auth-sub", b"x-tenant-id"})
    assert ih.render(user(tags={"tenant": "t1"})) == [(b"x-auth-sub", b"u-123"),
                                                      (b"x_tenant.id", b"t1")]


def test_compiled_once_rendered_many() -> None:
    ih = IdentityHeaders(DEFAULT)
    assert ih.render(user()) == render_identity_headers(DEFAULT, principal=user())
    assert ih.render(guest()) == [(b"x-auth-role", b"guest")]
    assert ih.render(user(sub="other")) == [(b"x-auth-sub", b"other"), (b"x-auth-role", b"member")]


@pytest.mark.parametrize("templates, path", [
    ((("X-A", "${path:id}"),), "downstream_credential.identity_headers.X-A"),
    ((("X-A", "${jwt:}"),), "downstream_credential.identity_headers.X-A"),
    ((("X-A", "${sub}"),), "downstream_credential.identity_headers.X-A"),
    ((("X-A", "${jwt:sub"),), "downstream_credential.identity_headers.X-A"),
    ((("X-A", "a\r\nb"),), "downstream_credential.identity_headers.X-A"),
    ((("X-A", "caf\u00e9"),), "downstream_credential.identity_headers.X-A"),
    ((("X-A", "${role}"), ("x-a", "${role}")), "downstream_credential.identity_headers.x-a"),
    ((("X-A", "${role}"), ("X_A", "${role}")), "downstream_credential.identity_headers.X_A"),
])
def test_bad_templates_are_config_errors(templates: tuple[tuple[str, str], ...],
                                         path: str) -> None:
    with pytest.raises(ConfigError) as e:
        IdentityHeaders(templates)
    assert e.value.path == path


def test_empty_templates() -> None:
    ih = IdentityHeaders(())
    assert ih.names == frozenset() and ih.render(user()) == []
