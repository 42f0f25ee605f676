"""The downstream credential: claims, keys and rotation, caching (gateway/forward/credential.py)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from gateway.config import CredentialConfig, SigningKey
from gateway.errors import ConfigError
from gateway.forward.credential import CredentialSigner, generate_key_pem
from gateway.principal import Principal, VerifiedToken

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc123"
NOW = 1_700_000_000.0
PERMS = ({"sid": "read-own", "effect": "allow", "actions": ["orders:get"],
          "resources": ["orders:/tenants/t1/orders/*"]},)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def user(*, exp: float = NOW + 3600, raw: str = "user.token.one", role: str = "member",
         **claims: Any) -> Principal:
    c = {"sub": "u-123", "iss": ISSUER, "exp": exp, "jti": "tok-jti-1", "client_id": "app1",
         "token_use": "access", **claims}
    token = VerifiedToken(raw=raw, source_id="pool", issuer=ISSUER, header={"alg": "RS256"},
                          claims=c, token_hash=hashlib.sha256(raw.encode()).digest())
    return Principal(sub=c.get("sub"), role=role, claims=c, source_id="pool",
                     tags={"tenant": "t1"}, token=token)


def guest(role: str = "guest") -> Principal:
    return Principal(sub=None, role=role, claims={}, source_id=None, tags={}, token=None)


def key_file(tmp_path: Path, name: str, algorithm: str = "ES256") -> str:
    p = tmp_path / f"{name}.pem"
    p.write_bytes(generate_key_pem(algorithm))
    return str(p)


def signer_for(tmp_path: Path, *kids: str, algorithm: str = "ES256", clock: Clock | None = None,
               **cfg: Any) -> CredentialSigner:
    keys = tuple(SigningKey(kid=k, private_key_file=str(tmp_path / f"{k}.pem")) for k in kids)
    for k in kids:
        if not (tmp_path / f"{k}.pem").exists():
            key_file(tmp_path, k, algorithm)
    return CredentialSigner(CredentialConfig(algorithm=algorithm, signing_keys=keys, **cfg),
                            clock=clock or Clock())


def issue(signer: CredentialSigner, principal: Principal, **kw: Any) -> str:
    args: dict[str, Any] = dict(principal=principal, upstream="orders", route_id="get-order",
                                route_action="orders:get", path_params={"tenant": "t1", "id": "9"},
                                permissions=PERMS, decision_id="dec-1")
    args.update(kw)
    return signer.issue(**args)


def verify(signer: CredentialSigner, credential: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(signer.public_jwks())  # type: ignore[arg-type]
    alg = signer.public_jwks()["keys"][0]["alg"]
    tok = jwt.decode(credential, keys, algorithms=[alg])
    assert tok.header["typ"] == "JWT"
    return dict(tok.claims)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def es(tmp_path: Path, clock: Clock) -> CredentialSigner:
    return signer_for(tmp_path, "k1", clock=clock)


# --------------------------------------------------------------------------- claims

def test_authenticated_claims(es: CredentialSigner) -> None:
    claims = verify(es, issue(es, user()))
    assert claims == {
        "iss": "poolgate", "aud": "orders", "sub": "u-123", "iat": int(NOW), "nbf": int(NOW),
        "exp": int(NOW) + 300, "jti": claims["jti"], "amr": ["authenticated", ISSUER],
        "client_id": "app1", "src_jti": "tok-jti-1", "role": "member", "tags": {"tenant": "t1"},
        "perms": list(PERMS), "route": {"id": "get-order", "action": "orders:get"}}
    assert "decision_id" not in claims          # cacheable: one credential, many decisions
    assert len(claims["jti"]) >= 16


def test_header_names_the_active_kid(es: CredentialSigner) -> None:
    tok = jwt.decode(issue(es, user()), KeySet.import_key_set(es.public_jwks()),  # type: ignore[arg-type]
                     algorithms=["ES256"])
    assert tok.header == {"alg": "ES256", "kid": "k1", "typ": "JWT"}
    assert es.active_kid == "k1"


def test_guest_claims(es: CredentialSigner) -> None:
    a = verify(es, issue(es, guest(), permissions=(), route_action=None))
    b = verify(es, issue(es, guest(), permissions=(), route_action=None))
    assert a["sub"].startswith("anon:") and len(a["sub"]) > 20
    assert a["sub"] != b["sub"] and a["jti"] != b["jti"]
    assert a["amr"] == ["unauthenticated"]
    assert a["role"] == "guest" and a["decision_id"] == "dec-1"
    assert a["exp"] == int(NOW) + 300
    assert a["route"] == {"id": "get-order", "action": None}
    assert "src_jti" not in a and "client_id" not in a


@pytest.mark.parametrize("claims, expected", [
    ({"client_id": "app1"}, "app1"),
    ({"client_id": None, "token_use": "id", "aud": "web-client"}, "web-client"),
    ({"client_id": None, "token_use": "id", "aud": ["web-client"]}, "web-client"),
    ({"client_id": None, "azp": "spa"}, "spa"),
    ({"client_id": None, "aud": "an-api"}, None),   # an access token's aud is not a client
])
def test_client_id(es: CredentialSigner, claims: dict[str, Any], expected: str | None) -> None:
    p = user(**claims)
    got = verify(es, issue(es, p)).get("client_id")
    assert got == expected


def test_no_src_jti_when_token_has_none(es: CredentialSigner) -> None:
    assert "src_jti" not in verify(es, issue(es, user(jti=None)))


@pytest.mark.parametrize("ttl, token_exp, expected_exp", [
    (300, NOW + 3600, int(NOW) + 300),          # bound by the TTL
    (3600, NOW + 3600, int(NOW) + 3600),
    (300, NOW + 120.7, int(NOW) + 120),         # never after the user token's exp
    (60, NOW + 59, int(NOW) + 59),
])
def test_exp_bound(tmp_path: Path, clock: Clock, ttl: int, token_exp: float,
                   expected_exp: int) -> None:
    s = signer_for(tmp_path, "k1", clock=clock, ttl_seconds=ttl)
    claims = verify(s, issue(s, user(exp=token_exp)))
    assert claims["exp"] == expected_exp
    assert claims["exp"] <= token_exp


def test_token_accepted_within_skew_gets_an_expired_credential(tmp_path: Path,
                                                               clock: Clock) -> None:
    s = signer_for(tmp_path, "k1", clock=clock)
    cred = issue(s, user(exp=NOW - 10))
    keys = KeySet.import_key_set(s.public_jwks())  # type: ignore[arg-type]
    claims = jwt.decode(cred, keys, algorithms=["ES256"]).claims
    assert claims["exp"] == int(NOW) - 10       # never outlives the user token
    assert issue(s, user(exp=NOW - 10)) != cred  # and is not cached
    assert s.signs_count == 2


def test_issuer_and_request_binding(tmp_path: Path, clock: Clock) -> None:
    s = signer_for(tmp_path, "k1", clock=clock, issuer="https://gw.example", request_binding=True)
    claims = verify(s, issue(s, user(), htm="GET", htu="https://api.example/orders/9"))
    assert claims["iss"] == "https://gw.example"
    assert claims["htm"] == "GET" and claims["htu"] == "https://api.example/orders/9"
    assert claims["decision_id"] == "dec-1"     # not cached, so it names its decision


def test_htm_htu_ignored_without_request_binding(es: CredentialSigner) -> None:
    claims = verify(es, issue(es, user(), htm="GET", htu="https://x/y"))
    assert "htm" not in claims and "htu" not in claims


def test_permissions_accept_read_only_mappings(es: CredentialSigner) -> None:
    from types import MappingProxyType
    perms = (MappingProxyType({"effect": "allow", "actions": ("a:b",),
                               "resources": frozenset({"orders:/x"})}),)
    assert verify(es, issue(es, user(), permissions=perms))["perms"] == [
        {"effect": "allow", "actions": ["a:b"], "resources": ["orders:/x"]}]


# --------------------------------------------------------------------------- keys

@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")   # RFC 9864; "EdDSA" still interoperates best
def test_ed25519(tmp_path: Path, clock: Clock) -> None:
    s = signer_for(tmp_path, "ed1", algorithm="Ed25519", clock=clock)
    jwks = s.public_jwks()
    assert jwks["keys"] == [{"kty": "OKP", "crv": "Ed25519", "x": jwks["keys"][0]["x"],
                             "kid": "ed1", "alg": "EdDSA", "use": "sig"}]
    cred = issue(s, user())
    tok = jwt.decode(cred, KeySet.import_key_set(jwks), algorithms=["EdDSA"])  # type: ignore[arg-type]
    assert tok.header["alg"] == "EdDSA" and tok.claims["sub"] == "u-123"


def test_public_jwks_has_no_private_parts(tmp_path: Path, clock: Clock) -> None:
    for alg, kid in (("ES256", "e"), ("Ed25519", "d")):
        s = signer_for(tmp_path, kid, algorithm=alg, clock=clock)
        for k in s.public_jwks()["keys"]:
            assert "d" not in k and set(k) <= {"kty", "crv", "x", "y", "kid", "alg", "use"}
            assert k["use"] == "sig"
        assert "PRIVATE" not in repr(s) and "d=" not in repr(s)


def test_public_jwks_is_a_copy(es: CredentialSigner) -> None:
    es.public_jwks()["keys"][0]["kid"] = "mutated"
    assert es.public_jwks()["keys"][0]["kid"] == "k1"


def test_rotation(tmp_path: Path, clock: Clock) -> None:
    old = signer_for(tmp_path, "k1", clock=clock)
    earlier = issue(old, user())
    rotated = signer_for(tmp_path, "k2", "k1", clock=clock)
    assert rotated.active_kid == "k2"
    assert [k["kid"] for k in rotated.public_jwks()["keys"]] == ["k2", "k1"]
    now = rotated.issue(principal=user(raw="other"), upstream="orders", route_id="r",
                        route_action=None, path_params={}, permissions=(), decision_id="d")
    keys = KeySet.import_key_set(rotated.public_jwks())  # type: ignore[arg-type]
    assert jwt.decode(now, keys, algorithms=["ES256"]).header["kid"] == "k2"
    assert jwt.decode(earlier, keys, algorithms=["ES256"]).header["kid"] == "k1"
    assert verify(rotated, earlier)["sub"] == "u-123"


def test_a_credential_does_not_verify_with_another_gateways_keys(tmp_path: Path,
                                                                 clock: Clock) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = signer_for(tmp_path / "a", "k1", clock=clock)
    b = signer_for(tmp_path / "b", "k1", clock=clock)
    with pytest.raises(BadSignatureError):
        verify(b, issue(a, user()))


@pytest.mark.parametrize("algorithm, wrong", [
    ("ES256", lambda: generate_key_pem("Ed25519")),
    ("Ed25519", lambda: generate_key_pem("ES256")),
    ("ES256", lambda: _pem(ec.generate_private_key(ec.SECP384R1()))),
    ("ES256", lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))),
])
def test_wrong_key_type(tmp_path: Path, algorithm: str, wrong: Any) -> None:
    key_file(tmp_path, "good", algorithm)
    (tmp_path / "bad.pem").write_bytes(wrong())
    cfg = CredentialConfig(algorithm=algorithm, signing_keys=(
        SigningKey("good", str(tmp_path / "good.pem")), SigningKey("bad", str(tmp_path / "bad.pem"))))
    with pytest.raises(ConfigError) as e:
        CredentialSigner(cfg)
    assert e.value.path == "downstream_credential.signing_keys[1].private_key_file"
    assert algorithm in e.value.message


def _pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.mark.parametrize("content", [None, b"", b"-----BEGIN PRIVATE KEY-----\nsecretish\n"
                                                  b"-----END PRIVATE KEY-----\n", "encrypted"])
def test_unreadable_key_file(tmp_path: Path, content: Any) -> None:
    p = tmp_path / "k.pem"
    if content == "encrypted":
        key = ec.generate_private_key(ec.SECP256R1())
        p.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(b"pw")))
    elif content is not None:
        p.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        CredentialSigner(CredentialConfig(signing_keys=(SigningKey("k", str(p)),)))
    assert e.value.path == "downstream_credential.signing_keys[0].private_key_file"
    assert "secretish" not in str(e.value)


def test_no_keys_generates_one_with_a_warning(caplog: pytest.LogCaptureFixture,
                                              clock: Clock) -> None:
    with caplog.at_level(logging.WARNING, logger="poolgate.credential"):
        s = CredentialSigner(CredentialConfig(), clock=clock)
    assert [r.name for r in caplog.records] == ["poolgate.credential"]
    assert caplog.records[0].levelno == logging.WARNING
    assert s.active_kid.startswith("generated-") and s.active_kid in caplog.text
    assert verify(s, issue(s, user()))["sub"] == "u-123"


def test_no_keys_and_generation_not_allowed() -> None:
    with pytest.raises(ConfigError) as e:
        CredentialSigner(CredentialConfig(), allow_generated=False)
    assert e.value.path == "downstream_credential.signing_keys"
    assert "more than one process" in e.value.message


def test_generate_key_pem() -> None:
    assert b"BEGIN PRIVATE KEY" in generate_key_pem("ES256")
    assert b"BEGIN PRIVATE KEY" in generate_key_pem("Ed25519")
    with pytest.raises(ValueError):
        generate_key_pem("HS256")


# --------------------------------------------------------------------------- caching

def test_cache_hit_returns_the_same_credential(es: CredentialSigner, clock: Clock) -> None:
    first = issue(es, user())
    clock.now += 100
    assert issue(es, user(), decision_id="dec-2") == first
    assert issue(es, user(), path_params={"id": "9", "tenant": "t1"}) == first   # order-free
    assert es.signs_count == 1
    assert "decision_id" not in verify(es, first)


@pytest.mark.parametrize("change", [
    {"path_params": {"tenant": "t1", "id": "10"}},
    {"path_params": {}},
    {"upstream": "billing"},
    {"route_id": "other-route"},
    {"route_action": "orders:list"},
    {"principal": user(role="admin")},
    {"principal": user(raw="another.token")},
    {"permissions": ({"effect": "allow", "actions": ["*"], "resources": ["*"]},)},
])
def test_cache_key(es: CredentialSigner, change: dict[str, Any]) -> None:
    first = issue(es, user())
    second = issue(es, **{"principal": user(), **change})
    assert second != first and es.signs_count == 2
    assert issue(es, **{"principal": user(), **change}) == second and es.signs_count == 2


def test_resigned_close_to_expiry(es: CredentialSigner, clock: Clock) -> None:
    # ttl 300: reused while more than 60 s (a fifth of the TTL) are left
    first = issue(es, user())
    clock.now = NOW + 239
    assert issue(es, user()) == first
    clock.now = NOW + 240
    second = issue(es, user())
    assert second != first and es.signs_count == 2
    assert verify(es, second)["exp"] == int(NOW) + 240 + 300


def test_short_lived_token_is_not_cached(es: CredentialSigner) -> None:
    p = user(exp=NOW + 30)                      # credential would live 30 s: below the margin
    assert issue(es, p) != issue(es, p)
    assert es.signs_count == 2 and es.cache_len == 0


def test_small_ttl_still_caches(tmp_path: Path, clock: Clock) -> None:
    s = signer_for(tmp_path, "k1", clock=clock, ttl_seconds=10)   # margin = 5 s
    first = issue(s, user())
    clock.now += 4
    assert issue(s, user()) == first
    clock.now += 1
    assert issue(s, user()) != first


def test_request_binding_is_never_cached(tmp_path: Path, clock: Clock) -> None:
    s = signer_for(tmp_path, "k1", clock=clock, request_binding=True)
    a = issue(s, user(), htm="GET", htu="https://api/x")
    b = issue(s, user(), htm="GET", htu="https://api/x")
    assert a != b and s.signs_count == 2 and s.cache_len == 0


def test_guests_are_never_cached(es: CredentialSigner) -> None:
    issue(es, guest())
    issue(es, guest())
    assert es.signs_count == 2 and es.cache_len == 0


def test_cache_is_bounded_lru(tmp_path: Path, clock: Clock) -> None:
    s = CredentialSigner(CredentialConfig(), clock=clock, cache_size=3)
    for i in range(3):
        issue(s, user(), path_params={"id": str(i)})
    issue(s, user(), path_params={"id": "0"})          # touch 0: 1 is now the oldest
    issue(s, user(), path_params={"id": "3"})          # evicts 1
    assert s.cache_len == 3 and s.signs_count == 4
    issue(s, user(), path_params={"id": "0"})
    assert s.signs_count == 4
    issue(s, user(), path_params={"id": "1"})
    assert s.signs_count == 5


def test_expired_entries_are_swept(es: CredentialSigner, clock: Clock) -> None:
    for i in range(5):
        issue(es, user(), path_params={"id": str(i)})
    assert es.cache_len == 5
    clock.now += 1000
    issue(es, user(raw="fresh"))
    assert es.cache_len == 1


def test_cache_size_zero_disables_caching(tmp_path: Path, clock: Clock) -> None:
    s = CredentialSigner(CredentialConfig(), clock=clock, cache_size=0)
    assert issue(s, user()) != issue(s, user())
    assert s.cache_len == 0


@pytest.mark.parametrize("alg", ["ES256", "Ed25519"])
def test_generated_key_warning_reads_well(alg: str, caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("poolgate").propagate = True
    with caplog.at_level(logging.WARNING):
        CredentialSigner(CredentialConfig(algorithm=alg), allow_generated=True)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert f"generated an {alg} key" in text and f"a {alg}" not in text
