"""The session lifecycle: sign-in (state -> code exchange -> new session), the per-request
access token (single-flight refresh across requests and replicas), and sign-out."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import GatewayError, Unavailable
from ..revocation import EntryError, StoreError, make_entry
from . import prelogin
from .crypto import KeyRing, handle, new_session_id, sub_handle
from .nearcache import RecordCache
from .oidc import GrantRefused, IdTokenRejected, OidcClient, ProviderDown, check_id_token
from .record import Record
from .store import MemorySessionStore, RedisSessionStore, SessionStore, SessionStoreError

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger("poolgate.sessions")
FAR = 10 * 366 * 86400
LOCK_SECONDS = 10.0              # a refresh holding the lock longer than this is presumed dead
WAIT_SECONDS = 6.0               # how long a loser waits for the winner's tokens
TOUCH_EVERY = 60.0               # idle clock: write last_seen at most this often


class LoginRefused(Exception):
    """A sign-in step refused: a 4xx (5xx when the provider is down) with a short text."""

    def __init__(self, status: int, code: str, text: str) -> None:
        self.status, self.code, self.text = status, code, text
        super().__init__(f"{code}: {text}")


class SessionManager:
    def __init__(self, engine: "Engine", *, transport: Any = None) -> None:
        cfg = engine.config.sessions
        assert cfg is not None
        self.cfg = cfg
        self.engine = engine
        self.clock = engine.clock
        self.keys = KeyRing(cfg.encryption_keys)
        self.store: SessionStore = (
            RedisSessionStore(engine.config.revocation.redis, max_ttl=cfg.idle_timeout_seconds)
            if cfg.store == "redis" else MemorySessionStore())
        self.oidc = OidcClient(cfg, transport=transport, clock=engine.clock)
        self.source = engine.config.source_by_id(cfg.identity_source)
        self._inflight: dict[str, asyncio.Future[Record | None]] = {}
        # decrypted records, held briefly: a burst of requests opens one record, not one each
        self._near: RecordCache | None = RecordCache()
        self.token_calls = 0                 # refreshes this process made (tests, metrics)

    async def start(self) -> None:
        await self.store.start()

    async def aclose(self) -> None:
        await self.oidc.aclose()
        await self.store.aclose()

    # -- sealed records ----------------------------------------------------------------------

    async def _load(self, h: str) -> Record | None:
        try:
            sealed = await self.store.get(h)
        except SessionStoreError:
            raise Unavailable("session store unavailable", code="session_store_unavailable",
                              retry_after=2) from None
        if sealed is None:
            return None
        plain = self.keys.open_text(sealed, h.encode())
        return None if plain is None else Record.loads(plain)

    async def _delete(self, h: str) -> None:
        if self._near is not None:
            self._near.pop(h)
        try:
            await self.store.delete(h)
        except SessionStoreError:
            raise Unavailable("session store unavailable", code="session_store_unavailable",
                              retry_after=2) from None

    async def _save(self, h: str, rec: Record) -> None:
        now = self.clock()
        ttl = min(rec.last_seen + self.cfg.idle_timeout_seconds, rec.abs_exp) - now
        if ttl <= 0:
            await self._delete(h)
            return
        if self._near is not None:
            self._near.put(h, rec)
        try:
            await self.store.put(h, self.keys.seal_text(rec.dumps(), h.encode()), ttl,
                                 sub_handle(rec.sub))
        except SessionStoreError:
            raise Unavailable("session store unavailable", code="session_store_unavailable",
                              retry_after=2) from None

    # -- sign-in -------------------------------------------------------------------------------

    async def begin(self, rd: str, prelogin_value: str | None) -> tuple[str, str]:
        """(authorize URL, new pre-login cookie value) for a sign-in returning to ``rd``."""
        now = self.clock()
        attempt = prelogin.Attempt.new(rd, now)
        attempts = [*prelogin.read(self.keys, prelogin_value, now), attempt]
        try:
            url = await self.oidc.authorization_url(attempt.state, attempt.verifier,
                                                    attempt.nonce)
        except ProviderDown:
            raise LoginRefused(502, "provider_unavailable", "the sign-in provider is unreachable")
        return url, prelogin.write(self.keys, attempts)

    async def finish(self, params: dict[str, str],
                     prelogin_value: str | None) -> tuple[str, str, str | None]:
        """(new session id, return path, remaining pre-login cookie or None)."""
        now = self.clock()
        if "error" in params:
            raise LoginRefused(400, "provider_error", "the sign-in provider refused: "
                               + "".join(c for c in params["error"][:64] if c.isalnum() or c in "_-"))
        state = params.get("state")
        if not state:
            raise LoginRefused(400, "missing_state", "no state in the callback")
        attempt, rest = prelogin.take(prelogin.read(self.keys, prelogin_value, now), state)
        if attempt is None:
            raise LoginRefused(400, "bad_state", "unknown or expired sign-in state (this browser "
                               "did not start it, or it is older than 10 minutes)")
        marker = "state:" + hashlib.sha256(state.encode()).hexdigest()
        try:
            fresh = await self.store.claim_once(marker, prelogin.MAX_AGE)
        except SessionStoreError:
            raise LoginRefused(503, "session_store_unavailable", "session store unavailable")
        if not fresh:
            raise LoginRefused(400, "state_replayed", "this sign-in state was already used")
        code = params.get("code")
        if not code:
            raise LoginRefused(400, "missing_code", "no authorization code in the callback")
        try:
            tokens = await self.oidc.exchange(code, attempt.verifier)
        except GrantRefused as e:
            raise LoginRefused(400, "code_refused", f"the provider refused the code ({e.error})")
        except ProviderDown:
            raise LoginRefused(502, "provider_unavailable", "the sign-in provider is unreachable")
        rec = await self._record_from(tokens, nonce=attempt.nonce, now=now)
        sid = new_session_id()                    # always new: no fixation
        await self._save(handle(sid), rec)
        return sid, attempt.rd, prelogin.write(self.keys, rest) if rest else None

    async def _record_from(self, tokens: dict[str, Any], *, nonce: str, now: float) -> Record:
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise LoginRefused(400, "id_token_missing", "the provider sent no id token")
        src = self.source
        try:
            id_claims = await check_id_token(
                id_token, nonce=nonce, issuers=src.issuers, client_id=self.cfg.provider.client_id,
                get_key=self.engine.jwks.get_key, algorithms=src.algorithms, source_id=src.id,
                now=self.clock(), leeway=src.clock_skew_seconds)   # after the exchange: iat <= now
        except IdTokenRejected as e:
            raise LoginRefused(400, "id_token_rejected", str(e))
        except GatewayError as e:
            raise LoginRefused(400 if e.status < 500 else 503, "id_token_rejected",
                               f"id token: {e.code}")
        access = await self._verified_access(tokens)
        if access.sub != id_claims.get("sub"):
            raise LoginRefused(400, "subject_mismatch", "id and access tokens name different users")
        abs_exp = now + (self.cfg.absolute_timeout_seconds or FAR)
        return Record(sub=access.sub, role=self._role(access), access=access.raw,
                      refresh=tokens.get("refresh_token"),
                      access_exp=float(access.claims["exp"]), created=now, last_seen=now,
                      abs_exp=abs_exp, jti=access.claims.get("jti"),
                      origin_jti=access.claims.get("origin_jti"))

    async def _verified_access(self, tokens: dict[str, Any]) -> Any:
        try:
            return await self.engine.verifier.verify(tokens["access_token"],
                                                     allowed_sources=(self.source.id,))
        except GatewayError as e:
            raise LoginRefused(400 if e.status < 500 else 503, "access_token_rejected",
                               f"access token: {e.code}")

    def _role(self, verified: Any) -> str | None:
        return self.engine.mapper.choose(verified.source_id, verified.claims).role

    # -- per request ---------------------------------------------------------------------------

    async def current(self, sid: str) -> Record | None:
        """The live session for this cookie value, refreshed if its access token is due."""
        h = handle(sid)
        rec = self._near.get(h) if self._near is not None else None
        if rec is None:
            rec = await self._load(h)
            if rec is None:
                return None
            if self._near is not None:
                self._near.put(h, rec)
        now = self.clock()
        if now >= rec.last_seen + self.cfg.idle_timeout_seconds or now >= rec.abs_exp:
            await self._delete(h)
            return None
        if rec.access_exp - now > self.cfg.refresh_before_seconds:
            if now - rec.last_seen >= min(TOUCH_EVERY, self.cfg.idle_timeout_seconds / 10):
                rec = rec.touched(now)
                await self._save(h, rec)
            return rec
        inflight = self._inflight.get(h)
        if inflight is not None:               # single flight within this process
            return await asyncio.shield(inflight)
        fut: asyncio.Future[Record | None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inflight[h] = fut
        try:
            result = await self._refresh_shared(h, rec)
            if self._near is not None:
                if result is None:
                    self._near.pop(h)
                else:
                    self._near.put(h, result)
            fut.set_result(result)
            return result
        except BaseException as e:
            fut.set_exception(e)
            raise
        finally:
            self._inflight.pop(h, None)

    async def _refresh_shared(self, h: str, seen: Record) -> Record | None:
        """Single flight across replicas: a short store lock; losers wait for the winner."""
        deadline = self.clock() + WAIT_SECONDS
        while True:
            try:
                token = await self.store.lock(h, LOCK_SECONDS)
            except SessionStoreError:
                raise Unavailable("session store unavailable", code="session_store_unavailable",
                                  retry_after=2) from None
            if token is not None:
                try:
                    cur = await self._load(h)      # another replica may have just refreshed
                    if cur is None or cur.access != seen.access:
                        return cur
                    return await self._refresh(h, cur)
                finally:
                    try:
                        await self.store.unlock(h, token)
                    except SessionStoreError:
                        pass                       # the lock expires by itself
            await asyncio.sleep(0.05)
            cur = await self._load(h)
            if cur is None or cur.access != seen.access:
                return cur
            if self.clock() > deadline:
                if seen.access_exp > self.clock():
                    return seen
                raise Unavailable("session refresh in progress elsewhere timed out",
                                  code="session_refresh_unavailable", retry_after=2)

    async def _refresh(self, h: str, cur: Record) -> Record | None:
        now = self.clock()
        if not cur.refresh:
            return cur if cur.access_exp > now else await self._drop(h)
        try:
            self.token_calls += 1
            tokens = await self.oidc.refresh(cur.refresh)
        except GrantRefused as e:
            if e.error == "invalid_grant":
                log.info("session ended: refresh refused (invalid_grant)")
                return await self._drop(h)
            return self._keep_or_503(cur, now, e.error)
        except ProviderDown as e:
            return self._keep_or_503(cur, now, str(e))
        try:
            access = await self.engine.verifier.verify(tokens["access_token"],
                                                       allowed_sources=(self.source.id,))
        except GatewayError as e:
            return self._keep_or_503(cur, now, f"refreshed access token refused: {e.code}")
        new = replace(cur, access=access.raw, refresh=tokens.get("refresh_token") or cur.refresh,
                      access_exp=float(access.claims["exp"]), role=self._role(access),
                      jti=access.claims.get("jti"),
                      origin_jti=access.claims.get("origin_jti") or cur.origin_jti,
                      last_seen=now)
        await self._save(h, new)                   # one SET: rotation replaces atomically
        return new

    def _keep_or_503(self, cur: Record, now: float, why: str) -> Record:
        log.warning("session refresh failed, keeping the session: %s", why)
        if cur.access_exp > now:
            return cur
        raise Unavailable("the sign-in provider is unreachable and the session's access token "
                          "expired", code="session_refresh_unavailable", retry_after=5)

    async def _drop(self, h: str) -> None:
        await self._delete(h)
        return None

    # -- sign-out ------------------------------------------------------------------------------

    async def end(self, sid: str) -> bool:
        """Delete the session, revoke its refresh token, deny its tokens on every replica."""
        h = handle(sid)
        rec = await self._load(h)
        if rec is None:
            return False
        await self._delete(h)
        await self._revoke(rec)
        return True

    async def end_all(self, sub: str) -> int:
        """Every session of ``sub`` (admin global sign-out) + a ``sub`` not-before entry."""
        ended = 0
        for h in await self.store.handles_for(sub_handle(sub)):
            rec = await self._load(h)
            if rec is None or rec.sub != sub:
                continue
            await self._delete(h)
            await self._revoke(rec, deny_list=False)
            ended += 1
        await self._deny("sub", sub, exp=None, not_before=self.clock())
        return ended

    async def _revoke(self, rec: Record, *, deny_list: bool = True) -> None:
        if rec.refresh:
            if not await self.oidc.revoke(rec.refresh):
                log.warning("refresh token revocation at the provider failed")
        if deny_list:
            value = rec.origin_jti or rec.jti
            if value is not None:
                await self._deny("origin_jti" if rec.origin_jti else "jti", value,
                                 exp=rec.access_exp, not_before=None)

    async def _deny(self, kind: str, value: str, *, exp: float | None,
                    not_before: float | None) -> None:
        store = self.engine.store
        if store is None:
            return
        cfg = self.engine.config
        try:
            entry = make_entry(kind, value, exp=exp, not_before=not_before, now=self.clock(),
                               max_token_lifetime=cfg.revocation.max_token_lifetime_seconds,
                               skew=self.source.clock_skew_seconds)
            await store.add(entry)
        except EntryError:
            return                                  # every token it could match has expired
        except StoreError as e:
            log.warning("could not write the revocation entry for a signed-out session: %s", e)
