"""moto's Cognito IdP as an issuer nobody here wrote: real access and id tokens end to end."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _config(moto_idp, upstream_url, token_use=("access",)):
    return {
        "version": 1,
        "identity_sources": [{
            "id": "moto", "cognito": {"region": "eu-west-1", "user_pool_id": moto_idp["pool"]},
            "jwks_uri": moto_idp["jwks"], "client_ids": [moto_idp["client"]],
            "token_use": list(token_use)}],
        "upstreams": {"app": {"url": upstream_url}},
        "routes": [{"id": "admin", "match": {"path": "/admin/**"}, "upstream": "app",
                    "auth": "policy"},
                   {"id": "all", "match": {"path": "/**"}, "upstream": "app", "auth": "policy"}],
        "mappings": {"moto": {"mode": "rules", "rules": [
            {"claim": "cognito:groups", "op": "contains", "value": "admins", "role": "admin"}]}},
        "default_role": "member",
        "roles": {
            "admin": {"statements": [{"sid": "Everything", "effect": "allow",
                                      "action": ["http:*"], "resource": ["app:/**"]}]},
            "member": {"statements": [{"sid": "ReadOwn", "effect": "allow",
                                       "action": ["http:GET"], "resource": ["app:/me/**"]}]}},
        "revocation": {"store": "memory"},
    }


def test_moto_access_tokens_map_groups_to_roles(moto_idp, upstream, gateway_factory):
    app, usrv = upstream
    gw = gateway_factory(_config(moto_idp, usrv.url))
    alice = moto_idp["login"]("alice")["AccessToken"]
    bob = moto_idp["login"]("bob")["AccessToken"]
    r = httpx.get(gw.proxy + "/admin/stats", headers={"Authorization": f"Bearer {alice}"})
    assert r.status_code == 200, r.text
    assert app.seen[-1].header("x-auth-role") == ["admin"]
    r = httpx.get(gw.proxy + "/admin/stats", headers={"Authorization": f"Bearer {bob}"})
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    r = httpx.get(gw.proxy + "/me/profile", headers={"Authorization": f"Bearer {bob}"})
    assert r.status_code == 200
    assert app.seen[-1].header("x-auth-role") == ["member"]


def test_moto_id_token_rejected_where_access_expected(moto_idp, upstream, gateway_factory):
    gw = gateway_factory(_config(moto_idp, upstream[1].url))
    id_token = moto_idp["login"]("alice")["IdToken"]
    r = httpx.get(gw.proxy + "/me/x", headers={"Authorization": f"Bearer {id_token}"})
    assert r.status_code == 401 and r.json()["reason"] == "bad_token_use"


def test_moto_id_token_accepted_when_configured(moto_idp, upstream, gateway_factory):
    gw = gateway_factory(_config(moto_idp, upstream[1].url, token_use=("access", "id")))
    id_token = moto_idp["login"]("bob")["IdToken"]
    r = httpx.get(gw.proxy + "/me/x", headers={"Authorization": f"Bearer {id_token}"})
    assert r.status_code == 200, r.text


def test_moto_token_for_another_client_is_rejected(moto_idp, upstream, gateway_factory):
    cfg = _config(moto_idp, upstream[1].url)
    cfg["identity_sources"][0]["client_ids"] = ["not-this-client-id-000000"]
    gw = gateway_factory(cfg)
    tok = moto_idp["login"]("alice")["AccessToken"]
    r = httpx.get(gw.proxy + "/me/x", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 401 and r.json()["reason"] == "bad_client_id"
