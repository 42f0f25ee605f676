"""Write the seed corpus for fuzz_token.py (valid-looking tokens in its NUL-separated form)."""

from __future__ import annotations

import json
import pathlib
import sys

ISS = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
HEADERS = [{"alg": "RS256", "kid": "k1"}, {"alg": "ES256", "kid": "k1", "typ": "at+jwt"},
           {"alg": "none"}, {"alg": "HS256", "kid": "k"}, {"alg": "RS256", "kid": "k", "crit": ["b64"]},
           {"alg": "EdDSA", "kid": "k", "jwk": {}}]
PAYLOADS = [{"iss": ISS, "sub": "u", "exp": 1800000600, "iat": 1799999900, "token_use": "access",
             "client_id": "client", "scope": "a b", "jti": "j"},
            {"iss": ISS, "sub": "u", "exp": 1e300, "token_use": "id", "aud": ["client"]},
            {"iss": ISS, "sub": 1, "exp": True, "cognito:groups": ["a", 2]},
            {"iss": ISS, "exp": 1800000600, "nbf": 1900000000, "token_use": "access"}]


def main(out: str) -> None:
    d = pathlib.Path(out)
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for h in HEADERS:
        for p in PAYLOADS:
            blob = (json.dumps(h, separators=(",", ":")).encode() + b"\0"
                    + json.dumps(p, separators=(",", ":")).encode() + b"\0" + b"\1" * 64)
            (d / f"seed{n:03d}").write_bytes(blob)
            n += 1
    (d / "raw").write_bytes(b"eyJhbGciOiJSUzI1NiJ9.e30.c2ln")


if __name__ == "__main__":
    main(sys.argv[1])
