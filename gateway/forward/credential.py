"""The downstream credential: a short-lived JWT the gateway signs for the upstream it forwards to.

The Identity Pool "temporary credentials" analogue. ``aud`` names one upstream (so a credential
cannot be replayed to another service), ``exp`` never outlives the user token, and the public
halves of the signing keys are published (``public_jwks``) for the admin listener's
``/.well-known/jwks.json``.

Signing uses ``cryptography`` directly: one ES256 signature costs ~30 us here against ~50 us
through joserfc's serializer, and credentials sit on the hot path. Tests verify the output
with joserfc, so the two cannot drift apart unnoticed.

Caching: a credential for a verified token is cached per (token hash, upstream, role, route id,
route action, captured path values) and reused while more than ``refresh margin`` of its life
is left, where the margin is ``max(ttl / 5, min(30 s, ttl / 2))`` (60 s at the default 300 s TTL,
so a cached credential is at most 240 s old). Cacheable credentials carry no ``decision_id``
(one credential serves many decisions); guests (no token hash) and request-bound credentials
(``htm``/``htu``) are never cached and do carry it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils

from ..config import CredentialConfig
from ..errors import ConfigError
from ..principal import Principal

__all__ = ["CredentialSigner", "generate_key_pem"]

log = logging.getLogger("poolgate.credential")

_KEYS_PATH = "downstream_credential.signing_keys"
_JWS_ALG = {"ES256": "ES256", "Ed25519": "EdDSA"}      # config name -> JOSE `alg`
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_default(value: Any) -> Any:
    # permissions and tags may arrive as read-only mappings or frozensets
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot put a {type(value).__name__} into a credential")


# built once: json.dumps with options would construct an encoder per call
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def _json(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("utf-8")


def generate_key_pem(algorithm: str = "ES256") -> bytes:
    """A new unencrypted PKCS#8 PEM private key for ``algorithm`` (``ES256`` or ``Ed25519``)."""
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "Ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported credential algorithm {algorithm!r} (ES256 or Ed25519)")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# --------------------------------------------------------------------------- keys

class _Key:
    """One signing key: the private half stays in here, ``jwk`` is the public half."""

    __slots__ = ("kid", "alg", "jwk", "header_b64", "_private")

    def __init__(self, kid: str, private: Any, algorithm: str) -> None:
        self.kid = kid
        self.alg = _JWS_ALG[algorithm]
        self._private = private
        self.jwk = {**_public_jwk(private), "kid": kid, "alg": self.alg, "use": "sig"}
        self.header_b64 = _b64(_json({"alg": self.alg, "kid": kid, "typ": "JWT"}))

    def sign(self, signing_input: bytes) -> bytes:
        if self.alg == "ES256":
            r, s = utils.decode_dss_signature(self._private.sign(signing_input, _ECDSA_SHA256))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self._private.sign(signing_input)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"_Key(kid={self.kid!r}, alg={self.alg!r})"


def _public_jwk(private: Any) -> dict[str, str]:
    pub = private.public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
        nums = pub.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _b64(nums.x.to_bytes(32, "big")),
                "y": _b64(nums.y.to_bytes(32, "big"))}
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}


def _thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 JWK thumbprint (the required members, sorted, no whitespace)."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canon = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canon.encode("ascii")).digest())


def _check_type(private: Any, algorithm: str, path: str) -> None:
    if algorithm == "ES256":
        ok = isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1"
        want = "an EC P-256 private key"
    else:
        ok = isinstance(private, ed25519.Ed25519PrivateKey)
        want = "an Ed25519 private key"
    if not ok:
        got = type(private).__name__.lstrip("_")
        if isinstance(private, ec.EllipticCurvePrivateKey):
            got = f"EC {private.curve.name}"
        raise ConfigError(path, f"downstream_credential.algorithm is {algorithm}, which needs "
                                f"{want} (got {got}); generate one with "
                                + ("`openssl ecparam -name prime256v1 -genkey -noout | openssl "
                                   "pkcs8 -topk8 -nocrypt`" if algorithm == "ES256" else
                                   "`openssl genpkey -algorithm ed25519`"))


