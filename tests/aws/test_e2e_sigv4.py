"""SigV4 upstreams on the wire: the request an AWS service receives is exactly the one signed.

A non-S3 service (``execute-api``) in front of the recording upstream: the test recomputes the
signature with botocore from what arrived (method, raw path, query, signed headers, body) and
the same credentials (fetched from the credentials endpoint: one cache entry per user), so any
re-encoding or reordering after signing would show. Large bodies: S3 streams them with
``UNSIGNED-PAYLOAD`` (moto checks the signature), other services get ``413``.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from e2e.servers import raw_request

from .test_e2e_s3 import aws_config, bearer, gateway_env, token

pytestmark = pytest.mark.e2e


@pytest.fixture
def gw_api(moto_aws, jwks, upstream, gateway_factory):
    cfg = aws_config(moto_aws, jwks[1].url)
    cfg["upstreams"]["api"] = {"url": upstream[1].url,
                               "aws_sigv4": {"service": "execute-api", "region": "eu-west-1"}}
    cfg["routes"].insert(0, {"id": "api", "match": {"path": "/api/**"}, "upstream": "api",
                             "auth": "authenticated"})
    return gateway_factory(cfg, env=gateway_env(moto_aws))


def _recompute(seen, creds: dict, body: bytes) -> str:
    auth = seen.header("authorization")
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {h: seen.header(h) for h in signed}
    url = "http://" + seen.header("host") + seen.raw_path.decode()
    if seen.query:
        url += "?" + seen.query.decode()
    req = AWSRequest(method=seen.method, url=url, headers=headers, data=body)
    req.context["timestamp"] = seen.header("x-amz-date")
    signer = SigV4Auth(ReadOnlyCredentials(creds["AccessKeyId"], creds["SecretAccessKey"],
                                           creds["Token"]), "execute-api", "eu-west-1")
    return signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)


def test_signature_matches_what_arrived(gw_api, upstream, signer):
    app = upstream[0]
    tok = token(signer, "alice")
    creds = httpx.get(gw_api.proxy + "/_poolgate/aws/credentials", headers=bearer(tok)).json()
    body = b'{"hello": "world"}'
    status, _ = raw_request(gw_api.proxy, (
        b"POST /api/items/a%20b!/x~y?b=2&a=1&c=%2f&d HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + tok.encode() + b"\r\nX-Amz-Date: 20000101T000000Z\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
        b"\r\nConnection: close\r\n\r\n" + body))
    assert status == 200
    seen = app.seen[-1]
    assert seen.body_len == len(body)
    # one canonical encoding, used for signing and on the wire
    assert seen.raw_path == b"/api/items/a%20b%21/x~y"
    assert seen.query == b"a=1&b=2&c=%2F&d="
    assert seen.header("x-amz-date") != ["20000101T000000Z"]
    assert seen.header("x-amz-security-token") == [creds["Token"]]
    auth = seen.header("authorization")
    assert len(auth) == 1 and auth[0].startswith(f"AWS4-HMAC-SHA256 Credential={creds['AccessKeyId']}/")

    class One:   # Seen.header returns lists; the recompute wants single values
        def __init__(self, s):
            self.s = s
            self.method, self.raw_path, self.query = s.method, s.raw_path, s.query

        def header(self, name):
            return self.s.header(name)[0]

    sig = _recompute(One(seen), creds, body)
    assert auth[0].endswith("Signature=" + sig)


def test_large_body_to_a_non_s3_service_is_413(gw_api, upstream, signer):
    app = upstream[0]
    n = len(app.seen)
    tok = token(signer, "alice")
    r = httpx.post(gw_api.proxy + "/api/upload", headers=bearer(tok), content=b"x" * 70000)
    assert r.status_code == 413 and r.json()["reason"] == "payload_too_large"

    def chunks():
        for _ in range(10):
            yield b"y" * 10000

    r = httpx.post(gw_api.proxy + "/api/upload", headers=bearer(tok), content=chunks())
    assert r.status_code == 413
    assert len(app.seen) == n


def test_large_s3_body_streams_unsigned_payload(gw_api, moto_aws, signer):
    rec = moto_aws["recorder"]
    tok = token(signer, "bob")
    data = bytes(range(256)) * 400          # 102400 bytes > buffer_body_bytes (65536)
    r = httpx.put(gw_api.proxy + "/app-data/users/bob/big.bin", headers=bearer(tok), content=data)
    assert r.status_code == 200, r.text
    assert rec.s3()[-1].header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    r = httpx.get(gw_api.proxy + "/app-data/users/bob/big.bin", headers=bearer(tok))
    assert r.status_code == 200 and hashlib.sha256(r.content).digest() == hashlib.sha256(data).digest()
    # a small chunked upload (no Content-Length) is buffered, hashed and sent with a length
    r = httpx.put(gw_api.proxy + "/app-data/users/bob/small.bin", headers=bearer(tok),
                  content=iter([b"ab", b"cd"]))
    assert r.status_code == 200, r.text
    sent = rec.s3()[-1]
    assert sent.header("x-amz-content-sha256") == hashlib.sha256(b"abcd").hexdigest()
    assert sent.header("content-length") == "4" and sent.header("transfer-encoding") is None
