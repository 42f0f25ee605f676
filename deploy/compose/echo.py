"""DEV-ONLY example upstream: answers every request with a JSON echo of what it received.

Shows what poolgate forwards: the normalised path, the identity headers (X-Auth-Sub,
X-Auth-Role), the downstream credential (X-Gateway-Credential), X-Forwarded-*, X-Request-Id.
Repeated headers are kept as a list of [name, value] pairs, in order. Standard library only.

    python deploy/compose/echo.py --host 0.0.0.0 --port 9001
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_ECHO_BODY = 64 * 1024   # echo at most this much of a request body


class EchoHandler(BaseHTTPRequestHandler):
    server_version = "poolgate-echo/1"
    protocol_version = "HTTP/1.1"

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        doc = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body[:MAX_ECHO_BODY].decode("utf-8", "replace"),
            "body_bytes": len(body),
        }
        out = json.dumps(doc, indent=2).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        print(f"echo {self.address_string()} {format % args}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="JSON echo upstream (DEV-ONLY)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    args = p.parse_args(argv)
    with ThreadingHTTPServer((args.host, args.port), EchoHandler) as srv:
        print(f"echo listening on {args.host}:{srv.server_address[1]}", flush=True)
        srv.serve_forever()


if __name__ == "__main__":
    main()
