"""flow: identity_pool at the protocol level against moto's cognito-identity (which returns
fixed fake credentials and ignores ``Logins``): the gateway makes the right calls with the right
parameters, GetId then GetCredentialsForIdentity with the user's id token and the mapped role as
``CustomRoleArn``, both unsigned (the token authenticates them, not the gateway's keys)."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from e2e.servers import ThreadServer

from gateway.aws import AwsRoom
from gateway.config import parse_config
from gateway.principal import Principal, VerifiedToken

from .recorder import Recorder

POOL = "eu-west-1_TestPool1"
ROLE = "arn:aws:iam::123456789012:role/app-member"


@pytest.fixture(scope="module")
def moto_identity() -> Iterator[dict[str, Any]]:
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    rec = Recorder(endpoint)
    rec_srv = ThreadServer(rec).start()
    try:
        ci = boto3.client("cognito-identity", region_name="eu-west-1", endpoint_url=endpoint,
                          aws_access_key_id="setup", aws_secret_access_key="setup")
        pool_id = ci.create_identity_pool(IdentityPoolName="app",
                                          AllowUnauthenticatedIdentities=False)["IdentityPoolId"]
        yield {"pool_id": pool_id, "url": rec_srv.url, "recorder": rec}
    finally:
        rec_srv.stop()
        srv.stop()


def room(moto: dict[str, Any]) -> AwsRoom:
    cfg = parse_config({
        "version": 1,
        "identity_sources": [{"id": "pool", "cognito": {"region": "eu-west-1",
                                                        "user_pool_id": POOL},
                              "client_ids": ["c"], "token_use": ["id", "access"]}],
        "default_role": "member",
        "roles": {"member": {"aws": {"role_arn": ROLE}}, "plain": {}},
        "aws": {"region": "eu-west-1", "endpoint_url": moto["url"], "flow": "identity_pool",
                "identity_pool_id": moto["pool_id"]},
        "credentials_endpoint": {"enabled": True}})
    return AwsRoom(cfg)


def principal(token_use: str = "id", role: str = "member", sub: str = "sub-1") -> Principal:
    claims = {"sub": sub, "token_use": token_use, "iss": f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"}
    tok = VerifiedToken(raw=f"header.{token_use}-token-of-{sub}.sig", source_id="pool",
                        issuer=claims["iss"], header={}, claims=claims, token_hash=b"h")
    return Principal(sub=sub, role=role, claims=claims, source_id="pool", tags={}, token=tok)


async def test_get_id_then_credentials_for_identity_with_the_id_token(moto_identity):
    rec = moto_identity["recorder"]
    aws = room(moto_identity)
    try:
        entry = await aws.credentials(principal())
        again = await aws.credentials(principal())        # cached: no more calls
    finally:
        aws.close()
    creds = entry.value
    assert again is entry and creds.role_arn == ROLE and creds.access_key_id
    get_id = rec.targets("AWSCognitoIdentityService.GetId")
    get_creds = rec.targets("AWSCognitoIdentityService.GetCredentialsForIdentity")
    assert len(get_id) == 1 and len(get_creds) == 1
    provider = f"cognito-idp.eu-west-1.amazonaws.com/{POOL}"
    body = json.loads(get_id[0].body)
    assert body == {"IdentityPoolId": moto_identity["pool_id"],
                    "Logins": {provider: "header.id-token-of-sub-1.sig"}}
    body = json.loads(get_creds[0].body)
    assert body["CustomRoleArn"] == ROLE
    assert body["Logins"] == {provider: "header.id-token-of-sub-1.sig"}
    assert body["IdentityId"] == json.loads(get_id[0].response)["IdentityId"]
    # public APIs: the gateway's own keys are not used (no SigV4 Authorization)
    assert get_id[0].header("authorization") is None and get_creds[0].header("authorization") is None


async def test_access_token_or_role_without_aws_is_refused_before_any_call(moto_identity):
    from gateway.errors import Forbidden
    rec = moto_identity["recorder"]
    n = len(rec.seen)
    aws = room(moto_identity)
    try:
        with pytest.raises(Forbidden) as ei:
            await aws.credentials(principal(token_use="access", sub="sub-2"))
        assert ei.value.code == "aws_needs_id_token"
        with pytest.raises(Forbidden) as ei:
            await aws.credentials(principal(role="plain", sub="sub-3"))
        assert ei.value.code == "no_aws_role"
    finally:
        aws.close()
    assert len(rec.seen) == n
