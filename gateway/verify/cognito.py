"""Claims policy after the signature: strict types, times, issuer, Cognito token_use and client
id, generic OIDC audience. Pure functions of (claims, source, now)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..config import IdentitySource
from .token import _bad

__all__ = ["check_claims", "check_types", "MAX_TIME"]

MAX_TIME = 1e11          # ~ year 5138: anything larger is garbage, not a time
_STRING_CLAIMS = ("iss", "sub", "jti", "origin_jti", "token_use", "client_id", "scope",
                  "username", "cognito:username", "azp", "event_id")
_TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")
_STRING_LIST_CLAIMS = ("cognito:groups", "cognito:roles")


def _str_list(v: Any) -> bool:
    if type(v) is not list:             # json yields exact types
        return False
    for x in v:
        if type(x) is not str:
            return False
    return True


_NUM, _STR, _STRS, _AUD = 0, 1, 2, 3
_KINDS: dict[str, int] = {**{n: _NUM for n in _TIME_CLAIMS}, **{n: _STR for n in _STRING_CLAIMS},
                          **{n: _STRS for n in _STRING_LIST_CLAIMS}, "aud": _AUD}
_KIND_NAME = ("a number of seconds", "a string", "a list of strings",
              "a string or a list of strings")


def check_types(claims: Mapping[str, Any]) -> None:
    """Strict types for the claims later stages rely on (a bool is not a number).

    One pass over the claims present, exact ``type`` tests (json yields exact types): this
    runs on every uncached verification.
    """
    kinds = _KINDS
    for name, value in claims.items():
        kind = kinds.get(name)
        if kind is None:
            continue
        t = type(value)
        if kind == _STR:
            ok = t is str
        elif kind == _NUM:
            ok = (t is int or (t is float and math.isfinite(value))) and 0 <= value <= MAX_TIME
        elif kind == _STRS:
            ok = _str_list(value)
        else:
            ok = t is str or _str_list(value)
        if not ok:
            raise _bad("bad_claim_type", f"claim {name} must be {_KIND_NAME[kind]}")


def check_times(claims: Mapping[str, Any], now: float, skew: float,
                max_lifetime: float | None = None, *, pending_ok: bool = False) -> None:
    """``exp`` required; ``nbf``/``iat`` not in the future; ``exp - iat`` (or ``exp - now``
    without ``iat``) at most ``max_lifetime`` + skew (types already checked).

    ``pending_ok`` accepts a token that is refused now but may verify later (``nbf``/``iat``
    ahead, or no ``iat`` and ``exp`` too far ahead): the revocation API may revoke it.
    """
    exp = claims.get("exp")
    if exp is None:
        raise _bad("missing_claim", "token has no exp")
    if now > exp + skew:
        raise _bad("token_expired", "token has expired")
    iat = claims.get("iat")
    if max_lifetime is not None and exp - (now if iat is None else iat) > max_lifetime + skew:
        if iat is not None or not pending_ok:
            raise _bad("bad_exp", "token lifetime is longer than this issuer's "
                                  "max_token_lifetime_seconds")
    if pending_ok:
        return
    nbf = claims.get("nbf")
    if nbf is not None and nbf > now + skew:
        raise _bad("token_not_yet_valid", "token is not valid yet")
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
    if type(aud) is str:
        if aud in audiences:
            return
    elif aud:
        for a in aud:
            if a in audiences:
                return
    raise _bad("bad_audience", "token audience is not accepted here")


def check_claims(claims: Mapping[str, Any], source: IdentitySource, now: float, *,
                 pending_ok: bool = False) -> None:
    """Everything after the signature; the issuer was matched when the source was chosen."""
    check_types(claims)
    check_times(claims, now, source.clock_skew_seconds, source.max_token_lifetime_seconds,
                pending_ok=pending_ok)
    if claims.get("iss") not in source.issuers:
        raise _bad("bad_issuer", "token issuer is not accepted here")
    if source.cognito:
        _check_cognito(claims, source)
    elif source.audiences is not None:
        _check_audience(claims, source.audiences)
