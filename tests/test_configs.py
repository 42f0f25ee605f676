"""Every example in config/ passes `poolgate check`; the packaged demo config is config/demo.yaml."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "config").glob("*.yaml"))


def test_the_examples_are_there() -> None:
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "sidecar.yaml", "standalone.yaml", "cognito.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_check_accepts(path: Path) -> None:
    # without the deployment's POOLGATE_* variables: `check` warns about them, never fails
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLGATE_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{path}: ok" in res.stdout
    assert "Traceback" not in res.stderr


def test_packaged_demo_config_is_config_demo_yaml() -> None:
    packaged = REPO / "gateway" / "data" / "demo.yaml"
    assert packaged.read_bytes() == (REPO / "config" / "demo.yaml").read_bytes(), (
        "gateway/data/demo.yaml must be a byte-identical copy of config/demo.yaml: "
        "cp config/demo.yaml gateway/data/demo.yaml")


def test_packaged_demo_config_is_package_data() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'gateway\s*=\s*\[[^\]]*"data/\*\.yaml"', text)


def test_cognito_example_comments_every_key() -> None:
    """config/cognito.yaml is the annotated reference: no key without a comment on its line."""
    key = re.compile(r"^\s*(?:-\s+)?[\"']?[A-Za-z_][\w:.\-]*[\"']?\s*:(?:\s|$)")
    bare = []
    for n, line in enumerate((REPO / "config" / "cognito.yaml").read_text().splitlines(), 1):
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if key.match(line) and "#" not in line:
            bare.append(f"{n}: {line}")
    assert not bare, "keys without a comment:\n" + "\n".join(bare)
