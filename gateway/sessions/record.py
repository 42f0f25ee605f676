"""One session as stored (sealed): the tokens, who it is, and its clocks. Never logged."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Record:
    sub: str
    role: str | None
    access: str                    # the current access token
    refresh: str | None            # the refresh token (replaced atomically on rotation)
    access_exp: float
    created: float
    last_seen: float
    abs_exp: float                 # absolute end (absolute_timeout_seconds, else far away)
    jti: str | None = None
    origin_jti: str | None = None

    def __repr__(self) -> str:      # tokens stay out of every repr, traceback and log line
        return f"Record(sub={self.sub!r}, role={self.role!r}, access_exp={self.access_exp})"

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @staticmethod
    def loads(data: bytes) -> "Record | None":
        try:
            return Record(**json.loads(data))
        except (ValueError, TypeError):
            return None

    def touched(self, now: float) -> "Record":
        return replace(self, last_seen=now)
