"""The JWS layer: strict compact parsing, header policy, JWK key policy and signatures.

Nothing here reads claims: payloads are bytes (the claims live in ``cognito.py``). Signatures
are checked with ``cryptography`` directly over the exact received ``header.payload`` bytes.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..errors import InvalidToken

__all__ = ["UnverifiedToken", "b64url_decode", "parse_json_object", "split_compact",
           "check_header", "check_typ", "verify_signature"]

EMBEDDED_KEY_HEADERS = ("jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256")
_EMBEDDED = frozenset(EMBEDDED_KEY_HEADERS)
_TO_STD = bytes.maketrans(b"-_", b"+/")
_B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_PAD = {0: b"", 2: b"==", 3: b"="}
# the last character of a segment whose length is 2 (resp. 3) mod 4 carries 4 (resp. 2)
# unused bits that must be zero for the encoding to be canonical
_LAST_OK = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
_HASH = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
_PKCS1 = padding.PKCS1v15()
_PSS = {k: padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size) for k, h in _HASH.items()}
_EC_CURVE = {"ES256": ("P-256", 32), "ES384": ("P-384", 48), "ES512": ("P-521", 66)}
_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48), "P-521": (ec.SECP521R1(), 66)}
SUPPORTED_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                            "ES256", "ES384", "ES512", "EdDSA"})
MIN_RSA_BITS = 2048


def _bad(code: str, description: str) -> InvalidToken:
    return InvalidToken(description, code=code)


@dataclass(slots=True)
class UnverifiedToken:
    """A structurally valid compact JWS. Nothing in it is trusted yet."""

    header: Mapping[str, Any]     # read-only and shared when it came from the memo
    payload: bytes
    signing_input: bytes          # the exact received ``header.payload`` bytes
    signature: bytes


# --------------------------------------------------------------------------- structure

def b64url_decode(segment: str | bytes) -> bytes:
    """Strict canonical base64url: alphabet only, no padding, zero unused bits."""
    raw = segment.encode("ascii", "replace") if isinstance(segment, str) else segment
    n = len(raw) % 4
    # translate(None, alphabet) deletes every base64url character: anything left is foreign
    # (padding, '+', '/', whitespace); the last character must leave the unused bits zero
    if n == 1 or raw.translate(None, _B64URL) or (n and raw[-1] not in _LAST_OK[n]):
        raise _bad("bad_encoding", "token is not canonical base64url")
    return binascii.a2b_base64(raw.translate(_TO_STD) + _PAD[n])


class _DuplicateKey(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _DuplicateKey
    return d


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_no_constant)
_SCAN = json.JSONDecoder(parse_constant=_no_constant).scan_once


def _count_keys(value: Any) -> int:
    n = 0
    if isinstance(value, dict):
        n = len(value)
        value = value.values()
    for v in value:
        if isinstance(v, (dict, list)):
            n += _count_keys(v)
    return n


def _decode(text: str) -> Any:
    """Decode with the C scanner, proving "no duplicate key" without a per-object hook.

    With no whitespace after any quote, every key occurrence is exactly one '":' and the only
    extra '":' can come from an escaped quote inside a string; so if the '":' count equals the
    number of keys parsed, no key was repeated. Otherwise re-decode with the checking hook.
    """
    if text[:1] == "{" and not ('" ' in text or '"\n' in text or '"\t' in text or '"\r' in text):
        try:
            value, end = _SCAN(text, 0)    # the C scanner without decode()'s regex wrapping
        except StopIteration:
            raise ValueError("not JSON") from None
        if end == len(text) and type(value) is dict:
            keys = text.count('":')
            if keys == len(value) or keys == _count_keys(value):   # flat payloads: first test
                return value
    return _DECODER.decode(text)


def parse_json_object(data: bytes) -> dict[str, Any]:
    """UTF-8 (no BOM) JSON object, duplicate keys and NaN/Infinity refused."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("bad_json", "token JSON is not UTF-8") from None
    if text.startswith("\ufeff"):
        raise _bad("bad_json", "token JSON starts with a byte order mark")
    try:
        value = _decode(text)
    except _DuplicateKey:
        raise _bad("duplicate_key", "token JSON has a duplicate key") from None
    except (ValueError, RecursionError):
        raise _bad("bad_json", "token JSON is malformed") from None
    if not isinstance(value, dict):
        raise _bad("bad_json", "token JSON is not an object")
    if ("\\ud" in text or "\\uD" in text) and _has_lone_surrogate(value):
        raise _bad("bad_json", "token JSON has an unpaired surrogate")
    return value


