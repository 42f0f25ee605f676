"""One session as stored (sealed): the tokens, who it is, and its clocks. Never logged."""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, replace


MAX_PLAIN = 256 * 1024


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
        # compressed: base64url tokens use 6 bits of 8, so this wins back what sealing's base64
        # costs (a Cognito-sized session stays under 4 KB in the store)
        return zlib.compress(json.dumps(asdict(self), separators=(",", ":")).encode(), 6)

    @staticmethod
    def loads(data: bytes) -> "Record | None":
        try:
            d = zlib.decompressobj()
            plain = d.decompress(data, MAX_PLAIN)
            if d.unconsumed_tail:
                return None
            return Record(**json.loads(plain))
        except (ValueError, TypeError, zlib.error):
            return None

    def touched(self, now: float) -> "Record":
        return replace(self, last_seen=now)
