"""The revocation audit trail: one line on `poolgate.audit` per write or delete (admin API and
`poolgate revoke`), with the entry, TTL, peer and outcome, never the admin token."""

from __future__ import annotations

import logging
import time

import pytest

from gateway.revocation import MemoryStore
from gateway.revocation.command import revoke_command
from gateway.revocation.redis_store import RedisStore

from .conftest import RedisProc
from .test_api import ADMIN, AUTH, app_for, client, config, jwt


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture):
    logging.getLogger("poolgate.audit").propagate = True
    caplog.set_level(logging.INFO, logger="poolgate.audit")

    def lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "poolgate.audit"]

    return lines


def _fields(record: logging.LogRecord) -> dict:
    return record.fields  # type: ignore[attr-defined]


def _no_secret(records: list[logging.LogRecord], *secrets: str) -> None:
    for r in records:
        text = r.getMessage() + repr(_fields(r))
        for s in secrets:
            assert s not in text


async def test_admin_api_writes_and_deletes_are_audited_once(audit_lines) -> None:
    store = MemoryStore()
    exp = int(time.time()) + 600
    async with client(app_for(store)) as c:
        assert (await c.post("/revocations", json={"jti": "j1", "exp": exp},
                             headers=AUTH)).status_code == 201
        assert len(audit_lines()) == 1
        f = _fields(audit_lines()[0])
        assert f["event"] == "revocation" and f["action"] == "add" and f["outcome"] == "ok"
        assert (f["kind"], f["value"], f["via"]) == ("jti", "j1", "admin_api")
        assert 600 < f["ttl"] <= 661 and f["peer"] == "127.0.0.1"

        assert (await c.delete("/revocations", params={"jti": "j1"},
                               headers=AUTH)).status_code == 204
        assert (await c.delete("/revocations", params={"jti": "j1"},
                               headers=AUTH)).status_code == 404
        deletes = [_fields(r) for r in audit_lines()[1:]]
        assert [(d["action"], d["outcome"], d["value"]) for d in deletes] == [
            ("delete", "ok", "j1"), ("delete", "not_found", "j1")]

        # refusals are audited too, with the reason; reads are not
        tok = jwt({"sub": "u-9", "jti": "tj", "exp": exp})
        assert (await c.post("/revocations", json={"jti": "j2", "bogus": 1},
                             headers=AUTH)).status_code == 400
        assert (await c.post("/revocations", json={"jti": "j3"},
                             headers={"Authorization": "Bearer wrong-but-long-enough"})
                ).status_code == 401
        assert (await c.post("/revocations", json={"token": tok}, headers=AUTH)).status_code == 201
        assert (await c.get("/revocations", params={"jti": "tj"}, headers=AUTH)).status_code == 200
        assert (await c.get("/revocations", headers=AUTH)).status_code == 200
        rest = [_fields(r) for r in audit_lines()[3:]]
        assert [(r["outcome"], r.get("reason")) for r in rest] == [
            ("refused", "unknown_field"), ("unauthorized", "bad_admin_token"), ("ok", None)]
        assert rest[2]["kind"] == "jti" and rest[2]["value"] == "tj"
    _no_secret(audit_lines(), ADMIN, tok, "wrong-but-long-enough")


async def test_cli_write_to_redis_is_audited(audit_lines, shared_redis: RedisProc,
                                             prefix: str) -> None:
    cfg = config("redis", redis_url=f"redis://127.0.0.1:{shared_redis.port}/0", prefix=prefix)
    out = await revoke_command(cfg, sub="cli-user")
    assert isinstance(out["not_before"], int)            # whole epoch seconds
    lines = audit_lines()
    assert len(lines) == 1
    f = _fields(lines[0])
    assert (f["action"], f["kind"], f["value"], f["outcome"], f["via"]) == (
        "add", "sub", "cli-user", "ok", "cli")
    assert f["peer"].startswith("cli") and f["ttl"] == out["ttl"]
    store = RedisStore(cfg.revocation.redis)
    try:
        assert (await store.get("sub", "cli-user")) is not None
    finally:
        await store.aclose()


async def test_cli_failed_write_is_audited_as_error(audit_lines) -> None:
    from gateway.revocation.api import RevokeError
    from redis_helpers import free_port
    cfg = config("redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RevokeError):
        await revoke_command(cfg, jti="x")
    assert [(_fields(r)["outcome"], _fields(r)["value"]) for r in audit_lines()] == [("error", "x")]