def _load_key(index: int, kid: str, filename: str, algorithm: str) -> _Key:
    path = f"{_KEYS_PATH}[{index}].private_key_file"
    try:
        with open(filename, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise ConfigError(path, f"cannot read {filename!r}: {e.strerror or e}")
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ConfigError(path, f"{filename!r} is encrypted; poolgate needs an unencrypted "
                                "PEM private key (keep the file itself secret)")
    except (ValueError, UnsupportedAlgorithm) as e:
        # never echo the file's content: it is (or was meant to be) a private key
        raise ConfigError(path, f"{filename!r} is not a PEM private key ({type(e).__name__})")
    _check_type(private, algorithm, path)
    return _Key(kid, private, algorithm)


def _generated_key(algorithm: str) -> _Key:
    pem = generate_key_pem(algorithm)
    private = serialization.load_pem_private_key(pem, password=None)
    kid = "generated-" + _thumbprint(_public_jwk(private))[:16]
    return _Key(kid, private, algorithm)


# --------------------------------------------------------------------------- the signer

@dataclass(frozen=True, slots=True)
class _Cached:
    token: bytes              # ASCII: what goes in the header (shared with admissions)
    exp: int
    permissions: tuple[Mapping[str, Any], ...]


class CredentialSigner:
    """Signs downstream credentials; keys are loaded once, credentials cached per token."""

    def __init__(self, cfg: CredentialConfig, *, clock: Callable[[], float] = time.time,
                 allow_generated: bool = True, cache_size: int = 10_000) -> None:
        self._cfg = cfg
        self._clock = clock
        if cfg.algorithm not in _JWS_ALG:
            raise ConfigError("downstream_credential.algorithm",
                              f"must be one of {', '.join(_JWS_ALG)} (got {cfg.algorithm!r})")
        if cfg.signing_keys:
            self._keys = tuple(_load_key(i, k.kid, k.private_key_file, cfg.algorithm)
                               for i, k in enumerate(cfg.signing_keys))
        elif allow_generated:
            self._keys = (_generated_key(cfg.algorithm),)
            log.warning("downstream_credential.signing_keys is empty: generated an %s key "
                        "(kid %s) for this process only; credentials will not verify after a "
                        "restart or across processes. Configure a key for production.",
                        cfg.algorithm, self._keys[0].kid)
        else:
            raise ConfigError(_KEYS_PATH, "a signing key is required when running more than one "
                                          "process (each process would otherwise generate and "
                                          "publish its own key); add {kid, private_key_file}")
        self._active = self._keys[0]
        self._ttl = int(cfg.ttl_seconds)
        self._margin = max(self._ttl / 5, min(30.0, self._ttl / 2))
        self.margin = self._margin        # a cached credential is replaced this long before exp
        self._cacheable = cache_size > 0 and not cfg.request_binding
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[Any, ...], _Cached] = OrderedDict()
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self.signs_count = 0

    def __repr__(self) -> str:
        kids = ", ".join(k.kid for k in self._keys)
        return f"CredentialSigner(alg={self._active.alg!r}, kids=[{kids}])"

    @property
    def active_kid(self) -> str:
        return self._active.kid

    def public_jwks(self) -> dict[str, Any]:
        """The public halves of every configured key (active first), for jwks.json."""
        return {"keys": [dict(k.jwk) for k in self._keys]}

    # ------------------------------------------------------------------ issuing

    def issue(self, *, principal: Principal, upstream: str, route_id: str,
              route_action: str | None, path_params: Mapping[str, str],
              permissions: tuple[Mapping[str, Any], ...], decision_id: str,
              htm: str | None = None, htu: str | None = None) -> str:
        """A signed credential for ``principal`` calling ``upstream`` on this route."""
        return self.issue_bytes(principal=principal, upstream=upstream, route_id=route_id,
                                route_action=route_action, path_params=path_params,
                                permissions=permissions, decision_id=decision_id, htm=htm,
                                htu=htu).decode("ascii")

    def issue_bytes(self, *, principal: Principal, upstream: str, route_id: str,
                    route_action: str | None, path_params: Mapping[str, str],
                    permissions: tuple[Mapping[str, Any], ...], decision_id: str,
                    htm: str | None = None, htu: str | None = None) -> bytes:
        """``issue`` as the header value: a cached credential's bytes are shared, not copied."""
        token = principal.token
        now = self._clock()
        if token is None or not self._cacheable:
            return self._sign(principal, upstream, route_id, route_action, permissions,
                              now, decision_id=decision_id, htm=htm, htu=htu).encode("ascii")
        key = (token.token_hash, upstream, principal.role, route_id, route_action,
               tuple(sorted(path_params.items())) if path_params else ())
        hit = self._cache.get(key)
        if hit is not None and hit.exp - now > self._margin and (
                hit.permissions is permissions or hit.permissions == permissions):
            try:
                self._cache.move_to_end(key)
            except KeyError:       # evicted by another thread meanwhile: still a valid answer
                pass
            return hit.token
        jwt, exp = self._sign_exp(principal, upstream, route_id, route_action, permissions, now)
        raw = jwt.encode("ascii")
        if exp - now > self._margin:   # a credential about to be refreshed is not worth keeping
            self._store(key, _Cached(raw, exp, permissions), now)
        return raw

    def _sign(self, principal: Principal, upstream: str, route_id: str,
              route_action: str | None, permissions: tuple[Mapping[str, Any], ...],
              now: float, *, decision_id: str, htm: str | None, htu: str | None) -> str:
        extra: dict[str, Any] = {"decision_id": decision_id}
        if self._cfg.request_binding:
            # htm/htu are honoured only when binding is configured: otherwise they would
            # silently defeat the cache key, which does not include them.
            if htm is not None:
                extra["htm"] = htm
            if htu is not None:
                extra["htu"] = htu
        return self._sign_exp(principal, upstream, route_id, route_action, permissions, now,
                              extra)[0]

    def _sign_exp(self, principal: Principal, upstream: str, route_id: str,
                  route_action: str | None, permissions: tuple[Mapping[str, Any], ...],
                  now: float, extra: Mapping[str, Any] | None = None) -> tuple[str, int]:
        iat = int(now)
        exp = iat + self._ttl
        token = principal.token
        claims: dict[str, Any] = {"iss": self._cfg.issuer, "aud": upstream}
        if token is not None:
            # never outlive the user token (a token accepted within clock skew after its exp
            # gets a credential that is already expired: the upstream must refuse it too)
            exp = min(exp, math.floor(token.exp))
            sub = principal.sub if principal.sub is not None else token.sub
            if sub is not None:    # verification insists on a string `sub`; never send null
                claims["sub"] = sub
            amr: list[str] = ["authenticated", token.issuer]
        else:
            claims["sub"] = "anon:" + secrets.token_urlsafe(16)
            amr = ["unauthenticated"]
        claims.update(iat=iat, nbf=iat, exp=exp, jti=secrets.token_urlsafe(16), amr=amr)
        if token is not None:
            client_id = _client_id(token.claims)
            if client_id is not None:
                claims["client_id"] = client_id
            if token.jti is not None:
                claims["src_jti"] = token.jti
        claims["role"] = principal.role
        claims["tags"] = dict(principal.tags)
        claims["perms"] = list(permissions)
        claims["route"] = {"id": route_id, "action": route_action}
        if extra:
            claims.update(extra)
        key = self._active
        signing_input = key.header_b64 + "." + _b64(_json(claims))
        sig = key.sign(signing_input.encode("ascii"))
        self.signs_count += 1
        return signing_input + "." + _b64(sig), exp

    # ------------------------------------------------------------------ cache upkeep

    def _store(self, key: tuple[Any, ...], entry: _Cached, now: float) -> None:
        with self._lock:
            cache = self._cache
            cache[key] = entry
            cache.move_to_end(key)
            if now >= self._next_sweep:
                # drop entries that can no longer be served; at most once per margin, so a
                # full cache of live entries does not cost an O(n) scan per miss
                self._next_sweep = now + self._margin
                limit = now + self._margin
                for k in [k for k, v in cache.items() if v.exp <= limit]:
                    del cache[k]
            while len(cache) > self._cache_size:
                cache.popitem(last=False)

    @property
    def cache_len(self) -> int:
        return len(self._cache)


def _client_id(claims: Mapping[str, Any]) -> str | None:
    """The OAuth client: ``client_id`` (access tokens), else ``aud`` of an id token, else ``azp``."""
    v = claims.get("client_id")
    if isinstance(v, str):
        return v
    if claims.get("token_use") == "id":
        aud = claims.get("aud")
        if isinstance(aud, str):
            return aud
        if isinstance(aud, list) and len(aud) == 1 and isinstance(aud[0], str):
            return aud[0]
    v = claims.get("azp")
    return v if isinstance(v, str) else None
