"""`poolgate explain` as a subprocess: every worked-example row of MAPPING.md gives the decision
the running gateway gives (the same row tables drive tests/e2e/test_worked_examples.py), a real
token is verified first, and the exit codes are 0 allow, 1 deny or invalid token, 2 usage or
config error."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from e2e.servers import JwksControl, Signer, ThreadServer
from fixtures.worked_examples import (ADMIN, CONFIGS, ELSEWHERE, OFFICE, ROWS, Row, config,
                                      issuer, source_of)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> dict[str, str]:
        return dict(line.split(": ", 1) for line in self.out.splitlines() if ": " in line)


def explain(*args: str, timeout: float = 30) -> Run:
    p = subprocess.run([sys.executable, "-m", "gateway", "explain", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr)


def row_args(row: Row) -> list[str]:
    """The row as explain flags; the claims carry the `iss` of the row's identity source, so
    explain picks the source the way the gateway does (by issuer)."""
    if row.claims is None:
        claims = "null"
    else:
        claims = json.dumps({"iss": issuer(row.example, source_of(row)), **row.claims})
    args = ["--config", str(CONFIGS[row.example]), "--claims", claims, "--method", row.method,
            "--path", row.path, "--source-ip", row.source_ip or "127.0.0.1"]
    if row.secure:
        args.append("--secure")
    for k, v in row.headers:
        args += ["--header", f"{k}: {v}"]
    return args


@pytest.fixture(scope="module")
def row_runs() -> dict[str, Run]:
    """Every row, explained in parallel (each is its own process)."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = pool.map(lambda r: explain(*row_args(r)), ROWS)
        return {row.id: run for row, run in zip(ROWS, runs)}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_explain_gives_the_gateways_decision(row_runs: dict[str, Run], row: Row) -> None:
    run = row_runs[row.id]
    lines = run.lines
    assert run.code == row.exit_code, f"{row.id}: {run.out}{run.err}"
    assert lines["role"] == (row.role or "(none)"), run.out
    assert lines["decision"] == ("allow" if row.allowed else "deny")
    assert lines["reason"] == row.reason
    assert lines["verification"].startswith("skipped"), run.out
    if not row.allowed:
        assert lines["status"] == str(row.status)
    if row.statements:
        assert set(row.statements) <= set(lines["statements"].split(", ")), run.out
    assert run.err == ""                     # no key generated, nothing to warn about


def test_claims_output_says_verification_was_skipped(row_runs: dict[str, Run]) -> None:
    lines = row_runs["ex1-row1"].lines
    assert "NOT checked" in lines["verification"]
    assert lines["identity_source"] == "pool-main" and lines["route"] == "tenant-orders"
    assert lines["rule"] == "mappings.pool-main.rules[0]"
    assert "no token" in row_runs["ex2-row1"].lines["verification"]


def test_claims_pick_the_identity_source_by_issuer_or_flag() -> None:
    tie = json.dumps({"sub": "u", "cognito:groups": ["premium", "staff"]})
    base = ["--config", str(CONFIGS[2]), "--claims", tie, "--method", "GET", "--path",
            "/cms/x", "--secure"]
    first = explain(*base)                            # no iss: the first source (precedence)
    assert (first.code, first.lines["role"], first.lines["identity_source"]) == (
        0, "staff", "media-pool")
    flagged = explain(*base, "--identity-source", "media-nopref")
    assert (flagged.code, flagged.lines["reason"], flagged.lines["role"]) == (
        1, "ambiguous_role", "(none)")


def test_json_output_parses() -> None:
    row = next(r for r in ROWS if r.id == "ex1-row2")
    run = explain(*row_args(row), "--json")
    assert run.code == 1
    data = json.loads(run.out)
    assert data["role"] == "admin" and data["decision"] == "deny"
    assert data["reason"] == "explicit_deny" and data["status"] == 403
    assert data["statements"] == ["AdminFromOffice"]
    assert data["verification"].startswith("skipped")
    ok = explain(*row_args(next(r for r in ROWS if r.id == "ex2-row7")), "--json")
    assert json.loads(ok.out)["role"] is None and ok.code == 1


