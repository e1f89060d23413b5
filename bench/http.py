"""HTTP benchmark: actorcluster against uvicorn, gunicorn and Node's cluster module.

    pip install -e '.[bench]' && python bench/http.py     # full run, writes docs/benchmarks.md
    python bench/http.py --quick                          # smoke run, prints only

Every server serves `hello world\\n` on 127.0.0.1. Cases, wrk -t1 -c64, the servers alternated
A B C D A B C D ... for --rounds rounds, medians reported:
  keepalive  keep-alive, 2 workers (worker USS is sampled during these runs)
  pinned     1 worker; the server under `taskset -c 0`, wrk under `taskset -c 1`
  close      `Connection: close`, 2 workers
and kill -9 of a worker -> a new worker pid serving (2 workers, --trials kills 2.5 s apart),
counting the requests that failed meanwhile. The machine is shared and noisy: compare the
ratios of one run, never lone absolute numbers.
"""

import argparse
import asyncio
import os
import platform
import random
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# This file is named http.py: move its folder behind the standard library on sys.path, or any
# `import http` (urllib, email, ...) would import this script. `_servers` is still found there.
sys.path.append(sys.path.pop(0))

from _servers import (  # noqa: E402
    REPO,
    REQUEST,
    SERVERS,
    BenchError,
    Server,
    WrkResult,
    become_subreaper,
    leftover_processes,
    parse_response,
    run_wrk,
    running_server,
    unavailable,
    uss_mib,
)

BEGIN, END = "<!-- bench/http.py begin -->", "<!-- bench/http.py end -->"
KILL_WORKERS = 2  # workers per server in the kill -9 test
PROBE_CLIENTS = 4  # concurrent clients, each request on a new connection
# Seconds between two kills: at most 4 fall in any 10 s, within actorcluster's default restart
# intensity (--max-restarts 5 --within 10), past which its supervisor rightly gives up.
KILL_INTERVAL = 2.5
REPLACEMENT_TIMEOUT = 10.0  # s; no new worker pid serving by then ends that server's trials


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    workers: int
    close: bool = False
    pinned: bool = False


CASES = (
    Case("keepalive", "1. Keep-alive, 2 workers", workers=2),
    Case(
        "pinned",
        "2. One worker on one core (server `taskset -c 0`, wrk `taskset -c 1`)",
        workers=1,
        pinned=True,
    ),
    Case("close", "3. `Connection: close`, 2 workers", workers=2, close=True),
)


@dataclass
class Restart:
    times_ms: list[float]
    timed_out: bool
    requests: int
    failed: int  # in_flight + new
    # failed requests whose connection began before the last kill (it may have been the
    # victim's: no server can answer those), and those whose connection began after it or was
    # refused (a new connection lost: what the gateway must never do)
    in_flight: int = 0
    new: int = 0


@dataclass
class Results:
    servers: list[str]
    throughput: dict[str, dict[str, list[WrkResult]]] = field(default_factory=dict)
    uss: dict[str, list[float]] = field(default_factory=dict)
    restart: dict[str, Restart] = field(default_factory=dict)
    # why a server did not run: key (test, server), test "*" for all of them
    failures: dict[tuple[str, str], str] = field(default_factory=dict)

    def fail(self, test: str, name: str, error: Exception) -> None:
        self.failures[(test, name)] = str(error)
        progress(f"!! {name} failed in {test}, skipped for the rest of it: {error}")

    def skipped(self, test: str, name: str) -> bool:
        return (test, name) in self.failures or ("*", name) in self.failures

    def why_not(self, test: str, name: str) -> str:
        reason = self.failures.get((test, name)) or self.failures.get(("*", name), "not run")
        return f"did not run: {reason.strip().splitlines()[0][:120]}"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- throughput and USS ------------------------------------------------------------------------


def run_case(case: Case, results: Results, rounds: int, duration: int, warmup: int) -> None:
    per_server = results.throughput.setdefault(case.key, {})
    for rnd in range(1, rounds + 1):
        for name in results.servers:
            if results.skipped(case.key, name):
                continue
            try:
                result = measure_throughput(case, name, duration, warmup, results.uss)
            except BenchError as exc:
                results.fail(case.key, name, exc)
                continue
            per_server.setdefault(name, []).append(result)
            progress(
                f"{case.key} round {rnd}/{rounds} {name:>12}: {result.rps:>9,.0f} req/s"
                f"  ({result.errors} errors, wrk CPU {result.cpu:.0%})"
            )


