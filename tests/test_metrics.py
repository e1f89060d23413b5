"""--metrics-bind: the workers' counters, the primary's collector and server, a real cluster.

The first tests need no process: the HTTP counters of `HttpServerState` driven through
`HttpProtocol` with a fake transport, the collector on a fake tree, the server on a real loop.
The last ones run `actorcluster run --metrics-bind` and scrape it as Prometheus would.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from collections import Counter
from typing import Any

import httpx
import psutil
import pytest
import uvloop
from conftest import free_port
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actorcluster.errors import ClusterError
from actorcluster.http import HttpLimits, HttpProtocol, HttpServerState, Response, make_app
from actorcluster.http.state import LATENCY_BUCKETS
from actorcluster.primary.children import Leaf
from actorcluster.primary.metrics import MAX_SCRAPES, Metrics

pytestmark = pytest.mark.timeout(60)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


# -- the worker's counters: HttpServerState through HttpProtocol ------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(request):
    match request.path:
        case "/missing":
            return Response("no such page", status=404)
        case "/boom":
            raise RuntimeError("handler failed on purpose")
        case "/slow":
            await asyncio.sleep(0.03)
    return "ok"


def drive(chunks: list[bytes], timed: bool, settle: float = 0.0) -> tuple[HttpServerState, bytes]:
    """Feed ``chunks`` to one connection from a loop callback, as the loop would."""
    loop = asyncio.new_event_loop()
    limits = HttpLimits()
    state = HttpServerState(loop, limits, timed=timed)
    transport = FakeTransport()
    protocol = HttpProtocol(make_app(app), state, limits)

    def feed() -> None:
        protocol.connection_made(transport)
        for chunk in chunks:
            protocol.data_received(chunk)

    loop.call_soon(feed)
    loop.run_until_complete(asyncio.sleep(settle))
    protocol.connection_lost(None)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    return state, b"".join(transport.data)


PIPELINED = (b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
             b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
             b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"
             b"BAD REQUEST\r\n\r\n")


@pytest.mark.parametrize("timed", [False, True])
def test_responses_are_counted_by_status_class_and_timed_only_when_asked(timed, caplog):
    state, written = drive([PIPELINED], timed)
    statuses = re.findall(rb"HTTP/1.1 (\d{3}) ", written)
    assert statuses == [b"200", b"404", b"500", b"400"]
    assert state.status_counts == [0, 0, 1, 0, 2, 1]
    assert state.requests_served == 4  # the protocol error's 400 is a response written too
    assert state.status_summary() == {"2xx": 1, "4xx": 2, "5xx": 1}
    latency = state.latency_summary()
    assert latency["buckets"] == list(LATENCY_BUCKETS)
    assert len(latency["counts"]) == len(LATENCY_BUCKETS) + 1
    if timed:
        # the three complete requests; the malformed one never completed: not timed
        assert latency["count"] == sum(latency["counts"]) == 3
        assert 0 < latency["sum"] < 1
    else:
        assert latency["count"] == 0 and latency["sum"] == 0.0


def test_latency_runs_from_the_message_complete_to_the_response():
    request = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
    state, _ = drive([request[:10], request[10:]], timed=True, settle=0.3)
    counts = state.latency_counts
    assert sum(counts) == 1
    assert state.latency_sum >= 0.03
    assert sum(counts[:LATENCY_BUCKETS.index(0.025) + 1]) == 0  # not in a bucket below 30 ms


def test_buckets_are_inclusive_upper_bounds():
    loop = asyncio.new_event_loop()
    state = HttpServerState(loop, HttpLimits(), timed=True)
    for seconds in (0.0, 0.001, 0.0011, 0.25, 10.0, 11.0):
        state.observe(seconds)
    loop.close()
    where = {i: n for i, n in enumerate(state.latency_counts) if n}
    last = len(LATENCY_BUCKETS)
    assert where == {0: 2, 1: 1, LATENCY_BUCKETS.index(0.25): 1, last - 1: 1, last: 1}
    assert state.latency_sum == pytest.approx(21.2521)


# -- the collector, on a fake tree --------------------------------------------------------------


class FakePool:
    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[str, Leaf] = {}


class FakeTree:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self.heartbeat = 1.0
        self.pool = FakePool("web")
        self.leaves: list[Leaf] = []
        self.spare: Leaf | None = None
        self.restart_counts: Counter[tuple[str, str]] = Counter()
        self.on_process_exit: Any = lambda leaf: None  # as SupervisionTree's, until Metrics

    def _all(self) -> list[Leaf]:
        return self.leaves + ([self.spare] if self.spare is not None else [])

    def http(self, name: str, pid: int | None, **status: int) -> Leaf:
        leaf = Leaf(name, "http", "app:handler", None, self.pool, "permanent", 5.0)  # type: ignore[arg-type]
        leaf.pid, leaf.state = pid, "ready"
        if pid is not None:
            beat(leaf, pid, **status)
        return leaf


class FakeRouter:
    def __init__(self) -> None:
        self.sent = self.delivered = self.held_total = 0
        self.dead_letters: Counter[str] = Counter()


def beat(leaf: Leaf, pid: int, latency: list[int] | None = None, lsum: float = 0.0,
         **status: int) -> None:
    """What a worker's heartbeat leaves on its Leaf (status classes given as _2xx=...)."""
    counts = latency or [0] * (len(LATENCY_BUCKETS) + 1)
    leaf.stats = {
        "op": "heartbeat", "messages": 0, "requests": sum(status.values()), "pid": pid,
        "status": {k.lstrip("_"): n for k, n in status.items()},
        "latency": {"buckets": list(LATENCY_BUCKETS), "counts": counts, "sum": lsum,
                    "count": sum(counts)},
    }


