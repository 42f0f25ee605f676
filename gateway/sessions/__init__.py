"""Browser sessions (SESSIONS.md): sign-in with code + PKCE, tokens kept server-side and
sealed, single-flight refresh, sign-out everywhere. The engine builds one ``SessionGate``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .gate import LoginRequired, SessionGate, carry_over, dispatch, reserved
from .manager import SessionManager

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["LoginRequired", "SessionGate", "SessionManager", "build_sessions", "carry_over",
           "dispatch", "reserved"]


def build_sessions(engine: "Engine", **kw: Any) -> SessionGate | None:
    """The gate for ``engine.config.sessions`` (not started), or None when sessions are off."""
    if engine.config.sessions is None:
        return None
    return SessionGate(SessionManager(engine, **kw))
