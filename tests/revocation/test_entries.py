"""Entry TTL math, sub matching, and the Redis key/message format (pure, table-driven)."""

from __future__ import annotations

import math

import pytest

from gateway.revocation import Entry, EntryError, make_entry, sub_revokes, token_keys
from gateway.revocation.entries import (parse_message, parse_not_before, redis_key,
                                        redis_value)

from .conftest import make_token

NOW = 1_764_150_000.0
LIFE = 86400


@pytest.mark.parametrize("kind, exp, not_before, skew, ttl", [
    ("jti", NOW + 3600, None, 60, 3660),           # exp + skew - now
    ("jti", None, None, 60, LIFE + 60),            # no exp: now + max lifetime
    ("origin_jti", NOW + 10.2, None, 0, 11),       # rounded up, never short
    ("jti", NOW - 30, None, 60, 30),               # expired but still inside the skew
    ("sub", None, None, 60, LIFE + 60),            # not_before defaults to now
    ("sub", None, NOW - 3600, 60, LIFE + 60),      # a past not_before: still now + lifetime
    #   (the entry revokes tokens without iat, which may verify until now + lifetime)
    ("sub", NOW + 100, NOW - 3600, 60, 160),       # an explicit exp wins
    ("sub", None, NOW + 30, 60, LIFE + 90),        # a little ahead (within skew) is allowed
])
def test_ttl(kind: str, exp: float | None, not_before: float | None, skew: float,
             ttl: int) -> None:
    e = make_entry(kind, "v", exp=exp, not_before=not_before, now=NOW,
                   max_token_lifetime=LIFE, skew=skew)
    assert e.ttl == ttl
    assert e.kind == kind and e.value == "v"
    if kind == "sub":
        assert e.not_before == (not_before if not_before is not None else NOW)


@pytest.mark.parametrize("kind, value, kw, reason", [
    ("jti", "v", {"exp": NOW - 61}, "already_expired"),       # past exp + skew
    ("jti", "v", {"exp": NOW - 60}, "already_expired"),       # exactly 0 s left
    ("sub", "v", {"not_before": NOW + 3600}, "bad_not_before"),   # would lock the user out
    ("jti", "v", {"not_before": NOW}, "bad_not_before"),      # not_before is for sub only
    ("jti", "v", {"exp": True}, "bad_exp"),                   # a bool is not a number
    ("jti", "v", {"exp": math.nan}, "bad_exp"),
    ("jti", "v", {"exp": math.inf}, "bad_exp"),
    ("jti", "v", {"exp": NOW + 11 * 365 * 86400}, "bad_exp"),
    ("jti", "", {}, "bad_value"),
    ("jti", "a\nb", {}, "bad_value"),
    ("jti", "x" * 513, {}, "bad_value"),
    ("jti", 5, {}, "bad_value"),
    ("kid", "v", {}, "bad_kind"),
])
def test_rejected(kind: str, value: object, kw: dict[str, float], reason: str) -> None:
    with pytest.raises(EntryError) as ei:
        make_entry(kind, value, now=NOW, max_token_lifetime=LIFE, skew=60, **kw)  # type: ignore[arg-type]
    assert ei.value.reason == reason


@pytest.mark.parametrize("not_before, iat, revoked", [
    (NOW, NOW - 1, True),        # issued before the sign-out
    (NOW, NOW, False),           # iat == not_before: issued at/after, stays valid
    (NOW, NOW + 1, False),
    (NOW, None, True),           # no iat: fail closed
    (None, NOW, True),           # unparseable sub value: everything
    (math.inf, NOW, True),
])
def test_sub_boundary(not_before: float | None, iat: float | None, revoked: bool) -> None:
    assert sub_revokes(not_before, make_token(iat=iat)) is revoked


def test_token_keys_order_and_absence() -> None:
    t = make_token(jti="j", origin_jti="o", sub="s")
    assert token_keys(t) == [("jti", "j"), ("origin_jti", "o"), ("sub", "s")]
    assert token_keys(make_token(sub=None)) == []


def test_key_format() -> None:
    assert redis_key("poolgate:", "jti", "a:b") == "poolgate:jti:a:b"
    assert redis_key("p:", "origin_jti", "o") == "p:ojti:o"
    assert redis_key("p:", "sub", "s") == "p:sub:s"
    assert redis_value(Entry("sub", "s", None, 1764150000.0, 10)) == "1764150000"
    assert redis_value(Entry("sub", "s", None, 1764150000.5, 10)) == "1764150000.5"
    assert redis_value(Entry("jti", "j", None, None, 10)) == "1"


@pytest.mark.parametrize("data, expected", [
    ("jti:abc", ("jti", "abc")),
    ("ojti:o:1", ("origin_jti", "o:1")),
    ("sub:u", ("sub", "u")),
    ("p:sub:u", ("sub", "u")),          # the whole key is understood too
    ("origin_jti:x", None),
    ("jti:", None),
    ("garbage", None),
])
def test_parse_message(data: str, expected: tuple[str, str] | None) -> None:
    assert parse_message(data, "p:") == expected


@pytest.mark.parametrize("raw, expected", [
    ("1764150000", 1764150000.0), ("1764150000.25", 1764150000.25),
    ("yesterday", math.inf), ("nan", math.inf), ("", math.inf),
])
def test_parse_not_before(raw: str, expected: float) -> None:
    assert parse_not_before(raw) == expected


def test_to_json() -> None:
    e = make_entry("sub", "u", not_before=NOW, now=NOW, max_token_lifetime=LIFE, skew=60)
    assert e.to_json() == {"kind": "sub", "sub": "u", "not_before": int(NOW), "ttl": LIFE + 60}
    j = make_entry("jti", "j", exp=NOW + 1.5, now=NOW, max_token_lifetime=LIFE, skew=0)
    assert j.to_json() == {"kind": "jti", "jti": "j", "exp": NOW + 1.5, "ttl": 2}