def scrape_of(metrics: Metrics) -> Samples:
    return parse(generate_latest(metrics.registry).decode())


def requests_of(samples: Samples, worker: str, status: str) -> float | None:
    return value(samples, "actorcluster_http_requests_total", pool="web", worker=worker,
                 status=status)


def test_worker_counters_never_go_down_across_restarts_and_pid_reuse():
    tree, router = FakeTree(), FakeRouter()
    metrics = Metrics(tree, router, "t")  # type: ignore[arg-type]
    web1 = tree.http("web/1", 101, _2xx=5, _5xx=1)
    web2 = tree.http("web/2", 102, _2xx=3)
    tree.leaves = [web1, web2]
    s = scrape_of(metrics)
    assert requests_of(s, "web/1", "2xx") == 5
    assert requests_of(s, "web/1", "5xx") == 1
    assert requests_of(s, "web/1", "4xx") == 0  # every class is exported, zero or not
    assert requests_of(s, "web/2", "2xx") == 3

    # web/1 dies: its last heartbeat stays on the Leaf until the replacement's first one
    web1.pid, web1.state = None, "down"
    assert requests_of(scrape_of(metrics), "web/1", "2xx") == 5
    # the promoted standby (another pid) reports from 0
    web1.pid, web1.state, web1.incarnation = 201, "ready", 2
    beat(web1, 201, _2xx=1)
    s = scrape_of(metrics)
    assert requests_of(s, "web/1", "2xx") == 6
    assert requests_of(s, "web/1", "5xx") == 1
    # a later process gets the same pid again: its lower counters tell it apart
    beat(web1, 201, _2xx=0)
    assert requests_of(scrape_of(metrics), "web/1", "2xx") == 6
    beat(web1, 201, _2xx=2)
    assert requests_of(scrape_of(metrics), "web/1", "2xx") == 8

    # a reload: the replacement runs beside the process it replaces, under the same name
    new1 = tree.http("web/1", 301, _2xx=4)
    tree.leaves = [web1, web2, new1]
    assert requests_of(scrape_of(metrics), "web/1", "2xx") == 12
    tree.leaves = [new1, web2]  # the old one finished
    assert requests_of(scrape_of(metrics), "web/1", "2xx") == 12


def test_a_process_sampled_between_scrapes_is_not_lost():
    tree, router = FakeTree(), FakeRouter()
    metrics = Metrics(tree, router, "t")  # type: ignore[arg-type]
    web1 = tree.http("web/1", 101, _2xx=7)
    tree.leaves = [web1]
    metrics.collector.sample()  # what the primary's timer does twice per heartbeat
    beat(web1, 202, _2xx=1)  # replaced before any scrape
    assert requests_of(scrape_of(metrics), "web/1", "2xx") == 8


