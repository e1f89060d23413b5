"""Process helpers for bench/http.py: start a server, find its workers, drive wrk, clean up.

Every command runs in its own session (so its whole process group can be signalled) and is
stopped, killed and reaped by the context manager that started it. The benchmark makes itself
a child subreaper, so workers orphaned by a primary that died are re-parented to it, where they
can still be killed and reaped; `leftover_processes()` checks with psutil that none survive.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

import psutil

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "bench" / "peers"
HOST = "127.0.0.1"
SERVERS = ("actorcluster", "uvicorn", "gunicorn", "node")
HELLO = b"hello world\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
App = Literal["hello", "pid"]  # hello world, or the worker's pid (kill -9 test)


class BenchError(RuntimeError):
    """A server or tool did not behave; the message says which and how."""


# --- the servers -------------------------------------------------------------------------------


def unavailable(name: str) -> str | None:
    """Why `name` cannot run on this machine, or None."""
    if name == "node" and shutil.which("node") is None:
        return "node is not on PATH"
    if name in ("uvicorn", "gunicorn") and find_spec(name) is None:
        return f"{name} is not installed (pip install -e '.[bench]')"
    return None


def server_command(name: str, workers: int, port: int, app: App) -> list[str]:
    bind = f"{HOST}:{port}"
    if name == "actorcluster":
        target = "examples.hello:handler" if app == "hello" else "bench.apps.pid_app:handler"
        launcher = [sys.executable, "-m", "actorcluster"]
        if not (REPO / "actorcluster" / "__main__.py").exists() and shutil.which("actorcluster"):
            launcher = ["actorcluster"]
        return [
            *launcher,
            "run",
            target,
            "--workers",
            str(workers),
            "--bind",
            bind,
            "--log-level",
            "warning",
        ]
    attr = "app" if app == "hello" else "pid_app"
    if name == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            f"asgi_hello:{attr}",
            "--app-dir",
            str(PEERS),
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    if name == "gunicorn":
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-k",
            "sync",
            "--bind",
            bind,
            "--chdir",
            str(PEERS),
            "--log-level",
            "warning",
            f"wsgi_hello:{attr}",
        ]
    if name == "node":
        return ["node", str(PEERS / "node_cluster.js"), str(port), str(workers), app]
    raise ValueError(f"unknown server {name!r}; known: {', '.join(SERVERS)}")


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """`cmd` under `taskset -c cpu` (its children inherit the affinity), or `cmd` as is."""
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


@dataclass
class Server:
    name: str
    port: int
    workers: int
    proc: subprocess.Popen[bytes]
    log: Path
    pids: list[int]  # the worker pids found at start

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def current_workers(self) -> list[int]:
        """The live worker processes now: children of the primary that are not helpers."""
        if self.proc.poll() is not None:
            return []
        if self.name == "uvicorn" and self.workers == 1:  # no supervisor: serves in-process
            return [self.proc.pid]
        return worker_pids(self.proc.pid)


def worker_pids(primary: int) -> list[int]:
    """Live descendants of `primary` that serve requests, oldest first.

    Excluded: zombies, multiprocessing's resource tracker (uvicorn's spawned workers start one)
    and actorcluster's helpers: the zygote, which forks the workers (they are re-parented to the
    primary), and the standby worker, forked and ready but out of rotation until a worker dies.
    actorcluster names its processes (prctl PR_SET_NAME: "ac zygote", "ac web/1",
    "ac web/standby"); without the names, the zygote is the oldest process running
    `actorcluster.worker.zygote` (workers are forked from it and inherit its command line).
    """
    try:
        procs = psutil.Process(primary).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found: list[tuple[float, int, str, str]] = []
    for proc in procs:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.cmdline())
            if "resource_tracker" not in cmdline:
                found.append((proc.create_time(), proc.pid, proc.name(), cmdline))
        except psutil.Error:
            continue
    found.sort()
    named = any(name.startswith("ac ") for _, _, name, _ in found)
    if named:
        found = [f for f in found if not f[2].endswith(("zygote", "standby"))]
    elif found and "actorcluster.worker.zygote" in found[0][3]:
        found = found[1:]
    return [pid for _, pid, _, _ in found]


@contextlib.contextmanager
def running_server(
    name: str, *, workers: int, app: App = "hello", cpu: int | None = None, timeout: float = 30.0
) -> Iterator[Server]:
    """Start `name` on a fresh port, wait until it answers and has `workers` workers; stop it
    (SIGTERM, then SIGKILL to its group and every descendant), reap it and wait for the port."""
    port = PORTS.fresh()
    cmd = pinned(server_command(name, workers, port, app), cpu)
    with tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False) as f:
        log = Path(f.name)
    try:
        with open(log, "wb") as out, spawned(cmd, stdout=out, stderr=subprocess.STDOUT) as proc:
            server = Server(name, port, workers, proc, log, [])
            deadline = time.monotonic() + timeout
            wait_until_serving(server, app, deadline)
            server.pids = wait_for_workers(server, deadline)
            yield server
        wait_port_closed(port)
    finally:
        log.unlink(missing_ok=True)


def wait_until_serving(server: Server, app: App, deadline: float) -> None:
    """Poll GET / over fresh connections until it answers 200 with the expected body."""
    while True:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with code {server.proc.returncode} before "
                f"serving:\n{server.log_tail()}"
            )
        try:
            status, body = http_get(server.port, timeout=1.0)
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{server.name} did not answer on port {server.port} in time:\n"
                    f"{server.log_tail()}"
                ) from None
            time.sleep(0.05)
            continue
        good = body == HELLO if app == "hello" else body.strip().isdigit()
        if status != 200 or not good:
            raise BenchError(
                f"{server.name} answered {status} {body[:80]!r}, expected 200 "
                f"{'hello world' if app == 'hello' else 'a pid'}"
            )
        return


def wait_for_workers(server: Server, deadline: float) -> list[int]:
    """Wait until the primary has exactly `server.workers` workers, twice in a row."""
    last: list[int] = []
    while time.monotonic() < deadline:
        pids = server.current_workers()
        if len(pids) == server.workers and pids == last:
            return pids
        last = pids
        time.sleep(0.1)
    raise BenchError(
        f"{server.name}: expected {server.workers} worker processes, found {describe(last)}"
    )


def describe(pids: list[int]) -> str:
    parts = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            parts.append(f"{pid} ({' '.join(psutil.Process(pid).cmdline())[:80]})")
    return f"{len(pids)}" + (": " + "; ".join(parts) if parts else "")


# --- HTTP over a fresh connection --------------------------------------------------------------


def http_get(port: int, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET / with `Connection: close` on a new connection; (status, body)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(REQUEST)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return parse_response(b"".join(chunks))


def parse_response(data: bytes) -> tuple[int, bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[1].isdigit():
        raise ConnectionError(f"incomplete HTTP response: {data[:80]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return int(parts[1]), body


def dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2 :]


# --- processes, ports ----------------------------------------------------------------------------


@contextlib.contextmanager
def spawned(cmd: list[str], **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` in a new session; on exit stop it and its whole tree (see stop_tree)."""
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdin=subprocess.DEVNULL, start_new_session=True, **popen
    )
    try:
        yield proc
    finally:
        stop_tree(proc)


