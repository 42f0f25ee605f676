"""Config errors never print a secret: no source snippet from the YAML parser, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import loads_config
from gateway.errors import ConfigError

SECRET = "supersecretvalue123"


@pytest.mark.parametrize("text", [
    f'version: 1\nadmin:\n  token: "{SECRET}\n  port: [\n',
    f"version: 1\nadmin: {{token: {SECRET}: x}}\n",
    f"version: 1\nadmin:\n\ttoken: {SECRET}\n",
])
def test_yaml_errors_name_the_place_not_the_content(text: str) -> None:
    with pytest.raises(ConfigError) as e:
        loads_config(text)
    msg = str(e.value)
    assert msg.startswith("not valid YAML: line ") and SECRET not in msg


def test_check_prints_no_secret_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"version: 1\nadmin: {{token: {SECRET}: x}}\n")
    res = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert SECRET not in res.stdout + res.stderr and "Traceback" not in res.stderr
