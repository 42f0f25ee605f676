"""deploy/forward-auth/: every file parses, the Kubernetes ones are schema-valid where a schema
exists (Ingress, ConfigMap), and every proxy names the same endpoints and gateway headers.

nginx, Traefik (file provider), Caddy and Envoy (HTTP, gRPC) are also run for real by
test_proxies.py; ingress-nginx, the Traefik CRDs and Istio cannot run here (no cluster).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from e2e.servers import ROOT

FA = ROOT / "deploy" / "forward-auth"
GATEWAY_HEADERS = {"x-auth-sub", "x-auth-role", "x-gateway-credential"}


def _docs(path: Path) -> list[dict]:
    text = path.read_text()
    # the runnable configs carry {{PLACEHOLDER}} ports; quoted or not, they parse as YAML
    text = re.sub(r"\{\{([A-Z_]+)\}\}", r"\1", text)
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _lower(names) -> set[str]:
    return {n.strip().lower() for n in names}


def test_every_yaml_file_parses():
    files = sorted([*FA.rglob("*.yaml"), *FA.rglob("*.yml")])
    assert len(files) >= 8
    for f in files:
        assert _docs(f), f


def test_kubernetes_manifests_are_schema_valid():
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.utils.latest_version()
    for f in (FA / "ingress-nginx" / "ingress.yaml", FA / "istio" / "mesh-config.yaml"):
        for doc in _docs(f):
            kv.validate(doc, version, strict=True)


def test_ingress_nginx_asks_the_nginx_face_for_the_gateway_headers():
    (ing,) = _docs(FA / "ingress-nginx" / "ingress.yaml")
    a = ing["metadata"]["annotations"]
    assert a["nginx.ingress.kubernetes.io/auth-url"].endswith(":9902/auth/nginx")
    assert _lower(a["nginx.ingress.kubernetes.io/auth-response-headers"].split(",")) \
        >= GATEWAY_HEADERS


def test_istio_custom_provider_matches_the_envoy_face():
    (cm,) = _docs(FA / "istio" / "mesh-config.yaml")
    providers = {p["name"]: p for p in yaml.safe_load(cm["data"]["mesh"])["extensionProviders"]}
    http = providers["poolgate"]["envoyExtAuthzHttp"]
    assert (http["port"], http["pathPrefix"], http["failOpen"]) == (9902, "/auth/envoy", False)
    assert _lower(http["headersToUpstreamOnAllow"]) >= GATEWAY_HEADERS
    assert "www-authenticate" in _lower(http["headersToDownstreamOnDeny"])
    assert "authorization" in _lower(http["includeRequestHeadersInCheck"])
    assert providers["poolgate-grpc"]["envoyExtAuthzGrpc"]["port"] == 9903
    (policy,) = _docs(FA / "istio" / "authorization-policy.yaml")
    assert policy["kind"] == "AuthorizationPolicy" and policy["spec"]["action"] == "CUSTOM"
    assert policy["spec"]["provider"]["name"] == "poolgate"


def test_traefik_crd_and_file_provider_agree():
    crd = {d["metadata"]["name"]: d for d in _docs(FA / "traefik" / "kubernetes-crd.yaml")}
    fa = crd["poolgate"]["spec"]["forwardAuth"]
    (dyn,) = _docs(FA / "traefik" / "dynamic.yml")
    file_fa = dyn["http"]["middlewares"]["poolgate"]["forwardAuth"]
    assert fa["address"].endswith("/auth/traefik") and file_fa["address"].endswith("/auth/traefik")
    assert fa["authResponseHeaders"] == file_fa["authResponseHeaders"]
    assert _lower(fa["authResponseHeaders"]) >= GATEWAY_HEADERS
    assert crd["poolgate-edge-only"]["spec"] == dyn["http"]["middlewares"]["poolgate-edge-only"]


def test_envoy_configs_fail_closed():
    for name in ("envoy-http.yaml", "envoy-grpc.yaml"):
        (doc,) = _docs(FA / "envoy" / name)
        hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        authz = hcm["typed_config"]["http_filters"][0]["typed_config"]
        assert authz["failure_mode_allow"] is False, name
        assert authz["status_on_error"] == {"code": "ServiceUnavailable"}, name
