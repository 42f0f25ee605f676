"""decisions: section: defaults, absent = no listener, ports, key paths in errors."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from gateway.config import parse_config
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


def _cfg(decisions):
    c = copy.deepcopy(BASE)
    if decisions is not KeyError:
        c["decisions"] = decisions
    return parse_config(c)


def test_absent_or_null_means_no_listener():
    assert _cfg(KeyError).decisions is None
    assert _cfg(None).decisions is None


def test_defaults_are_the_contract():
    d = _cfg({}).decisions
    assert (d.host, d.port) == ("127.0.0.1", 9902)
    assert d.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"),)
    assert (d.grpc_enabled, d.grpc_port) == (False, 9903)


def test_values_and_port_zero():
    d = _cfg({"listen": {"host": "0.0.0.0", "port": 0},
              "trusted_proxies": ["10.0.0.0/8", "::1"], "grpc": {"enabled": True, "port": 0}}).decisions
    assert (d.host, d.port, d.grpc_enabled, d.grpc_port) == ("0.0.0.0", 0, True, 0)
    assert ipaddress.ip_network("::1/128") in d.trusted_proxies


@pytest.mark.parametrize("decisions, path", [
    ({"listen": {"port": 9901}}, "decisions.listen.port"),          # the admin port
    ({"listen": {"port": 8080}}, "decisions.listen.port"),          # the proxy port
    ({"grpc": {"enabled": True, "port": 9902}}, "decisions.grpc.port"),
    ({"trusted_proxies": ["not-an-ip"]}, "decisions.trusted_proxies[0]"),
    ({"listen": {"port": 70000}}, "decisions.listen.port"),
    ({"listen": {"prot": 1}}, "decisions.listen.prot"),
    ({"grpc": {"enabled": "yes"}}, "decisions.grpc.enabled"),
    ({"extra": 1}, "decisions.extra"),
])
def test_errors_name_the_key(decisions, path):
    with pytest.raises(ConfigError) as e:
        _cfg(decisions)
    assert e.value.path == path