def split_compact(token: str, headers: dict[str, Mapping[str, Any]] | None = None,
                  raw: bytes | None = None) -> UnverifiedToken:
    """Compact JWS only: three segments, strict base64url, a JSON object header.

    ``headers`` memoises decoded header segments (an issuer's tokens share a handful) as
    read-only mappings, which the verified tokens then share.
    """
    dots = token.count(".")
    if dots == 4:
        raise _bad("unsupported_token_type", "encrypted tokens (JWE) are not accepted")
    i = token.find(".")
    if dots != 2 or i == 0:
        raise _bad("malformed_token", "token is not a compact JWS (header.payload.signature)")
    j = token.find(".", i + 1)
    data = raw if raw is not None else token.encode("ascii", "replace")
    head = token[:i]
    header: Mapping[str, Any] | None = headers.get(head) if headers is not None else None
    if header is None:
        header = parse_json_object(b64url_decode(data[:i]))
        if headers is not None:
            if len(headers) >= 256:
                headers.clear()
            header = headers[head] = MappingProxyType(header)
    payload = b64url_decode(data[i + 1:j])
    signature = b64url_decode(data[j + 1:])
    signing_input = data[:j]
    return UnverifiedToken(header, payload, signing_input, signature)


# --------------------------------------------------------------------------- header policy

def check_header(header: Mapping[str, Any], algorithms: frozenset[str] | set[str]) -> tuple[str, str]:
    """Return (alg, kid); refuse none/HMAC/unlisted algs, embedded keys, crit, a missing kid."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in SUPPORTED_ALGS:
        raise _bad("alg_not_allowed", "token algorithm is not allowed")
    if not _EMBEDDED.isdisjoint(header):
        raise _bad("embedded_key", "keys embedded in or referenced by the token are refused")
    if "crit" in header:
        raise _bad("crit_header", "critical header extensions are not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _bad("missing_kid", "token header has no key id")
    return alg, kid


def _media(t: str) -> str:
    t = t.lower()
    return t[12:] if t.startswith("application/") else t


def check_typ(header: Mapping[str, Any], token_types: tuple[str, ...] | None) -> None:
    """``typ`` allowlist (RFC 9068 ``at+jwt``); ``application/`` prefix optional."""
    if token_types is None:
        return
    typ = header.get("typ")
    if not isinstance(typ, str) or _media(typ) not in {_media(t) for t in token_types}:
        raise _bad("bad_typ", "token type is not accepted here")


# --------------------------------------------------------------------------- keys

_KIND: dict[type, str] = {}


def _kind(key: Any) -> str:
    kind = _KIND.get(type(key))
    if kind is None:                    # ABC isinstance is slow: once per key class
        kind = ("RSA" if isinstance(key, rsa.RSAPublicKey) else
                "EC" if isinstance(key, ec.EllipticCurvePublicKey) else
                "OKP" if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))
                else "?")
        _KIND[type(key)] = kind
    return kind


def verify_signature(alg: str, key: Any, signing_input: bytes, signature: bytes) -> None:
    """Raise ``InvalidToken(code="bad_signature")`` unless the signature verifies."""
    kind = _kind(key)
    try:
        fam, bits = alg[:2], alg[2:]
        if fam == "RS" and kind == "RSA":
            if len(signature) != (key.key_size + 7) // 8:
                raise InvalidSignature
            key.verify(signature, signing_input, _PKCS1, _HASH[bits])
        elif fam == "PS" and kind == "RSA":
            if len(signature) != (key.key_size + 7) // 8:
                raise InvalidSignature
            key.verify(signature, signing_input, _PSS[bits], _HASH[bits])
        elif fam == "ES" and kind == "EC":
            crv, size = _EC_CURVE[alg]
            if _CURVES[crv][0].name != key.curve.name or len(signature) != 2 * size:
                raise InvalidSignature
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(_HASH[bits]))
        elif alg == "EdDSA" and kind == "OKP":
            key.verify(signature, signing_input)
        else:
            raise InvalidSignature
    except (InvalidSignature, ValueError, KeyError):
        raise _bad("bad_signature", "token signature is invalid") from None

