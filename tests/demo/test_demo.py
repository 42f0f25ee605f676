"""`poolgate demo` end to end: a real process on loopback, its printed commands run as printed.

The walkthrough's promises are checked by running each printed command (curl when installed,
else the same request through httpx; `poolgate revoke` as `python -m gateway revoke`) and
comparing the status each step announces. Every process started here is stopped by PID in
``finally``; every wait is bounded.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
READY = "poolgate demo ready"
READY_TIMEOUT = 30.0
EXIT_TIMEOUT = 10.0

pytestmark = pytest.mark.e2e


# --------------------------------------------------------------------------- process helpers

def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held at once while choosing, so no repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLGATE_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def gateway_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", *args]


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    ports: dict[str, int]
    state_dir: Path
    stderr_path: Path
    lines: "queue.Queue[str | None]" = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {READY!r} within {timeout} s; stdout so far:\n"
                            + "\n".join(self.output) + "\nstderr:\n" + self.stderr())
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"demo exited ({self.proc.poll()}) before {READY!r}:\n"
                            + "\n".join(self.output) + "\nstderr:\n" + self.stderr())
            self.output.append(line)
            if line == READY:
                return self.output

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]


def start_demo(tmp_path: Path, ports: dict[str, int] | None = None) -> Demo:
    ports = ports or dict(zip(("port", "admin", "issuer", "upstream"), free_ports(4)))
    state = tmp_path / "state"
    err = tmp_path / "demo.stderr"
    with open(err, "w") as errf:
        proc = subprocess.Popen(
            gateway_cmd("demo", "--port", str(ports["port"]), "--admin-port", str(ports["admin"]),
                        "--issuer-port", str(ports["issuer"]),
                        "--upstream-port", str(ports["upstream"]), "--state-dir", str(state)),
            cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=errf, text=True)
    demo = Demo(proc, ports, state, err)
    threading.Thread(target=demo.pump, daemon=True).start()
    return demo


def stop(proc: subprocess.Popen[Any]) -> None:
    """By PID: SIGKILL if still running, then reap (bounded)."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    d = start_demo(tmp_path)
    try:
        yield d
    finally:
        stop(d.proc)


# --------------------------------------------------------------------------- the walkthrough

@dataclass
class Command:
    step: int
    argv: list[str]
    expect: int | None          # the status announced for it (curl), None for the others


def parse_walkthrough(lines: list[str]) -> list[Command]:
    """Commands between `# 1.` and `admin token:`, each with the last announced status."""
    out: list[Command] = []
    step, expect, inside = 0, None, False
    for line in lines:
        if line.startswith("# 1."):
            inside = True
        if not inside:
            continue
        if line.startswith("admin token:"):
            break
        if not line.strip():
            continue
        if line.startswith("#"):
            m = re.match(r"# (\d+)\.", line)
            if m:
                step = int(m.group(1))
            s = re.search(r"-> (\d{3})\b", line)
            if s:
                expect = int(s.group(1))
            continue
        argv = shlex.split(line)
        out.append(Command(step, argv, expect if argv[0] == "curl" else None))
    return out


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def run_curl(argv: list[str]) -> Answer:
    if shutil.which("curl"):
        res = subprocess.run(argv, capture_output=True, timeout=15)
        assert res.returncode == 0, res.stderr
        raw = res.stdout.decode("utf-8", "replace")
        head, _, body = raw.partition("\r\n\r\n")
        status_line, *header_lines = head.split("\r\n")
        headers: dict[str, str] = {}
        for h in header_lines:
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        return Answer(int(status_line.split()[1]), headers, body)
    return _curl_via_httpx(argv)


def _curl_via_httpx(argv: list[str]) -> Answer:
    """The subset of curl the walkthrough uses: -si, -X, -H, -d and one URL."""
    method, headers, data, url = "GET", [], None, None
    it = iter(argv[1:])
    for a in it:
        if a == "-X":
            method = next(it)
        elif a == "-H":
            k, _, v = next(it).partition(":")
            headers.append((k.strip(), v.strip()))
        elif a == "-d":
            data = next(it)
            method = "POST" if method == "GET" else method
        elif a.startswith("-"):
            assert a in ("-s", "-i", "-si"), f"walkthrough uses a curl flag the test cannot map: {a}"
        else:
            url = a
    assert url is not None
    r = httpx.request(method, url, headers=headers, content=data, timeout=15, trust_env=False)
    return Answer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.text)


