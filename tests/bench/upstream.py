"""A minimal, fast keep-alive HTTP/1.1 upstream (used when nginx is not installed).

Answers every request with the same small 200 response. Parses just enough HTTP/1.1 for a
proxy's requests: the head up to CRLFCRLF, a ``Content-Length`` or chunked body (skipped),
``Connection: close``. Prints ``upstream listening 127.0.0.1:PORT`` once bound.

    python tests/bench/upstream.py [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

BODY = b'{"ok":true}\n'
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\nConnection: keep-alive\r\n\r\n" + BODY)
MAX_HEAD = 64 * 1024


class Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""
        self.skip = 0              # body bytes still to discard
        self.chunked = False

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out = []
        close = False
        while True:
            if self.skip:
                n = min(self.skip, len(buf))
                buf, self.skip = buf[n:], self.skip - n
                if self.skip:
                    break
            if self.chunked:
                end = buf.find(b"\r\n0\r\n\r\n") if not buf.startswith(b"0\r\n\r\n") else -2
                if end == -1:
                    buf = buf[-8:]   # keep a tail: the terminator may straddle reads
                    break
                buf = buf[end + 7:] if end >= 0 else buf[5:]
                self.chunked = False
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    close = True
                break
            head, buf = buf[:end].lower(), buf[end + 4:]
            out.append(RESPONSE)
            if b"\ncontent-length:" in head:
                v = head.split(b"\ncontent-length:", 1)[1].split(b"\r\n", 1)[0]
                self.skip = int(v.strip() or 0)
            elif b"\ntransfer-encoding:" in head and b"chunked" in head:
                self.chunked = True
            if b"\nconnection: close" in head:
                close = True
                break
        self.buf = buf
        if out:
            self.t.write(b"".join(out))
        if close:
            self.t.close()


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, backlog=1024, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"upstream listening 127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    port = ap.parse_args().port
    try:
        import uvloop
        uvloop.run(main(port))
    except ImportError:
        asyncio.run(main(port))
