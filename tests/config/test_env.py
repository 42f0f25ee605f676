"""``${NAME}`` semantics (DESIGN "Contract details"): unset or empty in an optional key = absent
+ one warning naming NAME; in a required key = ConfigError naming the key and NAME;
``${NAME:-default}`` supplies a default."""

from __future__ import annotations

import copy
import logging

import pytest
import yaml

from gateway.config import load_config, loads_config
from gateway.errors import ConfigError

BASE = {
    "version": 1,
    "admin": {"token": "${POOLGATE_ADMIN_TOKEN}"},
    "identity_sources": [{"id": "pool", "cognito": {"region": "eu-west-1",
                                                     "user_pool_id": "eu-west-1_AbCdEf"},
                          "client_ids": ["abc"]}],
    "upstreams": {"web": {"url": "${WEB_URL}"}},
    "routes": [{"id": "r", "match": {"path": "/**"}, "upstream": "web", "auth": "authenticated"}],
    "roles": {"member": {"statements": []}},
    "default_role": "member",
    "revocation": {"store": "redis", "redis": {"url": "${POOLGATE_REDIS_URL}"}},
}
WEB = {"WEB_URL": "http://127.0.0.1:9001"}


def _load(env: dict[str, str], doc: dict | None = None):
    return loads_config(yaml.safe_dump(doc or BASE), env=env)


@pytest.mark.parametrize("env", [WEB, {**WEB, "POOLGATE_ADMIN_TOKEN": "",
                                       "POOLGATE_REDIS_URL": ""}])
def test_unset_or_empty_optional_key_is_absent_with_one_warning_per_name(env):
    cfg = _load(env)
    assert cfg.admin.token is None                                   # API disabled
    assert cfg.revocation.redis.url == "redis://127.0.0.1:6379/0"    # the documented default
    assert len(cfg.warnings) == 2
    admin, = [w for w in cfg.warnings if "POOLGATE_ADMIN_TOKEN" in w]
    redis, = [w for w in cfg.warnings if "POOLGATE_REDIS_URL" in w]
    assert "admin.token" in admin and "revocation.redis.url" in redis


def test_set_values_are_used_without_warnings():
    cfg = _load({**WEB, "POOLGATE_ADMIN_TOKEN": "t" * 20, "POOLGATE_REDIS_URL": "redis://h:1/2"})
    assert cfg.admin.token == "t" * 20 and cfg.revocation.redis.url == "redis://h:1/2"
    assert cfg.warnings == ()


@pytest.mark.parametrize("env,word", [({}, "is not set"), ({"WEB_URL": ""}, "is empty")])
def test_unset_in_a_required_key_names_the_key_and_the_variable(env, word):
    with pytest.raises(ConfigError) as e:
        _load(env)
    assert str(e.value).startswith(f"upstreams.web.url: ${{WEB_URL}} {word}")


def test_unset_in_a_list_item_is_required():
    doc = copy.deepcopy(BASE)
    doc["identity_sources"][0]["client_ids"] = ["${CLIENT_ID}"]
    with pytest.raises(ConfigError, match=r"^identity_sources\[0\]\.client_ids\[0\]: "
                                          r"\$\{CLIENT_ID\} is not set"):
        _load(WEB, doc)


def test_partial_scalar_with_unset_name_counts_as_unset():
    doc = copy.deepcopy(BASE)
    doc["revocation"]["redis"]["url"] = "redis://:${REDIS_PASSWORD}@redis:6379/0"
    cfg = _load(WEB, doc)
    assert cfg.revocation.redis.url == "redis://127.0.0.1:6379/0"
    assert any("REDIS_PASSWORD" in w for w in cfg.warnings)


def test_default_syntax():
    doc = copy.deepcopy(BASE)
    doc["upstreams"]["web"]["url"] = "${WEB_URL:-http://127.0.0.1:7000}"
    doc["listen"] = {"port": "${PORT:-8123}", "host": "${HOST:-}127.0.0.1"}
    cfg = _load({}, doc)
    assert cfg.upstreams["web"].url == "http://127.0.0.1:7000"
    assert cfg.listen.port == 8123 and cfg.listen.host == "127.0.0.1"
    assert not any("WEB_URL" in w or "PORT" in w for w in cfg.warnings)
    cfg = _load({"WEB_URL": "http://127.0.0.1:7001", "PORT": "9"}, doc)
    assert cfg.upstreams["web"].url == "http://127.0.0.1:7001" and cfg.listen.port == 9
    doc["upstreams"]["web"]["url"] = "${WEB_URL:-}"        # an empty default: still required
    with pytest.raises(ConfigError, match="upstreams.web.url: must not be empty"):
        _load({}, doc)


def test_one_name_in_several_optional_keys_is_one_warning():
    doc = copy.deepcopy(BASE)
    doc["listen"] = {"host": "${BIND}"}
    doc["admin"]["host"] = "${BIND}"
    cfg = _load({**WEB, "POOLGATE_ADMIN_TOKEN": "t" * 20, "POOLGATE_REDIS_URL": "redis://h"}, doc)
    assert len(cfg.warnings) == 1
    assert "BIND" in cfg.warnings[0] and "listen.host" in cfg.warnings[0] \
        and "admin.host" in cfg.warnings[0]


def test_strict_env_refuses_any_unset_name():
    with pytest.raises(ConfigError, match="POOLGATE_ADMIN_TOKEN"):
        loads_config(yaml.safe_dump(BASE), env=WEB, strict_env=True)


def test_policy_variables_and_lowercase_names_stay_literal():
    doc = copy.deepcopy(BASE)
    doc["roles"]["member"]["statements"] = [
        {"effect": "allow", "action": "http:GET", "resource": "web:/t/${jwt:sub}/${path:x}/**"}]
    cfg = _load(WEB, doc)
    assert cfg.roles["member"].statements[0].resources == ("web:/t/${jwt:sub}/${path:x}/**",)


def test_load_config_logs_each_warning_once(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("POOLGATE_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("POOLGATE_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("WEB_URL", "http://127.0.0.1:9001")
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(BASE))
    logging.getLogger("poolgate.config").propagate = True
    with caplog.at_level(logging.WARNING, logger="poolgate.config"):
        load_config(f)
    lines = [r.getMessage() for r in caplog.records if r.name == "poolgate.config"]
    assert len(lines) == 1 and "POOLGATE_ADMIN_TOKEN" in lines[0]
