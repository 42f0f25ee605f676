"""`poolgate demo`'s AWS part (``pip install 'poolgate[aws]'``): moto's S3, STS and IAM on
loopback, with IAM authentication on, behind the gateway as a SigV4 upstream.

A bucket ``demo-files`` holds ``users/alice/`` and ``users/bob/``; the demo roles get an
``aws:`` section (``sts:AssumeRole`` with a per-user session policy); the gateway's own AWS
keys are an IAM user created in moto. moto does not evaluate session policies, so each demo
role's own IAM policy holds its user's prefix (admin: alice, member: bob); on AWS the session
policy ``users/${jwt:username}/*`` does it for any number of users on one role.
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

BUCKET = "demo-files"
REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE_USERS = {"admin": "alice", "member": "bob"}     # demo role -> the user it is mapped for


@dataclass
class AwsDemo:
    endpoint: str
    stop: Callable[[], None]


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("moto", "boto3", "botocore"))


def start() -> AwsDemo:
    """moto in a thread of this process, set up, IAM authentication switched on."""
    import boto3
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        kw: dict[str, Any] = dict(region_name=REGION, endpoint_url=endpoint,
                                  aws_access_key_id="demo-setup", aws_secret_access_key="demo-setup")
        iam, s3 = boto3.client("iam", **kw), boto3.client("s3", **kw)
        iam.create_user(UserName="poolgate-demo")
        iam.put_user_policy(UserName="poolgate-demo", PolicyName="assume", PolicyDocument=_doc(
            [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession",
                                            "sts:SetSourceIdentity"], "Resource": "*"}]))
        key = iam.create_access_key(UserName="poolgate-demo")["AccessKey"]
        trust = _doc([{"Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/poolgate-demo"},
                       "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"]}])
        for role, user in ROLE_USERS.items():
            name = f"poolgate-demo-{role}"
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
            iam.put_role_policy(RoleName=name, PolicyName="own-prefix", PolicyDocument=_doc([
                {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                 "Resource": [f"arn:aws:s3:::{BUCKET}/users/{user}/*"]},
                # moto names the action after the operation (ListObjectsV2); AWS: s3:ListBucket
                {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListObjectsV2"],
                 "Resource": [f"arn:aws:s3:::{BUCKET}"]}]))
        s3.create_bucket(Bucket=BUCKET)
        for user in ROLE_USERS.values():
            s3.put_object(Bucket=BUCKET, Key=f"users/{user}/hello.txt",
                          Body=f"hello {user}, from S3\n".encode())
        # from here moto checks every signature, session token and policy
        urllib.request.urlopen(urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
            headers={"Content-Type": "text/plain"}), timeout=10).close()
        # the gateway's own AWS keys (the standard chain reads them from the environment)
        os.environ.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"],
                          AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
                          AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        os.environ.pop("AWS_SESSION_TOKEN", None)
    except BaseException:
        srv.stop()
        raise
    return AwsDemo(endpoint=endpoint, stop=srv.stop)


def extend_config(data: dict[str, Any], endpoint: str) -> None:
    """Add the AWS part to the demo config document (before it is validated)."""
    data.setdefault("upstreams", {})["files"] = {
        "url": endpoint, "timeout_seconds": 10, "aws_sigv4": {"service": "s3", "region": REGION}}
    data.setdefault("routes", []).insert(0, {
        "id": "files", "match": {"path": f"/{BUCKET}/**"}, "upstream": "files",
        "auth": "authenticated"})
    for role in ROLE_USERS:
        data["roles"][role]["aws"] = {
            "role_arn": f"arn:aws:iam::{ACCOUNT}:role/poolgate-demo-{role}",
            "session_tags": {"user": "${jwt:username}"},
            "session_policy": [{"Sid": "OwnPrefix", "Effect": "Allow",
                                "Action": ["s3:GetObject", "s3:PutObject"],
                                "Resource": [f"arn:aws:s3:::{BUCKET}/users/${{jwt:username}}/*"]}]}
    data["aws"] = {"region": REGION, "endpoint_url": endpoint}
    data["credentials_endpoint"] = {"enabled": True}


def _doc(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})