def measure_throughput(
    case: Case, name: str, duration: int, warmup: int, uss: dict[str, list[float]]
) -> WrkResult:
    server_cpu, wrk_cpu = (0, 1) if case.pinned else (None, None)
    with running_server(name, workers=case.workers, cpu=server_cpu) as server:
        run_wrk(server.port, duration=warmup, close=case.close, cpu=wrk_cpu)

        def sample_uss() -> None:
            uss.setdefault(name, []).extend(uss_mib(server.pids))

        midway = sample_uss if case.key == "keepalive" else None
        return run_wrk(server.port, duration=duration, close=case.close, cpu=wrk_cpu, midway=midway)


# --- kill -9 -> replacement serving ------------------------------------------------------------


async def fetch_pid(port: int, began: list[float] | None = None) -> int:
    """GET / on a new connection; the worker's pid. ``began`` gets the perf_counter() time at
    which connecting began (the handshake is done by the kernel at once; the time
    open_connection returns can be milliseconds later, when this loop gets to it)."""
    if began is not None:
        began.append(time.perf_counter())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(REQUEST)
        status, body = parse_response(await reader.read())
    finally:
        writer.close()
    if status != 200:
        raise ValueError(f"status {status}")
    return int(body)


class Prober:
    """Clients sending GET / continuously, each request on a new connection; notes which worker
    pid answered, counts failures, and reports the first answer from a pid not known before."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: set[int] = set()
        self.ok = self.failed = 0
        self.in_flight = self.new = 0  # the failures, told apart (see Restart)
        self.kills: list[float] = []  # perf_counter() times of the kills
        self.stopped = False
        self._known: set[int] = set()
        self._new_pid: asyncio.Future[float] | None = None

    async def client(self) -> None:
        while not self.stopped:  # a flag as well: 3.11's wait_for can swallow a cancellation
            began: list[float] = []
            try:
                async with asyncio.timeout(2.0):
                    pid = await fetch_pid(self.port, began)
            except (OSError, TimeoutError, ValueError) as exc:  # refused, reset, bad answer
                self.failed += 1
                refused = isinstance(exc, ConnectionRefusedError)  # nobody listening at all
                if not refused and self.kills and self.kills[-1] >= began[0]:
                    self.in_flight += 1  # open (or opening) when a worker was killed
                else:
                    self.new += 1  # begun after the last kill
                await asyncio.sleep(0.005)
                continue
            self.ok += 1
            self.seen.add(pid)
            waiter = self._new_pid
            if waiter is not None and not waiter.done() and pid not in self._known:
                waiter.set_result(time.perf_counter())
            await asyncio.sleep(0.001)

    def expect_new_pid(self, known: set[int]) -> asyncio.Future[float]:
        """A future set to the perf_counter() time of the first answer from a pid not in known."""
        self._known = set(known)
        self._new_pid = asyncio.get_running_loop().create_future()
        return self._new_pid


async def poll(condition: Callable[[], bool], timeout: float) -> bool:
    """Wait until condition() holds (True) or `timeout` s pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def kill_trials(server: Server, trials: int) -> Restart:
    prober = Prober(server.port)
    clients = [asyncio.create_task(prober.client()) for _ in range(PROBE_CLIENTS)]
    try:
        # every worker answering; but the kernel may favour one worker for a while
        await poll(lambda: set(server.pids) <= prober.seen, 5.0)
        if not prober.seen:
            raise BenchError(f"{server.name}: no answer to the prober within 5 s")
        prober.ok = prober.failed = prober.in_flight = prober.new = 0
        times: list[float] = []
        for trial in range(trials):
            pause = KILL_INTERVAL if trial else 0.2
            await asyncio.sleep(pause + random.uniform(0, 0.2))  # jitter: no lockstep with timers
            workers = server.current_workers()
            victim = next((pid for pid in workers if pid in prober.seen), None)  # oldest serving
            if victim is None:
                raise BenchError(f"{server.name}: no serving worker to kill among {workers}")
            new_pid = prober.expect_new_pid(prober.seen | set(workers))
            start = time.perf_counter()
            prober.kills.append(start)
            os.kill(victim, signal.SIGKILL)
            try:
                served_at = await asyncio.wait_for(new_pid, REPLACEMENT_TIMEOUT)
            except TimeoutError:
                return Restart(times, True, prober.ok, prober.failed, prober.in_flight, prober.new)
            times.append((served_at - start) * 1000)
            if not await poll(lambda: len(server.current_workers()) == server.workers, 10.0):
                raise BenchError(f"{server.name}: not {server.workers} workers again in 10 s")
        return Restart(times, False, prober.ok, prober.failed, prober.in_flight, prober.new)
    finally:
        prober.stopped = True
        for task in clients:
            task.cancel()
        await asyncio.wait(clients, timeout=5.0)


