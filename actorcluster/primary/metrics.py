"""Prometheus metrics of the running cluster (``--metrics-bind HOST:PORT``), in the primary.

Nothing is counted twice: a custom collector builds every metric family at scrape time from what
the primary already has (the supervision tree, each process's last heartbeat, the router's
counters). The one bookkeeping of its own keeps the exported HTTP counters monotonic across
worker restarts: a replacement process starts its counters at 0, so the last values seen from a
process that is gone are kept per (pool, worker) and added to its successors'. Heartbeats carry
each worker's counters about once a second, so a scrape lags the traffic by up to a second. The
counters are sampled at every process exit too: a process that stops gracefully (recycled,
reloaded, scaled down) sends a last heartbeat as it exits, and its Leaf then leaves the tree (a
replacement is another Leaf) or gets its successor's heartbeats (a restart), so a sample taken
later would miss it. What a killed process answered after its last heartbeat is not counted.

The server runs on the primary's event loop (``asyncio.start_server``): no thread, so the
collector reads the tree and the router from the one thread that changes them, without locks
or copies. A scrape costs well under a millisecond of the loop for a few dozen processes. See
docs/metrics.md for each metric and a sample scrape.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from ..errors import ClusterError
from .children import Leaf, kind_of

if TYPE_CHECKING:
    from .router import Router
    from .supervisor import SupervisionTree

__all__ = ["Metrics"]

log = logging.getLogger("actorcluster.metrics")

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")  # exported for every worker, zero or not
PROCESS_TYPES = ("worker", "actor", "standby")
READ_TIMEOUT = 5.0  # seconds for a scraper to send its request head
# Connections served at once. Past it the oldest is dropped to make room: clients that connect
# and send nothing (a port scanner, a stuck scraper) would otherwise each hold one of the
# primary's file descriptors for READ_TIMEOUT, without bound, and a scrape still gets in.
MAX_SCRAPES = 16
MAX_HEAD = 16384  # bytes of request head read at most


class Metrics:
    """Serves the cluster's metrics in the Prometheus text format (or OpenMetrics, when the
    scraper asks for it) at ``http://HOST:PORT/metrics``."""

    def __init__(self, tree: SupervisionTree, router: Router, cluster: str) -> None:
        self.cluster = cluster
        self.loop = tree.loop
        self.collector = ClusterCollector(tree, router)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.address: tuple[str, int] | None = None  # where it listens, once serving
        self._sock: socket.socket | None = None
        self._server: asyncio.AbstractServer | None = None
        self._starting: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connections: dict[asyncio.Task[Any], None] = {}  # in the order they came
        # sample the workers' counters about twice per heartbeat, not only at scrape time, so
        # that the last counters of a process that dies are seen even if nobody scrapes
        self._interval = tree.heartbeat / 2
        # and at each exit: the final heartbeat of a process that stops gracefully (sent as it
        # exits) would otherwise be gone with its Leaf before the next sample
        tree.on_process_exit = lambda leaf: self._sample()

    def serve(self, host: str, port: int) -> None:
        """Listen on ``host:port`` now (raises `ClusterError` if that fails, e.g. the port is
        taken) and serve scrapes on the primary's event loop. Call it from the loop's thread."""
        if self._sock is not None:
            raise RuntimeError("the metrics server is already serving")
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family, backlog=64)
        except OSError as exc:  # taken, not an address of this host, not allowed
            raise ClusterError(f"--metrics-bind {where}: cannot listen: "
                               f"{exc.strerror or exc}") from None
        sock.setblocking(False)
        sock.set_inheritable(False)
        self._sock = sock
        self.address = sock.getsockname()[:2]
        # the socket listens already: a scrape arriving before the server task runs waits in
        # the backlog
        self._starting = self.loop.create_task(self._start(sock))
        self._timer = self.loop.call_later(self._interval, self._tick)
        bound = self.address[1]
        log.info("Metrics of cluster %s at http://%s/metrics", self.cluster,
                 f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}")

    def close(self) -> None:
        """Stop listening and drop the scrapes in progress."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for task in list(self._connections):
            task.cancel()

    def _tick(self) -> None:
        self._sample()
        self._timer = self.loop.call_later(self._interval, self._tick)

    def _sample(self) -> None:
        try:
            self.collector.sample()
        except Exception:  # noqa: BLE001 - metrics must never take the primary down
            log.exception("sampling the workers' counters failed")

    async def _start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._handle, sock=sock, limit=MAX_HEAD)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            connections = self._connections
            while len(connections) >= MAX_SCRAPES:
                oldest = next(iter(connections))
                del connections[oldest]
                oldest.cancel()
            connections[task] = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            writer.write(self._answer(head))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._connections.pop(task, None)

    def _answer(self, head: bytes) -> bytes:
        """The whole response to one request head (one request per connection)."""
        lines = head.split(b"\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _response(b"400 Bad Request", b"text/plain", b"Bad Request\n")
        method, target = parts[0], parts[1]
        if target.split(b"?", 1)[0] != b"/metrics":
            return _response(b"404 Not Found", b"text/plain", b"Not Found: see /metrics\n")
        if method not in (b"GET", b"HEAD"):
            return _response(b"405 Method Not Allowed", b"text/plain",
                             b"Method Not Allowed\n", b"Allow: GET, HEAD\r\n")
        accept = ""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"accept":
                accept = value.strip().decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        try:
            body = encoder(self.registry)
        except Exception:  # noqa: BLE001 - a failed scrape must not take the primary down
            log.exception("building the metrics failed")
            return _response(b"500 Internal Server Error", b"text/plain",
                             b"Internal Server Error\n")
        return _response(b"200 OK", content_type.encode("latin-1"), body,
                         head_only=method == b"HEAD")


def _response(status: bytes, content_type: bytes, body: bytes, extra: bytes = b"",
              head_only: bool = False) -> bytes:
    head = b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n"
    return head % (status, content_type, len(body), extra) + (b"" if head_only else body)


class _Histogram:
    """Latency counts: one per upper bound then one for +Inf (not cumulative), and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def add(self, other: _Histogram) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum

    def went_back(self, other: _Histogram) -> bool:
        return sum(other.counts) < sum(self.counts)


