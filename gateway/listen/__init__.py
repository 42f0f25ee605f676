"""The listeners' HTTP/1.1 front end: a bounded protocol for uvicorn and a ceiling on connections.

``GatewayHttpProtocol`` with the default limits also serves the middleware under plain uvicorn:
``uvicorn app:app --http gateway.listen:GatewayHttpProtocol``.
"""

from __future__ import annotations

from typing import Any

from .accept import LimitedServer
from .head import HeadError, check_host, check_target
from .protocol import GatewayHttpProtocol, Limits


def protocol_class(limits: Limits) -> type[GatewayHttpProtocol]:
    """A protocol class bound to one listener's limits (uvicorn builds it per connection)."""
    return type("BoundGatewayHttpProtocol", (GatewayHttpProtocol,), {"limits": limits})


def limits_from(config: Any, max_body_bytes: int | None = None) -> Limits:
    """``Limits`` from a ``listen.limits``-shaped config object (``ListenLimits``)."""
    return Limits(max_request_line_bytes=config.max_request_line_bytes,
                  max_header_bytes=config.max_header_bytes, max_headers=config.max_headers,
                  header_timeout_seconds=config.header_timeout_seconds,
                  keepalive_timeout_seconds=config.keepalive_timeout_seconds,
                  body_timeout_seconds=config.body_timeout_seconds,
                  buffer_body_bytes=config.buffer_body_bytes,
                  min_body_rate_bytes_per_second=config.min_body_rate_bytes_per_second,
                  max_connections=config.max_connections, max_body_bytes=max_body_bytes)


__all__ = ["GatewayHttpProtocol", "HeadError", "LimitedServer", "Limits", "check_host",
           "check_target", "limits_from", "protocol_class"]
