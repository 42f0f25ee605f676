"""Processes the benchmark starts: spawn, wait for a ready line, sample RSS/CPU, stop by PID.

Every process is started in its own session (so its children can be found and stopped with
it) and stopped in ``finally`` by the caller: SIGTERM to the PID, then SIGKILL to that PID's
own process group if it does not exit in time.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


class Proc:
    """A child process whose stdout+stderr are copied to a log file and scanned for a line."""

    def __init__(self, name: str, argv: list[str], log_dir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self._lines: queue.Queue[str] = queue.Queue()
        self._tail: list[str] = []
        self._log = open(self.log_path, "w", buffering=1)
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                  text=True, bufsize=1)
        self.pid = self.p.pid
        self._reader = threading.Thread(target=self._read, name=f"log-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self._log.write(line)
            self._tail = (self._tail + [line.rstrip()])[-40:]
            self._lines.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait for a stdout/stderr line matching ``pattern``; raise with the log tail if not."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no line matching {pattern!r} within "
                                   f"{timeout:.0f}s; log tail:\n{self.tail()}")
            try:
                line = self._lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.p.poll() is not None:
                    time.sleep(0.1)   # let the reader copy the last lines
                    raise RuntimeError(f"{self.name} exited with {self.p.returncode}; "
                                       f"log tail:\n{self.tail()}")
                continue
            m = rx.search(line)
            if m:
                return m

    def tail(self, n: int = 25) -> str:
        return "\n".join(self._tail[-n:])

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, grace: float = 8.0) -> None:
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # the process group is the one this process leads (start_new_session): its workers
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(3)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live descendant (scan of /proc; cheap at this machine's size)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / TICKS, int(fields[12]) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def tree_cpu_split(pid: int) -> tuple[float, float]:
    pairs = [cpu_split(p) for p in descendants(pid)]
    return sum(u for u, _ in pairs), sum(s for _, s in pairs)


def tree_rss(pid: int) -> int:
    return sum(rss_bytes(p) for p in descendants(pid))


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in descendants(pid))


class RssSampler:
    """Samples a process tree's total RSS every ``interval`` seconds; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = tree_rss(pid)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss(self.pid))

    def __enter__(self) -> "RssSampler":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(2)
        self.peak = max(self.peak, tree_rss(self.pid))


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_tcp(port: int, timeout: float, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.p.returncode}; log tail:\n"
                               f"{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")
