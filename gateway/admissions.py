"""The admission cache: a decision and its outbound header block, reused for the same request shape.

Most traffic is the same user asking the same thing again. An admission is keyed by everything
the decision read: the token, the method and the normalised path, and each request fact a
condition or the role request reads (client address, scheme, header values). It holds the
pipeline's outcome and the gateway's own headers already rendered (identity headers and the
downstream credential). A hit is re-validated cheaply on every request:

- the verifier must still answer with the very same verified token (its own cache checks the
  key is still published and the token not expired);
- the revocation store is asked again whenever its ``generation`` moved (any write or
  invalidation anywhere, a lost invalidation channel) and at least every few seconds;
- it ends with the token, well before its credential expires, and with the engine (a reload
  builds a new cache). Configs whose conditions read the clock are never cached.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .conditions import header_key
from .config import Config
from .errors import GatewayError
from .extract import bearer_token
from .forward.outbound import gateway_headers
from .principal import RequestFacts

__all__ = ["Admission", "AdmissionCache", "admit", "fact_reads"]

REVALIDATE_SECONDS = 5.0          # a hit asks the revocation store again at least this often


class Admission:
    __slots__ = ("checked_at", "expires", "extra", "generation", "outcome")

    def __init__(self, outcome: Any, extra: list[tuple[bytes, bytes]], generation: int | None,
                 now: float, expires: float) -> None:
        self.outcome, self.extra = outcome, extra
        self.generation, self.checked_at, self.expires = generation, now, expires


def fact_reads(config: Config) -> tuple[bool, bool, bool, tuple[str, ...]]:
    """(source_ip, secure, time, header names) that any condition reads; header names are
    canonical, as ``RequestFacts.headers`` keys them, and include the role-request headers."""
    keys: set[str] = set()
    statements = [s for r in config.roles.values() for s in r.statements]
    statements += [s for g in config.guardrails for s in g.statements]
    for st in statements:
        for _op, pairs in st.condition:
            keys.update(k for k, _ in pairs)
    # canonical, as RequestFacts.headers keys them (`X_Tenant.Id` is `x-tenant-id`)
    headers = {header_key(k) for k in keys if k.startswith("req:header/")}
    headers.update(header_key("req:header/" + m.role_request_header)
                   for m in config.mappings.values() if m.role_request_header)
    headers.add("x-gateway-role")                 # the default when a source has no mapping
    return ("req:source_ip" in keys, "req:secure" in keys, "req:time" in keys,
            tuple(sorted(headers)))


class AdmissionCache:
    """Bounded; oldest entries go first. Per engine: a reload starts empty."""

    def __init__(self, config: Config, *, hold_seconds: float, max_entries: int = 1024,
                 clock: Callable[[], float] = time.time) -> None:
        self.reads_ip, self.reads_secure, reads_time, self.reads_headers = fact_reads(config)
        # the same names as request_facts(reads=...) takes them: only these are collected
        self.read_names = frozenset(n.encode("latin-1") for n in self.reads_headers)
        # a bound credential (request_binding) names each request: nothing to reuse
        binding = config.downstream_credential.request_binding
        self.enabled = not reads_time and not binding and max_entries > 0
        self.hold = hold_seconds
        self.max = max_entries
        self.clock = clock
        self._data: dict[tuple[Any, ...], Admission] = {}

    def __len__(self) -> int:
        return len(self._data)

    def key(self, token: str | bytes, facts: RequestFacts) -> tuple[Any, ...]:
        h = facts.headers
        # a read header sent more than once is a 400 (policy.py): never a hit for one value
        amb = (facts.ambiguous and not facts.ambiguous.isdisjoint(self.reads_headers)) or None
        return (token, facts.method, facts.path, amb,
                facts.source_ip if self.reads_ip else None,
                facts.secure if self.reads_secure else None,
                tuple(map(h.get, self.reads_headers)))

    def get(self, key: tuple[Any, ...], now: float) -> Admission | None:
        adm = self._data.get(key)
        if adm is not None and now >= adm.expires:
            del self._data[key]
            return None
        return adm

    def put(self, key: tuple[Any, ...], outcome: Any, extra: list[tuple[bytes, bytes]],
            generation: int | None, now: float) -> None:
        token = outcome.principal.token
        expires = min(now + self.hold, float(token.exp))
        if expires <= now:
            return
        if isinstance(key[0], str):
            # the verified token's own string in the key: the request's copy would be a second
            # kilobyte per entry
            key = (token.raw, *key[1:])
        data = self._data
        if len(data) >= self.max and key not in data:
            del data[next(iter(data))]
        data[key] = Admission(outcome, extra, generation, now, expires)

    def drop(self, key: tuple[Any, ...]) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


async def admit(engine: Any, headers: list[tuple[bytes, bytes]], scope: dict[str, Any],
                facts: Any) -> tuple[Any, list[tuple[bytes, bytes]]]:
    """The pipeline's outcome and the gateway's headers for it, from the admission cache
    when the same token asked the same thing and nothing it depends on moved."""
    query = scope.get("query_string", b"")
    token = None
    if engine.sessions is not None:      # the session's access token, on routes taking one
        token = await engine.sessions.token(scope, facts, engine.pipeline)
    cache = engine.admissions
    if not cache.enabled:
        return await _decide(engine, headers, query, facts, token)
    credential: str | bytes | None = token
    if token is None:
        # keyed by the Authorization value as sent: a hit needs no token parsing (the same
        # bytes always parse to the same token), only the checks that depend on the rest of
        # the request (one Authorization line, no token in the query)
        credential = _sole_authorization(headers, query)
        if credential is None:
            try:
                credential = token = bearer_token(headers, query)
            except GatewayError:
                # the pipeline decides: a public route ignores a malformed token, any other
                # route raises this same refusal, with its route named
                return await _decide(engine, headers, query, facts, None)
            if token is None:
                return await _decide(engine, headers, query, facts, None)
    key = cache.key(credential, facts)
    now = facts.now
    adm = cache.get(key, now)
    store = engine.store
    pipeline = engine.pipeline
    if adm is not None:
        outcome = adm.outcome
        # the verifier's own cache says the token still stands (key published, in time)
        if engine.verifier.still_valid(outcome.principal.token, outcome.route.identity_sources):
            if store is not None:
                generation = store.generation
                if generation is None or generation != adm.generation \
                        or now - adm.checked_at > REVALIDATE_SECONDS:
                    try:
                        await pipeline.check_revoked(outcome.principal.token)
                    except GatewayError as e:
                        cache.drop(key)
                        e.route = outcome.route.id
                        raise
                    adm.generation, adm.checked_at = generation, now
            return outcome, adm.extra
        cache.drop(key)                  # the full path below says what changed
    if token is None:                    # keyed by the raw value: parse it now
        try:
            token = bearer_token(headers, query)
        except GatewayError:
            return await _decide(engine, headers, query, facts, None)
        if token is None:                # another scheme: not ours
            return await _decide(engine, headers, query, facts, None)
    generation = store.generation if store is not None else None
    outcome = await pipeline.authorize(headers, query, facts, token=token)
    extra = gateway_headers_or_none(engine, outcome, facts)
    if outcome.principal.token is not None:
        cache.put(key, outcome, extra, generation, now)
    return outcome, extra


async def _decide(engine: Any, headers: list[tuple[bytes, bytes]], query: bytes, facts: Any,
                  token: str | None) -> tuple[Any, list[tuple[bytes, bytes]]]:
    """The pipeline's decision without the cache (``token`` None: it extracts one itself)."""
    outcome = await engine.pipeline.authorize(headers, query, facts, token=token)
    return outcome, gateway_headers_or_none(engine, outcome, facts)


def _sole_authorization(headers: list[tuple[bytes, bytes]], query: bytes) -> bytes | None:
    """The request's one ``Authorization`` value as sent; None when there is none, more than
    one, or the query may carry a token (``bearer_token`` then says what is wrong)."""
    if b"access_token" in query or b"%" in query:
        return None
    found = None
    for name, value in headers:
        if len(name) == 13 and name.lower() == b"authorization":
            if found is not None:
                return None
            found = value
    return found


def gateway_headers_or_none(engine: Any, outcome: Any,
                            facts: Any = None) -> list[tuple[bytes, bytes]]:
    route = outcome.route
    if route is None or route.upstream is None:
        return []
    return gateway_headers(engine, outcome, facts)