def run_restarts(results: Results, trials: int) -> None:
    for name in results.servers:
        if results.skipped("restart", name):
            continue
        try:
            with running_server(name, workers=KILL_WORKERS, app="pid") as server:
                restart = asyncio.run(kill_trials(server, trials))
        except BenchError as exc:
            results.fail("restart", name, exc)
            continue
        results.restart[name] = restart
        median = f"{statistics.median(restart.times_ms):.1f} ms" if restart.times_ms else "-"
        progress(
            f"kill -9 {name:>12}: median {median} over {len(restart.times_ms)} trials, "
            f"{restart.failed}/{restart.requests + restart.failed} requests failed "
            f"({restart.in_flight} in flight at a kill, {restart.new} new)"
            + ("; NO REPLACEMENT within 10 s" if restart.timed_out else "")
        )


# --- the report --------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def median_rps(results: Results, case: str, name: str) -> float | None:
    runs = results.throughput.get(case, {}).get(name)
    return statistics.median(r.rps for r in runs) if runs else None


def ratio(results: Results, case: str, peer: str) -> float | None:
    ours, theirs = median_rps(results, case, "actorcluster"), median_rps(results, case, peer)
    return ours / theirs if ours and theirs else None


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def targets(results: Results) -> list[list[str]]:
    restart = results.restart.get("actorcluster")
    restart_ms = statistics.median(restart.times_ms) if restart and restart.times_ms else None
    uss = results.uss.get("actorcluster")
    measured = [  # (target, value, limit, unit); "x" ratios must reach the limit, others stay below
        ("pinned per-core throughput >= 3x uvicorn", ratio(results, "pinned", "uvicorn"), 3, "x"),
        ("keep-alive, 2 workers >= 2x Node cluster", ratio(results, "keepalive", "node"), 2, "x"),
        ("`Connection: close`, 2 workers >= 2.5x Node cluster",
         ratio(results, "close", "node"), 2.5, "x"),
        ("kill -9 -> replacement serving <= 10 ms (median)", restart_ms, 10, " ms"),
        ("worker USS under load <= 5 MiB (median)",
         statistics.median(uss) if uss else None, 5, " MiB"),
    ]  # fmt: skip
    rows = []
    for label, value, limit, unit in measured:
        if restart and restart.timed_out and unit == " ms":
            rows.append([label, "no replacement within 10 s", "**FAIL**"])
        elif value is None:
            rows.append([label, "n/a", "n/a"])
        else:
            ok = value >= limit if unit == "x" else value <= limit
            shown = f"{value:.2f}x" if unit == "x" else f"{value:.1f}{unit}"
            rows.append([label, shown, "pass" if ok else "**FAIL**"])
    return rows


