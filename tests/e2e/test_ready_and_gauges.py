"""`poolgate ready` follows `poolgate listening` once /readyz turns 200 (a JWKS that comes up
late), and gauges are true when scraped: the JWKS key age grows between two scrapes of
/metrics with no /readyz call in between."""

from __future__ import annotations

import re
import threading
import time

import httpx

from .conftest import base_config


def _stdout_lines(gw) -> list[str]:
    lines: list[str] = []

    def read() -> None:
        for line in gw.proc.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_ready_line_when_a_late_jwks_arrives(jwks, upstream, gateway_factory, signer):
    control, jwks_srv = jwks
    control.mode = "status"                      # the IdP is down at start
    _, up = upstream
    gw = gateway_factory(base_config(jwks_srv.url + "/jwks", up.url), ready=False)
    out = _stdout_lines(gw)
    time.sleep(1.0)
    assert httpx.get(gw.admin + "/readyz", timeout=2).status_code == 503
    assert "poolgate ready" not in out
    control.mode = "ok"                          # the IdP comes back
    assert _wait(lambda: "poolgate ready" in out, 15), out
    assert httpx.get(gw.admin + "/readyz", timeout=2).status_code == 200
    assert out.count("poolgate ready") == 1
    assert gw.wait_log(lambda line: '"event":"ready"' in line, 5)


def _age(text: str) -> float:
    m = re.search(r'^poolgate_jwks_key_age_seconds\{source="pool"\} (\S+)$', text, re.M)
    assert m, text
    return float(m.group(1))


def test_jwks_key_age_is_computed_when_scraped(jwks, upstream, gateway_factory):
    _, jwks_srv = jwks
    _, up = upstream
    gw = gateway_factory(base_config(jwks_srv.url + "/jwks", up.url), ready=False)
    # wait for the keys through /metrics only: /readyz is never called in this test
    assert _wait(lambda: re.search(r'^poolgate_jwks_keys\{source="pool"\} 1\.0$',
                                   httpx.get(gw.admin + "/metrics", timeout=2).text, re.M), 15)
    first = _age(httpx.get(gw.admin + "/metrics", timeout=2).text)
    time.sleep(1.5)
    second = _age(httpx.get(gw.admin + "/metrics", timeout=2).text)
    assert 1.3 <= second - first <= 5, (first, second)
    text = httpx.get(gw.admin + "/metrics", timeout=2).text
    assert re.search(r'^poolgate_jwks_max_stale_seconds\{source="pool"\} 3600\.0$', text, re.M)
    assert re.search(r'^poolgate_revocation_store_up\{store="memory"\} 1\.0$', text, re.M)
