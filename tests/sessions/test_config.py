"""The `sessions:` section and `routes[].credentials`: every key read, errors with key paths."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError

KEY = "k" * 32
CLIENT = "6jk8ltokc7ac9es6jrtg9q572f"


def _cfg(**sessions: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "identity_source": "pool",
        "provider": {"cognito_domain": "https://app.auth.eu-west-1.amazoncognito.com",
                     "client_id": CLIENT},
        "public_url": "https://app.example.com", "encryption_keys": [KEY]}
    s.update(sessions)
    return {"version": 1,
            "identity_sources": [{"id": "pool", "cognito": {"region": "eu-west-1",
                                                            "user_pool_id": "eu-west-1_Abc"},
                                  "client_ids": [CLIENT]}],
            "upstreams": {"app": {"url": "http://127.0.0.1:9"}},
            "routes": [{"id": "r", "match": {"path": "/**"}, "upstream": "app",
                        "auth": "authenticated"}],
            "sessions": s}


def test_defaults_and_derived_urls():
    cfg = parse_config(_cfg()).sessions
    assert cfg.store == "memory" and cfg.cookie.name == "__Host-poolgate"
    assert cfg.cookie.same_site == "lax" and cfg.login_redirect == "html"
    assert cfg.idle_timeout_seconds == 28800 and cfg.absolute_timeout_seconds is None
    assert cfg.refresh_before_seconds == 120 and cfg.provider.scopes == ("openid", "email", "profile")
    assert cfg.redirect_uri == "https://app.example.com/_poolgate/callback"
    assert cfg.logout_uri == "https://app.example.com/"
    assert cfg.encryption_keys == (KEY.encode(),)
    assert KEY not in repr(cfg)
    assert parse_config(_cfg()).routes[0].credentials is None


def test_no_section_means_off():
    d = _cfg()
    del d["sessions"]
    assert parse_config(d).sessions is None


def test_loopback_http_public_url_is_accepted():
    assert parse_config(_cfg(public_url="http://127.0.0.1:8080")).sessions.public_url == \
        "http://127.0.0.1:8080"


@pytest.mark.parametrize("over, path", [
    ({"public_url": "http://app.example.com"}, "sessions.public_url"),
    ({"public_url": "https://app.example.com/app"}, "sessions.public_url"),
    ({"encryption_keys": ["short"]}, "sessions.encryption_keys[0]"),
    ({"encryption_keys": [KEY, "x" * 10]}, "sessions.encryption_keys[1]"),
    ({"encryption_keys": []}, "sessions.encryption_keys"),
    ({"encryption_keys": [KEY, KEY]}, "sessions.encryption_keys"),
    ({"cookie": {"name": "__host-poolgate"}}, "sessions.cookie.name"),
    ({"cookie": {"name": "__Foo-x"}}, "sessions.cookie.name"),
    ({"cookie": {"name": "a b"}}, "sessions.cookie.name"),
    ({"cookie": {"name": "__Host-"}}, "sessions.cookie.name"),
    ({"cookie": {"same_site": "none"}}, "sessions.cookie.same_site"),
    ({"store": "disk"}, "sessions.store"),
    ({"store": "redis"}, "sessions.store"),
    ({"login_redirect": "always"}, "sessions.login_redirect"),
    ({"idle_timeout_seconds": 1}, "sessions.idle_timeout_seconds"),
    ({"absolute_timeout_seconds": 1}, "sessions.absolute_timeout_seconds"),
    ({"refresh_before_seconds": -1}, "sessions.refresh_before_seconds"),
    ({"after_logout_url": "//evil.example"}, "sessions.after_logout_url"),
    ({"after_logout_url": "http://evil.example/"}, "sessions.after_logout_url"),
    ({"identity_source": "nope"}, "sessions.identity_source"),
    ({"bogus": 1}, "sessions.bogus"),
    ({"provider": {"client_id": CLIENT}}, "sessions.provider"),
    ({"provider": {"client_id": CLIENT, "cognito_domain": "http://x.example"}},
     "sessions.provider.cognito_domain"),
    ({"provider": {"client_id": CLIENT, "discovery_url": "https://idp.example/.well-known/x",
                   "cognito_domain": "https://a.example"}}, "sessions.provider"),
    ({"provider": {"client_id": "other", "cognito_domain": "https://a.example"}},
     "sessions.provider.client_id"),
    ({"provider": {"client_id": CLIENT, "cognito_domain": "https://a.example",
                   "scopes": ["email"]}}, "sessions.provider.scopes"),
])
def test_errors_name_the_key(over, path):
    with pytest.raises(ConfigError) as e:
        parse_config(_cfg(**over))
    assert e.value.path == path


def test_every_key_is_read():
    cfg = parse_config(_cfg(
        store="memory", cookie={"name": "__Secure-sid", "same_site": "strict"},
        idle_timeout_seconds=600, absolute_timeout_seconds=3600, refresh_before_seconds=5,
        login_redirect="never", after_logout_url="https://www.example.com/bye",
        provider={"discovery_url": "https://idp.example/.well-known/openid-configuration",
                  "client_id": CLIENT, "client_secret": "s3cret", "scopes": ["openid"]},
        encryption_keys=["n" * 40, KEY])).sessions
    assert cfg.cookie == type(cfg.cookie)("__Secure-sid", "strict")
    assert (cfg.idle_timeout_seconds, cfg.absolute_timeout_seconds,
            cfg.refresh_before_seconds) == (600, 3600, 5)
    assert cfg.login_redirect == "never" and cfg.logout_uri == "https://www.example.com/bye"
    assert cfg.provider.client_secret == "s3cret" and "s3cret" not in repr(cfg)
    assert cfg.provider.discovery_url.startswith("https://idp.example/")
    assert cfg.encryption_keys[0] == b"n" * 40 and cfg.prelogin_cookie == "__Secure-sid-login"


def test_route_credentials():
    d = _cfg()
    d["routes"][0]["credentials"] = ["session"]
    assert parse_config(d).routes[0].credentials == ("session",)
    bad = copy.deepcopy(d)
    bad["routes"][0]["credentials"] = ["cookie"]
    with pytest.raises(ConfigError) as e:
        parse_config(bad)
    assert e.value.path == "routes[0].credentials[0]"
    off = copy.deepcopy(d)
    del off["sessions"]
    with pytest.raises(ConfigError) as e:
        parse_config(off)
    assert e.value.path == "routes[0].credentials"