def jwt_part(token: str, i: int) -> dict[str, Any]:
    seg = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def bearer(argv: list[str]) -> str | None:
    for a, b in zip(argv, argv[1:]):
        if a == "-H" and b.lower().startswith("authorization: bearer "):
            return b.split(" ", 2)[2]
    return None


# --------------------------------------------------------------------------- tests

def test_walkthrough_commands_do_what_they_say(demo: Demo) -> None:
    lines = demo.wait_ready()
    assert lines[-1] == READY
    text = "\n".join(lines)
    commands = parse_walkthrough(lines)
    steps = {c.step for c in commands}
    aws = importlib.util.find_spec("moto") is not None     # the AWS part (poolgate[aws])
    assert steps == set(range(1, 9 if aws else 8)), text

    env = _env()
    answers: dict[int, list[Answer]] = {}
    ran_revoke = False
    for cmd in commands:
        if cmd.argv[0] == "export":
            env.update(a.split("=", 1) for a in cmd.argv[1:])
            continue
        if cmd.argv[0] == "curl":
            assert cmd.expect is not None, f"no status announced for {cmd.argv}"
            ans = run_curl(cmd.argv)
            assert ans.status == cmd.expect, (cmd.step, cmd.argv[:3], ans.status, ans.body)
            answers.setdefault(cmd.step, []).append(ans)
            continue
        # `poolgate revoke ...`, or `<python> -m gateway revoke ...` when not installed
        argv = gateway_cmd(*cmd.argv[1:]) if cmd.argv[0] == "poolgate" else cmd.argv
        assert "revoke" in argv and "--config" in argv and "--jti" in argv, argv
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, cwd=REPO)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["jti"] == argv[argv.index("--jti") + 1]
        ran_revoke = True
    assert ran_revoke

    # 1 allowed, 2 denied, 3 invalid, 4 guest, 5 public, 6 credential, 7 revoked
    assert [a.status for a in answers[1]] == [200]
    assert answers[1][0].json()["credential"]["claims"]["role"] == "admin"
    denied = answers[2][0]
    assert denied.status == 403 and 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    assert denied.json()["error"] == "insufficient_scope"
    invalid = answers[3][0]
    assert invalid.status == 401 and 'error="invalid_token"' in invalid.headers["www-authenticate"]
    assert invalid.json()["reason"] == "token_expired"
    guest = answers[4][0].json()
    assert guest["path"] == "/catalog/books"
    assert guest["credential"]["claims"]["role"] == "guest"
    assert answers[5][0].json()["path"] == "/public/hello"

    echoed = answers[6][0].json()
    cred = echoed["credential"]
    assert cred["verified"] is True, cred
    assert cred["verified_with"] == f"http://127.0.0.1:{demo.ports['admin']}/.well-known/jwks.json"
    alice = next(bearer(c.argv) for c in commands if c.step == 6)
    assert alice is not None
    claims = cred["claims"]
    assert claims["aud"] == "echo" and claims["role"] == "admin"
    assert claims["sub"] == jwt_part(alice, 1)["sub"]
    assert claims["src_jti"] == jwt_part(alice, 1)["jti"]
    assert "authorization" not in echoed["headers"]          # the user token stays at the gateway
    assert echoed["headers"]["x-auth-role"] == "admin"

    revoked = answers[7]
    assert [a.status for a in revoked] == [200, 201, 401]
    assert revoked[-1].json()["reason"] == "token_revoked"

    if aws:   # 8: S3 behind the gateway, alice and bob each confined to their own prefix
        files = answers[8]
        assert [a.status for a in files] == [200, 403, 200, 403, 200]
        assert files[0].body == "hello alice, from S3\n" and files[2].body == "hello bob, from S3\n"
        assert all("<Code>AccessDenied</Code>" in a.body for a in (files[1], files[3]))
        creds = files[4].json()
        assert set(creds) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}
        assert creds["RoleArn"].endswith(":role/poolgate-demo-admin")

    # the printed admin token and key path are the real ones
    admin_token = re.search(r"^admin token: (\S+)$", text, re.M)
    assert admin_token and env["POOLGATE_ADMIN_TOKEN"] == admin_token.group(1)
    key_path = re.search(r"^credential signing key: (\S+)", text, re.M)
    assert key_path and Path(key_path.group(1)) == demo.state_dir.resolve() / "credential-es256.pem"
    assert Path(key_path.group(1)).stat().st_mode & 0o077 == 0

    # `poolgate demo token bob` (another process, same state dir) mints tokens the demo accepts
    res = subprocess.run(gateway_cmd("demo", "token", "bob", "--state-dir", str(demo.state_dir)),
                         capture_output=True, text=True, timeout=30, cwd=REPO, env=_env())
    assert res.returncode == 0, res.stderr
    fresh = res.stdout.strip()
    r = httpx.get(f"http://127.0.0.1:{demo.ports['port']}/orders/1",
                  headers={"Authorization": f"Bearer {fresh}"}, timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    assert r.json()["credential"]["claims"]["role"] == "member"

    # the issuer's loopback token endpoint
    r = httpx.post(f"http://127.0.0.1:{demo.ports['issuer']}/token/alice", timeout=10,
                   trust_env=False)
    assert r.status_code == 200 and jwt_part(r.json()["access_token"], 1)["username"] == "alice"

    # SIGINT: everything stops, exit 0
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(timeout=EXIT_TIMEOUT) == 0, demo.stderr()
    assert "Traceback" not in demo.stderr()


def test_sigterm_stops_cleanly(demo: Demo) -> None:
    demo.wait_ready()
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(timeout=EXIT_TIMEOUT) == 0, demo.stderr()
    for port in demo.ports.values():            # every listener is gone
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_says_where_the_keys_are_and_logs_start_and_stop_once(demo: Demo) -> None:
    out = demo.wait_ready()
    first = next(line for line in out if line.strip())
    assert first.startswith("poolgate demo: private keys") and str(demo.state_dir) in first
    demo.proc.send_signal(signal.SIGTERM)
    assert demo.proc.wait(timeout=EXIT_TIMEOUT) == 0, demo.stderr()
    err = demo.stderr_path.read_text()
    for what in ("Started server process", "Application startup complete", "Shutting down",
                 "Finished server process"):
        assert err.count(what) == 1, (what, err)


def test_demo_token_prints_a_cognito_shaped_jwt(tmp_path: Path) -> None:
    now = time.time()
    tokens = {}
    for name in ("alice", "bob", "expired"):
        res = subprocess.run(gateway_cmd("demo", "token", name, "--state-dir", str(tmp_path)),
                             capture_output=True, text=True, timeout=30, cwd=REPO, env=_env())
        assert res.returncode == 0, res.stderr
        out = res.stdout.strip()
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", out), out
        assert "\n" not in out
        tokens[name] = out
    header = jwt_part(tokens["alice"], 0)
    assert set(header) == {"kid", "alg"} and header["alg"] == "RS256"
    alice = jwt_part(tokens["alice"], 1)
    assert alice["iss"] == "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_PoolgateDemo"
    assert alice["token_use"] == "access" and alice["username"] == "alice"
    assert alice["cognito:groups"] == ["admins"]
    assert {"sub", "client_id", "scope", "jti", "origin_jti", "iat", "exp"} <= set(alice)
    assert 3500 <= alice["exp"] - now <= 3700
    bob = jwt_part(tokens["bob"], 1)
    assert "cognito:groups" not in bob and bob["username"] == "bob"
    assert jwt_part(tokens["expired"], 1)["exp"] < now - 60
    # one key, kept in the state directory: every token names the same kid
    assert {jwt_part(t, 0)["kid"] for t in tokens.values()} == {header["kid"]}
    assert (tmp_path / "issuer-rs256.pem").stat().st_mode & 0o077 == 0


def test_demo_token_unknown_user_is_a_usage_error(tmp_path: Path) -> None:
    res = subprocess.run(gateway_cmd("demo", "token", "mallory", "--state-dir", str(tmp_path)),
                         capture_output=True, text=True, timeout=30, cwd=REPO, env=_env())
    assert res.returncode == 2
    assert "alice|bob|expired" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("flag,key", [("--port", "port"), ("--admin-port", "admin"),
                                      ("--issuer-port", "issuer"),
                                      ("--upstream-port", "upstream")])
def test_taken_port_is_one_clear_line(tmp_path: Path, flag: str, key: str) -> None:
    ports = dict(zip(("port", "admin", "issuer", "upstream"), free_ports(4)))
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", ports[key]))
    blocker.listen(1)
    d = None
    try:
        d = start_demo(tmp_path, ports)
        rc = d.proc.wait(timeout=30)
        err = d.stderr()
        assert rc == 1, err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, err
        assert f"port {ports[key]}" in lines[0] and flag in lines[0] and "in use" in lines[0]
        assert "Traceback" not in err
        assert READY not in "\n".join(d.output)
    finally:
        blocker.close()
        if d is not None:
            stop(d.proc)


def test_default_state_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gateway.demo.state import default_state_dir
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "poolgate-demo"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "poolgate-demo"