# --------------------------------------------------------------------------- --token


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Signer, Path]]:
    """Example 1 with a real JWKS server; the config file explain reads."""
    signer = Signer()
    control = JwksControl()
    control.keys = [signer.public_jwk()]
    srv = ThreadServer(control).start()
    cfg = config(1)
    cfg["identity_sources"][0]["jwks_uri"] = srv.url + "/jwks.json"
    path = tmp_path_factory.mktemp("explain") / "example1-live.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        yield signer, path
    finally:
        srv.stop()


def id_token(signer: Signer, claims: dict[str, Any], **over: Any) -> str:
    now = int(time.time())
    c = {"iss": issuer(1, None), "aud": "example1client", "token_use": "id", "iat": now,
         "exp": now + 600, "jti": str(uuid.uuid4()), **claims, **over}
    return signer.token(c)


def test_token_is_verified_then_explained(live: tuple[Signer, Path]) -> None:
    signer, path = live
    tok = id_token(signer, ADMIN)
    base = ["--config", str(path), "--token", tok, "--method", "GET", "--path", "/admin/stats"]
    office = explain(*base, "--source-ip", OFFICE)
    assert office.code == 0, office.out + office.err
    assert office.lines["verification"].startswith("verified")
    assert (office.lines["role"], office.lines["decision"]) == ("admin", "allow")
    elsewhere = explain(*base, "--source-ip", ELSEWHERE)
    assert elsewhere.code == 1
    assert (elsewhere.lines["role"], elsewhere.lines["reason"]) == ("admin", "explicit_deny")
    assert elsewhere.lines["verification"].startswith("verified")


@pytest.mark.parametrize(("over", "reason"), [
    ({"exp": int(time.time()) - 3600}, "token_expired"),
    ({"aud": "someone-else"}, "bad_client_id"),
    ({"token_use": "access", "client_id": "example1client"}, "bad_token_use"),
    ({"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"}, "bad_issuer"),
])
def test_invalid_token_is_a_deny_with_the_reason(live: tuple[Signer, Path],
                                                 over: dict[str, Any], reason: str) -> None:
    signer, path = live
    run = explain("--config", str(path), "--token", id_token(signer, ADMIN, **over),
                  "--method", "DELETE", "--path", "/tenants/t9/orders/42")
    assert run.code == 1, run.out + run.err
    lines = run.lines
    assert (lines["decision"], lines["reason"], lines["status"]) == ("deny", reason, "401")
    assert lines["verification"] == f"failed ({reason})"
    assert lines["role"] == "(none)"


def test_token_signed_by_another_key_is_refused(live: tuple[Signer, Path]) -> None:
    _, path = live
    forged = id_token(Signer(), ADMIN)
    run = explain("--config", str(path), "--token", forged, "--method", "GET",
                  "--path", "/tenants/t9/orders/1")
    assert run.code == 1 and run.lines["status"] == "401", run.out
    assert run.lines["verification"].startswith("failed")


# --------------------------------------------------------------------------- exit code 2


def test_usage_and_config_errors_exit_2(tmp_path: Path) -> None:
    common = ["--method", "GET", "--path", "/x"]
    ex1 = str(CONFIGS[1])
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroutes: [{id: r, match: {path: /x}, upstream: nowhere}]\n")
    cases: dict[str, list[str]] = {
        "missing config": ["--config", str(tmp_path / "missing.yaml"), "--claims", "{}", *common],
        "bad config": ["--config", str(bad), "--claims", "{}", *common],
        "bad JSON": ["--config", ex1, "--claims", "{not json", *common],
        "JSON list": ["--config", ex1, "--claims", "[1, 2]", *common],
        "unknown source": ["--config", ex1, "--claims", "{}", "--identity-source", "nope",
                           *common],
        "header without colon": ["--config", ex1, "--claims", "{}", "--header", "no-colon",
                                 *common],
        "token as a header": ["--config", ex1, "--claims", "{}", "--header",
                              "Authorization: Bearer x", *common],
        "token and claims": ["--config", ex1, "--claims", "{}", "--token", "a.b.c", *common],
        "no token or claims": ["--config", ex1, *common],
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = dict(zip(cases, pool.map(lambda a: explain(*a), cases.values())))
    for name, run in runs.items():
        assert run.code == 2, (name, run.out, run.err)
        assert "Traceback" not in run.err, name
    assert "routes[0]" in runs["bad config"].err
    assert "--claims" in runs["bad JSON"].err and "--claims" in runs["JSON list"].err
    assert "nope" in runs["unknown source"].err
