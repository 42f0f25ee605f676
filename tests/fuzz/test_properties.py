"""Hypothesis properties (bounded for CI): the token verifier, path normalisation + routing +
policy, header canonicalisation and the config loader never answer with anything but the
gateway's own errors, and one request has one reading (LIMITS.md)."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import loads_config, parse_config
from gateway.errors import ConfigError, GatewayError
from gateway.facts import request_facts
from gateway.forward.headers import (canonical, canonical_request_headers, check_framing,
                                     strip_request_headers)
from gateway.policy import PolicyEngine
from gateway.routes import Router, normalise_path
from verify.helpers import access_claims, build, make_token

FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- tokens

_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
_json = st.recursive(_json_scalar, lambda c: st.lists(c, max_size=3)
                     | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8)
_CLAIMS = ["iss", "sub", "exp", "iat", "nbf", "token_use", "client_id", "aud", "scope", "jti",
           "cognito:groups", "auth_time"]
_HEADERS = ["alg", "kid", "typ", "crit", "jwk", "b64", "cty"]

_LOOP: list[asyncio.AbstractEventLoop] = []


def _run(coro: Any) -> Any:
    if not _LOOP:
        _LOOP.append(asyncio.new_event_loop())
    return _LOOP[0].run_until_complete(coro)


def _verify(token: str) -> None:
    verifier = _verify.verifier if hasattr(_verify, "verifier") else None   # type: ignore[attr-defined]
    if verifier is None:
        verifier = _verify.verifier = build()[0]     # type: ignore[attr-defined]
    try:
        v = _run(verifier.verify(token))
    except GatewayError as e:
        assert e.status in (400, 401, 413, 431, 503) and e.code
        return
    assert isinstance(v.claims["sub"], str) and isinstance(v.claims["exp"], (int, float))


@FAST
@given(st.text(max_size=300))
def test_any_text_is_a_clean_refusal(text: str) -> None:
    _verify(text)


@FAST
@given(st.binary(max_size=200), st.binary(max_size=300), st.binary(max_size=300))
def test_any_segments_are_a_clean_refusal(h: bytes, p: bytes, s: bytes) -> None:
    from verify.helpers import b64
    _verify(f"{b64(h)}.{b64(p)}.{b64(s)}")


@settings(max_examples=60, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_CLAIMS), _json, max_size=6),
       st.dictionaries(st.sampled_from(_HEADERS), _json, max_size=3),
       st.sampled_from(["keep", "drop"]))
def test_signed_tokens_with_hostile_claims(over: dict[str, Any], header: dict[str, Any],
                                           base: str) -> None:
    """Correctly signed by the trusted key, any claim or header value: 200-class or a
    refusal with a code, never another exception."""
    claims = {**(access_claims() if base == "keep" else {}), **over}
    try:
        token = make_token(claims, header=header)
    except (TypeError, ValueError):
        return                      # not JSON-serialisable: not a token anyone can send
    _verify(token)


# --------------------------------------------------------------------------- paths

_PIECES = st.sampled_from(["/", "/", "//", ".", "..", "%2e", "%2E%2e", "%2F", "%5c", "%41",
                           "%C3%A9", "%c3%a9", "%25", "%", "%zz", "a", "users", "alice",
                           "secret", "exports", "-", "x.csv", "*", "~", ";", "\\", "@", "%40",
                           "%00", "%7f", "+", "=", "{", "}"])
_RAW_PATH = st.lists(_PIECES, max_size=12).map(lambda ps: "/" + "".join(ps))

_POLICY_CFG = {
    "version": 1,
    "identity_sources": [{"id": "idp", "issuer": "http://127.0.0.1:1/", "audiences": ["a"],
                          "jwks_uri": "http://127.0.0.1:1/jwks.json"}],
    "upstreams": {"app": {"url": "http://127.0.0.1:9"}},
    "routes": [{"id": "pub", "match": {"path": "/exports/*-*.csv"}, "upstream": "app",
                "auth": "public"},
               {"id": "user", "match": {"path": "/users/{name}/**"}, "upstream": "app"},
               {"id": "all", "match": {"path": "/**"}, "upstream": "app"}],
    "roles": {"r": {"statements": [
        {"effect": "allow", "action": ["http:*"], "resource": ["app:/users/${jwt:sub}/**"]},
        {"effect": "allow", "action": ["http:*"], "resource": ["app:/a/**"]},
        {"effect": "deny", "action": ["http:*"], "resource": ["app:/**/secret"]}]}}}
_CFG = parse_config(_POLICY_CFG, env={})
_ROUTER, _POLICY = Router(_CFG.routes), PolicyEngine(_CFG)


def _decide(raw: str, sub: str) -> tuple[str, str]:
    """(normalised path or error code, decision) as the gateway reaches it."""
    try:
        path = normalise_path(raw.encode("ascii"))
        route, params = _ROUTER.match("GET", path)
    except GatewayError as e:
        return e.code, "refused"
    facts = request_facts({"headers": [], "method": "GET", "scheme": "http"}, path,
                          "192.0.2.1", False, 0.0, ())
    d = _POLICY.evaluate(role="r", route=route, upstream="app", facts=facts,
                         claims={"sub": sub}, tags={}, path_params=params, scopes=(),
                         token_use=None, decision_id="d")
    return path, f"{route.id}:{d.reason}"


@settings(max_examples=400, deadline=1000)
@given(_RAW_PATH, st.sampled_from(["alice", "alice@x", "alice%40x", "josé", "a/b", ""]))
def test_normalisation_is_one_reading(raw: str, sub: str) -> None:
    """Idempotent, and a decision depends on the normalised path only: any two requests that
    normalise equal get the same decision."""
    path, decision = _decide(raw, sub)
    if decision == "refused":
        return
    assert normalise_path(path) == path
    assert _decide(path, sub) == (path, decision)


# --------------------------------------------------------------------------- headers

_NAME = st.text(alphabet="abcXYZ-_.", min_size=1, max_size=8)
_VALUE = st.binary(min_size=0, max_size=8).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def _respell(name: str, flips: list[int]) -> str:
    out = []
    for i, ch in enumerate(name):
        f = flips[i % len(flips)] if flips else 0
        if ch in "-_." and f:
            ch = "-_."[f % 3]
        elif f & 1:
            ch = ch.swapcase()
        out.append(ch)
    return "".join(out)


@settings(max_examples=300, deadline=1000)
@given(st.lists(st.tuples(_NAME, _VALUE), max_size=8), st.lists(st.integers(0, 5), max_size=4))
def test_header_spellings_are_one_header(headers: list[tuple[str, bytes]],
                                         flips: list[int]) -> None:
    raw = [(n.encode(), v) for n, v in headers]
    other = [(_respell(n, flips).encode(), v) for n, v in headers]
    scope = {"method": "GET", "scheme": "http"}
    a = request_facts({**scope, "headers": raw}, "/", "192.0.2.1", False, 0.0, ())
    b = request_facts({**scope, "headers": other}, "/", "192.0.2.1", False, 0.0, ())
    assert dict(a.headers) == dict(b.headers) and a.ambiguous == b.ambiguous
    for name in a.headers:
        assert canonical(name.encode()) == name.encode()
    try:
        check_framing(raw)
        out = canonical_request_headers(strip_request_headers(raw, remove=frozenset()))
    except GatewayError as e:
        assert e.code == "bad_framing"
        return
    assert all(b"_" not in n and b"." not in n for n, _ in out)
    lengths = [v for n, v in out if canonical(n) == b"content-length"]
    assert len(lengths) <= 1 and all(v.isdigit() and v == str(int(v)).encode() for v in lengths)


# --------------------------------------------------------------------------- config loader

def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def _mutated(draw: Any) -> Any:
    doc = copy.deepcopy(_POLICY_CFG)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(_json)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(_json)
    return doc


@settings(max_examples=250, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_config_loader_raises_only_config_error(doc: Any) -> None:
    try:
        parse_config(doc, env={})
    except ConfigError as e:
        assert str(e)


@settings(max_examples=150, deadline=2000)
@given(st.text(max_size=200))
def test_config_text_raises_only_config_error(text: str) -> None:
    for candidate in (text, "version: 1\n" + text, json.dumps(_POLICY_CFG)[:len(text)]):
        try:
            loads_config(candidate, env={})
        except ConfigError:
            pass


def test_properties_run() -> None:
    """The strategies above are not vacuous: they produce decisions of every kind."""
    kinds = {_decide(p, "alice")[1].split(":")[-1] for p in
             ["/users/alice/x", "/users/bob/x", "/a/secret", "/%2F", "/exports/a-b.csv"]}
    assert {"allowed", "no_allow", "explicit_deny", "refused", "public_route"} - kinds <= {
        "public_route"}
    with pytest.raises(ConfigError):
        parse_config({"version": 1, "routes": 3}, env={})
