"""Messaging benchmark: actorcluster's tell/ask between process actors against raw pyzmq.

    python bench/messaging.py                 # full run, writes its section of docs/benchmarks.md
    python bench/messaging.py --quick         # smoke run, prints only (unless --out is given)

Measured in one run, the raw baseline and actorcluster alternated round by round (the order
swapped every round), medians of --rounds rounds:
  (a) raw pyzmq, three processes (sender DEALER -> Python ROUTER broker -> receiver DEALER, ipc):
      tells/s one message per send and 64 packed per send, ask round trip (1 outstanding),
      asks/s (waves of 64 outstanding); the asks also with a 64 KiB payload
  (b) actorcluster tell between two process actors (driven from inside the Sender actor)
  (c) actorcluster ask p50/p99, 1 outstanding, and asks/s, waves of 64 outstanding
  (d) (b) and (c) with a 64 KiB bytes payload
  (e) flood: 20,000 `await tell` to a slow receiver (0.5 ms per message): arrivals, dead letters,
      time the sender waited, and the ask latency of another pair of actors meanwhile
  (f) wire.encode against cloudpickle.dumps (plain data never pays for cloudpickle)
The machine is shared and noisy: compare the ratios of one run, not figures across runs.
Every process started here runs in its own session and is killed and reaped on the way out,
and psutil checks that none survive.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import pickle
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import zmq

REPO = Path(__file__).resolve().parent.parent
# The script's folder, bench/, holds http.py, which would shadow the standard library's `http`:
# import from the repository root instead (bench.msg_apps).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

import actorcluster  # noqa: E402
from actorcluster import wire  # noqa: E402
from actorcluster.errors import ClusterNotFound  # noqa: E402
from bench.msg_apps import LARGE, SMALL, percentile  # noqa: E402

BEGIN, END = "<!-- bench/messaging.py begin -->", "<!-- bench/messaging.py end -->"
RAW_PEER = REPO / "bench" / "apps" / "msg_raw.py"
HOST = "127.0.0.1"
WIDTH = 64  # asks outstanding in the many-in-flight case
ACTORS = {
    "sender": "bench.msg_apps:Sender",
    "receiver": "bench.msg_apps:Receiver",
    "slow": "bench.msg_apps:SlowReceiver",
    "pinger": "bench.msg_apps:Sender",
    "ponger": "bench.msg_apps:Receiver",
}
# Figures measured earlier on this machine with other tools (not re-measured here).
PEERS = (
    ("raw pyzmq, brokered, one message per send", "50k", "133 µs", "19k"),
    ("raw pyzmq, brokered, 64 messages packed per send", "1.79M", "", ""),
    ("Ray actor calls", "2.4k", "797 µs", ""),
    ("Thespian", "7.8k", "616 µs", ""),
)


class BenchError(RuntimeError):
    """A process or a measurement did not behave; the message says which and how."""


@dataclass(frozen=True)
class Sizes:
    rounds: int
    raw_tells: int  # tells per raw tell run (one per send, and packed)
    tells: int  # actorcluster tells per run, small payload
    ask1: int  # asks with one outstanding, per run
    waves: int  # waves of WIDTH asks, per run
    large_tells: int
    large_ask1: int
    large_waves: int
    flood: int  # tells to the slow receiver
    idle_ping: float  # seconds the other pair pings with no flood, for comparison

    @staticmethod
    def of(quick: bool, rounds: int | None) -> Sizes:
        if quick:
            return Sizes(rounds or 3, 20_000, 20_000, 500, 50, 2_000, 200, 10, 4_000, 0.5)
        return Sizes(rounds or 5, 100_000, 200_000, 3_000, 300, 20_000, 1_000, 60, 20_000, 3.0)


@dataclass
class Samples:
    """Per-round values of each measure (key -> one value per round)."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.values.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        found = self.values.get(key)
        return statistics.median(found) if found else float("nan")

    def rounds(self, key: str) -> list[float]:
        return self.values.get(key, [])


