"""Config: one validation pass, every error names its key path; strict types; env interpolation."""

from __future__ import annotations

import pytest
import yaml

from gateway.config import loads_config, parse_config
from gateway.errors import ConfigError

BASE = {
    "version": 1,
    "identity_sources": [{"id": "pool", "cognito": {"region": "eu-west-1",
                                                     "user_pool_id": "eu-west-1_AbCdEf"},
                          "client_ids": ["abc"]}],
    "upstreams": {"app": {"url": "http://127.0.0.1:9001"}},
    "routes": [{"id": "r", "match": {"path": "/**"}, "upstream": "app", "auth": "authenticated"}],
    "roles": {"member": {"statements": []}},
    "default_role": "member",
}


def _with(path: str, value):
    import copy
    cfg = copy.deepcopy(BASE)
    node = cfg
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
    if value is KeyError:
        del node[parts[-1]]
    else:
        node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value
    return cfg


def test_base_is_valid():
    cfg = parse_config(BASE)
    src = cfg.identity_sources[0]
    assert src.issuers == ("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf",
                           "https://issuer-cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf")
    assert src.jwks_uri.endswith("/eu-west-1_AbCdEf/.well-known/jwks.json")
    assert src.token_use == ("access",) and src.algorithms == ("RS256",)


@pytest.mark.parametrize("path,value,where", [
    ("version", 2, "version"),
    ("version", KeyError, "version"),
    ("bogus", 1, "bogus"),
    ("routes.0.auth", "maybe", "routes[0].auth"),
    ("routes.0.upstream", "nope", "routes[0].upstream"),
    ("routes.0.match.path", "no-slash", "routes[0].match.path"),
    ("routes.0.match.methods", "GET", "routes[0].match.methods"),
    ("routes.0.forward_user_token", "yes", "routes[0].forward_user_token"),
    ("identity_sources.0.client_ids", [], "identity_sources[0].client_ids"),
    ("identity_sources.0.client_ids", "some", "identity_sources[0].client_ids"),
    ("identity_sources.0.algorithms", ["HS256"], "identity_sources[0].algorithms[0]"),
    ("identity_sources.0.algorithms", ["none"], "identity_sources[0].algorithms[0]"),
    ("identity_sources.0.clock_skew_seconds", True, "identity_sources[0].clock_skew_seconds"),
    ("identity_sources.0.jwks_uri", "http://idp.example/jwks", "identity_sources[0].jwks_uri"),
    ("identity_sources.0.cognito.user_pool_id", "bad", "identity_sources[0].cognito.user_pool_id"),
    ("identity_sources.0.token_use", ["refresh"], "identity_sources[0].token_use[0]"),
    ("default_role", "ghost", "default_role"),
    ("admin", {"token": "short"}, "admin.token"),
    ("downstream_credential", {"ttl_seconds": 3601}, "downstream_credential.ttl_seconds"),
    ("downstream_credential", {"ttl_seconds": 0}, "downstream_credential.ttl_seconds"),
    ("downstream_credential", {"algorithm": "RS256"}, "downstream_credential.algorithm"),
    ("revocation", {"store": "disk"}, "revocation.store"),
    ("revocation", {"on_error": "maybe"}, "revocation.on_error"),
    ("upstreams.app.url", "http://127.0.0.1:9001/base", "upstreams.app.url"),
    ("listen", {"port": "8080"}, "listen.port"),
    ("mappings", {"nosuch": {"mode": "default"}}, "mappings.nosuch"),
])
def test_errors_name_the_key_path(path, value, where):
    with pytest.raises(ConfigError) as e:
        parse_config(_with(path, value))
    assert e.value.path == where, str(e.value)


def test_generic_oidc_needs_audiences_or_explicit_any():
    cfg = _with("identity_sources", [{"id": "okta", "issuer": "https://idp.example/",
                                      "jwks_uri": "https://idp.example/keys"}])
    with pytest.raises(ConfigError) as e:
        parse_config(cfg)
    assert e.value.path == "identity_sources[0].audiences"
    cfg["identity_sources"][0]["audiences"] = "any"
    assert parse_config(cfg).identity_sources[0].audiences is None
    cfg["identity_sources"][0]["audiences"] = ["api"]
    src = parse_config(cfg).identity_sources[0]
    assert src.audiences == ("api",) and src.issuers == ("https://idp.example/",)


def test_client_ids_any_is_the_explicit_opt_out():
    assert parse_config(_with("identity_sources.0.client_ids", "any")).identity_sources[0].client_ids is None


def test_env_interpolation_and_typed_scalars():
    text = yaml.safe_dump(_with("listen", {"port": "${PORT}", "host": "${HOST}"}))
    text = text.replace("abc", "${CLIENT}-x")
    cfg = loads_config(text, env={"PORT": "8123", "HOST": "127.0.0.1", "CLIENT": "c1"})
    assert cfg.listen.port == 8123 and cfg.listen.host == "127.0.0.1"
    assert cfg.identity_sources[0].client_ids == ("c1-x",)
    with pytest.raises(ConfigError, match="PORT"):
        loads_config(text, env={"HOST": "h", "CLIENT": "c"}, strict_env=True)
    soft = loads_config(text, env={"HOST": "h", "CLIENT": "c"})
    assert soft.warnings and soft.listen.port == 8080


def test_policy_variables_stay_literal():
    cfg = _with("roles", {"member": {"statements": [
        {"effect": "allow", "action": "http:GET", "resource": "app:/t/${jwt:custom:tenant}/**"}]}})
    text = yaml.safe_dump(cfg)
    out = loads_config(text, env={})
    assert out.roles["member"].statements[0].resources == ("app:/t/${jwt:custom:tenant}/**",)


def test_duplicate_yaml_keys_are_refused():
    with pytest.raises(ConfigError, match="duplicate key"):
        loads_config("version: 1\nversion: 1\n")


def test_secrets_are_masked_in_repr():
    cfg = parse_config(_with("admin", {"token": "s3cr3t-s3cr3t-s3cr3t"}))
    assert "s3cr3t" not in repr(cfg)
