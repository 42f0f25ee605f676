"""JWK key policy: which published keys are usable, and binding a token's alg to its key.

A malformed or weak key is rejected (``KeyRejected``) and skipped by the JWKS manager with a
log line, never fatal for the other keys of the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import InvalidToken
from .token import (_CURVES, _EC_CURVE, MIN_RSA_BITS, SUPPORTED_ALGS, _bad, b64url_decode)

__all__ = ["Jwk", "KeyRejected", "parse_jwk", "parse_jwks", "check_key_alg", "keep_unchanged"]


class KeyRejected(ValueError):
    """A JWK that poolgate will not verify with (malformed, weak, not for signing)."""


@dataclass(frozen=True, slots=True, eq=False)
class Jwk:
    kid: str
    kty: str
    alg: str | None
    key: Any                      # a cryptography public key
    crv: str | None = None


def _b64_field(obj: Mapping[str, Any], name: str) -> bytes:
    v = obj.get(name)
    if not isinstance(v, str) or not v:
        raise KeyRejected(f"missing or non-string {name!r}")
    try:
        return b64url_decode(v)
    except InvalidToken:
        raise KeyRejected(f"{name!r} is not canonical base64url") from None


_ROCA_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79,
                83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167)
_ROCA_GROUPS = {p: frozenset(pow(65537, k, p) for k in range(p)) for p in _ROCA_PRIMES}


def _roca_fingerprint(n: int) -> bool:
    """CVE-2017-15361 (Infineon) moduli: n mod p lies in <65537> for every small prime p."""
    return all(n % p in g for p, g in _ROCA_GROUPS.items())


def _alg_fits(alg: str, kty: str, crv: str | None) -> bool:
    if alg[:2] in ("RS", "PS"):
        return kty == "RSA"
    if alg in _EC_CURVE:
        return kty == "EC" and crv == _EC_CURVE[alg][0]
    return alg == "EdDSA" and kty == "OKP"


def parse_jwk(obj: Any) -> Jwk:
    """One JWK -> ``Jwk``, or ``KeyRejected`` with the reason (logged by the caller)."""
    if not isinstance(obj, dict):
        raise KeyRejected("not a JSON object")
    kid, kty, alg = obj.get("kid"), obj.get("kty"), obj.get("alg")
    if not isinstance(kid, str) or not kid:
        raise KeyRejected("no kid")
    if obj.get("use", "sig") != "sig":
        raise KeyRejected("use is not 'sig'")
    ops = obj.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise KeyRejected("key_ops does not include 'verify'")
    if alg is not None and (not isinstance(alg, str) or alg not in SUPPORTED_ALGS):
        raise KeyRejected(f"unsupported alg {alg!r}")
    if any(p in obj for p in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise KeyRejected("private or symmetric key material in a public key set")
    crv = obj.get("crv")
    try:
        if kty == "RSA":
            n = int.from_bytes(_b64_field(obj, "n"), "big")
            e = int.from_bytes(_b64_field(obj, "e"), "big")
            if n.bit_length() < MIN_RSA_BITS:
                raise KeyRejected(f"RSA key of {n.bit_length()} bits (< {MIN_RSA_BITS})")
            if e < 3 or e % 2 == 0 or n % 2 == 0:
                raise KeyRejected("invalid RSA public exponent or modulus")
            if _roca_fingerprint(n):
                raise KeyRejected("RSA modulus has the ROCA (CVE-2017-15361) fingerprint")
            key: Any = rsa.RSAPublicNumbers(e, n).public_key()
        elif kty == "EC":
            if crv not in _CURVES:
                raise KeyRejected(f"unsupported curve {crv!r}")
            curve, size = _CURVES[crv]
            x, y = _b64_field(obj, "x"), _b64_field(obj, "y")
            if len(x) != size or len(y) != size:
                raise KeyRejected("EC coordinates have the wrong length")
            key = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                                curve).public_key()
        elif kty == "OKP":
            x = _b64_field(obj, "x")
            if crv == "Ed25519" and len(x) == 32:
                key = ed25519.Ed25519PublicKey.from_public_bytes(x)
            elif crv == "Ed448" and len(x) == 57:
                key = ed448.Ed448PublicKey.from_public_bytes(x)
            else:
                raise KeyRejected(f"unsupported OKP key (crv {crv!r})")
        else:
            raise KeyRejected(f"unsupported key type {kty!r}")
    except (ValueError, TypeError) as exc:
        if isinstance(exc, KeyRejected):
            raise
        raise KeyRejected(f"invalid key: {exc}") from None
    if alg is not None and not _alg_fits(alg, kty, crv):
        raise KeyRejected(f"alg {alg!r} does not fit an {kty} key")
    return Jwk(kid=kid, kty=kty, alg=alg, key=key, crv=crv if isinstance(crv, str) else None)


def parse_jwks(doc: Any) -> tuple[dict[str, Jwk], list[tuple[str | None, str]]]:
    """``{"keys": [...]}`` -> (usable keys by kid, [(kid, reason) skipped]).

    A malformed or weak key is skipped, never fatal for the others; a kid published twice is
    ambiguous, so every key under it is skipped. Raises ``ValueError`` if ``doc`` is not a JWKS.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError('not a JWK Set (expected {"keys": [...]})')
    keys: dict[str, Jwk] = {}
    skipped: list[tuple[str | None, str]] = []
    seen: dict[str, int] = {}
    for obj in doc["keys"]:
        kid = obj.get("kid") if isinstance(obj, dict) else None
        if isinstance(kid, str):
            seen[kid] = seen.get(kid, 0) + 1
        try:
            jwk = parse_jwk(obj)
        except KeyRejected as exc:
            skipped.append((kid if isinstance(kid, str) else None, str(exc)))
            continue
        keys[jwk.kid] = jwk
    for kid, count in seen.items():
        if count > 1:
            keys.pop(kid, None)
            skipped.append((kid, "kid published more than once"))
    return keys, skipped


def check_key_alg(jwk: Jwk, alg: str) -> None:
    """The token's alg must fit the key type/curve and equal the JWK's ``alg`` if it has one."""
    if (jwk.alg is not None and jwk.alg != alg) or not _alg_fits(alg, jwk.kty, jwk.crv):
        raise _bad("key_alg_mismatch", "token algorithm does not match the key")


# --------------------------------------------------------------------------- refresh

def _same(a: Jwk, b: Jwk) -> bool:
    if (a.kid, a.kty, a.alg, a.crv) != (b.kid, b.kty, b.alg, b.crv):
        return False
    spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    return bool(a.key.public_bytes(*spki) == b.key.public_bytes(*spki))


def keep_unchanged(held: Mapping[str, Jwk], fetched: dict[str, Jwk]) -> dict[str, Jwk]:
    """``fetched``, with every key published unchanged (same kid, type, alg, curve and key
    material) replaced by the object already ``held``. The verifier's cache serves a token
    only while the key that verified it is the one published: without this, every routine
    refresh (each ``refresh_seconds``) dropped every cached token, and the next request of
    each user paid a full verification again."""
    for kid, jwk in fetched.items():
        old = held.get(kid)
        if old is not None and _same(old, jwk):
            fetched[kid] = old
    return fetched


# --------------------------------------------------------------------------- signatures
