"""`poolgate check` exits non-zero exactly when `poolgate serve` refuses the file, with the same
message (DESIGN "Contract details"): every config/ example and a set of broken files, each run
through a real `check` and a real `serve` subprocess."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from config_examples import CONFIGS, REPO, example_env

GOOD = {
    "version": 1,
    "listen": {"host": "127.0.0.1", "port": 0},
    "admin": {"host": "127.0.0.1", "port": 0, "token": "${POOLGATE_ADMIN_TOKEN}"},
    "identity_sources": [{"id": "pool", "issuer": "http://127.0.0.1:9/",
                          "jwks_uri": "http://127.0.0.1:9/jwks", "audiences": ["a"]}],
    "upstreams": {"web": {"url": "http://127.0.0.1:9"}},
    "routes": [{"id": "r", "match": {"path": "/**"}, "upstream": "web", "auth": "authenticated"}],
    "roles": {"member": {"statements": []}},
    "default_role": "member",
}


def _broken(**changes: object) -> dict:
    doc = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[last] = value
    return doc


BROKEN = {
    "required-env-unset": (_broken(upstreams={"web": {"url": "${WEB_URL}"}}), [],
                           "upstreams.web.url: ${WEB_URL} is not set"),
    "unknown-key": (_broken(routes=[{"id": "r", "match": {"path": "/**"}, "upstream": "web",
                                     "auth": "authenticated", "colour": "red"}]), [],
                    "routes[0].colour: unknown key"),
    "undefined-upstream": (_broken(routes=[{"id": "r", "match": {"path": "/**"},
                                            "upstream": "nope"}]), [],
                           "routes[0].upstream: no upstream 'nope'"),
    "missing-key-file": (_broken(downstream_credential={"signing_keys": [
        {"kid": "k1", "private_key_file": "/nonexistent/k1.pem"}]}), [],
        "downstream_credential.signing_keys[0].private_key_file: cannot read"),
    "workers-with-memory-store": (GOOD, ["--workers", "2"], "revocation.store: store: memory"),
    "bad-regex-rule": (_broken(mappings={"pool": {"rules": [
        {"claim": "x", "op": "regex", "value": "(", "role": "member"}]}}), [], "mappings.pool"),
    "bad-yaml": ("version: 1\nroutes: [\n", [], "not valid YAML"),
    "missing-file": (None, [], "cannot read config file"),
}


def _run(cmd: str, path: Path, extra: list[str], env: dict[str, str],
         timeout: float = 30) -> tuple[int | None, str, str]:
    """(exit code or None if still running when it said it was listening, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "gateway", cmd, "--config", str(path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    try:
        if cmd == "serve":
            assert proc.stdout is not None
            deadline = time.monotonic() + timeout
            out = ""
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                out += line
                if line.startswith("poolgate listening"):
                    proc.send_signal(signal.SIGTERM)
                    o, e = proc.communicate(timeout=20)
                    return None, out + o, e
                if not line and proc.poll() is not None:
                    break
        o, e = proc.communicate(timeout=timeout)
        return proc.returncode, o, e
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("poolgate: config error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_check_and_serve_refuse_the_same_files_with_the_same_message(name: str,
                                                                    tmp_path: Path) -> None:
    doc, extra, expected = BROKEN[name]
    path = tmp_path / "poolgate.yaml"
    if isinstance(doc, dict):
        path.write_text(yaml.safe_dump(doc))
    elif isinstance(doc, str):
        path.write_text(doc)
    env = example_env(tmp_path)
    check = _run("check", path, extra, env)
    serve = _run("serve", path, extra, env)
    assert check[0] == serve[0] == 2, (check, serve)
    assert _error_line(check[2]) == _error_line(serve[2])
    assert expected in _error_line(check[2])
    for _, out, err in (check, serve):
        assert "Traceback" not in out + err


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_example_passes_check_and_starts_under_serve(path: Path, tmp_path: Path) -> None:
    env = example_env(tmp_path)
    check = _run("check", path, [], env)
    assert check[0] == 0 and f"{path}: ok" in check[1], check
    # serve the same file, moved to free ports only (everything else byte-for-byte)
    doc = yaml.safe_load(path.read_text())
    for section in ("listen", "admin"):
        doc.setdefault(section, {}).update(host="127.0.0.1", port=0)
    served = tmp_path / path.name
    served.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert _run("check", served, [], env)[0] == 0
    code, out, err = _run("serve", served, [], env)
    assert code is None, (out, err)          # it said "poolgate listening" and was stopped
    assert "config error" not in err