# --- processes -----------------------------------------------------------------------------------


def become_subreaper() -> None:
    """Orphans of our children (workers of a primary that died) are re-parented to us."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


class Spawned:
    """One command in its own session; ``stop()`` kills its group and every descendant seen."""

    def __init__(self, cmd: list[str], log: Path, stdout: int | None = None) -> None:
        self.cmd = cmd
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else err,
                stderr=err,
                start_new_session=True,
            )
        self.seen: set[int] = {self.proc.pid}

    def note_descendants(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.seen.update(p.pid for p in psutil.Process(self.proc.pid).children(recursive=True))

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the group, then SIGKILL to the group and every descendant; reap them."""
        self.note_descendants()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.seen:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
        self.proc.wait(10)
        reap(self.seen - {self.proc.pid})


def reap(pids: set[int], timeout: float = 5.0) -> None:
    """waitpid the pids that became our children (orphans re-parented to a subreaper)."""
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: its own parent reaps it, or it is gone
                if not psutil.pid_exists(pid) or _zombie_elsewhere(pid):
                    left.discard(pid)
                continue
            if done:
                left.discard(pid)
        if left:
            time.sleep(0.02)


def _zombie_elsewhere(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    return True


def leftover_processes(spawned: list[Spawned]) -> list[str]:
    """Processes this benchmark started that are still alive (zombies included)."""
    pids: set[int] = set()
    for s in spawned:
        pids |= s.seen
    with contextlib.suppress(psutil.Error):
        pids |= {p.pid for p in psutil.Process().children(recursive=True)}
    alive = []
    for pid in sorted(pids):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            alive.append(f"{pid} {proc.status()} {' '.join(proc.cmdline())[:120]}")
    return alive


@contextlib.contextmanager
def stopping(spawned: list[Spawned]) -> Iterator[None]:
    """Stop every process in ``spawned`` on the way out, whatever happened; then check."""
    try:
        yield
    finally:
        for s in reversed(spawned):
            try:
                s.stop()
            except Exception as exc:  # noqa: BLE001 - stop the others regardless
                print(f"stopping {s.cmd[:4]}: {exc!r}", file=sys.stderr)
        left = leftover_processes(spawned)
        if left:
            print("processes survived; killing them:\n  " + "\n  ".join(left), file=sys.stderr)
            for line in left:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(int(line.split()[0])).kill()
            reap({int(line.split()[0]) for line in left})
            raise BenchError("processes survived the benchmark: " + "; ".join(left))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- the cluster ---------------------------------------------------------------------------------


def cluster_command(name: str, port: int) -> list[str]:
    cmd = [
        sys.executable, "-m", "actorcluster", "run", "bench.msg_apps:handler",
        "--workers", "1", "--bind", f"{HOST}:{port}", "--name", name,
        "--log-level", "warning", "--graceful-timeout", "5",
    ]
    for actor, target in ACTORS.items():
        cmd += ["--actor", f"{actor}={target}"]
    return cmd


def wait_ready(server: Spawned, name: str, timeout: float = 60.0) -> actorcluster.Client:
    """Connect once every child of the cluster is ready; the connected client."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"the cluster exited with {server.proc.returncode}:\n"
                             f"{server.log_tail()}")
        try:
            client = actorcluster.connect(name)
        except ClusterNotFound as exc:
            last = str(exc)
            time.sleep(0.1)
            continue
        try:
            while time.monotonic() < deadline:
                tree = client.status(timeout=5.0)["tree"]
                children = [c for node in tree["children"] for c in node.get("children", [node])]
                states = {c["name"]: c["state"] for c in children}
                if len(states) == len(ACTORS) + 1 and set(states.values()) == {"ready"}:
                    server.note_descendants()
                    for actor in ACTORS:  # each answers (its on_start ran)
                        if actor in ("sender", "pinger"):
                            continue
                        client.ask(actor, "count", timeout=10.0)
                    return client
                last = f"states {states}"
                time.sleep(0.1)
        except BaseException:
            client.close()
            raise
        client.close()
    raise BenchError(f"the cluster was not ready within {timeout} s ({last}):\n"
                     f"{server.log_tail()}")


def dead_letters(client: actorcluster.Client) -> int:
    return sum(client.status(timeout=10.0)["messages"]["dead_letters"].values())


def actorcluster_round(client: actorcluster.Client, sizes: Sizes, samples: Samples) -> None:
    for kind, tells, ask1, waves in (
        (SMALL, sizes.tells, sizes.ask1, sizes.waves),
        (LARGE, sizes.large_tells, sizes.large_ask1, sizes.large_waves),
    ):
        elapsed = client.ask("sender", ("tell", "receiver", tells, kind), timeout=300.0)
        samples.add(f"ac.{kind}.tell", tells / elapsed)
        times = sorted(client.ask("sender", ("ask1", "receiver", ask1, kind), timeout=300.0))
        samples.add(f"ac.{kind}.ask_p50", percentile(times, 50))
        samples.add(f"ac.{kind}.ask_p99", percentile(times, 99))
        elapsed = client.ask("sender", ("asks", "receiver", waves, WIDTH, kind), timeout=300.0)
        samples.add(f"ac.{kind}.asks", waves * WIDTH / elapsed)
        elapsed = client.ask("sender", ("window", "receiver", waves * WIDTH, WIDTH, kind),
                             timeout=300.0)
        samples.add(f"ac.{kind}.window", waves * WIDTH / elapsed)


def ping_times(client: actorcluster.Client, during: Callable[[], Any]) -> tuple[list[float], int]:
    """The other pair's ask round trips (sorted) while ``during()`` runs, and failed asks."""
    client.ask("pinger", ("ping_start", "ponger"), timeout=10.0)
    try:
        during()
    finally:
        times = client.ask("pinger", "ping_stop", timeout=30.0)
    ok = sorted(t for t in times if t is not None)
    return ok, len(times) - len(ok)


def flood_round(client: actorcluster.Client, sizes: Sizes, samples: Samples) -> None:
    """(e): the sender floods the slow receiver; the other pair pings meanwhile."""
    n = sizes.flood
    client.ask("slow", "reset", timeout=30.0)
    idle, _ = ping_times(client, lambda: time.sleep(sizes.idle_ping))
    samples.add("flood.idle_p50", percentile(idle, 50))
    samples.add("flood.idle_p99", percentile(idle, 99))
    before = dead_letters(client)
    result: dict[str, Any] = {}

    def flood() -> None:
        start = time.perf_counter()
        elapsed, waited, waits = client.ask("sender", ("flood", "slow", n, SMALL),
                                             timeout=300.0)
        result.update(elapsed=elapsed, waited=waited, waits=waits)
        # then until the slow receiver has handled what will arrive (its count stops moving)
        deadline = time.monotonic() + n * 0.0005 * 4 + 60
        counted, still = -1, 0
        while time.monotonic() < deadline and still < 3:
            now = client.ask("slow", "count", timeout=120.0)
            if now >= n:
                counted = now
                break
            still = still + 1 if now == counted else 0
            counted = now
            time.sleep(0.2)
        result.update(arrived=counted, drained=time.perf_counter() - start)

    during, failed = ping_times(client, flood)
    samples.add("flood.arrived", result["arrived"])
    samples.add("flood.dead", dead_letters(client) - before)
    samples.add("flood.elapsed", result["elapsed"])
    samples.add("flood.waited", result["waited"])
    samples.add("flood.waits", result["waits"])
    samples.add("flood.drained", result["drained"])
    samples.add("flood.p50", percentile(during, 50))
    samples.add("flood.p99", percentile(during, 99))
    samples.add("flood.pings", len(during))
    samples.add("flood.failed", failed)


# --- the raw pyzmq baseline ----------------------------------------------------------------------


def raw_round(endpoint: str, workdir: Path, sizes: Sizes, samples: Samples) -> None:
    for kind, ask1, waves in ((SMALL, sizes.ask1, sizes.waves),
                              (LARGE, sizes.large_ask1, sizes.large_waves)):
        cmd = [sys.executable, str(RAW_PEER), "sender", endpoint, str(sizes.raw_tells), str(ask1),
               str(waves), str(WIDTH), kind]
        out = workdir / "raw-sender.out"
        with open(out, "wb") as stdout:
            sender = Spawned(cmd, workdir / "raw-sender.log", stdout=stdout.fileno())
            try:
                code = sender.proc.wait(300)
            finally:
                sender.stop()
        if code != 0:
            raise BenchError(f"the raw sender exited with {code}:\n{sender.log_tail()}")
        result = json.loads(out.read_text())
        if kind == SMALL:
            samples.add("raw.small.tell", result["tell"])
            samples.add("raw.small.tell_packed", result["tell_packed"])
        times = sorted(result["ask1"])
        samples.add(f"raw.{kind}.ask_p50", percentile(times, 50))
        samples.add(f"raw.{kind}.ask_p99", percentile(times, 99))
        samples.add(f"raw.{kind}.asks", result["asks"])
        samples.add(f"raw.{kind}.window", result["window"])


# --- (f) encoding --------------------------------------------------------------------------------


class MainPoint:
    """A class defined in __main__: another process cannot import it, so it needs cloudpickle."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y


def encode_figures() -> list[dict[str, Any]]:
    rows = []
    small = {"i": 1, "kind": "tick"}
    for label, value in (("small dict `{\"i\": 1, \"kind\": \"tick\"}`", small),
                         (f"`{MainPoint.__module__}.MainPoint(1, 2)` instance", MainPoint(1, 2))):
        flags, frames = wire.encode(value)
        encoded = b"".join(bytes(f) for f in frames)
        plain = _plain_pickle(value)
        cp = cloudpickle.dumps(value, 5)
        row = {
            "label": label,
            "encode": _best(lambda v=value: wire.encode(v)),
            "cloudpickle": _best(lambda v=value: cloudpickle.dumps(v, 5)),
            "pickle": _best(lambda v=value: pickle.dumps(v, 5)),
            "encode_bytes": len(encoded),
            "cloudpickle_bytes": len(cp),
            "pickle_bytes": len(plain) if plain is not None else None,
            "path": "pickle 5" if encoded == plain else "cloudpickle",
            "flags": flags,
        }
        assert wire.decode(flags, frames).__class__.__name__ == type(value).__name__
        rows.append(row)
    return rows


def _plain_pickle(value: Any) -> bytes | None:
    try:
        return pickle.dumps(value, 5)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


def _best(fn: Callable[[], Any], number: int = 20_000, repeat: int = 5) -> float:
    """Seconds per call: the best of ``repeat`` timings (the least disturbed by the noise)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


# --- the report ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop (`--loop auto`)"
    except ImportError:
        loop = "asyncio (`--loop auto`, uvloop not installed)"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "pyzmq": f"{zmq.__version__} (libzmq {zmq.zmq_version()})",
        "loop": loop,
        "load": load,
        "revision": _revision(),
    }


