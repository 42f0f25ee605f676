"""gateway/logs.py: JSON lines through the queue writer, one access record per request with the
documented fields and no token, and a writer that survives ``fork`` (``serve --workers N``)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.config import parse_config
from gateway.engine import Engine
from gateway.logs import JsonFormatter, setup_logging, stop_logging
from gateway.middleware import GatewayMiddleware

POOL = "eu-west-1_LogsPool1"
ISSUER = f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"
CLIENT = "6jk8ltokc7ac9es6jrtg9q572f"
JWKS_URL = "http://127.0.0.1:9/jwks.json"
ACCESS_FIELDS = {"request_id", "route", "method", "status", "decision", "code", "role",
                 "latency_ms"}


def _record(msg: str, *args: Any, level: int = logging.INFO, **fields: Any) -> logging.LogRecord:
    r = logging.LogRecord("poolgate.test", level, __file__, 1, msg, args, None)
    if fields:
        r.fields = fields
    return r


def test_formatter_writes_one_json_object_with_the_fields_merged() -> None:
    line = JsonFormatter().format(_record("hello %s", "world", request_id="r1", status=200))
    assert "\n" not in line
    out = json.loads(line)
    assert out["msg"] == "hello world" and out["level"] == "info"
    assert out["logger"] == "poolgate.test" and out["pid"] == os.getpid()
    assert out["request_id"] == "r1" and out["status"] == 200
    assert out["ts"].endswith("Z")


def test_formatter_keeps_tracebacks_out_of_msg() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        r = logging.LogRecord("poolgate", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = json.loads(JsonFormatter().format(r))
    assert out["msg"] == "failed" and "ValueError: boom" in out["exc"]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    setup_logging("info", stream=buf)
    try:
        yield buf
    finally:
        stop_logging()
        for name in ("poolgate", "uvicorn", "uvicorn.error"):
            lg = logging.getLogger(name)
            lg.handlers = []
            lg.propagate = True
            lg.setLevel(logging.NOTSET)
        logging.getLogger("uvicorn.access").disabled = False


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    stop_logging()                                   # flush the writer thread
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def test_queue_writer_renders_json_and_exceptions(captured: io.StringIO) -> None:
    log = logging.getLogger("poolgate.test")
    log.info("reload %s", "ok", extra={"fields": {"event": "reload"}})
    try:
        {}["missing"]
    except KeyError:
        log.exception("worker failed")
    first, second = _lines(captured)
    assert first["msg"] == "reload ok" and first["event"] == "reload"
    assert second["msg"] == "worker failed" and "KeyError" in second["exc"]
    assert "Traceback" not in second["msg"]


def test_writer_thread_is_restarted_in_a_forked_child(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with open(path, "a", buffering=1) as stream:
        setup_logging("info", stream=stream)
        try:
            log = logging.getLogger("poolgate.test")
            log.info("parent before fork")
            pid = os.fork()
            if pid == 0:                             # the child: log, flush, leave
                try:
                    log.info("child says hi")
                    stop_logging()
                finally:
                    os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            log.info("parent after fork")
        finally:
            stop_logging()
            for name in ("poolgate", "uvicorn", "uvicorn.error"):
                lg = logging.getLogger(name)
                lg.handlers, lg.propagate = [], True
                lg.setLevel(logging.NOTSET)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    msgs = [x["msg"] for x in lines]
    assert sorted(msgs) == ["child says hi", "parent after fork", "parent before fork"]
    assert [x["pid"] for x in lines if x["msg"] == "child says hi"] == [pid]


# --------------------------------------------------------------------------- access records

def _config() -> Any:
    return parse_config({
        "version": 1,
        "identity_sources": [{"id": "pool", "cognito": {"region": "eu-west-1",
                                                         "user_pool_id": POOL},
                              "jwks_uri": JWKS_URL, "client_ids": [CLIENT]}],
        "upstreams": {"app": {"url": "http://127.0.0.1:9001"}},
        "routes": [{"id": "public", "match": {"path": "/public/**"}, "upstream": "app",
                    "auth": "public"},
                   {"id": "orders", "match": {"path": "/orders/**"}, "upstream": "app",
                    "auth": "authenticated"}],
        "default_role": "member",
        "roles": {"member": {"statements": []}},
        "revocation": {"store": "none"},
    })


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_one_access_record_per_request_with_fields_and_no_token(
        captured: io.StringIO) -> None:
    key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    jwk = {**key.as_dict(private=False), "kid": "k1", "alg": "RS256", "use": "sig"}
    jwks = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda req: httpx.Response(200, json={"keys": [jwk]})))
    engine = Engine(_config(), http_client=jwks)          # no route = 404, as in the proxy
    mw = GatewayMiddleware(_app, engine=engine)
    await mw.startup()
    for _ in range(200):
        if engine.jwks.ready():
            break
        await asyncio.sleep(0.01)
    now = int(time.time())
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, {
        "iss": ISSUER, "sub": "user-1", "client_id": CLIENT, "token_use": "access",
        "iat": now, "exp": now + 600, "jti": str(uuid.uuid4())}, key)
    forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw),
                                     base_url="http://gw") as c:
            ok = await c.get("/orders/1", headers={"Authorization": f"Bearer {token}"})
            bad = await c.get("/orders/1", headers={"Authorization": f"Bearer {forged}"})
            missing = await c.get("/orders/1")
            in_query = await c.get(f"/orders/1?access_token={token}")
            public = await c.get("/public/x", headers={"Authorization": f"Bearer {token}"})
            unrouted = await c.get("/nowhere")
    finally:
        await mw.shutdown()
        await jwks.aclose()
    assert [r.status_code for r in (ok, bad, missing, in_query, public, unrouted)] == \
        [200, 401, 401, 400, 200, 404]
    records = [x for x in _lines(captured) if x["logger"] == "poolgate.access"]
    text = "\n".join(json.dumps(r) for r in records)
    assert len(records) == 6                          # one per request
    for rec in records:
        assert ACCESS_FIELDS <= rec.keys(), rec
        assert isinstance(rec["latency_ms"], (int, float)) and rec["latency_ms"] >= 0
    by_status = [(r["route"], r["method"], r["status"], r["decision"], r["code"], r["role"])
                 for r in records]
    assert by_status == [
        ("orders", "GET", 200, "allow", "authenticated", "member"),
        ("orders", "GET", 401, "deny", records[1]["code"], None),   # refusals name their route
        ("orders", "GET", 401, "deny", "missing_token", None),
        ("orders", "GET", 400, "deny", records[3]["code"], None),
        ("public", "GET", 200, "allow", "public_route", None),
        ("-", "GET", 404, "deny", records[5]["code"], None),
    ]
    assert records[1]["code"] not in (None, "none")
    assert [r["request_id"] for r in records] == [
        r.headers["x-request-id"] for r in (ok, bad, missing, in_query, public, unrouted)]
    # neither the token nor any of its parts, nor a header value, is ever in an access record
    for secret in (token, forged, *token.split("."), "Bearer"):
        assert secret not in text
    for rec in records:
        assert not {k for k in rec if "auth" in k.lower() or "credential" in k.lower()
                    or "token" in k.lower() or "header" in k.lower()}
