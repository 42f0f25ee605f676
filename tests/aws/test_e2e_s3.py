"""AWS credentials end to end (AWS.md): a real ``poolgate serve`` in front of moto's S3 as a
SigV4 upstream, STS AssumeRole with the gateway's own IAM user keys, moto's IAM authentication on.

moto recomputes every signature, checks the session token and evaluates each role's own
policies, but it does not evaluate session policies. So each user maps to a role of their own
in moto (alice-files, bob-files, each allowed only its prefix): the 403 for the other user's
prefix comes from S3 itself. The per-user narrowing a session policy adds is proven from the
``Policy`` parameter STS received (recorded between the gateway and moto) and from
``poolgate explain``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from e2e.conftest import CLIENT, ISSUER, POOL
from e2e.servers import ROOT, Signer, cognito_claims, raw_request

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "aws-e2e-admin-" + uuid.uuid4().hex[:16]


def session_policy() -> list[dict[str, Any]]:
    return [{"Sid": "OwnPrefix", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": ["arn:aws:s3:::app-data/users/${jwt:username}/*"]}]


def aws_config(moto: dict[str, Any], jwks_url: str, *, sts_url: str | None = None,
               **over: Any) -> dict[str, Any]:
    roles = moto["roles"]

    def role(arn: str) -> dict[str, Any]:
        return {"aws": {"role_arn": arn, "session_policy": session_policy(),
                        "session_tags": {"user": "${jwt:username}", "sub": "${jwt:sub}"}}}

    cfg: dict[str, Any] = {
        "version": 1,
        "identity_sources": [{
            "id": "pool", "cognito": {"region": "eu-west-1", "user_pool_id": POOL},
            "jwks_uri": jwks_url, "client_ids": [CLIENT]}],
        "upstreams": {"files": {"url": moto["recorder_url"], "timeout_seconds": 10,
                                "aws_sigv4": {"service": "s3", "region": moto["region"]}}},
        "routes": [{"id": "files", "match": {"path": "/**"}, "upstream": "files",
                    "auth": "authenticated"}],
        "mappings": {"pool": {"mode": "rules", "rules": [
            {"claim": "username", "op": "equals", "value": "alice", "role": "alice"},
            {"claim": "username", "op": "equals", "value": "bob", "role": "bob"},
            {"claim": "username", "op": "equals", "value": "mallory", "role": "refused"}]}},
        "default_role": "plain",
        "roles": {"alice": role(roles["alice"]), "bob": role(roles["bob"]),
                  "refused": role(roles["denied"]), "plain": {"statements": []}},
        "aws": {"region": moto["region"], "endpoint_url": sts_url or moto["recorder_url"]},
        "credentials_endpoint": {"enabled": True},
        "revocation": {"store": "memory"},
        "admin": {"token": ADMIN_TOKEN},
    }
    cfg.update(over)
    return cfg


def gateway_env(moto: dict[str, Any]) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": moto["key_id"], "AWS_SECRET_ACCESS_KEY": moto["secret"],
            "AWS_SESSION_TOKEN": "", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def token(signer: Signer, user: str, **over: Any) -> str:
    return signer.token(cognito_claims(ISSUER, CLIENT, username=user,
                                       sub=f"sub-{user}-{uuid.uuid4().hex[:6]}", **over))


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture
def gw(moto_aws, jwks, gateway_factory):
    return gateway_factory(aws_config(moto_aws, jwks[1].url), env=gateway_env(moto_aws))


def test_each_user_reaches_only_their_own_prefix(moto_aws, gw, signer):
    rec = moto_aws["recorder"]
    alice, bob = token(signer, "alice"), token(signer, "bob")
    r = httpx.get(gw.proxy + "/app-data/users/alice/hello.txt", headers=bearer(alice))
    assert r.status_code == 200 and r.text == "hello alice", r.text
    r = httpx.get(gw.proxy + "/app-data/users/bob/hello.txt", headers=bearer(bob))
    assert r.status_code == 200 and r.text == "hello bob"
    # the other's prefix: refused by S3 itself (its XML error body, not poolgate's JSON)
    r = httpx.get(gw.proxy + "/app-data/users/bob/hello.txt", headers=bearer(alice))
    assert r.status_code == 403
    assert r.text.lstrip().startswith("<?xml") and "<Code>AccessDenied</Code>" in r.text
    assert "reason" not in r.text
    # a write to one's own prefix is signed with its payload hash
    r = httpx.put(gw.proxy + "/app-data/users/alice/note.txt", headers=bearer(alice),
                  content=b"written through poolgate")
    assert r.status_code == 200, r.text
    put = rec.s3()[-1]
    assert put.method == "PUT"
    import hashlib
    assert put.header("x-amz-content-sha256") == hashlib.sha256(b"written through poolgate").hexdigest()
    r = httpx.get(gw.proxy + "/app-data/users/alice/note.txt", headers=bearer(alice))
    assert r.text == "written through poolgate"
    # what STS received: the per-user session policy, session name, source identity, tags
    calls = rec.calls("AssumeRole")
    by_role = {c.form["RoleArn"]: c.form for c in calls}
    alice_call = by_role[moto_aws["roles"]["alice"]]
    policy = json.loads(alice_call["Policy"])
    assert policy["Statement"][0]["Resource"] == ["arn:aws:s3:::app-data/users/alice/*"]
    assert alice_call["RoleSessionName"].startswith("sub-alice-")
    assert alice_call["SourceIdentity"] == alice_call["RoleSessionName"]
    assert alice_call["Tags.member.1.Key"] == "user" and alice_call["Tags.member.1.Value"] == "alice"
    assert alice_call["DurationSeconds"] == "900"
    assert json.loads(by_role[moto_aws["roles"]["bob"]]["Policy"])["Statement"][0]["Resource"] == [
        "arn:aws:s3:::app-data/users/bob/*"]
    # credentials never in the gateway's logs
    secrets = [c.form.get("RoleArn") for c in calls]
    assert secrets and not any("SecretAccessKey" in line or "x-amz-security-token" in line.lower()
                               for line in gw.lines)


def test_client_signature_headers_are_replaced_and_tampered_paths_refused(moto_aws, gw, signer):
    rec = moto_aws["recorder"]
    alice = token(signer, "alice")
    # a client's own Authorization / X-Amz-* never reach AWS: the gateway signs anew
    r = httpx.get(gw.proxy + "/app-data/users/alice/hello.txt",
                  headers={**bearer(alice), "X-Amz-Security-Token": "forged",
                           "X-Amz-Date": "20000101T000000Z", "x_amz_content_sha256": "forged"})
    assert r.status_code == 200, r.text
    sent = rec.s3()[-1]
    assert sent.header("x-amz-security-token") != "forged"
    assert sent.header("x-amz-date") != "20000101T000000Z"
    assert [k for k, _ in sent.headers if k.lower().replace(b"_", b"-") == b"x-amz-content-sha256"] \
        == [b"x-amz-content-sha256"]
    assert sent.header("authorization").startswith("AWS4-HMAC-SHA256 Credential=")
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token" \
        in sent.header("authorization")
    # dot segments are resolved before signing: alice cannot climb into bob's prefix
    status, body = raw_request(gw.proxy, b"GET /app-data/users/alice/../bob/hello.txt HTTP/1.1\r\n"
                               b"Host: x\r\nAuthorization: Bearer " + alice.encode() + b"\r\n"
                               b"Connection: close\r\n\r\n")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    assert rec.s3()[-1].raw_path == b"/app-data/users/bob/hello.txt"
    # an encoded slash never reaches AWS
    n = len(rec.s3())
    status, body = raw_request(gw.proxy, b"GET /app-data/users/alice%2F..%2Fbob/hello.txt HTTP/1.1\r\n"
                               b"Host: x\r\nAuthorization: Bearer " + alice.encode() + b"\r\n"
                               b"Connection: close\r\n\r\n")
    assert status == 400 and len(rec.s3()) == n


def test_revoked_user_gets_no_signed_request_and_no_credentials_at_once(moto_aws, gw, signer):
    rec = moto_aws["recorder"]
    sub = f"sub-revoked-{uuid.uuid4().hex[:6]}"
    tok = signer.token(cognito_claims(ISSUER, CLIENT, username="alice", sub=sub,
                                      iat=int(time.time()) - 10))
    assert httpx.get(gw.proxy + "/app-data/users/alice/hello.txt", headers=bearer(tok)).status_code == 200
    assert httpx.get(gw.proxy + "/_poolgate/aws/credentials", headers=bearer(tok)).status_code == 200
    s3_before, sts_before = len(rec.s3()), len(rec.calls("AssumeRole"))
    r = httpx.post(gw.admin + "/revocations", json={"sub": sub},
                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 201, r.text
    r = httpx.get(gw.proxy + "/app-data/users/alice/hello.txt", headers=bearer(tok))
    assert r.status_code == 401 and r.json()["reason"] == "token_revoked"
    r = httpx.get(gw.proxy + "/_poolgate/aws/credentials", headers=bearer(tok))
    assert r.status_code == 401 and r.json()["reason"] == "token_revoked"
    assert "AccessKeyId" not in r.text
    assert len(rec.s3()) == s3_before and len(rec.calls("AssumeRole")) == sts_before


def test_100_concurrent_requests_of_one_user_one_sts_call(moto_aws, gw, signer):
    rec = moto_aws["recorder"]
    tok = token(signer, "bob")
    before = len(rec.calls("AssumeRole"))

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            rs = await asyncio.gather(*(client.get(gw.proxy + "/app-data/users/bob/hello.txt",
                                                   headers=bearer(tok)) for _ in range(100)))
        return [r.status_code for r in rs]

    statuses = asyncio.run(burst())
    assert statuses == [200] * 100
    assert len(rec.calls("AssumeRole")) - before == 1


def test_credentials_endpoint_feeds_a_real_boto3_client(moto_aws, gw, signer):
    tok = token(signer, "alice")
    r = httpx.get(gw.proxy + "/_poolgate/aws/credentials", headers=bearer(tok))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}
    assert body["RoleArn"] == moto_aws["roles"]["alice"] and body["Expiration"].endswith("Z")
    assert httpx.get(gw.proxy + "/_poolgate/aws/credentials").status_code == 401
    assert httpx.get(gw.proxy + "/_poolgate/other", headers=bearer(tok)).status_code == 404
    plain = token(signer, "carol")             # default role: no aws section
    r = httpx.get(gw.proxy + "/_poolgate/aws/credentials", headers=bearer(plain))
    assert r.status_code == 403 and r.json()["reason"] == "no_aws_role"
    script = (
        "import boto3, botocore\n"
        f"s3 = boto3.client('s3', region_name='{moto_aws['region']}', endpoint_url='{moto_aws['endpoint']}')\n"
        "keys = [o['Key'] for o in s3.list_objects_v2(Bucket='app-data', Prefix='users/alice/')['Contents']]\n"
        "print('OWN', keys)\n"
        "print('BODY', s3.get_object(Bucket='app-data', Key='users/alice/hello.txt')['Body'].read().decode())\n"
        "try:\n"
        "    s3.get_object(Bucket='app-data', Key='users/bob/hello.txt')\n"
        "    print('OTHER allowed')\n"
        "except botocore.exceptions.ClientError as e:\n"
        "    print('OTHER', e.response['Error']['Code'])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONTAINER_CREDENTIALS_FULL_URI=gw.proxy + "/_poolgate/aws/credentials",
               AWS_CONTAINER_AUTHORIZATION_TOKEN=f"Bearer {tok}",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_EC2_METADATA_DISABLED="true")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "OWN ['users/alice/hello.txt'" in out.stdout
    assert "BODY hello alice" in out.stdout
    assert "OTHER AccessDenied" in out.stdout


def test_role_whose_trust_policy_refuses_is_403_aws_role_denied(moto_aws, gw, signer):
    tok = token(signer, "mallory")
    r = httpx.get(gw.proxy + "/app-data/users/mallory/x", headers=bearer(tok))
    assert r.status_code == 403 and r.json()["reason"] == "aws_role_denied"
    r = httpx.get(gw.proxy + "/_poolgate/aws/credentials", headers=bearer(tok))
    assert r.status_code == 403 and r.json()["reason"] == "aws_role_denied"
    assert gw.wait_log(lambda line: moto_aws["roles"]["denied"] in line and "trust" in line)


def test_sts_down_fails_closed_503(moto_aws, jwks, gateway_factory, signer):
    from e2e.servers import free_port
    dead = f"http://127.0.0.1:{free_port()}"
    gw = gateway_factory(aws_config(moto_aws, jwks[1].url, sts_url=dead),
                         env=gateway_env(moto_aws))
    rec = moto_aws["recorder"]
    n = len(rec.s3())
    tok = token(signer, "alice")
    t0 = time.monotonic()
    r = httpx.get(gw.proxy + "/app-data/users/alice/hello.txt", headers=bearer(tok), timeout=60)
    assert r.status_code == 503 and r.json()["reason"] == "aws_unavailable"
    assert int(r.headers["retry-after"]) > 0 and time.monotonic() - t0 < 30
    assert len(rec.s3()) == n                  # nothing unsigned went out instead
    r = httpx.get(gw.proxy + "/_poolgate/aws/credentials", headers=bearer(tok), timeout=60)
    assert r.status_code == 503 and "AccessKeyId" not in r.text


@pytest.mark.parametrize("sub", ["x*", "a/b", "a$b", 'a"b'])
def test_unsafe_claim_value_is_refused_before_sts(moto_aws, gw, signer, sub):
    rec = moto_aws["recorder"]
    before = len(rec.calls("AssumeRole"))
    tok = signer.token(cognito_claims(ISSUER, CLIENT, username="alice", sub=sub))
    r = httpx.get(gw.proxy + "/app-data/users/alice/hello.txt", headers=bearer(tok))
    assert r.status_code == 403 and r.json()["reason"] == "unsafe_policy_value"
    assert sub not in r.text
    assert len(rec.calls("AssumeRole")) == before


def test_explain_prints_the_rendered_session_policy(moto_aws, tmp_path, gw, signer):
    import yaml
    tok = signer.token(cognito_claims(ISSUER, CLIENT, username="alice", sub="sub-alice-1"))
    assert httpx.get(gw.proxy + "/app-data/users/alice/hello.txt", headers=bearer(tok)).status_code == 200
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(aws_config(moto_aws, "http://127.0.0.1:1/jwks"), sort_keys=False))

    def explain(claims: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "explain", "--config", str(path), "--json",
             "--claims", json.dumps({"iss": ISSUER, **claims}), "--method", "GET",
             "--path", "/app-data/users/alice/hello.txt"],
            capture_output=True, text=True, timeout=60, cwd=ROOT)

    out = explain({"sub": "sub-alice-1", "username": "alice"})
    assert out.returncode == 0, out.stderr
    lines = json.loads(out.stdout)
    assert lines["role"] == "alice" and lines["aws_role_arn"] == moto_aws["roles"]["alice"]
    policy = json.loads(lines["aws_session_policy"])
    assert policy["Statement"][0]["Resource"] == ["arn:aws:s3:::app-data/users/alice/*"]
    assert lines["aws_session_tags"] == ["user=alice", "sub=sub-alice-1"]
    assert lines["aws_session_name"] == "sub-alice-1" == lines["aws_source_identity"]
    # exactly the string STS received for this user through the running gateway
    sent = [c.form["Policy"] for c in moto_aws["recorder"].calls("AssumeRole")
            if c.form["RoleSessionName"] == "sub-alice-1"]
    assert sent and all(p == lines["aws_session_policy"] for p in sent)
    out = explain({"sub": "a/b", "username": "alice"})
    assert "unsafe_policy_value" in json.loads(out.stdout)["aws_error"]
