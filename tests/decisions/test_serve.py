"""``poolgate serve`` with a decisions: section: the third listener, its peers, --workers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from e2e.conftest import CLIENT, ISSUER, base_config
from e2e.servers import cognito_claims
from gateway.forward.credential import generate_key_pem


def _nginx(base: str, uri: str, token: str | None = None) -> httpx.Response:
    h = {"X-Original-Method": "GET", "X-Original-URI": uri, "Host": "site.example"}
    if token:
        h["Authorization"] = "Bearer " + token
    return httpx.get(base + "/auth/nginx", headers=h, timeout=5, trust_env=False)


def test_no_section_no_listener(jwks, upstream, gateway_factory):
    _, jsrv = jwks
    _, usrv = upstream
    gw = gateway_factory(base_config(jsrv.url + "/jwks", usrv.url))
    assert "decisions" not in gw.listening


def test_only_trusted_peers_may_ask(jwks, upstream, gateway_factory, signer):
    _, jsrv = jwks
    _, usrv = upstream
    cfg = base_config(jsrv.url + "/jwks", usrv.url,
                      decisions={"listen": {"port": 0}, "trusted_proxies": ["10.0.0.0/8"]})
    gw = gateway_factory(cfg)
    base = "http://" + gw.listening["decisions"]
    r = _nginx(base, "/x", signer.token(cognito_claims(ISSUER, CLIENT)))
    assert r.status_code == 403 and r.json()["reason"] == "untrusted_peer"
    assert "x-gateway-credential" not in r.headers
    # the proxy and admin listeners do not answer decisions
    assert httpx.get(gw.admin + "/auth/nginx", timeout=5).status_code == 404


def test_workers_share_the_decisions_listener_and_stop_cleanly(jwks, upstream, gateway_factory,
                                                               signer, tmp_path: Path):
    _, jsrv = jwks
    _, usrv = upstream
    key = tmp_path / "k1.pem"
    key.write_bytes(generate_key_pem())
    cfg = base_config(jsrv.url + "/jwks", usrv.url, revocation={"store": "none"},
                      downstream_credential={"signing_keys": [
                          {"kid": "k1", "private_key_file": str(key)}]},
                      decisions={"listen": {"port": 0}, "grpc": {"enabled": True, "port": 0}})
    gw = gateway_factory(cfg, workers=2)
    base = "http://" + gw.listening["decisions"]
    tok = signer.token(cognito_claims(ISSUER, CLIENT, sub="w-sub"))
    deadline = time.monotonic() + 15
    while _nginx(base, "/x", tok).status_code == 503:   # each worker loads its JWKS
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for _ in range(20):                                  # a new connection each
        r = _nginx(base, "/x", tok)
        assert r.status_code == 200 and r.headers["x-auth-sub"] == "w-sub"
        assert r.headers["x-gateway-credential"].split(".")[0]
    assert _nginx(base, "/x").status_code == 401
    for i in range(6):                                   # gRPC, a new channel (connection) each
        ok, status = _grpc_check(gw.listening["decisions_grpc"], tok if i % 2 else None)
        assert (ok, status) == ((True, 0) if i % 2 else (False, 401))
    assert gw.stop() == 0


def _grpc_check(addr: str, token: str | None) -> tuple[bool, int]:
    grpc = pytest.importorskip("grpc")
    from envoy.service.auth.v3 import external_auth_pb2 as pb
    from envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc
    req = pb.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host = "GET", "/x", "site.example"
    if token:
        http.headers["authorization"] = "Bearer " + token
    with grpc.insecure_channel(addr) as ch:
        r = pb_grpc.AuthorizationStub(ch).Check(req, timeout=5)
    if r.WhichOneof("http_response") == "ok_response":
        assert {h.header.key for h in r.ok_response.headers} >= {"x-auth-sub",
                                                                 "x-gateway-credential"}
        return True, r.status.code
    return False, r.denied_response.status.code
