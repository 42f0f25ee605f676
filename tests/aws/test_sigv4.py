"""gateway/aws/sigv4.py and room.py, the pure parts: canonical wire path/query, body handling,
what request_for sends STS, the reserved path."""

from __future__ import annotations

import pytest

from gateway.aws import AwsRoom, serve_reserved
from gateway.aws.sigv4 import _body, wire_path, wire_query
from gateway.config import parse_config
from gateway.errors import NotFound, PayloadTooLarge
from gateway.principal import Principal

ARN = "arn:aws:iam::123456789012:role/r"


@pytest.mark.parametrize("path,wire", [
    ("/a/b", "/a/b"), ("/a%20b/c", "/a%20b/c"), ("/a b", "/a%20b"), ("/x!y", "/x%21y"),
    ("/~u/-_.", "/~u/-_."), ("/%7e", "/~"), ("/caf%C3%A9", "/caf%C3%A9"), ("/a+b", "/a%2Bb")])
def test_wire_path(path, wire):
    assert wire_path(path) == wire


@pytest.mark.parametrize("raw,wire", [
    (b"", ""), (b"b=2&a=1", "a=1&b=2"), (b"acl", "acl="), (b"p=a/b&x=%2f", "p=a%2Fb&x=%2F"),
    (b"q=a b", "q=a%20b"), (b"q=a+b", "q=a%2Bb"), (b"a=2&a=1", "a=1&a=2"), (b"&&a=1", "a=1")])
def test_wire_query(raw, wire):
    assert wire_query(raw) == wire


def _receive(messages):
    it = iter(messages)

    async def receive():
        return next(it)
    return receive


async def test_body_small_is_read_and_replayed():
    scope = {"headers": [(b"content-length", b"4")]}
    body, receive, unsigned = await _body(scope, _receive([
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False}]), 10, s3=False)
    assert body == b"abcd" and not unsigned
    assert await receive() == {"type": "http.request", "body": b"abcd", "more_body": False}


async def test_body_none_without_framing():
    body, _, unsigned = await _body({"headers": []}, _receive([]), 10, s3=False)
    assert body is None and not unsigned


async def test_body_large_declared_length():
    scope = {"headers": [(b"content-length", b"11")]}
    with pytest.raises(PayloadTooLarge):
        await _body(scope, _receive([]), 10, s3=False)
    body, _, unsigned = await _body(scope, _receive([]), 10, s3=True)
    assert body is None and unsigned


async def test_body_large_chunked_s3_streams_the_rest_after_what_was_read():
    scope = {"headers": [(b"transfer-encoding", b"chunked")]}
    msgs = [{"type": "http.request", "body": b"123456", "more_body": True},
            {"type": "http.request", "body": b"789012", "more_body": True},
            {"type": "http.request", "body": b"end", "more_body": False}]
    with pytest.raises(PayloadTooLarge):
        await _body(scope, _receive(list(msgs)), 10, s3=False)
    body, receive, unsigned = await _body(scope, _receive(list(msgs)), 10, s3=True)
    assert body is None and unsigned
    got = [await receive() for _ in range(3)]
    assert b"".join(m["body"] for m in got) == b"123456789012end"
    assert [m["more_body"] for m in got] == [True, True, False]


def _cfg(**aws):
    return parse_config({
        "version": 1, "default_role": "member",
        "roles": {"member": {"aws": {"role_arn": ARN, "session_tags": {"t": "${tag:tenant}"}}},
                  "plain": {}},
        "aws": {"region": "eu-west-1", **aws}})


def test_request_for_uses_the_configured_duration_and_refresh():
    room = AwsRoom(_cfg(duration_seconds=1200, refresh_before_seconds=120))
    try:
        p = Principal(sub="u1", role="member", claims={"sub": "u1"}, source_id=None,
                      tags={"tenant": "acme"}, token=None)
        key, req = room.request_for(p)
        assert req.duration_seconds == 1200 and room.cache.refresh_before == 120
        assert req.role_arn == ARN and req.tags == (("t", "acme"),) and req.policy is None
        assert req.session_name == "u1" and req.source_identity == "u1"
        assert key == (ARN, None, (("t", "acme"),), "u1")
        guest = Principal(sub=None, role="member", claims={}, source_id=None,
                          tags={"tenant": "acme"}, token=None)
        _, greq = room.request_for(guest)
        assert greq.session_name == "guest" and greq.source_identity is None
    finally:
        room.close()


async def test_credentials_endpoint_disabled_is_404():
    class Engine:
        aws = AwsRoom(_cfg())

    try:
        assert Engine.aws.endpoint_enabled is False
        with pytest.raises(NotFound):
            await serve_reserved(Engine, {"type": "http", "method": "GET", "headers": []},  # type: ignore[arg-type]
                                 None, "/_poolgate/aws/credentials", None, "rid")  # type: ignore[arg-type]
    finally:
        Engine.aws.close()


def test_botocore_debug_logs_stay_off(caplog):
    """botocore logs the canonical request (session token) and STS bodies at DEBUG."""
    import logging
    import time

    from gateway.aws.sigv4 import _Request, make_signer
    from gateway.aws.sts import AwsCredentials

    logging.getLogger("botocore").setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger().setLevel(logging.DEBUG)
        signer = make_signer(AwsCredentials("ASIAX", "s3cr3t", "SESSIONTOKEN", time.time() + 900,
                                            ARN), "execute-api", "eu-west-1")
        signer.add_auth(_Request("GET", "http://h/x", {"host": "h"}, b""))
    assert not any("SESSIONTOKEN" in r.getMessage() for r in caplog.records)


async def test_a_hanging_sts_fails_closed_within_the_deadline(monkeypatch, caplog):
    """An STS that accepts and never answers: 503 aws_unavailable after FETCH_DEADLINE."""
    import socket
    import time

    from gateway.aws import sts
    from gateway.errors import Unavailable

    monkeypatch.setattr(sts, "FETCH_DEADLINE", 1.0)
    for k, v in {"AWS_ACCESS_KEY_ID": "AKIATEST", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}.items():
        monkeypatch.setenv(k, v)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)                      # accepts (kernel backlog), never answers
    port = hole.getsockname()[1]
    cfg = _cfg(endpoint_url=f"http://127.0.0.1:{port}")
    room = AwsRoom(cfg)
    p = Principal(sub="u1", role="member", claims={"sub": "u1"}, source_id=None,
                  tags={"tenant": "acme"}, token=None)
    t0 = time.monotonic()
    try:
        with pytest.raises(Unavailable) as ei:
            await room.credentials(p)
        assert ei.value.code == "aws_unavailable" and ei.value.retry_after
        assert time.monotonic() - t0 < 3
        assert any("took over" in r.getMessage() for r in caplog.records)
    finally:
        room.close()
        hole.close()