class _Process:
    """The counters of one HTTP worker process, as its last heartbeat reported them."""

    __slots__ = ("pool", "worker", "status", "latency")

    def __init__(self, pool: str, worker: str, status: Counter[str],
                 latency: _Histogram | None) -> None:
        self.pool = pool
        self.worker = worker
        self.status = status
        self.latency = latency

    def went_back(self, new: _Process) -> bool:
        """``new`` (same worker, same pid) has lower counters: a new process reusing the pid."""
        if any(new.status[k] < n for k, n in self.status.items()):
            return True
        return (self.latency is not None and new.latency is not None
                and self.latency.went_back(new.latency))


def _member(leaf: Leaf) -> bool:
    """An HTTP pool's member: not its standby, which serves nothing until it is promoted under
    a member's name, neither the current one nor one a reload is retiring (the same Leaf,
    ``<pool>/standby``, no longer ``tree.spare``)."""
    return leaf.kind == "http" and leaf.pool is not None and (
        leaf.name != f"{leaf.pool.name}/standby")


def _read(leaf: Leaf) -> tuple[int, _Process] | None:
    """The pid and counters in ``leaf``'s last heartbeat; None before the first one."""
    stats = leaf.stats
    try:
        pid = int(stats["pid"])
        status = Counter({str(k): int(v) for k, v in stats["status"].items()})
        latency = None
        raw = stats.get("latency")
        if raw is not None:
            latency = _Histogram(tuple(float(b) for b in raw["buckets"]))
            counts = [int(n) for n in raw["counts"]]
            if len(counts) != len(latency.counts):
                raise ValueError("latency counts do not match the buckets")
            latency.counts = counts
            latency.sum = float(raw["sum"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    assert leaf.pool is not None
    return pid, _Process(leaf.pool.name, leaf.name, status, latency)


class ClusterCollector(Collector):
    """Builds the cluster's metric families from the primary's state at each scrape."""

    def __init__(self, tree: SupervisionTree, router: Router) -> None:
        self.tree = tree
        self.router = router
        self._live: dict[tuple[str, int], _Process] = {}  # (worker, pid) -> last counters
        self._gone: dict[tuple[str, str], Counter[str]] = {}  # (pool, worker) -> totals
        self._gone_latency: dict[str, _Histogram] = {}  # pool -> totals of processes gone
        self._mismatch_logged = False

    # -- the one bookkeeping: counters of processes that are gone ---------------------------

    def sample(self) -> None:
        """Take in the HTTP workers' last heartbeats; fold into the totals the last counters
        of every process no longer seen (it died, was replaced, or its pid was reused)."""
        tree = self.tree
        seen: dict[tuple[str, int], _Process] = {}
        for leaf in tree._all():
            if not _member(leaf):
                continue
            read = _read(leaf)
            if read is not None:
                pid, proc = read
                seen[leaf.name, pid] = proc
        live = self._live
        for key, proc in seen.items():
            old = live.get(key)
            if old is not None and old.went_back(proc):
                self._retire(old)
            live[key] = proc
        for key in [k for k in live if k not in seen]:
            self._retire(live.pop(key))

    def _retire(self, proc: _Process) -> None:
        self._gone.setdefault((proc.pool, proc.worker), Counter()).update(proc.status)
        if proc.latency is not None:
            total = self._histogram(self._gone_latency, proc.pool, proc.latency.bounds)
            if total is not None:
                total.add(proc.latency)

    def _histogram(self, table: dict[str, _Histogram], pool: str, bounds: tuple[float, ...]
                   ) -> _Histogram | None:
        total = table.get(pool)
        if total is None:
            total = table[pool] = _Histogram(bounds)
        elif total.bounds != bounds:  # a worker of another version, during an upgrade
            if not self._mismatch_logged:
                self._mismatch_logged = True
                log.warning("workers of pool %s report different latency buckets; the "
                            "histogram leaves out those that differ from the first", pool)
            return None
        return total

    # -- the families, built at scrape time ---------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        self.sample()
        yield from self._http()
        yield self._restarts()
        yield self._messages()
        yield from self._processes()

    def _http(self) -> Iterator[Metric]:
        totals = {key: Counter(counts) for key, counts in self._gone.items()}
        for leaf in self.tree._all():  # every member, before its first heartbeat too
            if _member(leaf):
                totals.setdefault((leaf.pool.name, leaf.name), Counter())
        latency = {pool: _copy(h) for pool, h in self._gone_latency.items()}
        for proc in self._live.values():
            totals.setdefault((proc.pool, proc.worker), Counter()).update(proc.status)
            if proc.latency is not None:
                total = self._histogram(latency, proc.pool, proc.latency.bounds)
                if total is not None:
                    total.add(proc.latency)
        requests = CounterMetricFamily(
            "actorcluster_http_requests",
            "HTTP responses written by the workers, by status class (2xx, 4xx, ...); a "
            "worker's count goes on across its restarts",
            labels=["pool", "worker", "status"],
        )
        for (pool, worker), counts in sorted(totals.items()):
            for status in sorted(set(STATUS_CLASSES) | set(counts)):
                requests.add_metric([pool, worker, status], counts[status])
        yield requests
        duration = HistogramMetricFamily(
            "actorcluster_http_request_duration_seconds",
            "Seconds from a request's message complete to its response written (its head, "
            "for a streamed body), summed over the pool's workers",
            labels=["pool"],
        )
        for pool, hist in sorted(latency.items()):
            buckets, cumulative = [], 0
            for bound, n in zip((*hist.bounds, float("inf")), hist.counts, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))
            duration.add_metric([pool], buckets, sum_value=hist.sum)
        yield duration

    def _restarts(self) -> Metric:
        family = CounterMetricFamily(
            "actorcluster_restarts",
            "Restarts decided by a supervisor, by child and by how the child ended",
            labels=["child", "reason"],
        )
        for (child, reason), n in sorted(self.tree.restart_counts.items()):
            family.add_metric([child, reason], n)
        return family

    def _messages(self) -> Metric:
        router = self.router
        family = CounterMetricFamily(
            "actorcluster_messages",
            "Actor messages through the router: sent (received from senders), delivered "
            "(handed to the destination's socket; once per member for a broadcast), held (for "
            "a restarting actor), dead_lettered (could not be delivered)",
            labels=["outcome"],
        )
        family.add_metric(["sent"], router.sent)
        family.add_metric(["delivered"], router.delivered)
        family.add_metric(["held"], router.held_total)
        family.add_metric(["dead_lettered"], sum(router.dead_letters.values()))
        return family

    def _processes(self) -> Iterator[Metric]:
        tree = self.tree
        up = dict.fromkeys(PROCESS_TYPES, 0)
        rss: Counter[str] = Counter()
        cpu: Counter[str] = Counter()
        for leaf in tree._all():
            if leaf.pid is None:
                continue
            if leaf.up:
                up["standby" if leaf.kind == "http" and not _member(leaf) else kind_of(leaf)] += 1
            usage = leaf.usage
            if "rss" in usage:  # two processes share a name for a moment during a reload
                rss[leaf.name] += usage["rss"]
                cpu[leaf.name] += usage.get("cpu", 0.0)
        family = GaugeMetricFamily(
            "actorcluster_processes_up",
            "Processes that reported ready and have not exited, by type (worker: an HTTP pool "
            "member; actor; standby: the spare HTTP worker)",
            labels=["type"],
        )
        for kind, n in up.items():
            family.add_metric([kind], n)
        yield family
        memory = GaugeMetricFamily(
            "actorcluster_process_resident_memory_bytes",
            "Resident set size of each process child, sampled by the primary about once a "
            "second", labels=["child"])
        percent = GaugeMetricFamily(
            "actorcluster_process_cpu_percent",
            "CPU use of each process child (percent of one core) between the last two samples",
            labels=["child"])
        for child in sorted(rss):
            memory.add_metric([child], rss[child])
            percent.add_metric([child], cpu[child])
        yield memory
        yield percent


def _copy(hist: _Histogram) -> _Histogram:
    copy = _Histogram(hist.bounds)
    copy.add(hist)
    return copy
