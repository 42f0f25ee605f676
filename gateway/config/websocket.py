"""The `websocket:` section: message size and per-direction buffering limits of relayed sockets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:              # schema imports this module, and reader imports schema
    from .reader import _Node

__all__ = ["WebSocketConfig", "parse_websocket"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class WebSocketConfig:
    max_message_bytes: int = MIB       # a larger message closes the socket with 1009
    max_buffered_bytes: int = MIB      # per direction; the reader stops until the writer drains


def parse_websocket(n: _Node) -> WebSocketConfig:
    cfg = WebSocketConfig(
        max_message_bytes=n.int("max_message_bytes", MIB, lo=1024, hi=256 * MIB),
        max_buffered_bytes=n.int("max_buffered_bytes", MIB, lo=1024, hi=256 * MIB))
    n.done()
    return cfg