def _revision() -> str:
    """The commit measured, and whether the working tree differed from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "actorcluster"], cwd=REPO,
                               check=True, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown revision"
    return f"commit {head}" + (" with uncommitted changes in actorcluster/" if dirty else "")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def si(value: float) -> str:
    """12.3k, 1.45M, 950."""
    if value != value:  # nan
        return "n/a"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def us(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1e6:.0f} µs"


def rounds_text(values: list[float], fmt: Callable[[float], str]) -> str:
    return ", ".join(fmt(v) for v in values)


@dataclass(frozen=True)
class Target:
    title: str
    ours: str
    base: str
    ratio: float
    goal: str
    passed: bool


def targets(s: Samples) -> list[Target]:
    tell = s.median("ac.small.tell") / s.median("raw.small.tell")
    asks = s.median("ac.small.window") / s.median("raw.small.window")
    p50 = s.median("ac.small.ask_p50") / s.median("raw.small.ask_p50")
    return [
        Target("tells/s vs raw one message per send", "ac.small.tell", "raw.small.tell",
               tell, "≥ 10×", tell >= 10),
        Target(f"asks/s with {WIDTH} in flight vs raw", "ac.small.window", "raw.small.window",
               asks, "≥ 5×", asks >= 5),
        Target("ask p50, 1 outstanding, vs raw brokered round trip", "ac.small.ask_p50",
               "raw.small.ask_p50", p50, "≤ 2×", p50 <= 2),
    ]


def report(s: Samples, sizes: Sizes, command: str, info: dict[str, str],
           encoding: list[dict[str, Any]], started: datetime, seconds: float,
           peers_importable: list[str]) -> str:
    m = s.median
    lines = [
        BEGIN,
        "## Messaging: tell and ask between process actors (`bench/messaging.py`)",
        "",
        f"Command: `{command}` (from the repository root), {started:%Y-%m-%d %H:%M} UTC, "
        f"{seconds:.0f} s, actorcluster at {info['revision']}. Machine: {info['nproc']} CPUs "
        f"({info['cpu']}), Python "
        f"{info['python']}, {info['os']}, pyzmq {info['pyzmq']}, event loop {info['loop']}; "
        f"load average at the start {info['load']} (a shared, noisy machine: compare the ratios "
        "of this run, not figures across runs).",
        "",
        f"Medians of {sizes.rounds} rounds; in each round the raw baseline and actorcluster run "
        "one after the other, the order swapped every round. Per round: raw "
        f"{sizes.raw_tells:,} tells (one per send, then 64 packed per send); actorcluster "
        f"{sizes.tells:,} small / {sizes.large_tells:,} 64 KiB tells; {sizes.ask1:,} small / "
        f"{sizes.large_ask1:,} 64 KiB asks one at a time; {sizes.waves} small / "
        f"{sizes.large_waves} 64 KiB waves of {WIDTH} asks (`asyncio.gather` of {WIDTH}, the "
        "raw sender sends 64 then reads 64), then as many asks with "
        f"{WIDTH} always in flight ({WIDTH} coroutines each awaiting one ask at a time; the raw "
        "sender sends the next ask as each reply arrives). The target uses the latter: "
        f"\"{WIDTH} in flight\" means {WIDTH} outstanding all the time; a wave averages half that.",
        "",
        "- **raw pyzmq**: three processes, sender DEALER -> Python ROUTER broker (swaps the "
        "source and destination frames, `ROUTER_MANDATORY`) -> receiver DEALER, over ipc; "
        "pickle protocol 5; the receiver unpickles and counts each message and answers an ask "
        "with its count (`bench/apps/msg_raw.py`). \"64 packed\" is one pickled list of 64 "
        "messages per send.",
        "- **actorcluster**: `actorcluster run bench.msg_apps:handler --workers 1 --actor "
        "sender=bench.msg_apps:Sender --actor receiver=bench.msg_apps:Receiver ...`: the Sender "
        "actor, asked by the benchmark, tells/asks the Receiver actor in a tight loop through "
        "the primary's router (`bench/msg_apps.py`). Tells/s run from the first tell until "
        "the receiver has counted the last one.",
        "",
        "### Targets",
        "",
        "| target | actorcluster | raw pyzmq | ratio | goal | result |",
        "| --- | ---: | ---: | ---: | :---: | :---: |",
    ]
    for t in targets(s):
        fmt = us if "p50" in t.ours else si
        lines.append(f"| {t.title} | {fmt(m(t.ours))} | {fmt(m(t.base))} | {t.ratio:.2f}× "
                     f"| {t.goal} | {'PASS' if t.passed else '**FAIL**'} |")
    lines += [
        "",
        "### Small payload `{\"i\": i, \"kind\": \"tick\"}`",
        "",
        "| measure | raw pyzmq, 1 per send | raw pyzmq, 64 packed | actorcluster | "
        "actorcluster / raw 1 per send | per-round actorcluster |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        f"| tells/s | {si(m('raw.small.tell'))} | {si(m('raw.small.tell_packed'))} | "
        f"{si(m('ac.small.tell'))} | {m('ac.small.tell') / m('raw.small.tell'):.2f}× | "
        f"{rounds_text(s.rounds('ac.small.tell'), si)} |",
        f"| ask p50, 1 outstanding | {us(m('raw.small.ask_p50'))} | | "
        f"{us(m('ac.small.ask_p50'))} | {m('ac.small.ask_p50') / m('raw.small.ask_p50'):.2f}× | "
        f"{rounds_text(s.rounds('ac.small.ask_p50'), us)} |",
        f"| ask p99, 1 outstanding | {us(m('raw.small.ask_p99'))} | | "
        f"{us(m('ac.small.ask_p99'))} | {m('ac.small.ask_p99') / m('raw.small.ask_p99'):.2f}× | "
        f"{rounds_text(s.rounds('ac.small.ask_p99'), us)} |",
        f"| asks/s, {WIDTH} in flight | {si(m('raw.small.window'))} | | "
        f"{si(m('ac.small.window'))} | {m('ac.small.window') / m('raw.small.window'):.2f}× | "
        f"{rounds_text(s.rounds('ac.small.window'), si)} |",
        f"| asks/s, waves of {WIDTH} | {si(m('raw.small.asks'))} | | {si(m('ac.small.asks'))} | "
        f"{m('ac.small.asks') / m('raw.small.asks'):.2f}× | "
        f"{rounds_text(s.rounds('ac.small.asks'), si)} |",
        "",
        "Raw per round: tells/s "
        f"{rounds_text(s.rounds('raw.small.tell'), si)}; packed "
        f"{rounds_text(s.rounds('raw.small.tell_packed'), si)}; ask p50 "
        f"{rounds_text(s.rounds('raw.small.ask_p50'), us)}; asks/s {WIDTH} in flight "
        f"{rounds_text(s.rounds('raw.small.window'), si)}; asks/s in waves "
        f"{rounds_text(s.rounds('raw.small.asks'), si)}.",
        "",
        "### 64 KiB `bytes` payload",
        "",
        "| measure | raw pyzmq, 1 per send | actorcluster | actorcluster / raw |",
        "| --- | ---: | ---: | ---: |",
        f"| tells/s | not measured | {si(m('ac.64KiB.tell'))} "
        f"({m('ac.64KiB.tell') * 64 / 1024:,.0f} MiB/s) | |",
        f"| ask p50, 1 outstanding | {us(m('raw.64KiB.ask_p50'))} | {us(m('ac.64KiB.ask_p50'))} "
        f"| {m('ac.64KiB.ask_p50') / m('raw.64KiB.ask_p50'):.2f}× |",
        f"| ask p99, 1 outstanding | {us(m('raw.64KiB.ask_p99'))} | {us(m('ac.64KiB.ask_p99'))} "
        f"| {m('ac.64KiB.ask_p99') / m('raw.64KiB.ask_p99'):.2f}× |",
        f"| asks/s, {WIDTH} in flight | {si(m('raw.64KiB.window'))} | "
        f"{si(m('ac.64KiB.window'))} | {m('ac.64KiB.window') / m('raw.64KiB.window'):.2f}× |",
        f"| asks/s, waves of {WIDTH} | {si(m('raw.64KiB.asks'))} | {si(m('ac.64KiB.asks'))} "
        f"| {m('ac.64KiB.asks') / m('raw.64KiB.asks'):.2f}× |",
        "",
        "### Flood: a slow receiver (0.5 ms per message, `time.sleep`)",
        "",
        f"The Sender `await tell`s {sizes.flood:,} small messages to the slow receiver; "
        "meanwhile a third actor asks a fourth (1 outstanding, in a loop) and we take that "
        f"pair's latency; for comparison the same pair alone for {sizes.idle_ping} s just "
        "before. Dead letters: the growth of `status[\"messages\"][\"dead_letters\"]`. "
        "Medians over the rounds (per round in brackets).",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| tells sent | {sizes.flood:,} |",
        f"| arrived (the receiver's count) | {m('flood.arrived'):,.0f} "
        f"[{rounds_text(s.rounds('flood.arrived'), lambda v: f'{v:,.0f}')}] |",
        f"| dead letters | {m('flood.dead'):,.0f} "
        f"[{rounds_text(s.rounds('flood.dead'), lambda v: f'{v:,.0f}')}] |",
        f"| sender: time in the tell loop | {m('flood.elapsed'):.3f} s "
        f"[{rounds_text(s.rounds('flood.elapsed'), lambda v: f'{v:.3f}')}] |",
        f"| sender: time waiting in `await tell` (flow control) | {m('flood.waited'):.3f} s "
        f"[{rounds_text(s.rounds('flood.waited'), lambda v: f'{v:.3f}')}] |",
        f"| sender: `await tell` calls that waited | {m('flood.waits'):,.0f} "
        f"[{rounds_text(s.rounds('flood.waits'), lambda v: f'{v:,.0f}')}] |",
        f"| from the first tell to the last message handled | {m('flood.drained'):.2f} s "
        f"(at least {sizes.flood * 0.0005:.1f} s of sleeping) |",
        f"| other pair ask p50 / p99, alone | {us(m('flood.idle_p50'))} / "
        f"{us(m('flood.idle_p99'))} |",
        f"| other pair ask p50 / p99, during the flood | {us(m('flood.p50'))} / "
        f"{us(m('flood.p99'))} [p99 {rounds_text(s.rounds('flood.p99'), us)}] |",
        f"| other pair asks during the flood (failed) | {m('flood.pings'):,.0f} "
        f"({m('flood.failed'):,.0f}) |",
        "",
    ]
    if max(s.rounds("flood.waits"), default=0) == 0:
        lines += [
            "No `await tell` waited: the small tells travel coalesced, up to 256 per ZeroMQ "
            "message, so the whole flood is a few dozen ZeroMQ messages, which the pipes to the "
            "receiver hold (their high-water marks count ZeroMQ messages); the router never had "
            "to keep any in its outbox, so it never paused the sender (a loop of `await tell` "
            "gives its event loop a turn at each full run of 256, in which a \"pause\" would be "
            "heard). The flood was accepted in the time of the tell loop and delivered in full.",
            "",
        ]
    lines += [
        "### Encoding: plain data never pays for cloudpickle",
        "",
        "Best of 5 × 20,000 calls in the benchmark's process. `wire.encode` tries pickle "
        "protocol 5 and falls back to cloudpickle only when pickle fails or the pickle refers to "
        "`__main__` (which the receiving process cannot import).",
        "",
        "| value | `wire.encode` | `cloudpickle.dumps` | `pickle.dumps` | encode path | "
        "bytes: encode / cloudpickle / pickle |",
        "| --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for row in encoding:
        lines.append(
            f"| {row['label']} | {row['encode'] * 1e6:.2f} µs | {row['cloudpickle'] * 1e6:.2f} µs "
            f"| {row['pickle'] * 1e6:.2f} µs | {row['path']} | {row['encode_bytes']} / "
            f"{row['cloudpickle_bytes']} / {row['pickle_bytes']} |")
    importable = ", ".join(peers_importable)
    lines += [
        "",
        "### Reference: peers measured earlier on this machine (not re-measured here)",
        "",
        f"Ray and Thespian are {'importable (' + importable + ') but' if importable else 'not'}"
        " installed here" + (" and were not run" if importable else "") + "; these figures are "
        "from an earlier session on the same machine, for orientation only: compare the raw "
        "pyzmq rows with this run's baseline to gauge how the machine's speed moved.",
        "",
        "| peer (earlier run) | tells/s (calls/s) | ask p50 | asks/s, 64 in flight |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, rate, p50, many in PEERS:
        lines.append(f"| {name} | {rate} | {p50 or '—'} | {many or '—'} |")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace our section of ``path`` (or append it) and leave the rest of the file alone."""
    text = path.read_text() if path.exists() else ""
    begin, end = text.find(BEGIN), text.find(END)
    if begin >= 0 and end > begin:
        text = text[:begin] + section.rstrip("\n") + text[end + len(END):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section
    if not text.endswith("\n"):
        text += "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- main ----------------------------------------------------------------------------------------


def run(sizes: Sizes, workdir: Path) -> Samples:
    samples = Samples()
    spawned: list[Spawned] = []
    endpoint = f"ipc://{workdir}/broker"
    name = f"msgbench-{os.getpid()}"
    with stopping(spawned):
        spawned.append(Spawned([sys.executable, str(RAW_PEER), "broker", endpoint],
                               workdir / "raw-broker.log"))
        spawned.append(Spawned([sys.executable, str(RAW_PEER), "receiver", endpoint],
                               workdir / "raw-receiver.log"))
        server = Spawned(cluster_command(name, free_port()), workdir / "cluster.log")
        spawned.append(server)
        with wait_ready(server, name) as client:
            # warm-up: both sides, not recorded
            client.ask("sender", ("ask1", "receiver", 200, SMALL), timeout=60.0)
            client.ask("sender", ("tell", "receiver", 2_000, SMALL), timeout=60.0)
            for r in range(sizes.rounds):
                order = ("raw", "ac") if r % 2 == 0 else ("ac", "raw")
                for side in order:
                    t0 = time.perf_counter()
                    if side == "raw":
                        raw_round(endpoint, workdir, sizes, samples)
                    else:
                        actorcluster_round(client, sizes, samples)
                    print(f"round {r + 1}/{sizes.rounds} {side}: "
                          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
                for p in spawned[:2]:
                    if p.proc.poll() is not None:
                        raise BenchError(f"the raw {p.cmd[3]} exited:\n{p.log_tail()}")
            for r in range(sizes.rounds):
                t0 = time.perf_counter()
                flood_round(client, sizes, samples)
                print(f"flood {r + 1}/{sizes.rounds}: {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr)
            server.note_descendants()
        if server.proc.poll() is not None:
            raise BenchError(f"the cluster exited early:\n{server.log_tail()}")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (prints only)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, --quick 3)")
    parser.add_argument("--out", type=Path,
                        help="markdown file whose section to write (default: docs/benchmarks.md "
                             "for a full run, nothing for --quick)")
    parser.add_argument("--json", type=Path, help="also write every per-round value here")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 3:
        parser.error("--rounds: at least 3 (the figures are medians)")
    out = args.out if args.out is not None or args.quick else REPO / "docs" / "benchmarks.md"
    sizes = Sizes.of(args.quick, args.rounds)
    command = "python bench/messaging.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started with SIGINT ignored (`cmd &`)
    become_subreaper()
    info = machine()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    encoding = encode_figures()
    with tempfile.TemporaryDirectory(prefix="msgbench-") as tmp:
        try:
            samples = run(sizes, Path(tmp))
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    peers = [m for m in ("ray", "thespian") if _importable(m)]
    section = report(samples, sizes, command, info, encoding, started, time.monotonic() - t0,
                     peers)
    print(section)
    if args.json is not None:
        args.json.write_text(json.dumps({"sizes": sizes.__dict__, "samples": samples.values,
                                         "encoding": encoding, "machine": info}, indent=1))
    if out is not None:
        write_section(out, section)
        print(f"wrote the section of {out}", file=sys.stderr)
    return 0


def _importable(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