def test_the_last_heartbeat_of_a_process_that_exits_is_counted():
    tree, router = FakeTree(), FakeRouter()
    metrics = Metrics(tree, router, "t")  # type: ignore[arg-type]
    old = tree.http("web/1", 101, _2xx=2)
    web2 = tree.http("web/2", 102, _2xx=1)
    tree.leaves = [old, web2]
    metrics.collector.sample()
    # recycled: the replacement is another Leaf; the old one's last heartbeat comes as it
    # exits, and the tree drops it right after
    new = tree.http("web/1", 201, _2xx=1)
    tree.leaves = [old, new, web2]
    beat(old, 101, _2xx=5, _4xx=1)
    tree.on_process_exit(old)
    tree.leaves = [new, web2]
    # killed: the same Leaf gets its successor's first heartbeat before any sample
    beat(web2, 102, _2xx=4)
    tree.on_process_exit(web2)
    beat(web2, 202, _2xx=1)
    s = scrape_of(metrics)
    assert requests_of(s, "web/1", "2xx") == 5 + 1
    assert requests_of(s, "web/1", "4xx") == 1
    assert requests_of(s, "web/2", "2xx") == 4 + 1


def test_histogram_sums_the_pool_and_keeps_what_gone_processes_reported():
    tree, router = FakeTree(), FakeRouter()
    metrics = Metrics(tree, router, "t")  # type: ignore[arg-type]
    n = len(LATENCY_BUCKETS) + 1
    web1 = tree.http("web/1", 101)
    beat(web1, 101, [3] + [0] * (n - 2) + [1], 20.5, _2xx=4)  # 3 at <= 1 ms, 1 above 10 s
    web2 = tree.http("web/2", 102)
    beat(web2, 102, [0, 2] + [0] * (n - 2), 0.004, _2xx=2)  # 2 at <= 2.5 ms
    tree.leaves = [web1, web2]
    s = scrape_of(metrics)
    name = "actorcluster_http_request_duration_seconds"
    assert value(s, name + "_bucket", pool="web", le="0.001") == 3
    assert value(s, name + "_bucket", pool="web", le="0.0025") == 5  # cumulative
    assert value(s, name + "_bucket", pool="web", le="10.0") == 5
    assert value(s, name + "_bucket", pool="web", le="+Inf") == 6
    assert value(s, name + "_count", pool="web") == 6
    assert value(s, name + "_sum", pool="web") == pytest.approx(20.504)
    beat(web1, 111, _2xx=0)  # web/1 replaced
    s = scrape_of(metrics)
    assert value(s, name + "_count", pool="web") == 6
    assert value(s, name + "_sum", pool="web") == pytest.approx(20.504)


def test_restarts_messages_processes_and_usage():
    tree, router = FakeTree(), FakeRouter()
    metrics = Metrics(tree, router, "t")  # type: ignore[arg-type]
    web1 = tree.http("web/1", 101, _2xx=1)
    web1.usage = {"rss": 30e6, "cpu": 12.5}
    starting = tree.http("web/2", 102)
    starting.state = "starting"
    actor = Leaf("counter", "actor", "app:Counter", None, None, "permanent", 5.0)
    actor.pid, actor.state, actor.usage = 103, "ready", {"rss": 20e6, "cpu": 0.0}
    down = Leaf("sink", "actor", "app:Sink", None, None, "temporary", 5.0)
    tree.leaves = [web1, starting, actor, down]
    tree.spare = tree.http("web/standby", 104, _2xx=0)
    tree.restart_counts["web/1", "signal SIGKILL"] += 2
    tree.restart_counts["counter", "exit code 1"] += 1
    router.sent, router.delivered, router.held_total = 10, 9, 3
    router.dead_letters.update({"gone": 2, "other": 1})
    s = scrape_of(metrics)
    restarts = "actorcluster_restarts_total"
    assert value(s, restarts, child="web/1", reason="signal SIGKILL") == 2
    assert value(s, restarts, child="counter", reason="exit code 1") == 1
    messages = "actorcluster_messages_total"
    assert [value(s, messages, outcome=o) for o in ("sent", "delivered", "held", "dead_lettered")
            ] == [10, 9, 3, 3]
    up = "actorcluster_processes_up"
    assert [value(s, up, type=t) for t in ("worker", "actor", "standby")] == [1, 1, 1]
    assert value(s, "actorcluster_process_resident_memory_bytes", child="web/1") == 30e6
    assert value(s, "actorcluster_process_cpu_percent", child="web/1") == 12.5
    assert value(s, "actorcluster_process_resident_memory_bytes", child="counter") == 20e6
    assert value(s, "actorcluster_process_resident_memory_bytes", child="sink") is None
    assert total(s, "actorcluster_http_requests_total", worker="web/standby") == 0
    assert not any(dict(ls).get("worker") == "web/standby" for _n, ls in s)


