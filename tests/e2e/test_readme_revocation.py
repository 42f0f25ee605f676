"""The README's revocation examples run as written (admin API with curl, `poolgate revoke`)
against a running gateway, and each write or delete leaves one audit line in its log."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import httpx
import pytest
import yaml

from .conftest import base_config
from .servers import ROOT

ADMIN = "readme-admin-token-0123456789"


def _commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Revocation\n", 1)[1].split("\n### Redis key format", 1)[0]
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            if cmd.strip() and not cmd.lstrip().startswith("#"):
                cmds.append(cmd.strip())
    return cmds


def test_examples_are_there() -> None:
    cmds = _commands()
    assert sum(c.startswith("curl") for c in cmds) >= 5
    assert any(c.startswith("poolgate revoke") for c in cmds)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_readme_revocation_examples_run_as_written(jwks, upstream, gateway_factory, tmp_path):
    _, jwks_srv = jwks
    _, up = upstream
    gw = gateway_factory(base_config(jwks_srv.url + "/jwks", up.url,
                                     admin={"token": "${POOLGATE_ADMIN_TOKEN}"}),
                         env={"POOLGATE_ADMIN_TOKEN": ADMIN})
    admin_hostport = gw.admin.removeprefix("http://")
    # the same config for the CLI, naming the admin port the gateway actually bound
    cli_cfg = yaml.safe_load(gw.path.read_text())
    cli_cfg["admin"]["port"] = int(admin_hostport.rsplit(":", 1)[1])
    cli_path = tmp_path / "poolgate.yaml"
    cli_path.write_text(yaml.safe_dump(cli_cfg))
    prog = shlex.join([sys.executable, "-m", "gateway"])
    env = {**os.environ, "POOLGATE_ADMIN_TOKEN": ADMIN,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    writes = 0
    for cmd in _commands():
        run = cmd.replace("127.0.0.1:9901", admin_hostport).replace(
            "poolgate.yaml", shlex.quote(str(cli_path)))
        if run.startswith("poolgate "):
            run = prog + run[len("poolgate"):]
        res = subprocess.run(["bash", "-c", run], capture_output=True, text=True, timeout=30,
                             env=env, cwd=tmp_path)
        assert res.returncode == 0, (cmd, res.stdout, res.stderr)
        if "-X POST" in cmd or "-X DELETE" in cmd or cmd.startswith("poolgate revoke"):
            writes += 1
        if cmd.startswith("poolgate revoke"):
            out = json.loads(res.stdout)
            assert out["ttl"] > 0 and isinstance(out.get("not_before", 0), int)
    listing = httpx.get(gw.admin + "/revocations", timeout=5,
                        headers={"Authorization": f"Bearer {ADMIN}"}).json()
    kinds = {(e["kind"], e["value"]) for e in listing["entries"]}
    assert ("sub", "1b2c-user") in kinds and ("origin_jti", "6f1d-family") in kinds
    assert ("jti", "5f3c-jti") not in kinds          # the README deletes it again
    assert gw.wait_log(lambda _l: sum('"logger":"poolgate.audit"' in ln
                                      for ln in gw.lines) >= writes, 5)
    audit = [json.loads(ln) for ln in gw.lines if '"logger":"poolgate.audit"' in ln]
    assert len(audit) == writes and all(a["outcome"] == "ok" for a in audit)
    assert not any(ADMIN in ln for ln in gw.lines)
