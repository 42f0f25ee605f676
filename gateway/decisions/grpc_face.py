"""Envoy ext_authz v3 gRPC (``envoy.service.auth.v3.Authorization/Check``) on ``verdict.decide``.

grpcio's asyncio server with the generated protos of ``xds-protos`` (the ``grpc`` extra):
measured 66 ms to import and ~5 us to encode a response (upb), against 0.64 s and ~72 us for
``envoy-data-plane``'s pure-Python messages. Imported only when ``decisions.grpc.enabled``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import status_pb2

from ..errors import BadRequest
from ..forward.headers import is_trusted, request_id
from .app import Untrusted, count_decision
from .verdict import Verdict, decide, gateway_names, refusal, spelled_otherwise

if TYPE_CHECKING:
    from ..engine import Engine

Headers = list[tuple[bytes, bytes]]
OK, PERMISSION_DENIED, UNAVAILABLE = 0, 7, 14       # google.rpc.Code
OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def peer_address(peer: str) -> str:
    """grpc's ``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` -> the address."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return ""


def original_request(req: Any) -> tuple[str, bytes, Headers]:
    """(method, path with query, headers) from ``CheckRequest.attributes.request.http``."""
    http = req.attributes.request.http
    if not http.method or not http.path:
        raise BadRequest("CheckRequest without method or path", code="bad_subrequest")
    headers: Headers = [(k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in http.headers.items() if not k.startswith(":")]
    if http.host and not any(k == b"host" for k, _ in headers):
        headers.append((b"host", http.host.encode("latin-1")))
    path = http.path
    if http.query and "?" not in path:
        path += "?" + http.query
    return http.method.upper(), path.encode("latin-1"), headers


def check_response(v: Verdict, names: frozenset[bytes], headers: Headers = ()) -> Any:  # type: ignore[assignment]
    """OkHttpResponse (headers set; the client's copies of the rest, and other spellings of
    them in ``headers``, removed) or DeniedHttpResponse (status, headers, body)."""
    hdrs = [base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=k.decode("latin-1"), value=val.decode("latin-1")),
        append_action=OVERWRITE) for k, val in v.headers]
    if v.allowed:
        remove = sorted(n.decode("latin-1")
                        for n in (names - v.set_names) | spelled_otherwise(list(headers), names))
        return pb.CheckResponse(status=status_pb2.Status(code=OK), ok_response=pb.OkHttpResponse(
            headers=hdrs, headers_to_remove=remove))
    code = UNAVAILABLE if v.status >= 500 else PERMISSION_DENIED
    return pb.CheckResponse(
        status=status_pb2.Status(code=code, message=v.error.code if v.error else ""),
        denied_response=pb.DeniedHttpResponse(status=http_status_pb2.HttpStatus(code=v.status),
                                              headers=hdrs, body=v.body.decode("utf-8")))


class AuthorizationService(pb_grpc.AuthorizationServicer):
    """``Check`` for trusted peers; the engine followed across reloads."""

    def __init__(self, engine: Callable[[], "Engine"]) -> None:
        self.engine = engine

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC name)
        engine = self.engine()
        if not engine.started:
            await engine.start()
        peer = peer_address(context.peer() or "")
        names = gateway_names(engine)
        if not is_trusted(peer, engine.config.decisions.trusted_proxies):
            e = Untrusted(f"peer {peer or '?'} is not in decisions.trusted_proxies")
            return check_response(refusal(e, request_id([], trusted=False)), names)
        headers: Headers = []
        try:
            method, uri, headers = original_request(request)
            v = await decide(engine, method, uri, headers, peer=peer)
        except BadRequest as e:
            v = refusal(e, request_id([], trusted=False))
        count_decision(engine, v, "envoy-grpc")
        return check_response(v, names, headers)


def build_grpc_server(engine: Callable[[], "Engine"], address: str) -> Any:
    """A grpc.aio server on ``address`` (SO_REUSEPORT, grpc's default on Linux, lets every
    worker listen on the port the parent reserved)."""
    import grpc  # noqa: PLC0415
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    pb_grpc.add_AuthorizationServicer_to_server(AuthorizationService(engine), server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address} (gRPC)")
    return server


__all__ = ["AuthorizationService", "build_grpc_server", "check_response"]
