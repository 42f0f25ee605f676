"""deploy/grafana/poolgate-dashboard.json and deploy/prometheus/poolgate-alerts.yaml: every
PromQL expression parses (tests/deploy/promql.py; promtool too when it is on PATH) and names
only metrics, and labels, that gateway/metrics.py exports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gateway.metrics import Metrics

from .promql import PromQLError, parse

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "poolgate-dashboard.json"
ALERTS = REPO / "deploy" / "prometheus" / "poolgate-alerts.yaml"
TARGET_LABELS = {"job", "instance"}


def _exported() -> dict[str, set[str]]:
    """Every sample name the gateway exports -> the labels it carries."""
    out: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, kind, labels = metric._name, metric._type, set(metric._labelnames)
        if kind == "counter":
            out[name + "_total"] = labels
        elif kind == "histogram":
            out[name + "_bucket"] = labels | {"le"}
            out[name + "_sum"] = out[name + "_count"] = labels
        else:
            out[name] = labels
    return out


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def _alert_rules() -> list[dict]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def _grafana(expr: str) -> str:
    return expr.replace("$__rate_interval", "5m")        # Grafana's own variable


EXPRS = [("dashboard", _grafana(e)) for e in _dashboard_exprs()] + \
        [("alerts", r["expr"]) for r in _alert_rules()]


@pytest.mark.parametrize("where,expr", EXPRS, ids=[f"{w}-{i}" for i, (w, _) in enumerate(EXPRS)])
def test_expression_parses_and_names_exported_metrics(where: str, expr: str) -> None:
    exported = _exported()
    selectors = parse(expr)
    assert selectors, expr
    for metric, labels in selectors:
        assert metric in exported, f"{where}: {metric} is not exported by gateway/metrics.py"
        unknown = labels - exported[metric] - TARGET_LABELS
        assert not unknown, f"{where}: {metric} has no label(s) {sorted(unknown)}"


def test_the_parser_refuses_what_promtool_refuses() -> None:
    for bad in ("sum(rate(x[5m])", "rate(x[5])", "x{a=b}", "nosuchfunction(x)", "x +", "x y",
                "sum by (a (x)"):
        with pytest.raises(PromQLError):
            parse(bad)


def test_dashboard_shows_what_operators_look_for() -> None:
    text = " ".join(_dashboard_exprs())
    for metric in ("poolgate_requests_total", "poolgate_decisions_total",
                   "poolgate_request_duration_seconds_bucket", "poolgate_upstream_errors_total",
                   "poolgate_jwks_key_age_seconds", "poolgate_token_cache_total",
                   "poolgate_revocation_lookups_total", "poolgate_revocation_errors_total",
                   "poolgate_config_reloads_total"):
        assert metric in text, metric
    assert "histogram_quantile(0.99" in text and "by (decision, code)" in text
    dash = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dash["panels"]]
    assert len(titles) == len(set(titles))
    for p in dash["panels"]:
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(refs) == len(set(refs))


def test_alerts_cover_the_operators_list() -> None:
    rules = {r["alert"]: r for r in _alert_rules()}
    for r in rules.values():
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"]
    stale = rules["PoolgateJwksKeysStale"]["expr"]
    assert "poolgate_jwks_key_age_seconds" in stale and "poolgate_jwks_max_stale_seconds" in stale
    assert "poolgate_revocation_store_up" in rules["PoolgateRevocationStoreDown"]["expr"]
    assert 'status=~"5.."' in rules["PoolgateHigh5xxRatio"]["expr"]
    assert 'decision="deny"' in rules["PoolgateDenySpike"]["expr"]
    assert 'result="error"' in rules["PoolgateReloadFailed"]["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (optional)")
def test_promtool_accepts_the_rules() -> None:
    res = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
