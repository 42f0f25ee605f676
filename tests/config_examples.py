"""The environment under which every config/ example is servable on a developer machine: the
key files the examples name (through ${POOLGATE_KEY_DIR} and ${POOLGATE_DEMO_STATE_DIR})
exist, and no other POOLGATE_* variable is set (the optional ones fall back to defaults)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.forward.credential import generate_key_pem

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "config").glob("*.yaml"))
KEY_FILES = ("k1.pem", "k2.pem", "prod-2026-11.pem")


def example_env(tmp: Path) -> dict[str, str]:
    keys = tmp / "keys"
    keys.mkdir(exist_ok=True)
    for name in KEY_FILES:
        (keys / name).write_bytes(generate_key_pem("ES256"))
    demo = tmp / "demo-state"
    demo.mkdir(exist_ok=True)
    (demo / "credential-es256.pem").write_bytes(generate_key_pem("ES256"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLGATE_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(POOLGATE_KEY_DIR=str(keys), POOLGATE_DEMO_STATE_DIR=str(demo))
    return env