# -- the server, on a real loop -----------------------------------------------------------------


async def fetch(port: int, request: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_server_answers_scrapes_and_refuses_a_taken_port(loop):
    async def main() -> None:
        tree, router = FakeTree(asyncio.get_running_loop()), FakeRouter()
        tree.leaves = [tree.http("web/1", 101, _2xx=2)]
        metrics = Metrics(tree, router, "t")  # type: ignore[arg-type]
        metrics.serve("127.0.0.1", 0)
        assert metrics.address is not None
        port = metrics.address[1]
        head, body = await fetch(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Type: text/plain; version=0.0.4" in head
        assert requests_of(parse(body.decode()), "web/1", "2xx") == 2
        head, body = await fetch(port, b"GET /metrics HTTP/1.1\r\nAccept: "
                                       b"application/openmetrics-text;version=1.0.0\r\n\r\n")
        assert b"Content-Type: application/openmetrics-text" in head
        assert body.endswith(b"# EOF\n")
        head, _ = await fetch(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        head, _ = await fetch(port, b"GET / HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 404")
        head, _ = await fetch(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 405")
        head, _ = await fetch(port, b"nonsense\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")

        # clients that connect and say nothing hold no more than MAX_SCRAPES connections (and
        # file descriptors of the primary): the oldest are dropped, a scrape still gets in
        idle = [await asyncio.open_connection("127.0.0.1", port)
                for _ in range(MAX_SCRAPES + 4)]
        head, _ = await asyncio.wait_for(
            fetch(port, b"GET /metrics HTTP/1.1\r\n\r\n"), 2.0)
        assert head.startswith(b"HTTP/1.1 200 OK")
        for i, (reader, writer) in enumerate(idle):
            if i < 5:  # dropped: the server closed them
                assert await asyncio.wait_for(reader.read(), 2.0) == b""
            writer.close()

        other = Metrics(tree, router, "t")  # type: ignore[arg-type]
        with pytest.raises(ClusterError,
                           match=rf"--metrics-bind 127.0.0.1:{port}: cannot listen: Address "
                                 "already in use"):
            other.serve("127.0.0.1", port)
        metrics.close()
        await asyncio.sleep(0)
        with socket.create_server(("127.0.0.1", port)):
            pass  # free again

    if loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


# -- a real cluster ----------------------------------------------------------------------------


def get(url: str) -> httpx.Response:
    """One request on a fresh connection (so the gateway hands each one off)."""
    with httpx.Client(timeout=5.0) as client:
        return client.get(url)


def malformed(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


def scrape(port: int) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0)
    assert response.status_code == 200
    return parse(response.text)


def wait_scrape(port: int, done: Any, timeout: float = 10.0, every: Any = None) -> Samples:
    """Scrape until ``done(samples)`` (heartbeats bring the counters about once a second);
    ``every(samples)`` checks each scrape on the way."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if every is not None:
            every(samples)
        if done(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {samples}")
        time.sleep(0.1)


def by_class(samples: Samples) -> dict[str, float]:
    name = "actorcluster_http_requests_total"
    return {c: total(samples, name, pool="web", status=c) for c in ("2xx", "4xx", "5xx")}


def worker_pid(c: Any, name: str) -> int:
    for child in psutil.Process(c.proc.pid).children():
        try:
            if child.name() == f"ac {name}":
                return child.pid
        except psutil.Error:
            continue
    raise AssertionError(f"no process {name}")


APP = """
import os

from actorcluster.http import Response


async def handler(request):
    if request.path == "/missing":
        return Response("no such page", status=404)
    if request.path == "/raise":
        raise RuntimeError("on purpose")
    return str(os.getpid())
"""


def test_a_cluster_scrape_counts_requests_restarts_and_never_goes_back(cluster, tmp_path):
    (tmp_path / "ac_metrics_app.py").write_text(APP)
    mport = free_port()
    c = cluster("ac_metrics_app:handler", "--workers", "2", "--metrics-bind",
                f"127.0.0.1:{mport}", env={"PYTHONPATH": str(tmp_path)})
    c.wait_workers(2)
    for _ in range(6):
        assert get(c.url + "/").status_code == 200
    for _ in range(2):
        assert get(c.url + "/missing").status_code == 404
    for _ in range(2):
        assert get(c.url + "/raise").status_code == 500
    for _ in range(3):
        assert malformed(c.port).startswith(b"HTTP/1.1 400 ")
    expected = {"2xx": 6, "4xx": 2 + 3, "5xx": 2}
    s = wait_scrape(mport, lambda s: by_class(s) == expected and value(
        s, "actorcluster_processes_up", type="standby") == 1)
    # round-robin: both workers served, each under its own label
    for worker in ("web/1", "web/2"):
        assert total(s, "actorcluster_http_requests_total", worker=worker) > 0
    # what the handler answered is timed (the 200s, 404s and 500s); the 400s answer requests
    # that never completed: counted by status class, not timed
    duration = "actorcluster_http_request_duration_seconds"
    assert value(s, duration + "_count", pool="web") == 6 + 2 + 2
    assert value(s, duration + "_bucket", pool="web", le="+Inf") == 10
    assert 0 < value(s, duration + "_sum", pool="web") < 10 * 0.5
    buckets = [v for (n, ls), v in s.items() if n == duration + "_bucket"]
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    assert buckets == sorted(buckets)  # cumulative
    assert [value(s, "actorcluster_processes_up", type=t) for t in ("worker", "actor")] == [2, 0]
    assert total(s, "actorcluster_restarts_total") == 0
    assert value(s, "actorcluster_messages_total", outcome="dead_lettered") == 0
    s = wait_scrape(mport, lambda s: (value(
        s, "actorcluster_process_resident_memory_bytes", child="web/1") or 0) > 1e6)
    assert value(s, "actorcluster_process_cpu_percent", child="web/1") >= 0

    before = {k: v for k, v in s.items() if k[0] == "actorcluster_http_requests_total"}

    def never_lower(samples: Samples) -> None:
        for key, was in before.items():
            assert samples.get(key, 0) >= was, f"{key} went from {was} to {samples.get(key)}"
        assert value(samples, duration + "_count", pool="web") >= 10

    os.kill(worker_pid(c, "web/1"), signal.SIGKILL)
    restarts = "actorcluster_restarts_total"
    wait_scrape(mport, lambda s: value(s, restarts, child="web/1", reason="signal SIGKILL") == 1,
                every=never_lower)
    c.wait_workers(2)
    for _ in range(4):
        assert get(c.url + "/").status_code == 200
    # the dead process's counts stay; its replacement's add to them
    expected = {"2xx": 10, "4xx": 5, "5xx": 2}
    s = wait_scrape(mport, lambda s: by_class(s) == expected, every=never_lower)
    assert value(s, duration + "_count", pool="web") == 14
    assert total(s, restarts) == 1
    s = wait_scrape(mport, lambda s: [value(s, "actorcluster_processes_up", type=t)
                                      for t in ("worker", "standby")] == [2, 1])
    assert c.stop() == 0


def test_a_taken_metrics_port_stops_the_cluster_at_start(cluster):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        c = cluster("ac_testapp:pid", "--workers", "1", "--metrics-bind", f"127.0.0.1:{port}",
                    ready=False)
        assert c.wait(15) == 2
    assert f"--metrics-bind 127.0.0.1:{port}: cannot listen: Address already in use" in c.log()


def test_message_outcomes_count_actor_messages_not_batches(cluster):
    import actorcluster

    mport = free_port()
    c = cluster("ac_actors:WebActor", "--workers", "1", "--hold-messages", "10",
                "--actor", "recorder=ac_actors:SlowStart", "--metrics-bind",
                f"127.0.0.1:{mport}", env={"AC_SLOW_START": "2.0"})
    with actorcluster.connect(c.name) as client:
        for i in range(3):
            client.tell("nobody", i)  # 3 sent, 3 dead letters
        old = client.ask("recorder", "pid", timeout=5)  # the ask and its reply: 2 sent, 2 delivered
        os.kill(old, signal.SIGKILL)
        restarts = "actorcluster_restarts_total"
        wait_scrape(mport, lambda s: total(s, restarts, child="recorder") == 1)
        for i in range(50):  # coalesced into batches: 10 held, 40 dead letters past the bound
            client.tell("recorder", i)
        wait_scrape(mport, lambda s: value(s, "actorcluster_processes_up", type="actor") == 1)
        # the 10 held went to the new incarnation when it was ready; then an ask and its reply
        assert client.ask("recorder", "get", timeout=10) == list(range(10))
    outcomes = ("sent", "delivered", "held", "dead_lettered")
    expected = [3 + 2 + 50 + 2, 2 + 10 + 2, 10, 3 + 40]
    s = wait_scrape(mport, lambda s: [value(s, "actorcluster_messages_total", outcome=o)
                                      for o in outcomes] == expected)
    assert value(s, "actorcluster_processes_up", type="actor") == 1
    assert c.stop() == 0


def too_large(port: int) -> bytes:
    """A request whose body is over --max-body: the worker answers 413 and closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_max_requests_recycling_loses_no_count(cluster, tmp_path):
    # A recycled worker is replaced by a new Leaf of the same name and leaves the tree when it
    # exits; the counts it sends with its last heartbeat, as it exits, must still be added.
    (tmp_path / "ac_metrics_app.py").write_text(APP)
    mport = free_port()
    c = cluster("ac_metrics_app:handler", "--workers", "2", "--max-requests", "3",
                "--max-body", "10", "--metrics-bind", f"127.0.0.1:{mport}",
                env={"PYTHONPATH": str(tmp_path)})
    c.wait_workers(2)
    sent: Counter[str] = Counter()
    deadline = time.monotonic() + 20
    # requests all the time, so that every worker answers some right up to its replacement
    while len(re.findall(r"is replaced: served", c.log())) < 4:
        assert time.monotonic() < deadline, c.log()
        for path in ("/", "/", "/", "/missing"):
            status = get(c.url + path).status_code
            sent[f"{status // 100}xx"] += 1
        assert too_large(c.port).startswith(b"HTTP/1.1 413 ")
        sent["4xx"] += 1
        time.sleep(0.02)
    expected = {"2xx": sent["2xx"], "4xx": sent["4xx"], "5xx": 0}
    assert sent["4xx"] == sent["2xx"] * 2 / 3  # every request was answered as asked

    def never_over(samples: Samples) -> None:
        for status, n in by_class(samples).items():
            assert n <= expected[status], (by_class(samples), expected)

    # the last heartbeats come about a second after the last request
    s = wait_scrape(mport, lambda s: by_class(s) == expected, every=never_over)
    assert value(s, "actorcluster_http_request_duration_seconds_count", pool="web") == (
        sent["2xx"] + sent["4xx"] // 2)  # the 404s are timed, the 413s are not
    assert total(s, "actorcluster_restarts_total") == 0  # a recycling is no restart
    assert c.stop() == 0


def test_the_standby_a_reload_replaces_is_no_worker_in_the_http_counts(cluster, tmp_path):
    # a reload retires the standby (forked from the old code) as it retires a worker: its last
    # heartbeat must not make a "web/standby" worker appear in the HTTP counts for good
    (tmp_path / "ac_metrics_app.py").write_text(APP)
    mport = free_port()
    c = cluster("ac_metrics_app:handler", "--workers", "1", "--metrics-bind",
                f"127.0.0.1:{mport}", env={"PYTHONPATH": str(tmp_path)})
    c.wait_workers(1)
    wait_scrape(mport, lambda s: value(s, "actorcluster_processes_up", type="standby") == 1)
    time.sleep(1.2)  # a heartbeat of the standby reached the primary
    c.signal(signal.SIGHUP)
    c.wait_for_log(r"reload of every child done")
    assert get(c.url + "/").status_code == 200
    s = wait_scrape(mport, lambda s: by_class(s)["2xx"] == 1 and value(
        s, "actorcluster_processes_up", type="standby") == 1)
    workers = {dict(ls).get("worker") for n, ls in s if n == "actorcluster_http_requests_total"}
    assert workers == {"web/1"}
    assert c.stop() == 0
