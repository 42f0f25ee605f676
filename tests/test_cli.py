"""`poolgate <command> --help`: every flag has a help line with its default (or says it is
required), and every flag is mentioned in the README's "Commands" section; exit codes agree."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
COMMANDS_SECTION = (ROOT / "README.md").read_text().split("\n## Commands\n", 1)[1] \
    .split("\n## ", 1)[0]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _flags():
    for name, parser in _subcommands().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            yield name, action


@pytest.mark.parametrize("command,action", list(_flags()),
                         ids=lambda v: v if isinstance(v, str) else "/".join(v.option_strings)
                         or v.dest)
def test_every_flag_has_help_with_its_default(command: str, action: argparse.Action) -> None:
    text = (action.help or "").lower()
    assert text, f"{command} {action.option_strings or action.dest}: no help line"
    if action.option_strings:
        assert action.required or "default" in text or "required" in text, \
            f"{command} {action.option_strings}: help does not give the default"
        assert any(f"`{command}" in line and opt in line for opt in action.option_strings
                   for line in COMMANDS_SECTION.splitlines()) or \
            any(opt in COMMANDS_SECTION for opt in action.option_strings), \
            f"{action.option_strings} of {command} not in README Commands"


def test_help_shows_defaults() -> None:
    res = subprocess.run([sys.executable, "-m", "gateway", "demo", "--help"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert res.returncode == 0
    assert "--state-dir DIR" in res.stdout and "poolgate-demo" in res.stdout
    assert "(default: 8080" in res.stdout


@pytest.mark.parametrize("command", ["serve", "check"])
def test_a_missing_config_file_is_exit_2_from_serve_and_check(command: str,
                                                              tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "gateway", command, "--config",
                          str(tmp_path / "nope.yaml")], capture_output=True, text=True,
                         timeout=30, cwd=ROOT)
    assert res.returncode == 2
    assert res.stderr.startswith("poolgate: config error: cannot read config file")


def test_a_port_in_use_is_not_a_config_error(tmp_path: Path) -> None:
    import socket
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"version: 1\nlisten: {{host: 127.0.0.1, port: {port}}}\n"
                   "admin: {host: 127.0.0.1, port: 0}\n")
    try:
        res = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=30, cwd=ROOT)
    finally:
        blocker.close()
    assert res.returncode == 1
    assert "config error" not in res.stderr
    assert f"poolgate: cannot listen on 127.0.0.1:{port}: Address already in use" in res.stderr


def test_check_summary_grammar(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: 1\nidentity_sources: [{id: s, issuer: 'http://127.0.0.1:9/', "
                   "audiences: any}]\nroles: {member: {statements: []}}\n")
    res = subprocess.run([sys.executable, "-m", "gateway", "check", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "(0 routes, 1 identity source, 1 role" in res.stdout