def stop_tree(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process, give it `grace` seconds, then SIGKILL every process of its tree and
    of its process group, and reap them all. Raises BenchError if a process survives.

    Processes are signalled as psutil.Process objects, which check that a pid was not reused,
    and only among this benchmark's own descendants."""
    tree: set[psutil.Process] = set()
    if proc.poll() is None:  # not reaped yet, so its pid is still its own
        tree = _descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    if proc.poll() is None:
        tree |= _descendants(proc.pid)
    tree |= {p for p in _descendants(os.getpid()) if _pgid(p) == proc.pid}  # orphans, via us
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait(10)
    _kill_and_reap(tree)


def _descendants(pid: int) -> set[psutil.Process]:
    try:
        return set(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return set()


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _kill_and_reap(procs: set[psutil.Process], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    alive = set(procs)
    while alive:
        for proc in list(alive):
            with contextlib.suppress(psutil.Error):
                proc.kill()
            with contextlib.suppress(ChildProcessError):  # ours once re-parented to us
                os.waitpid(proc.pid, os.WNOHANG)
            if not proc.is_running():  # gone, or its pid reused; a zombie is still "running"
                alive.discard(proc)
        if alive and time.monotonic() > deadline:
            raise BenchError(f"processes survived SIGKILL: {describe([p.pid for p in alive])}")
        if alive:
            time.sleep(0.02)


def become_subreaper() -> bool:
    """Orphaned descendants re-parent to this process instead of init (Linux)."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def leftover_processes() -> list[int]:
    """Kill and reap whatever descendant is still here; return the pids that were found."""
    procs = _descendants(os.getpid())
    _kill_and_reap(procs)
    return sorted(p.pid for p in procs)


class PortAllocator:
    """Hands out a port that nothing uses (not even a TIME_WAIT socket), never the same twice."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.next = first + os.getpid() % (last - first)

    def fresh(self) -> int:
        for _ in range(self.last - self.first):
            port = self.next
            self.next = self.first if port >= self.last else port + 1
            with socket.socket() as sock:  # no SO_REUSEADDR: fails on any socket using the port
                try:
                    sock.bind((HOST, port))
                except OSError:
                    continue
            return port
        raise BenchError(f"no free port in {self.first}-{self.last}")


PORTS = PortAllocator(20000, 32000)  # below the ephemeral range (32768-60999 here)


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    """Wait until nothing accepts connections on `port` any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.05)
    raise BenchError(f"port {port} still accepts connections {timeout:.0f} s after the stop")


# --- wrk, USS ------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    requests: int
    errors: int  # socket errors (connect, read, write, timeout) + non-2xx/3xx responses
    cpu: float = 0.0  # wrk's CPU time / wall time: near 1.0, the load generator is the limit


def run_wrk(
    port: int,
    *,
    duration: int,
    close: bool = False,
    cpu: int | None = None,
    connections: int = 64,
    midway: Callable[[], None] | None = None,
) -> WrkResult:
    """`wrk -t1 -c64` against / for `duration` s; `midway` is called 60% of the way through."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd = pinned([*cmd, f"http://{HOST}:{port}/"], cpu)
    before, started = _children_cpu(), time.monotonic()  # wrk is the only child reaped meanwhile
    with spawned(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        if midway is not None:
            time.sleep(duration * 0.6)
            midway()
        try:
            out, _ = proc.communicate(timeout=duration + 30)
        except subprocess.TimeoutExpired:
            raise BenchError(f"wrk did not finish within {duration + 30} s") from None
    result = parse_wrk(out.decode(errors="replace"))
    result.cpu = (_children_cpu() - before) / (time.monotonic() - started)
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_wrk(text: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    requests = re.search(r"(\d+) requests in", text)
    if rps is None or requests is None:
        raise BenchError(f"could not read wrk's output:\n{text}")
    errors = 0
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        errors += sum(int(g) for g in m.groups())
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(m.group(1))
    return WrkResult(float(rps.group(1)), int(requests.group(1)), errors)


def uss_mib(pids: list[int]) -> list[float]:
    """Unique set size of each live process, MiB."""
    sizes = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            sizes.append(psutil.Process(pid).memory_full_info().uss / 2**20)
    return sizes
