"""A recording reverse proxy in front of moto: every AWS request the gateway makes (STS calls
with their parameters, signed S3 requests with their headers) is kept, then passed on unchanged
(same Host header, so moto recomputes the very signature the gateway made)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx

HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"trailer"}


@dataclass
class Exchange:
    method: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    status: int = 0
    response: bytes = b""

    def header(self, name: str) -> str | None:
        n = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == n:
                return v.decode("latin-1")
        return None

    @property
    def form(self) -> dict[str, str]:
        """A Query-protocol (STS) request's parameters."""
        if self.method != "POST" or self.raw_path != b"/" or self.header("x-amz-target"):
            return {}
        return {k: v[0] for k, v in parse_qs(self.body.decode("latin-1"),
                                             keep_blank_values=True).items()}


class Recorder:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.seen: list[Exchange] = []

    def targets(self, target: str) -> list[Exchange]:
        """JSON-protocol calls (Cognito Identity) by ``X-Amz-Target``."""
        return [e for e in self.seen if e.header("x-amz-target") == target]

    def calls(self, action: str) -> list[Exchange]:
        return [e for e in self.seen if e.form.get("Action") == action]

    def s3(self) -> list[Exchange]:
        return [e for e in self.seen if not e.form.get("Action")]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        ex = Exchange(scope["method"], scope.get("raw_path") or scope["path"].encode(),
                      scope["query_string"], list(scope["headers"]), body)
        self.seen.append(ex)
        url = self.target + ex.raw_path.decode("latin-1")
        if ex.query:
            url += "?" + ex.query.decode("latin-1")
        headers = [(k, v) for k, v in ex.headers if k.lower() not in HOP]
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.request(ex.method, url, headers=headers, content=body)
        ex.status = r.status_code
        content = r.content
        ex.response = content
        out = [(k.encode(), v.encode()) for k, v in r.headers.items()
               if k.lower() not in ("content-length", "content-encoding", "transfer-encoding",
                                    "connection")]
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": r.status_code, "headers": out})
        await send({"type": "http.response.body", "body": content})
