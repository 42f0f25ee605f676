"""Property over real sockets (Hypothesis, bounded): the path the policy matched is byte for
byte the path forwarded, and two requests that normalise equal get the same answer."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.routes import normalise_path

from .conftest import CLIENT, ISSUER, base_config, get
from e2e.servers import cognito_claims

pytestmark = pytest.mark.e2e

_PIECES = st.sampled_from(["/", "//", ".", "..", "%2e", "%2E%2e", "%2F", "%41", "%61",
                           "%C3%A9", "%c3%a9", "%25", "%zz", "a", "users", "alice", "secret",
                           "-", "x.csv", "*", "~", ";", "@", "%40", "%7e", "{", "%7B"])
_RAW = st.one_of(st.lists(_PIECES, max_size=10).map(lambda ps: "/" + "".join(ps)),
                 st.lists(_PIECES, max_size=6).map(lambda ps: "/users/alice/" + "".join(ps)))


@pytest.fixture
def stack(jwks, upstream, gateway_factory, signer):
    _, jsrv = jwks
    app, usrv = upstream
    cfg = base_config(
        jsrv.url + "/jwks.json", usrv.url,
        routes=[{"id": "all", "match": {"path": "/**"}, "upstream": "app", "auth": "policy"}],
        roles={"member": {"statements": [
            {"effect": "allow", "action": ["http:*"], "resource": ["app:/users/${jwt:sub}/**"]},
            {"effect": "allow", "action": ["http:*"], "resource": ["app:/a/**", "app:/~/**"]},
            {"effect": "deny", "action": ["http:*"], "resource": ["app:/**/secret"]}]}})
    gw = gateway_factory(cfg)
    token = signer.token(cognito_claims(ISSUER, CLIENT, sub="alice"))
    return gw, app, [("Authorization", f"Bearer {token}")]


@settings(max_examples=40, deadline=5000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=_RAW)
def test_matched_path_is_forwarded_path(stack, raw: str) -> None:
    gw, app, auth = stack
    try:
        normal = normalise_path(raw.encode())
    except GatewayError:
        assert get(gw.proxy, raw, auth).status == 400
        return
    before = len(app.seen)
    r = get(gw.proxy, raw, auth)
    event(f"status {r.status}")
    assert r.status == get(gw.proxy, normal, auth).status, (raw, normal, r.body)
    if r.status == 200:
        assert [s.raw_path for s in app.seen[before:]] == [normal.encode()] * 2
    else:
        assert len(app.seen) == before
