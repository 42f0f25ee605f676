"""The HTTP front end as an adversary meets it (shared/LIMITS.md "Head and framing", "Time and
space"): hostile bytes over raw sockets against a real ``poolgate serve``; each case asserts the
bounded answer, the time it took, and that nothing reached the upstream."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.e2e.conftest import CLIENT, ISSUER, base_config
from tests.e2e.servers import Gateway, JwksControl, Signer, ThreadServer, Upstream, cognito_claims

pytestmark = pytest.mark.e2e

LIMITS = {"header_timeout_seconds": 1.0, "keepalive_timeout_seconds": 1.0,
          "body_timeout_seconds": 1.5, "buffer_body_bytes": 4096,
          "min_body_rate_bytes_per_second": 1024}


class Front:
    def __init__(self, gw: Gateway, up: Upstream, signer: Signer) -> None:
        self.gw, self.up, self.signer = gw, up, signer
        host, port = gw.proxy.removeprefix("http://").rsplit(":", 1)
        self.addr = (host, int(port))

    def token(self) -> str:
        return self.signer.token(cognito_claims(ISSUER, CLIENT))

    def connect(self, timeout: float = 5) -> socket.socket:
        return socket.create_connection(self.addr, timeout=timeout)

    def exchange(self, data: bytes, timeout: float = 5) -> tuple[int, bytes, float]:
        """Send ``data``; read until the server closes or a whole response arrived."""
        t0 = time.monotonic()
        with self.connect(timeout) as s:
            s.sendall(data)
            got = _read_response(s, timeout)
        status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/") else 0
        return status, got, time.monotonic() - t0


def _read_response(s: socket.socket, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and not head.startswith(b"HTTP/1.1 100"):
            lengths = [int(v) for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")[1:])
                       if k.strip().lower() == b"content-length"]
            if lengths and len(body) >= lengths[0]:
                break
            if b"transfer-encoding: chunked" in head.lower() and body.endswith(b"0\r\n\r\n"):
                break
    return data


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    signer = Signer()
    jwks = JwksControl()
    jwks.keys = [signer.public_jwk()]
    jwks_srv = ThreadServer(jwks).start()
    up = Upstream()
    up_srv = ThreadServer(up).start()
    cfg = base_config(f"{jwks_srv.url}/jwks", up_srv.url)
    cfg["listen"] = {"limits": dict(LIMITS), "max_body_bytes": 100_000}
    gw = Gateway(cfg, tmp_path_factory.mktemp("front")).start()
    try:
        gw.wait_ready()
        yield Front(gw, up, signer)
    finally:
        gw.stop()
        up_srv.stop()
        jwks_srv.stop()


def _get(path: bytes = b"/public/x", extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"GET " + path + b" HTTP/" + version + b"\r\nHost: gw.example\r\n" + extra + b"\r\n"


def _forwarded(front: Front, marker: str) -> bool:
    return any(marker in s.path or marker.encode() in s.query for s in front.up.seen)


# --------------------------------------------------------------------------- head limits

def test_request_line_over_the_limit_is_414(front: Front) -> None:
    status, _, took = front.exchange(_get(b"/public/long-" + b"a" * 9000))
    assert status == 414 and took < 2
    assert not _forwarded(front, "long-")


@pytest.mark.parametrize("headers, why", [
    (b"".join(b"X-H%d: v\r\n" % i for i in range(150)), "too many lines"),
    (b"X-Big: " + b"v" * 40_000 + b"\r\n", "a 40 KB value"),
    (b"X-" + b"n" * 100_000 + b": v\r\n", "a 100 KB name"),
    (b"X-Big: " + b"v" * 100_000 + b"\r\n", "a 100 KB value"),
])
def test_oversized_heads_are_431(front: Front, headers: bytes, why: str) -> None:
    status, body, took = front.exchange(_get(b"/public/h431", headers))
    assert status == 431, why
    assert b"header_too_large" in body and took < 2
    assert not _forwarded(front, "h431")


def test_a_flood_of_header_bytes_is_cut_off_early(front: Front) -> None:
    """4.5 MiB of header lines: refused after about the limit, never parsed whole."""
    sent = 0
    with front.connect() as s:
        s.sendall(b"GET /public/flood HTTP/1.1\r\nHost: a\r\n")
        line = b"X-Flood: " + b"f" * 1000 + b"\r\n"
        try:
            for _ in range(4600):
                s.sendall(line)
                sent += len(line)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = _read_response(s, 3)
    assert got.startswith(b"HTTP/1.1 431"), got[:80]
    assert sent < 4_600_000, "the gateway kept reading a 4.5 MiB head"
    assert not _forwarded(front, "flood")


# --------------------------------------------------------------------------- Host and target

@pytest.mark.parametrize("head, why", [
    (b"GET /public/host HTTP/1.1\r\n\r\n", "no Host"),
    (b"GET /public/host HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "two equal Host lines"),
    (b"GET /public/host HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "two different Host lines"),
    (b"GET /public/host HTTP/1.1\r\nHost: a, b\r\n\r\n", "a comma list"),
    (b"GET /public/host HTTP/1.1\r\nHost: \r\n\r\n", "an empty value"),
    (b"GET /public/host HTTP/1.1\r\nHost: user@a\r\n\r\n", "userinfo"),
    (b"GET /public/host HTTP/1.1\r\nHost: a/b\r\n\r\n", "a path"),
    (b"GET /public/host HTTP/1.1\r\nHost: a b\r\n\r\n", "whitespace"),
    (b"GET http://other.example/public/host HTTP/1.1\r\nHost: a\r\n\r\n",
     "absolute-form authority differs from Host"),
    (b"GET http://u@a/public/host HTTP/1.1\r\nHost: u@a\r\n\r\n", "userinfo in the target"),
    (b"GET /public/host#frag HTTP/1.1\r\nHost: a\r\n\r\n", "a fragment"),
    (b"GET public/host HTTP/1.1\r\nHost: a\r\n\r\n", "a relative target"),
])
def test_bad_host_or_target_is_400_and_not_forwarded(front: Front, head: bytes, why: str) -> None:
    before = len(front.up.seen)
    status, _, _ = front.exchange(head)
    assert status == 400, why
    assert len(front.up.seen) == before


def test_absolute_form_agreeing_with_host_is_served(front: Front) -> None:
    status, _, _ = front.exchange(b"GET http://a:8080/public/absolute?q=1 HTTP/1.1\r\n"
                                  b"Host: a:8080\r\nConnection: close\r\n\r\n")
    assert status == 200
    seen = [s for s in front.up.seen if s.path == "/public/absolute"]
    assert seen and seen[-1].query == b"q=1"


def test_http10_without_host_is_served(front: Front) -> None:
    status, _, _ = front.exchange(b"GET /public/ten HTTP/1.0\r\n\r\n")
    assert status == 200


def test_options_asterisk_is_answered_by_the_gateway(front: Front) -> None:
    before = len(front.up.seen)
    status, got, _ = front.exchange(b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status == 204
    assert b"\r\nallow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n" in got.lower() \
        or b"allow: get" in got.lower()
    assert len(front.up.seen) == before


def test_asterisk_form_with_another_method_is_400(front: Front) -> None:
    status, _, _ = front.exchange(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 400


@pytest.mark.parametrize("head, statuses", [
    (b"GET /public/p HTTP/2.0\r\nHost: a\r\n\r\n", {505, 400}),
    (b"GET /public/p HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n b\r\n\r\n", {400}),   # obs-fold
    (b"GET /public/p HTTP/1.1\r\nHost : a\r\n\r\n", {400}),          # space before colon
    (b"GET /public/p HTTP/1.1\r\nHost: a\r\nBad\x01Name: v\r\n\r\n", {400}),
    (b"GET /public/p HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", {400}),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", {400, 501}),
    (b"POST /public/p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    (b"POST /public/p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
     b"hello!", {400}),
    (b"POST /public/p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"fffffffffffffffffff\r\n", {400, 413}),
])
def test_malformed_messages_are_refused(front: Front, head: bytes, statuses: set[int]) -> None:
    before = len(front.up.seen)
    status, _, _ = front.exchange(head)
    assert status in statuses
    assert len(front.up.seen) == before


# --------------------------------------------------------------------------- 1xx and trailers

def test_no_interim_response_to_an_http10_client(front: Front) -> None:
    status, got, _ = front.exchange(b"POST /public/ten-expect HTTP/1.0\r\nHost: a\r\n"
                                    b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd")
    assert status == 200 and b"100 Continue" not in got


def test_http11_expect_gets_100_before_the_body(front: Front) -> None:
    with front.connect() as s:
        s.sendall(b"POST /public/expect HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 4\r\nConnection: close\r\n\r\n")
        first = s.recv(1024)
        assert first.startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"abcd")
        rest = _read_response(s, 5)
    assert rest.startswith(b"HTTP/1.1 200")


def test_a_trailer_never_authenticates(front: Front) -> None:
    token = front.token().encode()
    status, _, _ = front.exchange(
        b"POST /private/trailer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: Authorization\r\n\r\n4\r\nabcd\r\n0\r\nAuthorization: Bearer " + token +
        b"\r\n\r\n")
    assert status == 401
    assert not _forwarded(front, "/private/trailer")


def test_a_trailer_is_not_forwarded_as_a_header(front: Front) -> None:
    status, _, _ = front.exchange(
        b"POST /public/trailer2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n4\r\nabcd\r\n0\r\nX-Smuggled: yes\r\n\r\n")
    assert status == 200
    seen = [s for s in front.up.seen if s.path == "/public/trailer2"]
    assert seen and seen[-1].header("x-smuggled") == [] and seen[-1].body_len == 4


def test_the_header_token_still_works(front: Front) -> None:
    r = httpx.get(f"{front.gw.proxy}/private/ok",
                  headers={"Authorization": f"Bearer {front.token()}"})
    assert r.status_code == 200


# --------------------------------------------------------------------------- timeouts

def test_a_silent_connection_is_closed_after_the_header_timeout(front: Front) -> None:
    t0 = time.monotonic()
    with front.connect() as s:
        got = _read_response(s, 5)
    took = time.monotonic() - t0
    assert got == b"" and 0.8 < took < 3


def test_a_slow_head_gets_408(front: Front) -> None:
    t0 = time.monotonic()
    with front.connect() as s:
        s.sendall(b"GET /public/slow HTTP/1.1\r\nHost: a\r\n")
        time.sleep(0.5)
        s.sendall(b"X-A: 1\r\n")             # trickling does not move the deadline
        got = _read_response(s, 5)
    took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408") and 0.8 < took < 3
    assert not _forwarded(front, "/public/slow")


def test_an_idle_keepalive_connection_is_closed(front: Front) -> None:
    with front.connect() as s:
        s.sendall(_get(b"/public/ka"))
        first = _read_response(s, 5)
        assert first.startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        assert s.recv(10) == b""
        took = time.monotonic() - t0
    assert 0.7 < took < 3


def test_a_stalled_body_gets_408_and_is_not_forwarded(front: Front) -> None:
    with front.connect() as s:
        s.sendall(b"POST /public/stall HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123")
        t0 = time.monotonic()
        got = _read_response(s, 6)
    assert got.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 4
    assert not _forwarded(front, "/public/stall")


def test_a_trickled_large_body_gets_408_within_the_rate_window(front: Front) -> None:
    """Above buffer_body_bytes the average must reach min_body_rate after 5 s."""
    with front.connect(timeout=10) as s:
        s.sendall(b"POST /public/trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 90000\r\n\r\n")
        t0 = time.monotonic()
        got = b""
        s.settimeout(0.4)
        while time.monotonic() - t0 < 9:
            try:
                s.sendall(b"x" * 200)
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                got += s.recv(4096)
                if got:
                    break
            except (socket.timeout, TimeoutError):
                continue
            except ConnectionResetError:
                break
        took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408"), got[:60]
    assert 4.5 < took < 8
    assert not _forwarded(front, "/public/trickle")


# --------------------------------------------------------------------------- body size

def test_content_length_over_max_body_is_413_before_any_byte(front: Front) -> None:
    status, _, took = front.exchange(b"POST /public/big HTTP/1.1\r\nHost: a\r\n"
                                     b"Content-Length: 200000\r\n\r\n")
    assert status == 413 and took < 2
    assert not _forwarded(front, "/public/big")


def test_a_chunked_body_over_max_body_is_413(front: Front) -> None:
    chunk = b"%x\r\n%b\r\n" % (50_000, b"y" * 50_000)
    status, _, _ = front.exchange(b"POST /public/bigchunk HTTP/1.1\r\nHost: a\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n")
    assert status == 413


def test_a_body_within_the_limits_is_forwarded_whole(front: Front) -> None:
    r = httpx.post(f"{front.gw.proxy}/public/fine", content=b"z" * 90_000)
    assert r.status_code == 200 and r.json()["received_bytes"] == 90_000


# --------------------------------------------------------------------------- pool and floods

def _pool_config(jwks_url: str, upstream_url: str, **limits: Any) -> dict[str, Any]:
    cfg = base_config(jwks_url, upstream_url)
    cfg["upstreams"]["app"]["max_connections"] = 1024
    cfg["routes"].insert(0, {"id": "upload", "match": {"path": "/upload/**"},
                             "upstream": "app", "auth": "public"})
    cfg["listen"] = {"limits": {"header_timeout_seconds": 2.0, **limits}}
    return cfg


async def _tricklers(addr: tuple[str, int], n: int, seconds: float) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(n):
        _, w = await asyncio.open_connection(*addr)
        w.write(b"POST /upload/f HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\nx")
        writers.append(w)
    return writers


def test_slow_uploaders_do_not_exhaust_the_upstream_pool(tmp_path: Path) -> None:
    """LIMITS: 1,100 clients trickling bodies into one upstream's route; a normal request to
    another route of the same upstream is still answered 200 within 1 s."""
    signer = Signer()
    jwks = JwksControl()
    jwks.keys = [signer.public_jwk()]
    jwks_srv, up = ThreadServer(jwks).start(), Upstream()
    up_srv = ThreadServer(up).start()
    gw = Gateway(_pool_config(f"{jwks_srv.url}/jwks", up_srv.url), tmp_path).start()
    try:
        gw.wait_ready()
        host, port = gw.proxy.removeprefix("http://").rsplit(":", 1)

        async def scenario() -> float:
            writers = await _tricklers((host, int(port)), 1100, 3)
            try:
                await asyncio.sleep(1.0)
                for w in writers:               # one more byte each: still far too slow
                    w.write(b"y")
                await asyncio.sleep(1.0)
                async with httpx.AsyncClient() as c:
                    t0 = time.monotonic()
                    r = await c.get(f"{gw.proxy}/private/normal", timeout=5,
                                    headers={"Authorization": "Bearer " + signer.token(
                                        cognito_claims(ISSUER, CLIENT))})
                    took = time.monotonic() - t0
                assert r.status_code == 200
                return took
            finally:
                for w in writers:
                    w.close()

        took = asyncio.run(scenario())
        assert took < 1.0
        assert not [s for s in up.seen if s.path.startswith("/upload/")]
    finally:
        gw.stop()
        up_srv.stop()
        jwks_srv.stop()


def test_a_connection_flood_leaves_the_admin_listener_answering(tmp_path: Path) -> None:
    signer = Signer()
    jwks = JwksControl()
    jwks.keys = [signer.public_jwk()]
    jwks_srv, up = ThreadServer(jwks).start(), Upstream()
    up_srv = ThreadServer(up).start()
    gw = Gateway(_pool_config(f"{jwks_srv.url}/jwks", up_srv.url, max_connections=200,
                              header_timeout_seconds=1.5), tmp_path).start()
    socks: list[socket.socket] = []
    try:
        gw.wait_ready()
        host, port = gw.proxy.removeprefix("http://").rsplit(":", 1)
        for _ in range(260):                  # 200 held, 60 more queued in the backlog
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"GET /public/x HTTP/1.1\r\n")        # a slow head
            socks.append(s)
        t0 = time.monotonic()
        assert httpx.get(f"{gw.admin}/healthz", timeout=2).status_code == 200
        assert httpx.get(f"{gw.admin}/readyz", timeout=2).status_code == 200
        assert time.monotonic() - t0 < 1.0
        # slow-header connections are answered 408 and closed after header_timeout_seconds
        socks[0].settimeout(5)
        t1 = time.monotonic()
        got = _read_response(socks[0], 5)
        assert got.startswith(b"HTTP/1.1 408") and time.monotonic() - t1 < 3
        # queued connections are served once slots free up
        late = socks[-1]
        late.settimeout(8)
        late.sendall(b"Host: a\r\n\r\n")
        assert _read_response(late, 8).startswith((b"HTTP/1.1 200", b"HTTP/1.1 408"))
    finally:
        for s in socks:
            s.close()
        gw.stop()
        up_srv.stop()
        jwks_srv.stop()
