"""Claims policy after the signature: strict types, times, issuer, Cognito token_use and client
id, generic OIDC audience. Pure functions of (claims, source, now)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..config import IdentitySource
from ..errors import InvalidToken
from .token import finite_number

__all__ = ["check_claims", "check_types", "MAX_TIME"]

MAX_TIME = 1e11          # ~ year 5138: anything larger is garbage, not a time
_STRING_CLAIMS = ("iss", "sub", "jti", "origin_jti", "token_use", "client_id", "scope",
                  "username", "cognito:username", "azp", "event_id")
_TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")
_STRING_LIST_CLAIMS = ("cognito:groups", "cognito:roles")


def _bad(code: str, description: str) -> InvalidToken:
    return InvalidToken(description, code=code)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _time_ok(v: Any) -> bool:
    return finite_number(v) and 0 <= v <= MAX_TIME


def _aud_ok(v: Any) -> bool:
    return isinstance(v, str) or _str_list(v)


_KIND_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{n: (_time_ok, "a number of seconds") for n in _TIME_CLAIMS},
    **{n: ((lambda v: isinstance(v, str)), "a string") for n in _STRING_CLAIMS},
    **{n: (_str_list, "a list of strings") for n in _STRING_LIST_CLAIMS},
    "aud": (_aud_ok, "a string or a list of strings"),
}


def check_types(claims: Mapping[str, Any]) -> None:
    """Strict types for the claims later stages rely on (a bool is not a number)."""
    checks = _KIND_CHECKS
    for name, value in claims.items():      # one pass over the (few) claims present
        check = checks.get(name)
        if check is not None and not check[0](value):
            raise _bad("bad_claim_type", f"claim {name} must be {check[1]}")


def check_times(claims: Mapping[str, Any], now: float, skew: float) -> None:
    """``exp`` required; ``nbf``/``iat`` not in the future (types already checked)."""
    exp = claims.get("exp")
    if exp is None:
        raise _bad("missing_claim", "token has no exp")
    if now > exp + skew:
        raise _bad("token_expired", "token has expired")
    nbf = claims.get("nbf")
    if nbf is not None and nbf > now + skew:
        raise _bad("token_not_yet_valid", "token is not valid yet")
    iat = claims.get("iat")
    if iat is not None and iat > now + skew:
        raise _bad("iat_in_future", "token was issued in the future")


def _check_cognito(claims: Mapping[str, Any], source: IdentitySource) -> None:
    if "sub" not in claims:
        raise _bad("missing_claim", "token has no sub")
    use = claims.get("token_use")
    if not isinstance(use, str) or use not in source.token_use:
        raise _bad("bad_token_use", "token_use is not accepted here")
    if source.client_ids is not None:
        client = claims.get("client_id") if use == "access" else claims.get("aud")
        if not isinstance(client, str) or client not in source.client_ids:
            raise _bad("bad_client_id", "token was issued to another client")
    if source.audiences:
        _check_audience(claims, source.audiences)


def _check_audience(claims: Mapping[str, Any], audiences: tuple[str, ...]) -> None:
    aud = claims.get("aud")
    values = (aud,) if isinstance(aud, str) else (aud or ())
    if not any(a in audiences for a in values):
        raise _bad("bad_audience", "token audience is not accepted here")


def check_claims(claims: Mapping[str, Any], source: IdentitySource, now: float) -> None:
    """Everything after the signature; the issuer was matched when the source was chosen."""
    check_types(claims)
    check_times(claims, now, source.clock_skew_seconds)
    if claims.get("iss") not in source.issuers:
        raise _bad("bad_issuer", "token issuer is not accepted here")
    if source.cognito:
        _check_cognito(claims, source)
    elif source.audiences is not None:
        _check_audience(claims, source.audiences)
