"""deploy/kubernetes/: schema-valid for current Kubernetes (strict), and wired consistently.

The manifests are plain files plus a kustomization.yaml listing them (no kustomize binary is
needed to check them). Structural checks cross the file boundaries a schema cannot see:
selectors vs pod labels, probe ports vs the config's admin port, Secret references vs the
example Secrets, the drain budget vs terminationGracePeriodSeconds, and the ConfigMap's
poolgate.yaml loaded by gateway.config itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import Config, loads_config

from . import DEPLOY, final_stage_user

try:
    import kubernetes_validate
except ImportError:                     # pragma: no cover - depends on the environment
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("kubernetes-validate not installed (pip install kubernetes-validate)",
                allow_module_level=True)

K8S = DEPLOY / "kubernetes"
LAYOUTS = ("sidecar", "standalone")
GATEWAY_CONTAINER = "poolgate"
CONFIG_PATH = "/etc/poolgate/poolgate.yaml"      # the Dockerfile ENTRYPOINT's --config
EXAMPLE_SECRETS = "secret.example.yaml"
# The newest schema the installed kubernetes-validate ships, and the oldest minor we still
# claim (native `sleep` preStop action: 1.30+; 1.33 is the oldest upstream-supported minor).
K8S_VERSIONS = (kubernetes_validate.utils.latest_version(), "1.33.0")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


class Layout:
    """Every object of one layout directory, indexed by (kind, name)."""

    def __init__(self, name: str) -> None:
        self.dir = K8S / name
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        for f in sorted(self.dir.glob("*.yaml")):
            if f.name == "kustomization.yaml":
                continue
            for d in _docs(f):
                self.objects[(d["kind"], d["metadata"]["name"])] = d

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for (k, _), o in self.objects.items() if k == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        assert (kind, name) in self.objects, f"{self.dir.name}: no {kind} named {name!r}"
        return self.objects[(kind, name)]

    @property
    def deployment(self) -> dict[str, Any]:
        deps = [d for d in self.of_kind("Deployment")
                if any(c["name"] == GATEWAY_CONTAINER for c in _containers(d))]
        assert len(deps) == 1, f"{self.dir.name}: expected one Deployment with a poolgate container"
        return deps[0]

    @property
    def pod(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]

    @property
    def gateway(self) -> dict[str, Any]:
        return next(c for c in _containers(self.deployment) if c["name"] == GATEWAY_CONTAINER)

    def volume_for(self, mount_path: str) -> dict[str, Any]:
        mount = next(m for m in self.gateway["volumeMounts"] if m["mountPath"] == mount_path)
        return next(v for v in self.pod["spec"]["volumes"] if v["name"] == mount["name"])

    def config_text(self) -> str:
        """The poolgate.yaml that ends up at CONFIG_PATH in the gateway container."""
        directory, _, filename = CONFIG_PATH.rpartition("/")
        vol = self.volume_for(directory)
        assert "configMap" in vol, f"{directory} must be mounted from the ConfigMap"
        items = {i["path"]: i["key"] for i in vol["configMap"].get("items", [])}
        key = items.get(filename, filename)
        return self.get("ConfigMap", vol["configMap"]["name"])["data"][key]

    def config(self, **kw: Any) -> Config:
        return loads_config(self.config_text(), source=f"{self.dir.name}/configmap", **kw)

    def container_port(self, port: int | str) -> int:
        if isinstance(port, int):
            return port
        for c in _containers(self.deployment):
            for p in c.get("ports", []):
                if p.get("name") == port:
                    return int(p["containerPort"])
        raise AssertionError(f"{self.dir.name}: no container port named {port!r}")


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _sleep_seconds(container: dict[str, Any]) -> float:
    pre = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = pre.get("exec", {}).get("command", [])
    if len(cmd) == 2 and cmd[0] in ("sleep", "/bin/sleep"):
        return float(cmd[1])
    return 0.0


@pytest.fixture(scope="module", params=LAYOUTS)
def layout(request: pytest.FixtureRequest) -> Layout:
    return Layout(request.param)


# --------------------------------------------------------------------------- schema

@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_is_valid_for_kubernetes(path: Path, version: str) -> None:
    docs = _docs(path)
    assert docs, f"{path} holds no manifest"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.relative_to(K8S)} {doc['kind']}/{doc['metadata']['name']} "
                        f"is invalid for Kubernetes {version}: {e.message} at "
                        f"{'/'.join(map(str, e.path))}")


def test_the_validator_is_strict() -> None:
    """Guards the check above: an unknown field must fail, not pass silently."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": 80}], "bogus": True}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest_except_the_placeholder_secrets(layout: Layout) -> None:
    kust = yaml.safe_load((layout.dir / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kust["resources"])
    on_disk = {p.name for p in layout.dir.glob("*.yaml")} - {"kustomization.yaml"}
    assert EXAMPLE_SECRETS in on_disk
    # Placeholders must never be applied over real keys by `kubectl apply -k`.
    assert listed == on_disk - {EXAMPLE_SECRETS}
    images = {i["name"] for i in kust.get("images", [])}
    assert layout.gateway["image"].split(":")[0] in images


# --------------------------------------------------------------------------- the config

def test_configmap_config_loads(layout: Layout) -> None:
    cfg = layout.config(strict_env=False)
    assert cfg.admin.host == "0.0.0.0", "probes and scraping need the admin listener off loopback"
    assert cfg.revocation.store == "redis", "many gateway processes need one shared list"
    assert cfg.downstream_credential.signing_keys, "replicas must share mounted signing keys"


def test_every_env_name_in_the_config_is_set_by_the_deployment(layout: Layout) -> None:
    env = {}
    for e in layout.gateway.get("env", []):
        env[e["name"]] = ("redis://redis.example:6379/0" if e["name"].endswith("_URL")
                          else "x" * 32)
    cfg = layout.config(strict_env=True, env=env)   # raises if a ${NAME} is not provided
    assert cfg.admin.token == "x" * 32


def test_redis_alternatives_in_comments_load() -> None:
    """The standalone ConfigMap's commented Sentinel / Cluster alternatives load when uncommented."""
    text = Layout("standalone").config_text()
    base = yaml.safe_load(text)
    block = re.search(r"# --- Sentinel instead.*?\n(.*?)# --- Cluster instead.*?\n(.*?)\n\s+key_prefix",
                      text, re.S)
    assert block, "sentinel / cluster alternatives missing"
    for alt in block.groups():
        uncommented = "\n".join(re.sub(r"^\s*# ?", "", ln) for ln in alt.splitlines() if ln.strip())
        redis = yaml.safe_load(uncommented)
        doc = dict(base, revocation=dict(base["revocation"], redis=redis))
        cfg = loads_config(yaml.safe_dump(doc), strict_env=False)
        assert cfg.revocation.redis.mode == redis["mode"]


def test_config_ports_match_container_ports_and_probes(layout: Layout) -> None:
    cfg = layout.config(strict_env=False)
    gw = layout.gateway
    ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    assert ports["proxy"] == cfg.listen.port
    assert ports["admin"] == cfg.admin.port
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = gw[probe]["httpGet"]
        assert get["path"] == path
        assert layout.container_port(get["port"]) == cfg.admin.port, f"{probe} not on admin port"


def test_config_file_and_signing_keys_are_mounted(layout: Layout) -> None:
    cfg = layout.config(strict_env=False)
    secrets = {d["metadata"]["name"]: d for d in _docs(layout.dir / EXAMPLE_SECRETS)}
    mounts = {m["mountPath"]: m for m in layout.gateway["volumeMounts"]}
    for m in mounts.values():
        assert "subPath" not in m, "subPath mounts never see ConfigMap/Secret updates"
    for key in cfg.downstream_credential.signing_keys:
        directory, _, filename = key.private_key_file.rpartition("/")
        assert directory in mounts, f"{key.private_key_file}: nothing mounted at {directory}"
        vol = layout.volume_for(directory)
        secret = secrets[vol["secret"]["secretName"]]
        assert filename in secret["stringData"], f"{filename} not in Secret {secret['metadata']['name']}"


def test_sidecar_forwards_to_the_app_on_loopback() -> None:
    lay = Layout("sidecar")
    cfg = lay.config(strict_env=False)
    app_ports = {p["containerPort"] for c in _containers(lay.deployment)
                 if c["name"] != GATEWAY_CONTAINER for p in c.get("ports", [])}
    for up in cfg.upstreams.values():
        host, _, port = up.authority.rpartition(":")
        assert host == "127.0.0.1" and int(port) in app_ports


# --------------------------------------------------------------------------- the workload

def test_standalone_scales_out() -> None:
    lay = Layout("standalone")
    dep = lay.deployment
    assert dep["spec"]["replicas"] >= 2
    (hpa,) = lay.of_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment",
                                                             dep["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"
           and m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"
    # Utilization is a percentage of requests: without a CPU request the HPA cannot act.
    assert "cpu" in lay.gateway["resources"]["requests"]


def test_pdb_selects_the_pods(layout: Layout) -> None:
    pdbs = layout.of_kind("PodDisruptionBudget")
    assert pdbs, f"{layout.dir.name}: no PodDisruptionBudget"
    labels = layout.pod["metadata"]["labels"]
    for pdb in pdbs:
        assert _matches(pdb["spec"]["selector"]["matchLabels"], labels)
        assert pdb["spec"]["selector"] == layout.deployment["spec"]["selector"]


def test_deployment_selector_matches_pod_labels(layout: Layout) -> None:
    assert _matches(layout.deployment["spec"]["selector"]["matchLabels"],
                    layout.pod["metadata"]["labels"])


def test_services_select_the_pods_and_target_named_ports(layout: Layout) -> None:
    services = layout.of_kind("Service")
    assert services
    for svc in services:
        assert _matches(svc["spec"]["selector"], layout.pod["metadata"]["labels"])
        for p in svc["spec"]["ports"]:
            layout.container_port(p["targetPort"])     # raises if no such port


def test_sidecar_service_exposes_only_the_gateway() -> None:
    lay = Layout("sidecar")
    gw_ports = {p["name"] for p in lay.gateway["ports"]} | {p["containerPort"] for p in lay.gateway["ports"]}
    for svc in lay.of_kind("Service"):
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in gw_ports


def test_security_context_is_non_root_and_read_only(layout: Layout) -> None:
    pod_sc = layout.pod["spec"].get("securityContext", {})
    assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    assert layout.pod["spec"].get("automountServiceAccountToken") is False
    for c in _containers(layout.deployment):
        sc = c.get("securityContext", {})
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, c["name"]
        assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (None, 0), c["name"]
        assert sc.get("readOnlyRootFilesystem") is True, c["name"]
        assert sc.get("allowPrivilegeEscalation") is False, c["name"]
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], c["name"]
        res = c.get("resources", {})
        assert res.get("requests") and res.get("limits"), f"{c['name']}: requests and limits"


def test_gateway_uid_matches_the_image_user(layout: Layout) -> None:
    uid = layout.gateway["securityContext"].get("runAsUser",
                                                layout.pod["spec"]["securityContext"].get("runAsUser"))
    assert str(uid) == final_stage_user().split(":")[0]


def test_tmp_is_writable_and_workers_have_what_they_need(layout: Layout) -> None:
    vol = layout.volume_for("/tmp")
    assert "emptyDir" in vol, "/tmp must be writable with a read-only root filesystem"
    args = layout.gateway.get("args", [])
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    env = {e["name"]: e for e in layout.gateway.get("env", [])}
    if workers > 1:
        # prometheus multiprocess dir: the gateway makes one under /tmp unless told otherwise
        if "PROMETHEUS_MULTIPROC_DIR" in env:
            target = env["PROMETHEUS_MULTIPROC_DIR"]["value"]
            assert "emptyDir" in layout.volume_for(target)
        assert layout.config(strict_env=False).downstream_credential.signing_keys


def test_termination_grace_covers_the_drain(layout: Layout) -> None:
    cfg = layout.config(strict_env=False)
    budget = (_sleep_seconds(layout.gateway) + cfg.listen.drain_delay_seconds
              + cfg.listen.grace_seconds)
    assert _sleep_seconds(layout.gateway) > 0, "preStop sleep: let endpoint removal propagate"
    assert layout.pod["spec"]["terminationGracePeriodSeconds"] > budget
    # In the sidecar the app must outlive the gateway's drain, or in-flight requests get 502.
    for c in _containers(layout.deployment):
        if c["name"] != GATEWAY_CONTAINER:
            assert _sleep_seconds(c) >= budget, f"{c['name']} stops before poolgate has drained"


# --------------------------------------------------------------------------- network policy

def test_network_policy_admits_only_the_gateway_port_from_anywhere(layout: Layout) -> None:
    cfg = layout.config(strict_env=False)
    pols = [p for p in layout.of_kind("NetworkPolicy")
            if _matches(p["spec"]["podSelector"]["matchLabels"], layout.pod["metadata"]["labels"])]
    assert pols, f"{layout.dir.name}: no NetworkPolicy selects the gateway pods"
    for pol in pols:
        assert "Ingress" in pol["spec"]["policyTypes"]
        open_ports, admin_from = set(), []
        for rule in pol["spec"].get("ingress", []):
            assert rule.get("ports"), "a rule without ports opens every port"
            ports = {layout.container_port(p["port"]) for p in rule["ports"]}
            if not rule.get("from"):
                open_ports |= ports
            if cfg.admin.port in ports:
                admin_from.extend(rule.get("from", []))
        assert open_ports == {cfg.listen.port}
        assert admin_from, "admin port must be reachable by monitoring and JWKS readers only"
        assert any(f.get("namespaceSelector", {}).get("matchLabels", {})
                   .get("kubernetes.io/metadata.name") == "monitoring" for f in admin_from)
        assert any("podSelector" in f for f in admin_from)
        app_ports = {p["containerPort"] for c in _containers(layout.deployment)
                     if c["name"] != GATEWAY_CONTAINER for p in c.get("ports", [])}
        reachable = {layout.container_port(p["port"])
                     for r in pol["spec"].get("ingress", []) for p in r["ports"]}
        assert not app_ports & reachable, "the app behind the sidecar must not be reachable"


# --------------------------------------------------------------------------- references

def test_secret_and_configmap_references_exist(layout: Layout) -> None:
    secrets = {d["metadata"]["name"]: d for d in _docs(layout.dir / EXAMPLE_SECRETS)}
    for d in secrets.values():
        assert d["kind"] == "Secret"
    for c in _containers(layout.deployment):
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] in secrets, f"{e['name']}: no Secret {ref['name']}"
                assert ref["key"] in secrets[ref["name"]]["stringData"], f"{e['name']}: no key"
    for vol in layout.pod["spec"]["volumes"]:
        if "secret" in vol:
            assert vol["secret"]["secretName"] in secrets
        if "configMap" in vol:
            cm = layout.get("ConfigMap", vol["configMap"]["name"])
            for item in vol["configMap"].get("items", []):
                assert item["key"] in cm["data"]
    sa = layout.pod["spec"].get("serviceAccountName")
    if sa:
        layout.get("ServiceAccount", sa)
