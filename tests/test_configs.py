"""Every example in config/ passes `poolgate check`; the packaged demo config is config/demo.yaml."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from config_examples import CONFIGS, REPO, example_env



def test_the_examples_are_there() -> None:
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "sidecar.yaml", "standalone.yaml", "cognito.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_check_accepts(path: Path, tmp_path: Path) -> None:
    # without the deployment's optional POOLGATE_* variables (`check` warns about them, never
    # fails), with the key files the examples name in place (`serve` would refuse without)
    res = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=REPO,
                         env=example_env(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{path}: ok" in res.stdout
    assert "Traceback" not in res.stderr


def test_examples_name_only_files_in_the_repository() -> None:
    """A comment pointing at a document or file that is not in the repository misleads."""
    ref = re.compile(r"(?<![\w/.$-])((?:[\w.-]+/)*[\w.-]+\.(?:md|py|yaml))\b")
    missing = []
    for path in CONFIGS:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            comment = line.partition("#")[2]
            for name in ref.findall(comment):
                if not (REPO / name).exists() and not (REPO / "config" / name).exists():
                    missing.append(f"{path.name}:{n}: {name}")
    assert not missing, missing


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
