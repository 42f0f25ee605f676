"""Frozen claims (gateway/claims.py) and the VerifiedToken that holds them: the JSON types read
back, nothing a reader does changes the token, and the cyclic GC stops tracking them."""

from __future__ import annotations

import gc
import json
from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from gateway import claims as claims_mod
from gateway.claims import Claims, freeze
from gateway.principal import VerifiedToken

NESTED: dict[str, Any] = {
    "iss": "https://issuer.example/", "sub": "u-1", "exp": 1_800_000_000, "iat": 1.5,
    "email_verified": True, "nickname": None, "cognito:groups": ["admins", "staff"],
    "empty": [], "obj": {}, "amr": ["pwd", 1, None, False, 2.5],
    "address": {"street": "x", "geo": {"lat": 1.25, "tags": [{"a": [1, [2, {}]]}]}},
    "pairs": [["a", "b"], ["c"]],
}


def _token(claims: dict[str, Any], **over: Any) -> VerifiedToken:
    kw: dict[str, Any] = {"raw": "h.p.s", "source_id": "pool", "issuer": claims.get("iss", ""),
                          "header": {"alg": "RS256", "kid": "k1"}, "claims": claims,
                          "token_hash": b"\x00" * 32}
    kw.update(over)
    return VerifiedToken(**kw)


@pytest.mark.parametrize("claims", [NESTED, {}, {"sub": "only"}, {"a": [[]], "b": [{}]},
                                    json.loads('{"k": [1, "2", {"3": [4]}], "n": -0.0}')])
def test_claims_read_back_with_their_json_types(claims: dict[str, Any]) -> None:
    view = Claims(*freeze(claims))
    assert dict(view) == claims and view == claims and len(view) == len(claims)
    assert list(view) == list(claims)                       # name order kept
    assert json.dumps(dict(view)) == json.dumps(claims)      # lists stay lists, dicts dicts
    for name, value in claims.items():
        assert type(view[name]) is type(value) and view.get(name) == value and name in view
    assert view.get("missing") is None and view.get("missing", 7) == 7 and "missing" not in view
    with pytest.raises(KeyError):
        view["missing"]


def test_a_reader_cannot_change_what_the_next_reader_sees() -> None:
    token = _token(NESTED)
    groups = token.claims["cognito:groups"]
    groups.append("root")
    token.claims["address"]["geo"]["tags"][0]["a"].append("x")
    token.claims.get("obj")["injected"] = True
    assert token.claims["cognito:groups"] == ["admins", "staff"]
    assert token.claims == NESTED
    with pytest.raises(TypeError):
        token.claims["sub"] = "admin"  # type: ignore[index]


def test_the_caller_dict_is_not_kept() -> None:
    mine = {"sub": "u-1", "groups": ["a"]}
    token = _token(mine)
    mine["sub"] = "u-2"
    mine["groups"].append("b")
    assert token.claims == {"sub": "u-1", "groups": ["a"]}


def test_frozen_claims_leave_the_cyclic_gc() -> None:
    token = _token({"iss": "i", "exp": 1_800_000_000, "cognito:groups": ["a", "b"],
                    "deep": {"x": [1, {"y": [2]}]}})
    values = token._values
    for _ in range(6):                  # a tuple is untracked once its contents are
        gc.collect()
    assert not gc.is_tracked(values)
    assert not gc.is_tracked(token._layout)             # a dict of names and positions
    # a token without arrays or objects never had a tracked container at all
    flat = _token({"iss": "i", "exp": 1_800_000_000, "sub": "s"})
    gc.collect(0)
    assert not gc.is_tracked(flat._values)


def test_shared_strings_are_one_object_per_pool() -> None:
    a = _token(json.loads('{"iss": "https://issuer.example/", "aud": "api", "sub": "u-1", '
                          '"jti": "j-1", "cognito:groups": ["admins"]}'))
    b = _token(json.loads('{"iss": "https://issuer.example/", "aud": "api", "sub": "u-2", '
                          '"jti": "j-2", "cognito:groups": ["admins"]}'))
    assert a._layout is b._layout                      # same claim names: one layout
    for name in ("iss", "aud"):
        assert a._claim(name) is b._claim(name)
    assert a._claim("cognito:groups")[0] is b._claim("cognito:groups")[0]


def test_layouts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claims_mod, "_LAYOUTS", {})
    monkeypatch.setattr(claims_mod, "MAX_LAYOUTS", 4)
    tokens = [_token({f"c{i}": i, "sub": "s"}) for i in range(10)]
    assert len(claims_mod._LAYOUTS) <= 4
    assert [t.claims[f"c{i}"] for i, t in enumerate(tokens)] == list(range(10))


def test_verified_token_is_immutable_and_compares_by_value() -> None:
    token = _token(NESTED)
    for name in ("raw", "source_id", "claims", "exp", "jwk", "kid", "sub"):
        with pytest.raises(AttributeError):
            setattr(token, name, "x")
    with pytest.raises(FrozenInstanceError):
        token.raw = "forged"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del token.issuer
    assert token == _token(dict(NESTED), jwk=object())  # the verifying key is not the value
    assert token != _token({**NESTED, "sub": "u-2"})
    with pytest.raises(TypeError):
        hash(token)
    assert "h.p.s" not in repr(token) and "'sub': 'u-1'" in repr(token)


def test_verified_token_times_and_helpers() -> None:
    token = _token({"exp": 1_800_000_000, "nbf": 5, "iat": 4, "scope": "a  b",
                    "token_use": "access", "jti": "j", "origin_jti": "o", "sub": "s"})
    assert (token.exp, token.nbf, token.iat, token.kid) == (1_800_000_000.0, 5, 4.0, "k1")
    assert token.scopes == ("a", "b") and token.token_use == "access"
    assert (token.sub, token.jti, token.origin_jti) == ("s", "j", "o")
    odd = _token({"exp": True, "nbf": True, "iat": False, "sub": 3, "scope": ["a"]})
    assert odd.nbf is None and odd.iat is None and odd.sub is None and odd.scopes == ()
    bare = _token({"sub": "s"}, header={})            # explain --claims: no exp, no kid
    assert bare.exp is None and bare.kid is None and bare.header == {}
