"""The README cannot drift: its config reference is the schema, its test command is CI's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway import config as config_mod
from gateway.config import loads_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _reference_block() -> str:
    section = README.split("## Configuration reference", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def _key_paths(tree: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(tree, dict):
        for k, v in tree.items():
            p = f"{prefix}.{k}" if prefix else str(k)
            out.add(p)
            out |= _key_paths(v, p)
    elif isinstance(tree, list):
        for v in tree:
            out |= _key_paths(v, prefix + "[]")
    return out


def _normalise(paths: set[str]) -> set[str]:
    # user-chosen names (upstream ids, role names, source ids) are not schema keys
    subs = [(r"^upstreams\.[^.]+", "upstreams.*"), (r"^roles\.[^.]+", "roles.*"),
            (r"^mappings\.[^.]+", "mappings.*"), (r"^principal_tags\.[^.]+", "principal_tags.*"),
            (r"group_to_role\.[^.]+", "group_to_role.*"),
            (r"identity_headers\.[^.]+", "identity_headers.*"),
            (r"condition\.[^.]+.*", "condition.*")]
    out = set()
    for p in paths:
        for rx, rep in subs:
            p = re.sub(rx, rep, p)
        out.add(p)
    return out


def test_config_reference_is_valid_and_covers_every_key(monkeypatch):
    block = _reference_block()
    asked: set[str] = set()
    real_raw = config_mod._Node.raw

    def spy(self, key, default=config_mod._MISSING):
        path = re.sub(r"\[\d+\]", "[]", self.sub(key))
        asked.add(path)
        return real_raw(self, key, default)

    monkeypatch.setattr(config_mod._Node, "raw", spy)
    loads_config(block, env={"POOLGATE_ADMIN_TOKEN": "x" * 20})
    documented = _normalise(_key_paths(yaml.safe_load(block)))
    schema = _normalise(asked)
    # every key the parser reads is documented (the generic-OIDC `issuer` is in a comment)
    missing = {p for p in schema - documented if not p.endswith(("].issuer",))}
    assert not missing, f"README config reference lacks: {sorted(missing)}"
    assert "issuer: https://idp.example/" in block


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quick, re.S)
    assert len(blocks) == 2
    demo, tests = (b.strip() for b in blocks)
    assert "poolgate demo" in demo and "\n" not in demo
    assert "pytest" in tests and "\n" not in tests
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == tests