def throughput_table(results: Results, case: Case) -> list[str]:
    ours = results.throughput.get(case.key, {}).get("actorcluster", [])
    rows = []
    for name in results.servers:
        runs = results.throughput.get(case.key, {}).get(name)
        if not runs:
            rows.append([name, results.why_not(case.key, name), "", "", "", "", ""])
            continue
        median = f"{median_rps(results, case.key, name):,.0f}"
        each = " / ".join(f"{run.rps:,.0f}" for run in runs)
        errors = str(sum(run.errors for run in runs))
        wrk_cpu = f"{statistics.median(run.cpu for run in runs):.0%}"
        r = ratio(results, case.key, name)
        relative, paired = "-", "-"
        if name != "actorcluster":
            relative = f"{r:.2f}x" if r else "n/a"
            # a failure ends a server's case, so both lists start at round 1: zip pairs rounds
            pairs = zip(ours, runs, strict=False)
            paired = " / ".join(f"{a.rps / b.rps:.2f}" for a, b in pairs) or "n/a"
        rows.append([name, median, each, errors, wrk_cpu, relative, paired])
    headers = ["server", "median req/s", "each round", "wrk errors", "wrk CPU",
               "actorcluster / server", "same, each round"]  # fmt: skip
    return [f"### {case.title}", "", *table(headers, rows)]


def restart_table(results: Results, trials: int) -> list[str]:
    rows = []
    for name in results.servers:
        restart = results.restart.get(name)
        if restart is None:
            rows.append([name, results.why_not("restart", name), "", "", "", "", ""])
            continue
        t = restart.times_ms
        done = f"{len(t)}/{trials}" + (" (then no new worker in 10 s)" if restart.timed_out else "")
        total = restart.requests + restart.failed
        median, high = (f"{statistics.median(t):.1f}", f"{p90(t):.1f}") if t else ("-", "-")
        rows.append([name, median, high, done, f"{restart.failed} / {total}",
                     str(restart.in_flight), str(restart.new)])
    return [
        f"### kill -9 of a worker -> a new worker pid serving ({KILL_WORKERS} workers)",
        "",
        "SIGKILL one worker (the oldest), then time until a response carries a pid not seen "
        f"before; kills are {KILL_INTERVAL} s apart, within actorcluster's default restart "
        f"intensity (5 in 10 s). {PROBE_CLIENTS} clients send continuously during the trials, "
        "one request per new connection, and count their failed requests (refused, reset, "
        "timed out, not 200), told apart: *in flight* if connecting began before the last "
        "kill (the connection may have been the victim's, which no server can answer), *new* "
        "if it began after the kill or was refused: a new connection lost, which the gateway "
        "must never do.",
        "",
        *table(["server", "median ms", "p90 ms", "trials", "failed / requests",
                "in flight", "new"], rows),
    ]


def uss_table(results: Results) -> list[str]:
    rows = []
    for name in results.servers:
        sizes = results.uss.get(name)
        if not sizes:
            rows.append([name, results.why_not("keepalive", name), "", ""])
            continue
        spread = f"{min(sizes):.1f} - {max(sizes):.1f}"
        rows.append([name, f"{statistics.median(sizes):.1f}", spread, str(len(sizes))])
    return [
        "### Worker USS under keep-alive load (2 workers)",
        "",
        "psutil `memory_full_info().uss` of each worker process, sampled 60% into each "
        "keep-alive run of case 1. Only the workers in rotation count: not actorcluster's "
        "zygote nor its standby worker, nor uvicorn's resource tracker.",
        "",
        *table(["server", "median MiB", "min - max", "samples"], rows),
    ]


