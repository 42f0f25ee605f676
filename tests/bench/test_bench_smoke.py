"""The benchmark harness works: a tiny run (direct upstream + naive proxy) writes sane JSON.

Cheap (about 6-10 s), so it runs in the normal suite; it neither needs nor touches the
gateway, and it writes to a temporary directory, never over tests/bench/results/latest.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(90)
def test_quick_run_writes_json_with_numbers(tmp_path: Path) -> None:
    out_json, out_md = tmp_path / "latest.json", tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(HERE / "run.py"), "--quick", "--only", "direct,naive",
         "--duration", "1", "--warmup", "0.5", "--connections", "8",
         "--json", str(out_json), "--markdown", str(out_md)],
        capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out_json.read_text())
    assert data["meta"]["nproc"] >= 1
    assert data["meta"]["generator"]
    for name in ("direct", "naive"):
        r = data["scenarios"][name]
        assert r["status"] == "ok", r
        assert r["rps"] > 0 and r["requests"] > 0
        assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
    assert data["scenarios"]["naive"]["peak_rss_mb"] > 0
    assert "| (a) direct upstream |" in out_md.read_text()


def test_python_generator_and_upstream_fallback(tmp_path: Path) -> None:
    """Without wrk and nginx the harness falls back to its own asyncio upstream and generator."""
    out_json = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, str(HERE / "run.py"), "--quick", "--only", "direct",
         "--duration", "1", "--warmup", "0.2", "--connections", "4",
         "--generator", "python", "--python-upstream",
         "--json", str(out_json), "--markdown", str(tmp_path / "RESULTS.md")],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out_json.read_text())
    r = data["scenarios"]["direct"]
    assert r["status"] == "ok", r
    assert r["rps"] > 0 and r["non_2xx"] == 0
    assert "python" in data["meta"]["generator"] and "python" in data["meta"]["upstream"]
