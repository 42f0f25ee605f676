"""Masking URLs with credentials: everything between :// and the LAST @ goes."""

from __future__ import annotations

import pytest

from gateway.config import RedisConfig
from gateway.config.reader import quote_userinfo
from gateway.redact import mask_url


@pytest.mark.parametrize("url,masked", [
    ("redis://:p@ss/w0rd@x@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
    ("rediss://user:a/b:c@redis.svc:6380/1", "rediss://***@redis.svc:6380/1"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:pw@h", "redis://***@h"),
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(quote_userinfo(url)) == masked


def test_quote_userinfo_keeps_the_password_whole() -> None:
    from urllib.parse import unquote, urlsplit
    url = quote_userinfo("redis://us@er:p@ss/w0rd?#x@127.0.0.1:6379/0")
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port == 6379
    assert unquote(parts.password or "") == "p@ss/w0rd?#x" and unquote(parts.username or "") == "us@er"
    assert quote_userinfo("redis://:already%2Fencoded@h/0") == "redis://:already%2Fencoded@h/0"


def test_redis_config_repr_masks_the_whole_userinfo() -> None:
    cfg = RedisConfig(url="redis://:p@ss/w0rd@x@127.0.0.1:6379/0")
    text = repr(cfg)
    for part in ("p@ss", "ss/w0rd", "w0rd", "@x@"):
        assert part not in text
    assert "127.0.0.1:6379" in text
