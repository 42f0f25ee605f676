"""RFC 8725 negative cases through the whole verifier, each asserting its stable code."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.errors import InvalidToken, TokenTooLarge
from gateway.verify.token import b64url_decode, parse_json_object

from .helpers import (CLIENT, ISS, ISS2, JwksEndpoint, access_claims, b64, build,
                      cognito_source, ec_key, ed_key, id_claims, jwk_of, make_token,
                      oidc_source, rsa_key)


def _pem_public() -> bytes:
    return rsa_key().public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)


def _swap_segment(token: str, i: int, value: str) -> str:
    parts = token.split(".")
    parts[i] = value
    return ".".join(parts)


def _hs256_with_public_key() -> str:
    return make_token(alg="HS256", key=_pem_public())


CASES = [
    # structure
    ("not_three_segments", lambda: "abc.def", "malformed_token"),
    ("four_segments", lambda: make_token() + ".x", "malformed_token"),
    ("empty_header", lambda: _swap_segment(make_token(), 0, ""), "malformed_token"),
    ("jwe_five_segments", lambda: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "unsupported_token_type"),
    ("json_serialization", lambda: '{"payload":"e30","signatures":[]}', "malformed_token"),
    ("padding", lambda: _swap_segment(make_token(), 1, make_token().split(".")[1] + "="),
     "bad_encoding"),
    ("plus_slash", lambda: _swap_segment(make_token(), 2, "ab+/" * 4), "bad_encoding"),
    ("whitespace", lambda: _swap_segment(make_token(), 1, " " + make_token().split(".")[1]),
     "bad_encoding"),
    ("unused_bits", lambda: _swap_segment(make_token(), 2, "AB"), "bad_encoding"),
    ("non_ascii", lambda: make_token() + "é", "bad_encoding"),
    ("header_not_json", lambda: make_token(raw_header=b"{alg"), "bad_json"),
    ("header_array", lambda: make_token(raw_header=b'["RS256"]'), "bad_json"),
    ("header_bom", lambda: make_token(raw_header=b'\xef\xbb\xbf{"alg":"RS256","kid":"k1"}'),
     "bad_json"),
    ("header_utf16", lambda: make_token(raw_header='{"alg":"RS256","kid":"k1"}'.encode("utf-16")),
     "bad_json"),
    ("header_dup_alg", lambda: make_token(raw_header=b'{"alg":"RS256","kid":"k1","alg":"none"}'),
     "duplicate_key"),
    ("payload_dup_key", lambda: make_token('{"iss":"%s","iss":"x"}' % ISS), "duplicate_key"),
    ("payload_not_object", lambda: make_token("[1,2]"), "bad_json"),
    ("payload_bom", lambda: make_token(b"\xef\xbb\xbf" + json.dumps(access_claims()).encode()),
     "bad_json"),
    # algorithms and header
    ("alg_none", lambda: make_token(alg="none").rsplit(".", 1)[0] + ".", "alg_not_allowed"),
    ("alg_NONE", lambda: make_token(alg="NONE").rsplit(".", 1)[0] + ".", "alg_not_allowed"),
    ("hs256_public_key_as_secret", _hs256_with_public_key, "alg_not_allowed"),
    ("alg_missing", lambda: make_token(raw_header=b'{"kid":"k1"}'), "alg_not_allowed"),
    ("alg_not_on_source_list", lambda: make_token(alg="PS256"), "alg_not_allowed"),
    ("embedded_jwk", lambda: make_token(header={"jwk": jwk_of(rsa_key(), "k1")}), "embedded_key"),
    ("jku", lambda: make_token(header={"jku": "https://evil.example/jwks"}), "embedded_key"),
    ("x5u", lambda: make_token(header={"x5u": "https://evil.example/cert"}), "embedded_key"),
    ("x5c", lambda: make_token(header={"x5c": ["MIIB"]}), "embedded_key"),
    ("x5t", lambda: make_token(header={"x5t": "abc"}), "embedded_key"),
    ("crit", lambda: make_token(header={"crit": ["exp"], "exp": 1}), "crit_header"),
    ("crit_b64", lambda: make_token(header={"crit": ["b64"], "b64": False}), "crit_header"),
    ("kid_missing", lambda: make_token(kid=None), "missing_kid"),
    ("kid_not_string", lambda: make_token(header={"kid": 7}), "missing_kid"),
    ("unknown_kid", lambda: make_token(kid="nope"), "unknown_kid"),
    ("bad_signature", lambda: make_token(key=rsa_key(2048, 1)), "bad_signature"),
    ("empty_signature", lambda: make_token().rsplit(".", 1)[0] + ".", "bad_signature"),
    ("tampered_payload", lambda: _swap_segment(make_token(), 1, b64(json.dumps(
        access_claims(sub="admin")).encode())), "bad_signature"),
    # claims
    ("exp_missing", lambda: make_token(access_claims(exp=...)), "missing_claim"),
    ("exp_nan", lambda: make_token(json.dumps(access_claims()).replace(
        str(int(access_claims()["exp"])) + ".0", "NaN")), "bad_json"),
    ("exp_infinity", lambda: make_token(json.dumps(access_claims(exp=0)).replace(
        '"exp": 0', '"exp": Infinity')), "bad_json"),
    ("exp_1e400", lambda: make_token(json.dumps(access_claims(exp=0)).replace(
        '"exp": 0', '"exp": 1e400')), "bad_claim_type"),
    ("exp_huge_int", lambda: make_token(access_claims(exp=10 ** 30)), "bad_claim_type"),
    ("exp_negative", lambda: make_token(access_claims(exp=-5)), "bad_claim_type"),
    ("exp_bool", lambda: make_token(access_claims(exp=True)), "bad_claim_type"),
    ("exp_string", lambda: make_token(access_claims(exp="1900000000")), "bad_claim_type"),
    ("expired", lambda: make_token(access_claims(exp=1_800_000_000 - 61)), "token_expired"),
    ("nbf_future", lambda: make_token(access_claims(nbf=1_800_000_000 + 61)), "token_not_yet_valid"),
    ("iat_future", lambda: make_token(access_claims(iat=1_800_000_000 + 61)), "iat_in_future"),
    ("iat_bool", lambda: make_token(access_claims(iat=False)), "bad_claim_type"),
    ("sub_not_string", lambda: make_token(access_claims(sub=123)), "bad_claim_type"),
    ("sub_missing", lambda: make_token(access_claims(sub=...)), "missing_claim"),
    ("groups_not_list", lambda: make_token(access_claims(**{"cognito:groups": "admins"})),
     "bad_claim_type"),
    ("wrong_iss", lambda: make_token(access_claims(iss="https://evil.example/")), "bad_issuer"),
    ("iss_trailing_slash", lambda: make_token(access_claims(iss=ISS + "/")), "bad_issuer"),
    ("gateway_credential_iss", lambda: make_token(access_claims(iss="poolgate"), alg="ES256",
                                                  key=ec_key()), "bad_issuer"),
    ("iss_missing", lambda: make_token(access_claims(iss=...)), "missing_claim"),
    ("iss_not_string", lambda: make_token(access_claims(iss=[ISS])), "bad_claim_type"),
    ("id_token_on_access_only", lambda: make_token(id_claims()), "bad_token_use"),
    ("token_use_missing", lambda: make_token(access_claims(token_use=...)), "bad_token_use"),
    ("token_use_refresh", lambda: make_token(access_claims(token_use="refresh")), "bad_token_use"),
    ("wrong_client_id", lambda: make_token(access_claims(client_id="other")), "bad_client_id"),
    ("client_id_missing", lambda: make_token(access_claims(client_id=...)), "bad_client_id"),
    ("access_with_aud_only", lambda: make_token(access_claims(client_id=..., aud=CLIENT)),
     "bad_client_id"),
]


@pytest.mark.parametrize("name,factory,code", CASES, ids=[c[0] for c in CASES])
async def test_rejected_with_code(name: str, factory, code: str) -> None:
    verifier, *_ = build()
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(factory())
    assert info.value.code == code, info.value


async def test_valid_access_token_and_both_issuer_forms() -> None:
    verifier, *_ = build()
    vt = await verifier.verify(make_token())
    assert vt.sub == "u-1" and vt.source_id == "pool" and vt.issuer == ISS
    vt2 = await verifier.verify(make_token(access_claims(iss=ISS2)))
    assert vt2.issuer == ISS2


async def test_oversize_token() -> None:
    verifier, *_ = build([cognito_source(max_token_bytes=1024)])
    with pytest.raises(TokenTooLarge) as info:
        await verifier.verify(make_token(access_claims(pad="x" * 2000)))
    assert info.value.code == "token_too_large"


async def test_smallest_cap_applies_before_parsing() -> None:
    big = oidc_source(max_token_bytes=16384)
    verifier, *_ = build([cognito_source(max_token_bytes=1024), big])
    with pytest.raises(TokenTooLarge):
        await verifier.verify("x" * 2000)
    with pytest.raises(InvalidToken):   # only the big source allowed: parsed, then refused
        await verifier.verify("x" * 2000, allowed_sources=("oidc",))


@pytest.mark.parametrize("token_use,claims,ok", [
    (("id",), id_claims(), True),
    (("id",), access_claims(), False),
    (("access", "id"), id_claims(), True),
    (("access", "id"), access_claims(), True),
])
async def test_token_use(token_use, claims, ok) -> None:
    verifier, *_ = build([cognito_source(token_use=token_use)])
    if ok:
        assert (await verifier.verify(make_token(claims))).token_use == claims["token_use"]
    else:
        with pytest.raises(InvalidToken) as info:
            await verifier.verify(make_token(claims))
        assert info.value.code == "bad_token_use"


async def test_id_token_aud_is_the_client_id() -> None:
    verifier, *_ = build([cognito_source(token_use=("id",))])
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(make_token(id_claims(aud="other")))
    assert info.value.code == "bad_client_id"
    with pytest.raises(InvalidToken) as info:   # a client_id claim does not stand in for aud
        await verifier.verify(make_token(id_claims(aud=..., client_id=CLIENT)))
    assert info.value.code == "bad_client_id"


async def test_client_ids_any() -> None:
    verifier, *_ = build([cognito_source(client_ids=None)])
    assert (await verifier.verify(make_token(access_claims(client_id="whatever")))).sub == "u-1"


OIDC = "https://idp.example/"


@pytest.mark.parametrize("audiences,aud,ok", [
    (("api",), "api", True),
    (("api",), ["x", "api"], True),
    (("api", "other"), "other", True),
    (("api",), "nope", False),
    (("api",), ["x", "y"], False),
    (("api",), ..., False),
    (None, "anything", True),
    (None, ..., True),
])
async def test_generic_audience_any_of(audiences, aud, ok) -> None:
    src = oidc_source(audiences=audiences)
    ep = JwksEndpoint([jwk_of(rsa_key(), "k1")])
    verifier, *_ = build([src], ep)
    claims = {"iss": OIDC, "sub": "s", "exp": 1_800_000_100, "aud": aud}
    claims = {k: v for k, v in claims.items() if v is not ...}
    if ok:
        assert (await verifier.verify(make_token(claims))).source_id == "oidc"
    else:
        with pytest.raises(InvalidToken) as info:
            await verifier.verify(make_token(claims))
        assert info.value.code == "bad_audience"


@pytest.mark.parametrize("types,typ,ok", [
    (("at+jwt",), "at+jwt", True),
    (("at+jwt",), "AT+JWT", True),
    (("at+jwt",), "application/at+jwt", True),
    (("at+jwt",), "JWT", False),
    (("at+jwt",), None, False),
    (None, "JWT", True),
])
async def test_typ_allowlist(types, typ, ok) -> None:
    verifier, *_ = build([oidc_source(token_types=types)], JwksEndpoint([jwk_of(rsa_key(), "k1")]))
    header = {"typ": typ} if typ is not None else {}
    token = make_token({"iss": OIDC, "sub": "s", "exp": 1_800_000_100, "aud": "api"},
                       header=header)
    if ok:
        await verifier.verify(token)
    else:
        with pytest.raises(InvalidToken) as info:
            await verifier.verify(token)
        assert info.value.code == "bad_typ"


@pytest.mark.parametrize("alg,key,jwk", [
    ("ES256", ec_key(), lambda: jwk_of(ec_key(), "k1", "ES256")),
    ("EdDSA", ed_key(), lambda: jwk_of(ed_key(), "k1", "EdDSA")),
    ("RS256", rsa_key(), lambda: jwk_of(rsa_key(), "k1", None)),
])
async def test_other_algorithms(alg, key, jwk) -> None:
    verifier, *_ = build([oidc_source()], JwksEndpoint([jwk()]))
    claims = {"iss": OIDC, "sub": "s", "exp": 1_800_000_100, "aud": "api"}
    assert (await verifier.verify(make_token(claims, key=key, alg=alg))).sub == "s"


async def test_alg_confusion_key_alg_mismatch() -> None:
    # the JWK says RS256; a PS256 token (allowed by the source) must not use it
    src = oidc_source(algorithms=("RS256", "PS256"))
    verifier, *_ = build([src], JwksEndpoint([jwk_of(rsa_key(), "k1", "RS256")]))
    claims = {"iss": OIDC, "sub": "s", "exp": 1_800_000_100, "aud": "api"}
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(make_token(claims, alg="PS256"))
    assert info.value.code == "key_alg_mismatch"
    # an ES256 token naming an RSA key (no alg on the JWK): the key type decides
    src = oidc_source(algorithms=("RS256", "ES256"))
    verifier, *_ = build([src], JwksEndpoint([jwk_of(rsa_key(), "k1", None)]))
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(make_token(claims, alg="ES256", key=ec_key()))
    assert info.value.code == "key_alg_mismatch"


async def test_weak_rsa_key_refused() -> None:
    weak = rsa_key(1024)
    verifier, *_ = build(endpoint=JwksEndpoint([jwk_of(weak, "weak"), jwk_of(rsa_key(), "k1")]))
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(make_token(key=weak, kid="weak"))
    assert info.value.code == "unknown_kid"
    assert (await verifier.verify(make_token())).sub == "u-1"


def test_b64url_strict() -> None:
    assert b64url_decode("Zm9v") == b"foo"
    assert b64url_decode("") == b""
    assert b64url_decode("Zm8") == b"fo"
    for bad in ("Zm9v=", "Zm9", "Zm8+", "Zm8/", "Z", "Zm 9", "Zm9\n", "Zh"):   # Zm9: unused bits
        with pytest.raises(InvalidToken):
            b64url_decode(bad)


def test_json_lone_surrogate_refused() -> None:
    with pytest.raises(InvalidToken) as info:
        parse_json_object(b'{"sub": "\\ud800"}')
    assert info.value.code == "bad_json"
    assert parse_json_object(b'{"sub": "\\ud83d\\ude00"}')["sub"] == "\U0001F600"
