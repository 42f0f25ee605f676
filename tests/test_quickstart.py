"""The README's first quick-start command works on a fresh clone in a fresh venv.

The second command is the one CI runs (tests/test_readme.py keeps .ci/run identical to it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _first_command() -> str:
    quick = (ROOT / "README.md").read_text().split("## Quick start", 1)[1]
    return re.findall(r"```sh\n(.*?)```", quick, re.S)[0].strip()


def _port_free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_first_quick_start_command_runs_the_demo_on_a_fresh_clone(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    busy = [p for p in (8080, 9901, 9000, 9001) if not _port_free(p)]
    if busy:
        pytest.skip(f"the demo's default ports are taken here: {busy}")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    # the working tree under test, not only what is committed (CI runs on a clean clone anyway)
    for rel in subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.split():
        src = ROOT / rel
        if src.is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, clone / rel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(["bash", "-c", _first_command()], cwd=clone, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out: list[str] = []
    try:
        deadline = time.monotonic() + 360
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                if proc.poll() is not None:
                    break
                continue
            out.append(line)
            if "poolgate demo ready" in line:
                break
        assert any("poolgate demo ready" in x for x in out), "".join(out[-40:])
        r = httpx.get("http://127.0.0.1:9901/healthz", timeout=5)
        assert r.status_code == 200
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
