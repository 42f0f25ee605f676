"""atheris harness: the bearer-token path (extract -> JWS parse -> header policy -> claims ->
signature) must answer every input with the gateway's own error tree, never anything else.

Run (optional extra ``fuzz``): ``python tests/fuzz/fuzz_token.py -runs=1000000``; see README.md here.
"""

from __future__ import annotations

import base64
import sys

import atheris

with atheris.instrument_imports():
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.config import IdentitySource
    from gateway.errors import GatewayError
    from gateway.extract import bearer_token
    from gateway.verify.cognito import check_claims
    from gateway.verify.token import (SUPPORTED_ALGS, check_header, check_typ,
                                      parse_json_object, split_compact, verify_signature)

ISS = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
SOURCE = IdentitySource(id="pool", issuers=(ISS,), jwks_uri=None, cognito=True,
                        client_ids=("client",), algorithms=("RS256", "ES256", "EdDSA"),
                        token_types=("at+jwt",))
KEY = ec.generate_private_key(ec.SECP256R1()).public_key()
NOW = 1_800_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(data: bytes) -> bytes:
    """Input with two NUL bytes is ``header NUL payload NUL signature``, each part
    base64url-encoded (so the JSON and claims layers see structured input); anything else is
    the raw credential."""
    parts = data.split(b"\0", 2)
    if len(parts) != 3:
        return data
    return ".".join(_b64(p) for p in parts).encode()


def check_one(data: bytes) -> None:
    raw = _token(data)
    try:
        token = bearer_token([(b"authorization", b"Bearer " + raw)], b"")
        if token is None:
            return
        jws = split_compact(token)
        alg, _kid = check_header(jws.header, SUPPORTED_ALGS)
        check_typ(jws.header, SOURCE.token_types)
        claims = parse_json_object(jws.payload)
        check_claims(claims, SOURCE, NOW)
        verify_signature(alg, KEY, jws.signing_input, jws.signature)
    except GatewayError as e:     # a clear refusal with a stable code: what we want
        if e.status >= 500 or not e.code:
            raise AssertionError(f"5xx-class or code-less refusal: {e!r}") from e


def main() -> None:
    # the editable install's import hook hides gateway from instrument_imports: instrument
    # every loaded function instead (once, before fuzzing)
    atheris.instrument_all()
    atheris.Setup(sys.argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
