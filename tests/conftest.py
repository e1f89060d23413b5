"""Shared fixtures: real clusters in real processes, and proof that none is left behind.

Every test runs with a unique ACTORCLUSTER_TEST_TAG in the environment, which every process it
starts inherits (the primary, the zygote, every worker). After the test, any process still carrying
the tag is a leak: it is killed and the test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from actorcluster import rundir

ROOT = Path(__file__).resolve().parent.parent
TAG = "ACTORCLUSTER_TEST_TAG"


def tagged_processes(tag: str) -> list[psutil.Process]:
    found = []
    needle = f"{TAG}={tag}".encode()
    for proc in psutil.process_iter():
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                if needle in f.read():
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind(monkeypatch):
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG, tag)
    yield tag
    deadline = time.monotonic() + 3
    left = tagged_processes(tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = tagged_processes(tag)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One `actorcluster run` in a subprocess, with its log captured to a file."""

    def __init__(self, tmp_path: Path, target: str, *args: str, env: dict | None = None,
                 new_session: bool = False, cwd: Path = ROOT) -> None:
        self.port = free_port()
        self.name = "t" + uuid.uuid4().hex[:10]
        self.logfile = tmp_path / f"{self.name}.log"
        self.args = args
        cmd = [sys.executable, "-m", "actorcluster", "run", target, "--name", self.name]
        if not any(a.startswith("--bind") for a in args):
            cmd += ["--bind", f"127.0.0.1:{self.port}"]
        cmd += list(args)
        full_env = dict(os.environ, **(env or {}))
        extra = [(env or {}).get("PYTHONPATH", "")]  # a test's own modules (tmp_path) first
        full_env["PYTHONPATH"] = os.pathsep.join(
            [p for p in extra if p] + [str(ROOT / "tests" / "apps"), str(ROOT)])
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                         env=full_env, stdin=subprocess.DEVNULL,
                                         start_new_session=new_session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 10.0, count: int = 1) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.findall(pattern, self.log())
            if len(found) >= count:
                return found
            if self.proc.poll() is not None and len(re.findall(pattern, self.log())) < count:
                raise AssertionError(f"primary exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} x{count} not logged in {timeout} s:\n"
                                     f"{self.log()}")
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 15.0) -> Cluster:
        self.wait_for_log(r"Listening at|Cluster \S+ is up", timeout)
        return self

    def worker_pids(self) -> set[int]:
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return set()
        return {c.pid for c in children
                if _name(c).startswith("ac web/") and _name(c) != "ac web/standby"}

    def wait_workers(self, n: int, timeout: float = 10.0, exclude: set[int] = frozenset()) -> set:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = {int(p) for p in re.findall(r"Worker (\d+) started", self.log())}
            pids = (self.worker_pids() & started) - set(exclude)
            if len(pids) >= n:
                return pids
            time.sleep(0.01)
        raise AssertionError(f"{n} workers not up in {timeout} s:\n{self.log()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(5)


def _name(proc: psutil.Process) -> str:
    try:
        return "" if proc.status() == psutil.STATUS_ZOMBIE else proc.name()
    except psutil.Error:
        return ""


@pytest.fixture
def cluster(tmp_path):
    """Factory: cluster(target, *args) starts one; every one is stopped after the test."""
    started: list[Cluster] = []

    def start(target: str, *args: str, env: dict | None = None, ready: bool = True,
              new_session: bool = False, cwd: Path = ROOT) -> Cluster:
        """``new_session``: in a process group of its own, for signals sent to the group."""
        c = Cluster(tmp_path, target, *args, env=env, new_session=new_session, cwd=cwd)
        started.append(c)
        return c.wait_ready() if ready else c

    yield start
    for c in started:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait(5)
        # a primary killed (here, or by the test) leaves its run directory for the next start
        # of the same name to clear; no test name is used twice, so clear it now
        shutil.rmtree(rundir.base_dir() / c.name, ignore_errors=True)
