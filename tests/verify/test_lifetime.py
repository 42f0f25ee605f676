"""identity_sources[].max_token_lifetime_seconds: a token living longer than the source allows
(exp - iat, or exp - now without iat, above lifetime + skew) is 401 bad_exp (LIMITS.md)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, loads_config
from gateway.errors import InvalidToken
from gateway.verify.cognito import check_claims

from .helpers import NOW, access_claims, build, cognito_source, make_token

SKEW = 60
DAY = 86400


@pytest.mark.parametrize("life, claims, code", [
    (DAY, {"iat": NOW, "exp": NOW + DAY + SKEW}, None),             # exactly at the bound
    (DAY, {"iat": NOW, "exp": NOW + DAY + SKEW + 1}, "bad_exp"),
    (DAY, {"iat": NOW - 3600, "exp": NOW + 3600}, None),
    (DAY, {"iat": NOW, "exp": 1e11}, "bad_exp"),                     # the issue: exp up to 1e11
    (DAY, {"iat": NOW - DAY, "exp": NOW + SKEW + 1}, "bad_exp"),     # old iat: exp - iat counts
    (DAY, {"iat": ..., "exp": NOW + DAY + SKEW}, None),              # no iat: exp - now
    (DAY, {"iat": ..., "exp": NOW + DAY + SKEW + 1}, "bad_exp"),
    (3600, {"iat": NOW, "exp": NOW + 3600 + SKEW}, None),            # per-source value
    (3600, {"iat": NOW, "exp": NOW + 3600 + SKEW + 1}, "bad_exp"),
    (3600, {"iat": ..., "exp": NOW + 7200}, "bad_exp"),
    (DAY, {"iat": NOW + SKEW, "exp": NOW + SKEW + DAY + SKEW}, None),   # iat ahead within skew
])
def test_lifetime_table(life: int, claims: dict[str, Any], code: str | None) -> None:
    source = cognito_source(max_token_lifetime_seconds=life, clock_skew_seconds=SKEW)
    c = access_claims(**claims)
    if code is None:
        check_claims(c, source, NOW)
        return
    with pytest.raises(InvalidToken) as info:
        check_claims(c, source, NOW)
    assert info.value.code == code and info.value.status == 401


async def test_verifier_refuses_a_far_future_token_and_caches_nothing() -> None:
    verifier, *_ = build([cognito_source()])
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(make_token(access_claims(iat=NOW, exp=NOW + 10 * 365 * DAY)))
    assert info.value.code == "bad_exp"
    ok = await verifier.verify(make_token(access_claims(iat=NOW, exp=NOW + DAY)))
    assert ok.claims["exp"] == NOW + DAY


async def test_for_revocation_a_pending_token_is_returned_but_not_cached() -> None:
    """No iat, exp too far ahead: refused now, verifies later; revocable now."""
    verifier, _, _, wall, _ = build([cognito_source()])
    token = make_token(access_claims(iat=..., exp=NOW + 3 * DAY))
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(token)
    assert info.value.code == "bad_exp"
    assert (await verifier.verify_for_revocation(token)).claims["exp"] == NOW + 3 * DAY
    with pytest.raises(InvalidToken):
        await verifier.verify(token)                 # not served from the cache
    wall.advance(2 * DAY)                            # now within lifetime + skew of exp
    assert (await verifier.verify(token)).claims["exp"] == NOW + 3 * DAY
    # a too-long exp - iat is permanent: refused for revocation too ("already rejected")
    with pytest.raises(InvalidToken) as info:
        await verifier.verify_for_revocation(make_token(access_claims(iat=NOW, exp=NOW + 9 * DAY)))
    assert info.value.code == "bad_exp"


CFG = """
version: 1
identity_sources:
  - id: s
    issuer: https://idp.example/
    jwks_uri: https://idp.example/jwks
    audiences: any
{extra}
"""


def test_config_key_default_and_bounds() -> None:
    assert loads_config(CFG.format(extra="")).identity_sources[0].max_token_lifetime_seconds == DAY
    cfg = loads_config(CFG.format(extra="    max_token_lifetime_seconds: 3600"))
    assert cfg.identity_sources[0].max_token_lifetime_seconds == 3600
    for bad in ("0", "true", '"3600"', str(11 * 365 * DAY)):
        with pytest.raises(ConfigError) as info:
            loads_config(CFG.format(extra=f"    max_token_lifetime_seconds: {bad}"))
        assert "identity_sources[0].max_token_lifetime_seconds" in str(info.value)
