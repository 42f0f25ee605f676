"""MAPPING.md's worked examples, row by row, through a running gateway to upstreams that verify
the downstream credential with the gateway's published keys (tests/e2e/verifying_upstream.py).

One `poolgate serve` per example (module-scoped), RS256 tokens from a JWKS server we control,
client address and TLS presented through a trusted loopback proxy (X-Forwarded-For /
X-Forwarded-Proto). The row tables are shared with tests/test_explain.py, which shows that
`poolgate explain` reaches the same decisions.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fixtures.worked_examples import (EXAMPLE1, EXAMPLE2, OFFICE, ROWS, Row, config, issuer,
                                      source_of)

from .servers import Gateway, JwksControl, Signer, ThreadServer
from .verifying_upstream import Received, VerifyingUpstream

pytestmark = pytest.mark.e2e

REALM = 'Bearer realm="poolgate"'


@dataclass
class Env:
    example: int
    cfg: dict[str, Any]
    gw: Gateway
    signer: Signer
    upstreams: dict[str, VerifyingUpstream]
    upstream_urls: dict[str, str]
    http: httpx.Client

    def claims(self, row: Row, **over: Any) -> dict[str, Any] | None:
        """Cognito-shaped claims for the row's identity source (id or access token)."""
        if row.claims is None:
            return None
        source = source_of(row)
        src = next(s for s in self.cfg["identity_sources"] if s["id"] == source)
        now = int(time.time())
        c: dict[str, Any] = {"iss": issuer(self.example, source), "sub": str(uuid.uuid4()),
                             "token_use": src["token_use"][0], "iat": now, "auth_time": now,
                             "exp": now + 3600, "jti": str(uuid.uuid4()),
                             "origin_jti": str(uuid.uuid4())}
        if c["token_use"] == "id":
            c.update(aud=src["client_ids"][0], **{"cognito:username": "user"})
        else:
            c.update(client_id=src["client_ids"][0], scope="aws.cognito.signin.user.admin",
                     username="user")
        c.update(row.claims)
        c.update(over)
        return c

    def send(self, row: Row, *, claims: dict[str, Any] | None = None,
             token: str | None = None, headers: tuple[tuple[str, str], ...] = (),
             path: str | None = None) -> httpx.Response:
        h = list(row.headers) + list(headers)
        if token is None and claims is not None:
            token = self.signer.token(claims)
        if token is not None:
            h.append(("Authorization", f"Bearer {token}"))
        if row.source_ip is not None:
            h.append(("X-Forwarded-For", row.source_ip))
        if row.secure:
            h.append(("X-Forwarded-Proto", "https"))
        return self.http.request(row.method, self.gw.proxy + (path or row.path), headers=h)

    def hits(self) -> dict[str, int]:
        return {u: app.hits for u, app in self.upstreams.items()}


