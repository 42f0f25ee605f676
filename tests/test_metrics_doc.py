"""The README's "## Metrics" table is the catalogue: every metric gateway/metrics.py defines is
in it with its type and labels, and it lists nothing the gateway does not export."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from gateway.metrics import Metrics

README = Path(__file__).resolve().parents[1] / "README.md"


def _documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is listed twice"
        rows[name] = (cells[1], tuple(re.findall(r"`([a-z_]+)`", cells[2])))
    assert rows, "no metrics table under '## Metrics' in README.md"
    return rows


def _defined() -> dict[str, tuple[str, tuple[str, ...]]]:
    m = Metrics()
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for metric in vars(m).values():
        if isinstance(metric, MetricWrapperBase):
            name = metric._name + ("_total" if metric._type == "counter" else "")
            out[name] = (metric._type, tuple(metric._labelnames))
    return out


def test_every_defined_metric_is_documented_with_its_type_and_labels() -> None:
    documented, defined = _documented(), _defined()
    assert sorted(set(defined) - set(documented)) == [], "defined but not in README ## Metrics"
    for name, (kind, labels) in defined.items():
        assert documented[name] == (kind, labels), name


def test_every_documented_metric_is_defined() -> None:
    assert sorted(set(_documented()) - set(_defined())) == [], \
        "in README ## Metrics but not defined in gateway/metrics.py"


def test_the_registry_exports_exactly_the_defined_metrics() -> None:
    # what /metrics shows (families; a counter family is named without _total)
    m = Metrics()
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in m.registry.collect()}
    assert exported == set(_defined())