def report(results: Results, rounds: int, duration: int, trials: int, machine: list[str]) -> str:
    lines = [
        "## HTTP: actorcluster against uvicorn, gunicorn and Node's cluster module",
        "",
        "Run it with `pip install -e '.[bench]' && python bench/http.py` (it needs `wrk` and "
        "`taskset`; Node's cluster is measured when `node` is on PATH; `--quick` is a smoke "
        "run, `--only actorcluster,node` a subset).",
        "",
        "Every server serves `hello world\\n` (200; Node: the cluster article's own code) "
        "on 127.0.0.1 and is load-tested "
        f"with `wrk -t1 -c64`, the servers alternated A B C D A B C D ... for {rounds} round(s) "
        f"of {duration} s, each after a fresh start and a warm-up; medians are reported. "
        "The machine is shared and noisy: read the ratios, measured in the same run, rather "
        "than the absolute numbers. wrk CPU is wrk's CPU time over the run's wall time: near "
        "100%, the single wrk thread is the limit and the ratio against a slower server is "
        "a lower bound. The ratio is of the medians; the ratios of each round, whose runs "
        "are a minute apart at most, show how far the machine's load moved them.",
        "",
        "### Targets",
        "",
        *table(["target", "measured (actorcluster)", "result"], targets(results)),
    ]
    for case in CASES:
        lines += throughput_table(results, case)
    lines += restart_table(results, trials)
    lines += uss_table(results)
    lines += ["### Machine and command", "", *machine]
    return "\n".join(lines).rstrip() + "\n"


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else "?"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_lines(argv: list[str], load_before: float) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = models[0] if models else platform.processor()
    command = shlex.join(["python", "bench/http.py", *argv])
    wrk = tool_version(["wrk", "-v"]).split(" Copyright")[0]
    commit = tool_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if not all(c in "0123456789abcdef" for c in commit):
        commit = "no commit yet"
    return [
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- nproc: {os.cpu_count()} ({cpu}); Linux {platform.release()}",
        f"- load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}",
        f"- actorcluster {package_version('actorcluster')} ({commit}); "
        f"Python {platform.python_version()}; {wrk}; node {tool_version(['node', '--version'])}",
        f"- uvicorn {package_version('uvicorn')}, gunicorn {package_version('gunicorn')}, "
        f"uvloop {package_version('uvloop')}, httptools {package_version('httptools')}",
        f"- command: `{command}`",
    ]


DOC_HEADER = """# Benchmarks

Each benchmark script rewrites only its own section of this file, between its two markers.
"""


def write_section(path: Path, section: str) -> None:
    """Replace the text between this benchmark's markers in `path`, or append it."""
    text = path.read_text() if path.exists() else DOC_HEADER
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = f"{head}{BEGIN}\n{section}{END}{rest.split(END, 1)[1]}"
    else:
        text = f"{text.rstrip()}\n\n{BEGIN}\n{section}{END}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/http.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, help="rounds per case (default 3; --quick: 1)")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 10; --quick: 2)")
    parser.add_argument("--trials", type=int, help="kill -9 trials (default 10; --quick: 3)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--only", help=f"comma-separated servers among {','.join(SERVERS)}")
    parser.add_argument(
        "--out",
        type=Path,
        help="markdown file whose section to rewrite (default docs/benchmarks.md; "
        "a --quick run writes only when --out is given)",
    )
    opts = parser.parse_args(argv)
    opts.rounds = opts.rounds or (1 if opts.quick else 3)
    opts.duration = opts.duration or (2 if opts.quick else 10)
    opts.trials = opts.trials or (3 if opts.quick else 10)
    if opts.out is None and not opts.quick:
        opts.out = REPO / "docs" / "benchmarks.md"
    opts.servers = opts.only.split(",") if opts.only else list(SERVERS)
    if unknown := [name for name in opts.servers if name not in SERVERS]:
        parser.error(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    return opts


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    for tool in ("wrk", "taskset"):
        if tool_version([tool, "--version"]) == "not found":
            sys.exit(f"{tool} is needed and not on PATH")
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    if not become_subreaper():
        progress("warning: could not become a child subreaper; orphans go to init")
    load_before = os.getloadavg()[0]
    results = Results(servers=opts.servers)
    for name in opts.servers:
        if reason := unavailable(name):
            results.failures[("*", name)] = reason
    warmup = 1 if opts.quick else 2
    try:
        for case in CASES:
            run_case(case, results, opts.rounds, opts.duration, warmup)
        run_restarts(results, opts.trials)
    except KeyboardInterrupt as exc:
        progress(f"interrupted ({str(exc) or 'Ctrl-C'}); stopping every process started")
        return 130
    finally:
        if left := leftover_processes():
            progress(f"!! killed and reaped {len(left)} leftover process(es): {left}")
        else:
            progress("every process started was stopped and reaped (psutil: none left)")
    section = report(
        results, opts.rounds, opts.duration, opts.trials, machine_lines(argv, load_before)
    )
    print(section)
    if opts.out:
        write_section(opts.out, section)
        progress(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