def _perms_summary(perms: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((p["sid"], tuple(p["resource"])) for p in perms)


@pytest.fixture(scope="module")
def ex1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _environment(1, tmp_path_factory.mktemp("ex1"))


@pytest.fixture(scope="module")
def ex2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _environment(2, tmp_path_factory.mktemp("ex2"))


def _environment(example: int, tmp: Path) -> Iterator[Env]:
    cfg = config(example)
    signer = Signer()
    control = JwksControl()
    control.keys = [signer.public_jwk()]
    servers = [ThreadServer(control).start()]
    gw: Gateway | None = None
    try:
        for s in cfg["identity_sources"]:       # each source its own JWKS URL (same keys)
            s["jwks_uri"] = f"{servers[0].url}/{s['id']}/jwks.json"
        dc = cfg["downstream_credential"]
        upstreams, urls = {}, {}
        for uid in cfg["upstreams"]:
            app = VerifyingUpstream(uid, issuer=dc["issuer"], ttl_seconds=dc["ttl_seconds"])
            srv = ThreadServer(app).start()
            servers.append(srv)
            upstreams[uid], urls[uid] = app, srv.url
            cfg["upstreams"][uid]["url"] = srv.url
        key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        (tmp / "credential.pem").write_bytes(key)
        dc["signing_keys"] = [{"kid": f"ex{example}-k1",
                               "private_key_file": str(tmp / "credential.pem")}]
        gw = Gateway(cfg, tmp).start()
        gw.wait_ready()
        for app in upstreams.values():
            app.jwks_url = gw.admin + "/.well-known/jwks.json"
        with httpx.Client(timeout=10, trust_env=False) as http:
            yield Env(example, cfg, gw, signer, upstreams, urls, http)
    finally:
        if gw is not None:
            gw.stop()
        for srv in servers:
            srv.stop()


def _env(request: pytest.FixtureRequest, row: Row) -> Env:
    env: Env = request.getfixturevalue(f"ex{row.example}")
    return env


def _expect(env: Env, row: Row, claims: dict[str, Any] | None) -> None:
    """What the row's upstream must find in the credential, beyond its own checks."""
    want: dict[str, Any] = {"role": row.role,
                            "perms": lambda p: _perms_summary(p) == row.perms}
    if claims is None:
        want["amr"] = ["unauthenticated"]
    else:
        want.update(amr=["authenticated", claims["iss"]], sub=claims["sub"],
                    src_jti=claims["jti"], exp_at_most=claims["exp"])
    env.upstreams[row.upstream].expect(**want)


# --------------------------------------------------------------------------- the rows


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_worked_example_row(request: pytest.FixtureRequest, row: Row) -> None:
    env = _env(request, row)
    claims = env.claims(row)
    before = env.hits()
    if row.allowed:
        _expect(env, row, claims)
    r = env.send(row, claims=claims)
    assert r.status_code == row.status, f"{row.id} ({row.note}): {r.text}"
    after = env.hits()
    if not row.allowed:
        assert after == before, f"{row.id}: a denied request reached an upstream"
        assert r.json()["reason"] == row.reason
        challenge = r.headers["www-authenticate"]
        if row.status == 401:
            assert challenge == REALM            # no error attribute: invites sign-in
        else:
            assert challenge.startswith(REALM + ', error="insufficient_scope"')
        return
    assert after == {**before, row.upstream: before[row.upstream] + 1}
    got = env.upstreams[row.upstream].received[-1]
    assert (got.method, got.path) == (row.method, row.path)
    assert r.json()["role"] == row.role
    assert got.get("x-auth-role") == [row.role]
    assert got.claims["role"] == row.role
    assert got.header["kid"] == f"ex{row.example}-k1"
    assert _perms_summary(got.claims["perms"]) == row.perms
    if claims is None:
        assert got.claims["amr"] == ["unauthenticated"]
        assert got.claims["sub"].startswith("anon:")
        assert "src_jti" not in got.claims and got.get("x-auth-sub") == []
    else:
        assert got.claims["amr"] == ["authenticated", claims["iss"]]
        assert got.claims["sub"] == claims["sub"] == got.get("x-auth-sub")[0]
        assert got.claims["src_jti"] == claims["jti"]
        assert got.claims["exp"] <= min(claims["exp"], time.time() + 120 + 2)


def test_every_mapping_row_is_covered() -> None:
    ids = {r.id for r in ROWS}
    assert {f"ex1-row{n}" for n in range(1, 8)} <= ids
    assert {f"ex2-row{n}" for n in range(1, 9)} <= ids


# --------------------------------------------------------------------------- the credential


def _row(rid: str) -> Row:
    return next(r for r in ROWS if r.id == rid)


def _last(env: Env, upstream: str) -> Received:
    return env.upstreams[upstream].received[-1]


def test_same_token_same_route_and_path_values_reuses_the_credential(ex1: Env) -> None:
    row = _row("ex1-row1")                       # admin on /tenants/{tenant_id}/orders/**
    claims = ex1.claims(row)
    assert claims is not None
    token = ex1.signer.token(claims)
    ex1.upstreams["orders"].expect()
    creds = []
    for path in ("/tenants/t9/orders/42", "/tenants/t9/orders/42", "/tenants/t9/orders/43",
                 "/tenants/t8/orders/42"):
        r = ex1.send(row, token=token, path=path)
        assert r.status_code == 200, r.text
        creds.append(_last(ex1, "orders"))
    first, again, other_order, other_tenant = creds
    assert again.credential == first.credential          # cached: byte for byte the same
    assert "decision_id" not in first.claims             # one credential serves many decisions
    assert first.claims["route"] == {"id": "tenant-orders", "action": None}
    # the cache key holds the captured values ({tenant_id}), not the rest of the path
    assert other_order.credential == first.credential
    assert other_tenant.credential != first.credential
    assert other_tenant.claims["jti"] != first.claims["jti"]
    # another route for the same token and upstream is another credential
    admin = ex1.send(_row("ex1-row2b"), token=token)
    assert admin.status_code == 200, admin.text
    assert _last(ex1, "orders").claims["route"]["id"] == "admin"
    assert _last(ex1, "orders").credential != first.credential
    # another token with the same claims is another credential
    fresh = ex1.send(row, claims={**claims, "jti": str(uuid.uuid4())})
    assert fresh.status_code == 200
    assert _last(ex1, "orders").credential != first.credential


def test_guest_credentials_are_not_shared(ex2: Env) -> None:
    row = _row("ex2-row1")
    ex2.upstreams["catalog"].expect()
    subs, creds = set(), set()
    for _ in range(2):
        assert ex2.send(row).status_code == 200
        got = _last(ex2, "catalog")
        subs.add(got.claims["sub"])
        creds.add(got.credential)
        assert isinstance(got.claims.get("decision_id"), str)   # uncached: carries its decision
    assert len(subs) == 2 and len(creds) == 2


def test_credential_never_outlives_the_user_token(ex1: Env) -> None:
    row = _row("ex1-row1")
    claims = ex1.claims(row, exp=int(time.time()) + 30)      # shorter than the 120 s TTL
    assert claims is not None
    _expect(ex1, row, claims)
    r = ex1.send(row, claims=claims)
    assert r.status_code == 200, r.text
    assert _last(ex1, "orders").claims["exp"] == claims["exp"]


def test_the_pools_second_issuer_form_is_the_same_source(ex1: Env) -> None:
    """A Cognito pool signs with `https://cognito-idp...` and `https://issuer-cognito-idp...`;
    either maps through the same source, and `amr` names the issuer the token carried."""
    row = _row("ex1-row3")
    iss = issuer(1, None).replace("https://cognito-idp.", "https://issuer-cognito-idp.")
    claims = ex1.claims(row, iss=iss)
    assert claims is not None
    _expect(ex1, row, claims)
    r = ex1.send(row, claims=claims)
    assert r.status_code == 200, r.text
    assert _last(ex1, "orders").claims["amr"] == ["authenticated", iss]


def test_client_supplied_identity_and_credential_headers_are_replaced(ex2: Env) -> None:
    row = _row("ex2-row3")
    claims = ex2.claims(row)
    _expect(ex2, row, claims)
    forged = ("X-Gateway-Credential", "eyJhbGciOiJub25lIn0.e30.")
    r = ex2.send(row, claims=claims, headers=(forged, ("X-Auth-Role", "staff"),
                                              ("X_Auth_Sub", "someone-else")))
    assert r.status_code == 200, r.text
    got = _last(ex2, "streams")
    assert got.get("x-gateway-credential") == [got.credential]
    assert got.get("x-auth-role") == ["premium"]
    assert [k for k, _ in got.headers if k.lower() == b"x_auth_sub"] == []


def test_the_upstream_refuses_credentials_it_cannot_verify(ex2: Env) -> None:
    """The verifying upstream is not a rubber stamp: what a 200 proves, a forgery cannot get."""
    row = _row("ex2-row3")
    claims = ex2.claims(row)
    ex2.upstreams["streams"].expect()
    assert ex2.send(row, claims=claims).status_code == 200
    good = _last(ex2, "streams")
    base = {"X-Auth-Role": "premium", "X-Auth-Sub": good.claims["sub"]}
    direct = ex2.upstream_urls
    with httpx.Client(timeout=5, trust_env=False) as c:
        assert c.get(direct["streams"] + "/streams/ep1", headers=base).status_code == 401
        ok = c.get(direct["streams"] + "/streams/ep1",
                   headers={**base, "X-Gateway-Credential": good.credential})
        assert ok.status_code == 200                       # the real one, replayed directly
        h, p, s = good.credential.split(".")
        tampered = ".".join((h, p, s[:-4] + ("AAAA" if s[-4:] != "AAAA" else "BBBB")))
        r = c.get(direct["streams"] + "/x", headers={**base, "X-Gateway-Credential": tampered})
        assert r.status_code == 401 and "signature" in r.json()["reason"]
        r = c.get(direct["catalog"] + "/x",
                  headers={**base, "X-Gateway-Credential": good.credential})
        assert r.status_code == 401 and "aud" in r.json()["reason"]   # not for this upstream
        r = c.get(direct["streams"] + "/x", headers={**base, "X-Auth-Role": "staff",
                                                     "X-Gateway-Credential": good.credential})
        assert r.status_code == 401 and "X-Auth-Role" in r.json()["reason"]


def test_credential_perms_keep_the_statement_condition(ex2: Env) -> None:
    """MAPPING.md: `perms` are the role's statements for the upstream; a statement without its
    condition is broader than the one the gateway enforces (an upstream reading perms would
    believe staff may write the CMS over plain http)."""
    row = _row("ex2-row6b")
    claims = ex2.claims(row)
    _expect(ex2, row, claims)
    assert ex2.send(row, claims=claims).status_code == 200
    (perm,) = _last(ex2, "cms").claims["perms"]
    assert "req:secure" in json.dumps(perm.get("condition"))


def test_the_admin_jwks_publishes_public_keys_only(ex1: Env) -> None:
    keys = httpx.get(ex1.gw.admin + "/.well-known/jwks.json", trust_env=False).json()["keys"]
    assert [k["kid"] for k in keys] == ["ex1-k1"]
    assert all("d" not in k and k["kty"] == "EC" and k["crv"] == "P-256" for k in keys)


def test_source_address_comes_from_the_trusted_proxy_header(ex1: Env) -> None:
    """Row 2 depends on it: without X-Forwarded-For the peer (127.0.0.1) is the client; the
    rightmost hop that is not a trusted proxy decides."""
    row = _row("ex1-row2b")
    claims = ex1.claims(row)
    ex1.upstreams["orders"].expect()
    before = ex1.hits()
    r = ex1.send(Row(**{**row.__dict__, "source_ip": None}), claims=claims)
    assert r.status_code == 403 and r.json()["reason"] == "explicit_deny"
    spoof = ex1.send(Row(**{**row.__dict__, "source_ip": f"{OFFICE}, 198.51.100.7"}),
                     claims=claims)
    assert spoof.status_code == 403                     # the client's own hop is not believed
    assert ex1.hits() == before
    via = ex1.send(Row(**{**row.__dict__, "source_ip": f"198.51.100.7, {OFFICE}, 127.0.0.1"}),
                   claims=claims)
    assert via.status_code == 200, via.text


def test_example_tables_match_the_unit_fixture_configs() -> None:
    """worked_example*.yaml are example*.yaml plus loopback settings: same mapping and roles."""
    import yaml

    from fixtures.worked_examples import HERE
    for n in (1, 2):
        plain = yaml.safe_load((HERE / f"example{n}.yaml").read_text())
        live = config(n)
        for key in ("routes", "roles", "guardrails", "default_role", "guest_role",
                    "principal_tags"):
            assert live.get(key) == plain.get(key), (n, key)
        first = live["identity_sources"][0]["id"]
        assert live["mappings"][first] == plain["mappings"][first]
    assert len(EXAMPLE1) and len(EXAMPLE2)


# --------------------------------------------------------------------------- moto


def test_moto_groups_map_to_roles_in_the_verified_credential(moto_idp: dict[str, Any],
                                                            tmp_path: Path) -> None:
    """A real Cognito-compatible issuer (moto): alice (group admins) and bob (no group) get
    different roles, and the upstream verifies the role in the credential."""
    app = VerifyingUpstream("app", issuer="poolgate", ttl_seconds=300)
    srv = ThreadServer(app).start()
    cfg = {
        "version": 1,
        "identity_sources": [{
            "id": "moto", "cognito": {"region": "eu-west-1", "user_pool_id": moto_idp["pool"]},
            "jwks_uri": moto_idp["jwks"], "client_ids": [moto_idp["client"]]}],
        "upstreams": {"app": {"url": srv.url}},
        "routes": [{"id": "all", "match": {"path": "/**"}, "upstream": "app"}],
        "mappings": {"moto": {"mode": "token", "token": {
            "source": "groups", "group_to_role": {"admins": "admin"}}}},
        "default_role": "member",
        "roles": {
            "admin": {"statements": [{"sid": "Everything", "effect": "allow",
                                      "action": ["http:*"], "resource": ["app:/**"]}]},
            "member": {"statements": [{"sid": "ReadOwn", "effect": "allow", "action": ["http:GET"],
                                       "resource": ["app:/me/${jwt:username}/**"]}]}},
        "revocation": {"store": "none"},
    }
    gw = Gateway(cfg, tmp_path).start()
    try:
        gw.wait_ready()
        app.jwks_url = gw.admin + "/.well-known/jwks.json"
        alice = moto_idp["login"]("alice")["AccessToken"]
        bob = moto_idp["login"]("bob")["AccessToken"]
        r = httpx.delete(gw.proxy + "/admin/x", headers={"Authorization": f"Bearer {alice}"})
        assert r.status_code == 200, r.text
        assert app.received[-1].claims["role"] == "admin"
        assert app.received[-1].claims["perms"][0]["resource"] == ["app:/**"]
        r = httpx.delete(gw.proxy + "/admin/x", headers={"Authorization": f"Bearer {bob}"})
        assert r.status_code == 403
        r = httpx.get(gw.proxy + "/me/bob/profile", headers={"Authorization": f"Bearer {bob}"})
        assert r.status_code == 200, r.text
        got = app.received[-1]
        assert got.claims["role"] == "member" and got.get("x-auth-role") == ["member"]
        assert got.claims["perms"][0]["resource"] == ["app:/me/bob/**"]
        assert got.claims["amr"][0] == "authenticated"
        assert app.rejected == []
    finally:
        gw.stop()
        srv.stop()
