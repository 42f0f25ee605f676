"""moto as the AWS nobody here wrote, with IAM authentication ON (signatures recomputed,
session tokens checked, role policies and trust policies evaluated), behind a recorder."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest
from e2e.conftest import gateway_factory, upstream  # noqa: F401 (the e2e fixtures, reused)
from e2e.servers import ThreadServer

from .recorder import Recorder

ACCOUNT = "123456789012"
BUCKET = "app-data"
REGION = "us-east-1"


def _role_policy(user: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": [f"arn:aws:s3:::{BUCKET}/users/{user}/*"]},
        # moto names the action after the API operation (s3:ListObjectsV2), AWS says s3:ListBucket
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListObjectsV2"],
         "Resource": [f"arn:aws:s3:::{BUCKET}"]}]})


def _trust(principal: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": principal},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]}]})


@pytest.fixture(scope="session")
def moto_aws_setup() -> Iterator[dict[str, Any]]:
    """IAM user (the gateway's own keys), one role per user with a prefix policy, a role whose
    trust policy names someone else, a bucket with one object per user (auth still off)."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    recorder = Recorder(endpoint)
    rec_srv = ThreadServer(recorder).start()
    kw = dict(region_name=REGION, endpoint_url=endpoint, aws_access_key_id="setup",
              aws_secret_access_key="setup")
    try:
        iam = boto3.client("iam", **kw)
        s3 = boto3.client("s3", **kw)
        iam.create_user(UserName="poolgate-gw")
        user_arn = f"arn:aws:iam::{ACCOUNT}:user/poolgate-gw"
        iam.put_user_policy(UserName="poolgate-gw", PolicyName="assume", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession",
                                              "sts:SetSourceIdentity"], "Resource": "*"}]}))
        key = iam.create_access_key(UserName="poolgate-gw")["AccessKey"]
        roles = {}
        for user in ("alice", "bob"):
            name = f"{user}-files"
            roles[user] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_trust(user_arn))["Role"]["Arn"]
            iam.put_role_policy(RoleName=name, PolicyName="own-prefix",
                                PolicyDocument=_role_policy(user))
        roles["denied"] = iam.create_role(
            RoleName="not-for-the-gateway",
            AssumeRolePolicyDocument=_trust(f"arn:aws:iam::{ACCOUNT}:user/someone-else"))["Role"]["Arn"]
        iam.put_role_policy(RoleName="not-for-the-gateway", PolicyName="own-prefix",
                            PolicyDocument=_role_policy("denied"))
        s3.create_bucket(Bucket=BUCKET)
        for user in ("alice", "bob"):
            s3.put_object(Bucket=BUCKET, Key=f"users/{user}/hello.txt", Body=f"hello {user}".encode())
        yield {"endpoint": endpoint, "recorder": recorder, "recorder_url": rec_srv.url,
               "roles": roles, "key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"],
               "bucket": BUCKET, "region": REGION}
    finally:
        rec_srv.stop()
        srv.stop()


@pytest.fixture(scope="module")
def moto_aws(moto_aws_setup: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """moto with IAM authentication ON for this module (moto 5.2: ``POST /moto-api/reset-auth``
    with the number of requests still let through unauthenticated: 0). moto's settings are
    process-wide, so it is switched off again afterwards for the other modules' moto users."""
    endpoint = moto_aws_setup["endpoint"]
    r = httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0")
    assert r.status_code == 200, r.text
    try:
        yield moto_aws_setup
    finally:
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf")
