"""`poolgate revoke`: write one entry to the configured store (Redis directly; with
``store: memory``, through the running gateway's admin API, which audits the write itself)."""

from __future__ import annotations

import getpass
import time
from typing import Any
from urllib.parse import urlsplit

from ..config import Config
from .api import RevokeError, _Invalid, decode_unverified, entry_from_body
from .audit import write_entry
from .entries import KINDS, EntryError, StoreError, entry_lifetime

def _admin_base(config: Config) -> str:
    host = config.admin.host
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.admin.port}"


def _body(jti: str | None, origin_jti: str | None, sub: str | None, token: str | None,
          not_before: float | None, exp: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {k: v for k, v in (("jti", jti), ("origin_jti", origin_jti),
                                               ("sub", sub), ("token", token)) if v is not None}
    if exp is not None:
        body["exp"] = exp
    if not_before is not None:
        body["not_before"] = not_before
    return body


async def revoke_command(config: Config, *, jti: str | None = None,
                         origin_jti: str | None = None, sub: str | None = None,
                         not_before: float | None = None, token: str | None = None,
                         exp: float | None = None, admin_url: str | None = None) -> dict[str, Any]:
    """Write one entry to the configured store; returns the entry JSON or raises RevokeError."""
    body = _body(jti, origin_jti, sub, token, not_before, exp)
    store_kind = config.revocation.store
    if store_kind == "none":
        raise RevokeError("revocation.store is none in this config: gateways check no "
                          "revocation list, so there is nothing to write to")
    if store_kind == "memory":
        return await _post_to_gateway(config, body, admin_url)
    skew = max((s.clock_skew_seconds for s in config.identity_sources), default=60)
    try:
        names_token = token is not None and not any(k in body for k in KINDS)
        claims = decode_unverified(token) if names_token else None
        lifetime = entry_lifetime(config.revocation.max_token_lifetime_seconds,
                                  config.identity_sources)
        entry = entry_from_body(body, claims, now=time.time(), max_token_lifetime=lifetime,
                                skew=skew)
    except (_Invalid, EntryError) as e:
        raise RevokeError(e.description) from e
    from .redis_store import RedisStore   # only when configured
    store = RedisStore(config.revocation.redis)
    try:
        return (await write_entry(store, entry, peer=_cli_peer(), via="cli")).to_json()
    except StoreError as e:
        raise RevokeError(f"cannot write to redis ({config.revocation.redis!r}): {e}") from e
    finally:
        await store.aclose()


async def _post_to_gateway(config: Config, body: dict[str, Any],
                           admin_url: str | None) -> dict[str, Any]:
    import httpx  # the CLI path only

    if not config.admin.token:
        raise RevokeError("revocation.store is memory, so `poolgate revoke` posts to the running "
                          "gateway's admin API, which needs admin.token (e.g. "
                          "token: \"${POOLGATE_ADMIN_TOKEN}\") in this config")
    url = (admin_url or _admin_base(config)).rstrip("/") + "/revocations"
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            resp = await client.post(url, json=body,
                                     headers={"Authorization": f"Bearer {config.admin.token}"})
    except httpx.HTTPError as e:
        raise RevokeError(f"no gateway answering at {url} ({type(e).__name__}): with "
                          "revocation.store memory the entry lives in the running gateway; "
                          "start it with `poolgate serve`") from e
    try:
        data = resp.json()
    except ValueError:
        data = {}
    if resp.status_code != 201:
        why = data.get("error_description") if isinstance(data, dict) else None
        raise RevokeError(f"gateway at {urlsplit(url).netloc} answered {resp.status_code}: "
                          f"{why or resp.text[:200]}")
    return dict(data)


def _cli_peer() -> str:
    """Who wrote it, for the audit line: the CLI and the local user."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name (e.g. a container without passwd entry)
        return "cli"
