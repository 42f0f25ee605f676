"""Step 2, verify: a bearer token -> ``VerifiedToken``, or a refusal with a stable code.

Order, cheapest first: size -> structure -> header alg/keys/crit/kid -> issuer (the only claim
read before the signature, to choose the identity source and so its keys) -> source alg and
``typ`` -> key -> signature -> claims. A bounded cache of verified tokens (keyed by sha256)
re-checks the time claims, the route's sources and the key's currency on every hit.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

from ..config import IdentitySource
from ..errors import GatewayError, InvalidToken, TokenTooLarge
from ..metrics import Metrics
from ..principal import VerifiedToken
from .cognito import check_claims
from .jwks import JwksManager
from .keys import Jwk, check_key_alg
from .token import (SUPPORTED_ALGS, UnverifiedToken, check_header, check_typ, parse_json_object,
                    split_compact, verify_signature)

__all__ = ["Verifier", "JwksManager"]


class Verifier:
    """Verifies bearer tokens against the configured identity sources."""

    def __init__(self, sources: Sequence[IdentitySource], keys: JwksManager, *,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None,
                 cache_size: int = 10_000) -> None:
        self._sources = tuple(sources)
        self._keys = keys
        self._clock = clock
        self._by_issuer: dict[str, list[IdentitySource]] = {}
        for s in self._sources:
            for iss in s.issuers:
                self._by_issuer.setdefault(iss, []).append(s)
        self._cap_all = min((s.max_token_bytes for s in self._sources), default=8192)
        self._caps: dict[tuple[str, ...], int] = {}
        self._skew = {s.id: s.clock_skew_seconds for s in self._sources}
        self._headers: dict[str, Mapping[str, Any]] = {}   # decoded header segments, shared
        # sha256 -> token: the token is the whole entry (its source, key and times are in it),
        # one GC-tracked object per cached token
        self._cache: OrderedDict[bytes, VerifiedToken] = OrderedDict()
        self._cache_size = max(0, cache_size)
        self._hit = self._miss = None
        self._metrics = metrics
        if metrics is not None:
            self._hit = metrics.token_cache.labels(result="hit")
            self._miss = metrics.token_cache.labels(result="miss")

    def _cap(self, allowed: tuple[str, ...] | None) -> int:
        if allowed is None:
            return self._cap_all
        cap = self._caps.get(allowed)
        if cap is None:
            cap = min((s.max_token_bytes for s in self._sources if s.id in allowed),
                      default=self._cap_all)
            self._caps[allowed] = cap
        return cap

    async def verify(self, token: str, *,
                     allowed_sources: tuple[str, ...] | None = None) -> VerifiedToken:
        """Verify ``token``; raise ``InvalidToken``/``TokenTooLarge``/``Unavailable``."""
        if len(token) > (self._cap_all if allowed_sources is None else self._cap(allowed_sources)):
            raise TokenTooLarge("token is larger than the accepted size")
        if not token.isascii():         # ascii: len(token) above is also its size in bytes
            raise InvalidToken("token is not base64url", code="bad_encoding")
        raw = token.encode("ascii")
        digest = hashlib.sha256(raw).digest()
        entry = self._cache.get(digest)
        if entry is not None:
            hit = self._from_cache(entry, digest, allowed_sources)
            if hit is not None:
                if self._metrics is not None:
                    self._metrics.count(self._hit)      # batched: a dict update
                return hit
        if self._metrics is not None:
            self._metrics.count(self._miss)
        return await self._verify(token, raw, digest, allowed_sources)

    def still_valid(self, token: VerifiedToken, allowed_sources: tuple[str, ...] | None) -> bool:
        """Whether a token this verifier returned is still good as it stands: its cache entry
        is in place (so its key is still published, see ``_from_cache``) and it is within
        ``exp``/``nbf``. A cache hit without re-reading the token, for a caller that holds the
        ``VerifiedToken`` (the admission cache); when False, ``verify`` says why."""
        digest = token.token_hash
        if self._cache.get(digest) is not token:          # the token is its own cache entry
            return False
        if self._from_cache(token, digest, allowed_sources) is None:
            return False
        if self._metrics is not None:
            self._metrics.count(self._hit)
        return True

    async def verify_for_revocation(self, token: str) -> VerifiedToken:
        """Like ``verify``, but a token that is refused only for now (``nbf``/``iat`` ahead,
        or ``exp`` too far ahead without ``iat``) is returned too, never cached: it may verify
        later, so the revocation API must be able to revoke it."""
        if len(token) > max((s.max_token_bytes for s in self._sources), default=8192):
            raise TokenTooLarge("token is larger than the accepted size")   # on every route
        if not token.isascii():
            raise InvalidToken("token is not base64url", code="bad_encoding")
        raw = token.encode("ascii")
        return await self._verify(token, raw, hashlib.sha256(raw).digest(), None,
                                  pending_ok=True)

    def _from_cache(self, t: VerifiedToken, digest: bytes,
                    allowed: tuple[str, ...] | None) -> VerifiedToken | None:
        sid = t.source_id
        if allowed is not None and sid not in allowed:
            return None                          # let the full path decide for this route
        if self._keys.lookup(sid, t.kid) is not t.jwk:  # type: ignore[arg-type]
            del self._cache[digest]              # key rotated out, replaced or stale
            return None
        now = self._clock()
        skew = self._skew[sid]
        nbf = t.nbf
        if now > t.exp + skew or (nbf is not None and nbf > now + skew):
            del self._cache[digest]
            return None                          # the full path raises the precise code
        self._cache.move_to_end(digest)
        return t

    async def _verify(self, token: str, raw: bytes, digest: bytes,
                      allowed: tuple[str, ...] | None, *,
                      pending_ok: bool = False) -> VerifiedToken:
        jws = split_compact(token, self._headers, raw)
        alg, kid = check_header(jws.header, SUPPORTED_ALGS)   # the source's own list: below
        claims = parse_json_object(jws.payload)
        iss = claims.get("iss")
        if iss is None:
            raise InvalidToken("token has no issuer", code="missing_claim")
        if not isinstance(iss, str):
            raise InvalidToken("claim iss must be a string", code="bad_claim_type")
        candidates = self._by_issuer.get(iss, ())
        if allowed is not None:
            candidates = [s for s in candidates if s.id in allowed]
        if not candidates:
            raise InvalidToken("token issuer is not accepted here", code="bad_issuer")
        first: GatewayError | None = None
        for source in candidates:           # normally one; several sources may share an issuer
            try:
                if alg not in source.algorithms:
                    raise InvalidToken("token algorithm is not allowed", code="alg_not_allowed")
                check_typ(jws.header, source.token_types)
                jwk = self._keys.lookup(source.id, kid)      # sync fast path
                if jwk is None:
                    jwk = await self._keys.get_jwk(source.id, kid, alg)   # refetch / precise error
                else:
                    check_key_alg(jwk, alg)
                return self._finish(source, token, digest, jws, alg, jwk, claims,
                                    pending_ok)
            except GatewayError as exc:
                first = first or exc
        assert first is not None
        raise first

    def _finish(self, source: IdentitySource, token: str, digest: bytes, jws: UnverifiedToken,
                alg: str, jwk: Jwk, claims: dict[str, Any],
                pending_ok: bool = False) -> VerifiedToken:
        verify_signature(alg, jwk.key, jws.signing_input, jws.signature)
        check_claims(claims, source, self._clock(), pending_ok=pending_ok)
        issuer = claims["iss"]
        verified = VerifiedToken(raw=token, source_id=source.id, issuer=issuer,
                                 header=jws.header, claims=claims, token_hash=digest, jwk=jwk)
        if self._cache_size and not pending_ok:
            self._cache[digest] = verified
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return verified

    def verify_claims_only(self, claims: dict[str, Any], source_id: str) -> None:
        """Run only the claims policy of one source (no signature): for tooling and tests."""
        source = next(s for s in self._sources if s.id == source_id)
        check_claims(claims, source, self._clock())
