"""The ``decisions:`` section (FORWARD_AUTH.md): the decision service's listener and peers."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import ConfigError
from .reader import _Node

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class DecisionsConfig:
    host: str = "127.0.0.1"
    port: int = 9902                      # 0 = pick a free port; `serve` prints it
    trusted_proxies: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.1/32"),)
    grpc_enabled: bool = False            # Envoy ext_authz v3 gRPC
    grpc_port: int = 9903


def parse_decisions(root: _Node, *, admin_port: int, proxy_port: int) -> DecisionsConfig | None:
    """``decisions:`` absent (or null) means no decisions listener."""
    if root.raw("decisions", None) is None:
        return None
    n = root.node("decisions")
    ln = n.node("listen")
    host, port = ln.str("host", "127.0.0.1"), ln.int("port", 9902, lo=0, hi=65535)
    ln.done()
    proxies = []
    for i, p in enumerate(n.strs("trusted_proxies", ("127.0.0.1/32",))):
        try:
            proxies.append(ipaddress.ip_network(p, strict=False))
        except ValueError:
            raise ConfigError(f"{n.sub('trusted_proxies')}[{i}]",
                              f"{p!r} is not an IP address or CIDR network")
    gn = n.node("grpc")
    grpc_enabled, grpc_port = gn.bool("enabled", False), gn.int("port", 9903, lo=0, hi=65535)
    gn.done()
    n.done()
    taken = {admin_port: "admin.port", proxy_port: "listen.port"}
    for key, value in (("listen.port", port), ("grpc.port", grpc_port if grpc_enabled else 0)):
        if value and value in taken:
            raise ConfigError(f"{n.path}.{key}", f"port {value} is already {taken[value]}; "
                                                 "the decisions listener needs its own port")
    if grpc_enabled and grpc_port and grpc_port == port:
        raise ConfigError(f"{n.path}.grpc.port", "must differ from decisions.listen.port")
    return DecisionsConfig(host=host, port=port, trusted_proxies=tuple(proxies),
                           grpc_enabled=grpc_enabled, grpc_port=grpc_port)
