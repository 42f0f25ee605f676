"""Wycheproof JOSE vectors through the JWS layer (signature + key policy) and JWKS parsing.

See /work/shared/vectors/wycheproof/README.md for the labelling quirks handled below.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import InvalidToken
from gateway.verify.keys import KeyRejected, check_key_alg, parse_jwk, parse_jwks
from gateway.verify.token import check_header, split_compact, verify_signature

# the public vectors live in shared/ beside the repository (as CI lays it out)
_HERE = Path(__file__).resolve()
VECTORS = next((p for p in (_HERE.parents[3] / "shared" / "vectors" / "wycheproof",
                            Path("/work/shared/vectors/wycheproof")) if p.exists()),
               _HERE.parents[3] / "shared" / "vectors" / "wycheproof")
SKIP = {367, 370}                 # byte-identical to valid tc 357, mislabelled invalid
STRICT_REJECTS = {372, 373,       # '?' inside a segment: strict base64url rejects (right)
                  346, 350,       # PS256 key for a PS384 token: strict key-alg binding
                  347, 351}       # key alg "ES521" is not an algorithm
FAMILY = {"RSA": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
          "EC": {"ES256", "ES384", "ES512"}, "OKP": {"EdDSA"}}

# under CI the vectors must be there: a missing copy fails instead of silently skipping
pytestmark = pytest.mark.skipif(not VECTORS.exists() and not os.environ.get("CI"),
                                reason="wycheproof vectors not present")


def _load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())


def verify_jws(jws: Any, keys: dict[str, Any], algorithms: set[str]) -> None:
    """The gateway's JWS layer: structure, header policy, key lookup + binding, signature."""
    if not isinstance(jws, str):
        raise InvalidToken("not compact", code="malformed_token")
    tok = split_compact(jws)
    alg, kid = check_header(tok.header, algorithms)
    jwk = keys.get(kid)
    if jwk is None:
        raise InvalidToken("unknown kid", code="unknown_kid")
    check_key_alg(jwk, alg)
    verify_signature(alg, jwk.key, tok.signing_input, tok.signature)


def _signature_cases() -> list[tuple[int, Any, dict[str, Any] | None, str]]:
    data = _load("json_web_signature_test.json") if VECTORS.exists() else {"testGroups": []}
    return [(t["tcId"], t["jws"], g.get("public"), t["result"])
            for g in data["testGroups"] for t in g["tests"]]


def _group_keys(public: dict[str, Any] | None) -> tuple[dict[str, Any], set[str]]:
    if public is None:                      # HMAC groups: no public key, nothing to verify with
        return {}, set(FAMILY["RSA"])
    try:
        jwk = parse_jwk(public)
    except KeyRejected:
        return {}, FAMILY.get(public.get("kty"), set())
    return {jwk.kid: jwk}, FAMILY[jwk.kty]


@pytest.mark.parametrize("tc,jws,public,result", _signature_cases(),
                         ids=lambda v: str(v) if isinstance(v, int) else "")
def test_json_web_signature(tc: int, jws: Any, public: dict[str, Any] | None, result: str) -> None:
    if tc in SKIP:
        pytest.skip("documented labelling quirk")
    keys, algorithms = _group_keys(public)
    expect_valid = result == "valid" and public is not None and tc not in STRICT_REJECTS
    if expect_valid:
        verify_jws(jws, keys, algorithms)
    else:
        with pytest.raises(InvalidToken):
            verify_jws(jws, keys, algorithms)


def test_signature_file_counts() -> None:
    cases = _signature_cases()
    assert len(cases) == 401
    valid_asym = [c for c in cases if c[3] == "valid" and c[2] is not None
                  and c[0] not in STRICT_REJECTS]
    assert len(valid_asym) >= 20          # the positive controls really ran


def _key_cases() -> list[tuple[int, str, dict[str, Any], str]]:
    data = _load("json_web_key_test.json") if VECTORS.exists() else {"testGroups": []}
    out = []
    for g in data["testGroups"]:
        keyset = g.get("public") or g.get("private") or {"keys": []}
        for t in g["tests"]:
            out.append((t["tcId"], t["jws"], keyset, t["result"]))
    return out


@pytest.mark.parametrize("tc,jws,keyset,result", _key_cases(),
                         ids=lambda v: str(v) if isinstance(v, int) else "")
def test_json_web_key(tc: int, jws: str, keyset: dict[str, Any], result: str) -> None:
    keys, skipped = parse_jwks(keyset)
    algorithms = set().union(*FAMILY.values())
    # the only valid asymmetric case is tc 5 (RS256); HS* sets are refused by policy
    if result == "valid" and tc == 5:
        assert not skipped
        verify_jws(jws, keys, algorithms)
    else:
        with pytest.raises(InvalidToken):
            verify_jws(jws, keys, algorithms)


@pytest.mark.parametrize("tc,reason", [
    (6, "use"), (7, "ROCA"), (8, "bits"), (9, "exponent"), (19, "alg"), (20, "alg"),
    (21, "use"), (22, "invalid key"), (23, "length"), (24, "missing"),
])
def test_weak_or_invalid_keys_are_skipped_with_a_reason(tc: int, reason: str) -> None:
    [(_, _, keyset, _)] = [c for c in _key_cases() if c[0] == tc]
    keys, skipped = parse_jwks(keyset)
    assert keys == {}
    assert any(reason.lower() in r.lower() for _, r in skipped), skipped


def test_duplicate_kid_and_symmetric_sets_yield_no_keys() -> None:
    for tc in (2, 4, 10, 13, 16, 25, 26):
        [(_, _, keyset, _)] = [c for c in _key_cases() if c[0] == tc]
        assert parse_jwks(keyset)[0] == {}
    [(_, _, mixed, _)] = [c for c in _key_cases() if c[0] == 1]
    assert [k.kty for k in parse_jwks(mixed)[0].values()] == ["EC"]   # the oct key is dropped
