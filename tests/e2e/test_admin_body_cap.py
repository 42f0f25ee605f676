"""The admin listener reads at most 64 KiB of a request body: a 200 MiB body (announced by
Content-Length, or chunked with no length) gets 413 quickly, and the gateway's resident memory
does not grow by more than a few MiB (LIMITS "Head and framing")."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from .conftest import base_config

ADMIN = "admin-token-0123456789abcdef"
TOTAL = 200 * 1024 * 1024
CHUNK = 64 * 1024


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _post_huge(admin: str, chunked: bool) -> tuple[bytes, float, int]:
    """(response head, seconds to the first response byte, body bytes sent by then)."""
    host, port = admin.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else \
        f"Content-Length: {TOTAL}\r\n".encode()
    sock.sendall(b"POST /revocations HTTP/1.1\r\nHost: admin\r\n"
                 b"Authorization: Bearer " + ADMIN.encode() + b"\r\n"
                 b"Content-Type: application/json\r\n" + framing + b"\r\n")
    sent = [0]
    stop = threading.Event()

    def send() -> None:
        piece = b"x" * CHUNK
        frame = (f"{CHUNK:x}\r\n".encode() + piece + b"\r\n") if chunked else piece
        try:
            while sent[0] < TOTAL and not stop.is_set():
                sock.sendall(frame)
                sent[0] += CHUNK
        except OSError:
            pass                      # the gateway answered and closed: expected

    t0 = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            more = sock.recv(4096)
            if not more:
                break
            data += more
    finally:
        elapsed = time.monotonic() - t0
        stop.set()
        sock.close()
        sender.join(10)
    return data, elapsed, sent[0]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_admin_body_cap(jwks, upstream, gateway_factory, chunked: bool) -> None:
    _, jwks_srv = jwks
    _, up = upstream
    gw = gateway_factory(base_config(jwks_srv.url + "/jwks", up.url,
                                     admin={"token": ADMIN}))
    assert gw.proc is not None
    import httpx
    for _ in range(3):                        # warm the admin path (imports, first requests)
        r = httpx.post(gw.admin + "/revocations", content=b"{}",
                       headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
        assert r.status_code == 400
    time.sleep(0.5)
    before = _rss_kib(gw.proc.pid)
    head, elapsed, sent = _post_huge(gw.admin, chunked)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert elapsed < 3, elapsed
    assert sent < TOTAL // 4, sent          # answered long before the body was all sent
    grown = _rss_kib(gw.proc.pid) - before
    print(f"admin body cap: chunked={chunked} 413 after {elapsed:.3f} s, {sent} bytes sent, RSS +{grown} KiB")
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB"
    # the listener is still fine for everyone else
    assert httpx.get(gw.admin + "/healthz", timeout=5).status_code == 200
