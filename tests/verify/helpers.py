"""Test helpers for gateway.verify: keys, a JWS signer that can build broken tokens, a fake
clock and an in-memory JWKS endpoint (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from dataclasses import replace
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway.config import IdentitySource
from gateway.verify import JwksManager, Verifier

POOL = "eu-west-1_AbCdEf123"
ISS = f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"
ISS2 = f"https://issuer-cognito-idp.eu-west-1.amazonaws.com/{POOL}"
JWKS_URL = f"{ISS}/.well-known/jwks.json"
CLIENT = "6jk8ltokc7ac9es6jrtg9q572f"
NOW = 1_800_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64i(n: int, size: int | None = None) -> str:
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))


@functools.lru_cache(maxsize=None)
def rsa_key(bits: int = 2048, n: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.lru_cache(maxsize=None)
def ec_key(n: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.lru_cache(maxsize=None)
def ed_key(n: int = 0) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def jwk_of(priv: Any, kid: str, alg: str | None = "RS256", **extra: Any) -> dict[str, Any]:
    pub = priv.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        d: dict[str, Any] = {"kty": "RSA", "n": b64i(nums.n), "e": b64i(nums.e)}
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        nums = pub.public_numbers()
        d = {"kty": "EC", "crv": "P-256", "x": b64i(nums.x, 32), "y": b64i(nums.y, 32)}
    else:
        from cryptography.hazmat.primitives import serialization as ser
        raw = pub.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        d = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    d["kid"] = kid
    d["use"] = "sig"
    if alg is not None:
        d["alg"] = alg
    d.update(extra)
    return d


def raw_sign(alg: str, key: Any, data: bytes) -> bytes:
    if alg.startswith("HS"):
        h = hmac.HMAC(key, hashes.SHA256())
        h.update(data)
        return h.finalize()
    hsh = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}.get(alg[2:])
    if alg.startswith("RS"):
        return key.sign(data, padding.PKCS1v15(), hsh)
    if alg.startswith("PS"):
        return key.sign(data, padding.PSS(padding.MGF1(hsh), hsh.digest_size), hsh)
    if alg.startswith("ES"):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hsh)))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "EdDSA":
        return key.sign(data)
    return b""


def make_token(claims: dict[str, Any] | str | bytes | None = None, *, key: Any = None,
               alg: str = "RS256", kid: str | None = "k1", header: dict[str, Any] | None = None,
               raw_header: bytes | None = None, sign_alg: str | None = None) -> str:
    """Sign a JWT; every part can be overridden to build broken tokens."""
    if claims is None:
        claims = access_claims()
    h = {"alg": alg, **({"kid": kid} if kid is not None else {})}
    if header is not None:
        h.update(header)
    hb = raw_header if raw_header is not None else json.dumps(h).encode()
    pb = claims if isinstance(claims, bytes) else (
        claims.encode() if isinstance(claims, str) else json.dumps(claims).encode())
    signing_input = f"{b64(hb)}.{b64(pb)}".encode()
    sig = raw_sign(sign_alg or alg, key if key is not None else rsa_key(), signing_input)
    return f"{signing_input.decode()}.{b64(sig)}"


def access_claims(**over: Any) -> dict[str, Any]:
    c = {"iss": ISS, "sub": "u-1", "client_id": CLIENT, "token_use": "access",
         "iat": NOW - 10, "exp": NOW + 3600, "jti": "j-1", "scope": "openid"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not ...}


def id_claims(**over: Any) -> dict[str, Any]:
    c = {"iss": ISS, "sub": "u-1", "aud": CLIENT, "token_use": "id",
         "iat": NOW - 10, "exp": NOW + 3600}
    c.update(over)
    return {k: v for k, v in c.items() if v is not ...}


def cognito_source(**over: Any) -> IdentitySource:
    s = IdentitySource(id="pool", issuers=(ISS, ISS2), jwks_uri=JWKS_URL, cognito=True,
                       region="eu-west-1", user_pool_id=POOL, client_ids=(CLIENT,),
                       token_use=("access",), audiences=(), algorithms=("RS256",))
    return replace(s, **over)


def oidc_source(**over: Any) -> IdentitySource:
    s = IdentitySource(id="oidc", issuers=("https://idp.example/",),
                       jwks_uri="https://idp.example/jwks", audiences=("api",),
                       algorithms=("RS256", "ES256", "EdDSA"))
    return replace(s, **over)


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class JwksEndpoint:
    """An in-memory IdP: JWKS document, modes for failures, and a fetch counter."""

    def __init__(self, keys: list[dict[str, Any]] | None = None) -> None:
        self.doc: Any = {"keys": keys if keys is not None else [jwk_of(rsa_key(), "k1")]}
        self.mode = "ok"          # ok | status | garbage | oversize | hang | redirect
        self.status = 500
        self.fetches = 0
        self.delay = 0.0
        self.urls: list[str] = []
        self.discovery: dict[str, Any] | None = None

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        if request.url.path.endswith("openid-configuration") and self.discovery is not None:
            return httpx.Response(200, json=self.discovery)
        self.fetches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "status":
            return httpx.Response(self.status, text="nope")
        if self.mode == "redirect":
            return httpx.Response(302, headers={"location": "https://evil.example/jwks"})
        if self.mode == "garbage":
            return httpx.Response(200, content=b"<html>not json")
        if self.mode == "oversize":
            return httpx.Response(200, content=b'{"keys": [' + b" " * 200_000 + b"]}")
        return httpx.Response(200, json=self.doc)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


def build(sources: list[IdentitySource] | None = None, endpoint: JwksEndpoint | None = None,
          wall: FakeClock | None = None, mono: FakeClock | None = None,
          **kw: Any) -> tuple[Verifier, JwksManager, JwksEndpoint, FakeClock, FakeClock]:
    sources = sources or [cognito_source()]
    endpoint = endpoint or JwksEndpoint()
    wall = wall or FakeClock(NOW)
    mono = mono or FakeClock(1000.0)
    mgr = JwksManager(sources, client=endpoint.client(), clock=mono)
    return Verifier(sources, mgr, clock=wall, **kw), mgr, endpoint, wall, mono

