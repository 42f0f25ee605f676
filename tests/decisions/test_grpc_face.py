"""The gRPC face's pure parts: CheckRequest -> original request, Verdict -> CheckResponse."""

from __future__ import annotations

import socket
import sys

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError, Forbidden, Unavailable
from gateway.decisions import listener
from gateway.decisions.verdict import Verdict, refusal
from gateway.server import bind

grpc_face = pytest.importorskip("gateway.decisions.grpc_face")
from envoy.service.auth.v3 import external_auth_pb2 as pb  # noqa: E402

NAMES = frozenset({b"x-auth-sub", b"x-auth-role", b"x-gateway-credential"})


def _req(**http) -> object:
    req = pb.CheckRequest()
    h = req.attributes.request.http
    for k, v in http.items():
        if k == "headers":
            h.headers.update(v)
        else:
            setattr(h, k, v)
    return req


def test_original_request_drops_pseudo_headers_and_keeps_the_query():
    m, uri, headers = grpc_face.original_request(_req(
        method="post", path="/api/x?a=1", host="site.example",
        headers={":authority": "site.example", ":path": "/api/x?a=1", "authorization": "Bearer t",
                 "x-forwarded-for": "203.0.113.9"}))
    assert (m, uri) == ("POST", b"/api/x?a=1")
    assert dict(headers) == {b"authorization": b"Bearer t", b"x-forwarded-for": b"203.0.113.9",
                             b"host": b"site.example"}


def test_a_check_without_path_is_a_bad_subrequest():
    with pytest.raises(Exception) as e:
        grpc_face.original_request(_req(method="GET"))
    assert getattr(e.value, "code", None) == "bad_subrequest"


def test_ok_response_sets_headers_and_removes_the_rest():
    v = Verdict(200, [(b"x-auth-sub", b"s1"), (b"x-request-id", b"r1")], b"", "r1",
                set_names=frozenset({b"x-auth-sub", b"x-request-id"}))
    r = grpc_face.check_response(v, NAMES)
    assert r.status.code == 0 and r.WhichOneof("http_response") == "ok_response"
    assert {(o.header.key, o.header.value) for o in r.ok_response.headers} == {
        ("x-auth-sub", "s1"), ("x-request-id", "r1")}
    assert sorted(r.ok_response.headers_to_remove) == ["x-auth-role", "x-gateway-credential"]


@pytest.mark.parametrize("error, status, code", [(Forbidden("no"), 403, 7),
                                                 (Unavailable("jwks"), 503, 14)])
def test_denied_response_has_status_challenge_and_body(error, status, code):
    r = grpc_face.check_response(refusal(error, "rid1"), NAMES)
    assert r.status.code == code and r.denied_response.status.code == status
    hdrs = {o.header.key: o.header.value for o in r.denied_response.headers}
    assert hdrs["x-request-id"] == "rid1"
    assert ("www-authenticate" in hdrs) == (status == 403)
    assert '"request_id": "rid1"' in r.denied_response.body


def test_peer_address_forms():
    assert grpc_face.peer_address("ipv4:127.0.0.1:5000") == "127.0.0.1"
    assert grpc_face.peer_address("ipv6:[::1]:5000") == "::1"
    assert grpc_face.peer_address("unix:/tmp/s") == ""


def _grpc_config(port: int = 0):
    return parse_config({
        "version": 1, "upstreams": {"app": {"url": "http://127.0.0.1:9"}},
        "routes": [{"id": "r", "match": {"path": "/**"}, "upstream": "app", "auth": "public"}],
        "decisions": {"listen": {"port": 0}, "grpc": {"enabled": True, "port": port}}})


def test_grpc_port_is_reserved_in_the_parent_and_printed():
    try:
        line = listener.bind_decisions(_grpc_config(), bind)
        port = int(line.rsplit(":", 1)[1])
        assert " decisions=127.0.0.1:" in line and " decisions_grpc=127.0.0.1:" in line
        # a worker's grpc server (SO_REUSEPORT) can listen on the reserved port
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)
        s.close()
    finally:
        for sock in listener._BOUND.values():
            sock.close()
        listener._BOUND.clear()


def test_grpc_without_the_extra_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gateway.decisions.grpc_face", None)   # import fails
    try:
        with pytest.raises(ConfigError) as e:
            listener.bind_decisions(_grpc_config(), bind)
        assert e.value.path == "decisions.grpc.enabled"
    finally:
        for sock in listener._BOUND.values():
            sock.close()
        listener._BOUND.clear()


def test_grpc_port_in_use_is_a_listen_error_not_a_config_error():
    """A taken port is reported like the other listeners' (exit 1, `poolgate: cannot listen`),
    never labelled a config error."""
    import socket

    from gateway.decisions.listener import _reserve
    from gateway.errors import ConfigError, ListenError
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as info:
            _reserve("127.0.0.1", port)
        assert not isinstance(info.value, ConfigError)
        assert f"cannot listen on 127.0.0.1:{port}" in str(info.value)
    finally:
        taken.close()
