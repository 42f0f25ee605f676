"""Fixtures for end-to-end tests: everything real, on 127.0.0.1, stopped at teardown."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .servers import Gateway, ThreadServer, Upstream

POOL = "eu-west-1_TestPool1"
ISSUER = f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"
CLIENT = "6jk8ltokc7ac9es6jrtg9q572f"


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, ThreadServer]]:
    app = Upstream()
    srv = ThreadServer(app).start()
    try:
        yield app, srv
    finally:
        srv.stop()


def base_config(jwks_url: str, upstream_url: str, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "version": 1,
        "identity_sources": [{
            "id": "pool", "cognito": {"region": "eu-west-1", "user_pool_id": POOL},
            "jwks_uri": jwks_url, "client_ids": [CLIENT],
            "jwks": {"unknown_kid_cooldown_seconds": 1, "retry_seconds": 0.5,
                     "timeout_seconds": 1}}],
        "upstreams": {"app": {"url": upstream_url, "timeout_seconds": 2}},
        "routes": [{"id": "public", "match": {"path": "/public/**"}, "upstream": "app",
                    "auth": "public"},
                   {"id": "all", "match": {"path": "/**"}, "upstream": "app",
                    "auth": "authenticated"}],
        "default_role": "member",
        "roles": {"member": {"statements": [
            {"sid": "All", "effect": "allow", "action": ["http:*"], "resource": ["app:/**"]}]}},
        "revocation": {"store": "memory"},
    }
    cfg.update(over)
    return cfg


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(config: dict[str, Any], *, ready: bool = True, **kw: Any) -> Gateway:
        gw = Gateway(config, tmp_path, **kw).start()
        started.append(gw)
        if ready:
            gw.wait_ready()
        return gw

    try:
        yield make
    finally:
        for gw in started:
            gw.stop()


@pytest.fixture(scope="session")
def moto_idp() -> Iterator[dict[str, Any]]:
    """moto's Cognito IdP on 127.0.0.1: a pool, an app client, alice (admins) and bob."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        idp = boto3.client("cognito-idp", region_name="eu-west-1", endpoint_url=endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        pool = idp.create_user_pool(PoolName="p", Schema=[
            {"Name": "tenant", "AttributeDataType": "String", "Mutable": True}])["UserPool"]["Id"]
        client = idp.create_user_pool_client(
            UserPoolId=pool, ClientName="web",
            ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            ReadAttributes=["email", "custom:tenant"])["UserPoolClient"]["ClientId"]
        idp.create_group(UserPoolId=pool, GroupName="admins")
        for user, tenant in (("alice", "acme"), ("bob", "globex")):
            idp.admin_create_user(UserPoolId=pool, Username=user, MessageAction="SUPPRESS",
                                  UserAttributes=[{"Name": "email", "Value": f"{user}@example.com"},
                                                  {"Name": "custom:tenant", "Value": tenant}])
            idp.admin_set_user_password(UserPoolId=pool, Username=user,
                                        Password="Passw0rd!Passw0rd", Permanent=True)
        idp.admin_add_user_to_group(UserPoolId=pool, Username="alice", GroupName="admins")

        def login(user: str) -> dict[str, str]:
            return idp.admin_initiate_auth(
                UserPoolId=pool, ClientId=client, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": user, "PASSWORD": "Passw0rd!Passw0rd"})["AuthenticationResult"]

        yield {"endpoint": endpoint, "pool": pool, "client": client, "idp": idp, "login": login,
               "jwks": f"{endpoint}/{pool}/.well-known/jwks.json"}
    finally:
        srv.stop()
