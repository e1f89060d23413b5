"""What the connections of one worker share: limits, the Date header, a coarse clock, the sweep.

One `HttpServerState` per worker; every `HttpProtocol` of the worker holds it. A 1 s timer (the
sweep) refreshes the cached Date header and the coarse clock ``now``, and closes keep-alive
connections idle for too long, so that no connection needs a timer of its own.
"""

from __future__ import annotations

import asyncio
import bisect
import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .response import TEXT_200

if TYPE_CHECKING:
    from .protocol import HttpProtocol

__all__ = ["LATENCY_BUCKETS", "HttpLimits", "HttpServerState"]

SWEEP_INTERVAL = 1.0  # seconds between two sweeps (Date header, coarse clock, idle connections)
# Upper bounds (seconds, inclusive) of the request latency histogram: Prometheus's defaults. A
# last bucket, +Inf, takes what is above them.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NO_LIMIT = 1 << 62  # an int, not inf: comparing two ints is what the count of every response pays


@dataclass(frozen=True)
class HttpLimits:
    """Limits of one worker's HTTP server.

    Attributes:
        max_header_bytes: request line + headers; over it the answer is 431 and the connection
            closes.
        max_body_bytes: over it the answer is 413, before the body is read when Content-Length
            says so.
        keepalive_timeout: an idle keep-alive connection is closed after this many seconds
            (checked by a 1 s sweep, so it closes between this and this + 2 s); a request that
            stops arriving for as long gets 408 Request Timeout.
        headers_timeout, request_timeout: a request whose headers, or whose whole message, have
            not all arrived this many seconds after it began gets 408 Request Timeout and the
            connection closes (a client trickling a byte now and then, slowloris, would hold it
            for ever). Node's http server defaults, 60 s and 300 s.
        nodelay: set TCP_NODELAY on each TCP connection. False when the listening socket has it
            already: on Linux an accepted socket inherits it (one syscall less per connection).
    """

    max_header_bytes: int = 16384
    max_body_bytes: int = 1 << 20
    keepalive_timeout: float = 5.0
    headers_timeout: float = 60.0
    request_timeout: float = 300.0
    nodelay: bool = True


def _date_header() -> bytes:
    return b"Date: %s\r\n" % email.utils.formatdate(usegmt=True).encode("ascii")


class HttpServerState:
    """What the connections of one worker share: the Date header, a coarse clock, the sweep,
    and the counters (responses by status class; with ``timed``, a latency histogram).

    Attributes:
        connections: the live `HttpProtocol` instances.
        lingering: connections that answered a protocol error and only read and drop what their
            client still sends before they close (`HttpProtocol._linger_close`); not live: the
            sweep and `wait_closed` leave them out, `close_all` aborts them.
        status_counts: responses written since the state was made, indexed by status // 100
            (``status_counts[2]``: the 2xx). Always kept: one list increment per response,
            then one comparison with the same class's ``status_bounds`` (see `limit_requests`).
        timed: time every request, from its message complete to its response written (its head,
            for a streamed body), into ``latency_counts`` / ``latency_sum``.
        access_log: log a line per response to the ``actorcluster.access`` logger (implies
            ``timed``: the line has the time taken).
        latency_counts: per bucket of `LATENCY_BUCKETS`, then +Inf; not cumulative.
        latency_sum: seconds, summed over the timed requests.
        draining: set by `drain`; every response from then on carries ``Connection: close``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: HttpLimits,
        timed: bool = False,
        access_log: bool = False,
    ) -> None:
        self.loop = loop
        self.limits = limits
        self.connections: set[HttpProtocol] = set()
        self.lingering: set[HttpProtocol] = set()
        self.status_counts = [0] * 6
        self.status_bounds = [NO_LIMIT] * 6
        self._request_limit = 0
        self._on_limit: Callable[[int], None] | None = None
        self.timed = timed or access_log
        self.access_log = access_log
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.draining = False
        # responses written at the end of the loop turn, together: see write_soon
        self.writes: list[tuple[HttpProtocol, bytes]] = []
        self.closing: list[HttpProtocol] = []  # to close once their answers are written
        self._writes_due = False
        self.close_idle = True
        self.carriers: list[Any] = []  # spare carrier tasks (runner.py), shared by connections
        self.sweep_interval = SWEEP_INTERVAL
        # refreshed by the sweep; read by every response and request
        self.now = loop.time()
        self.date_header = self.text_head = b""
        self._set_date()
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def requests_served(self) -> int:
        """Responses written since the state was made (a protocol error's answer included)."""
        return sum(self.status_counts)

    def limit_requests(self, limit: int, reached: Callable[[int], None]) -> None:
        """Call ``reached(requests_served)`` once, right after the response that makes
        ``requests_served`` reach ``limit`` (--max-requests).

        The total is a sum over the status classes, too dear to take per response; each class
        gets a bound instead: its count now plus a sixth of what is left to the limit, rounded
        up. The total cannot reach the limit before one class reaches its bound (six classes
        each short of a sixth of it add up to less), so only then is the total taken again
        (`count_bound`): a few dozen times over a limit of a thousand."""
        self._request_limit = limit
        self._on_limit = reached
        self.count_bound()

    def count(self, status_class: int) -> None:
        """Count one response (the per-response code of `HttpProtocol` inlines this)."""
        counts = self.status_counts
        counts[status_class] += 1
        if counts[status_class] >= self.status_bounds[status_class]:
            self.count_bound()

    def count_bound(self) -> None:
        """A class reached its bound (`limit_requests`): the limit, or new bounds."""
        counts, bounds = self.status_counts, self.status_bounds
        served = sum(counts)
        left = self._request_limit - served
        if left <= 0 or self._on_limit is None:
            bounds[:] = [NO_LIMIT] * len(bounds)
            reached, self._on_limit = self._on_limit, None
            if reached is not None:
                reached(served)
            return
        step = -(-left // len(counts))
        for i, n in enumerate(counts):
            bounds[i] = n + step

    def observe(self, seconds: float) -> None:
        """Count one timed request in the latency histogram."""
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def status_summary(self) -> dict[str, int]:
        """``{"2xx": n, "4xx": n, ...}``: responses by status class, the classes seen only."""
        return {f"{i}xx": n for i, n in enumerate(self.status_counts) if n}

    def latency_summary(self) -> dict[str, Any]:
        """The histogram as sent with the heartbeats: ``buckets`` (upper bounds, seconds),
        ``counts`` (one per bucket, then one for +Inf; NOT cumulative), ``sum``, ``count``."""
        counts = list(self.latency_counts)
        return {"buckets": list(LATENCY_BUCKETS), "counts": counts, "sum": self.latency_sum,
                "count": sum(counts)}

    def write_soon(self, conn: HttpProtocol, data: bytes) -> None:
        """Write ``data`` to ``conn`` at the end of this loop turn, with the other responses of
        the turn.

        Each write wakes the client's process if it sleeps (on this 2-core VM an inter-processor
        interrupt: 11% of a pinned worker's time went to that wake-up in perf). Written one
        after another, the responses of one turn wake a client once, not once each; measured in
        alternated runs: +4.5-6% requests/s for one pinned worker, +3% with 2 workers, and with
        `Connection: close` (the connections of `closing` closed right after) +1-2%, within the
        noise. Any other write or a close on a connection flushes these first, so each
        connection's bytes keep their order."""
        self.writes.append((conn, data))
        if not self._writes_due:
            self._writes_due = True
            self.loop.call_soon(self.flush_writes)

    def flush_writes(self) -> None:
        self._writes_due = False
        writes, self.writes = self.writes, []
        for conn, data in writes:
            if not (conn._closed or conn._aborted):
                try:
                    conn.transport.write(data)
                except RuntimeError:  # uvloop: a handle closed before connection_lost (the
                    pass  # loop shutting down); one dead connection must not cost the others
        if self.closing:
            closing, self.closing = self.closing, []
            for conn in closing:
                conn._close()

    def start(self) -> None:
        """Start the periodic sweep: refresh the Date header and the coarse clock, close
        keep-alive connections idle for longer than ``keepalive_timeout``."""
        if self._timer is None:
            self.now = self.loop.time()
            self._set_date()
            self._timer = self.loop.call_later(self.sweep_interval, self._sweep)

    def _set_date(self) -> None:
        self.date_header = date = _date_header()
        self.text_head = TEXT_200 + date  # the head of a str result, up to Content-Length

    def _sweep(self) -> None:
        self.now = now = self.loop.time()
        self._set_date()
        interval = self.sweep_interval
        if self.draining and self.close_idle:
            max_idle = interval
        else:
            # `now` is coarse: a connection's last activity was recorded up to one interval late
            max_idle = self.limits.keepalive_timeout + interval
        for conn in list(self.connections):
            conn._sweep(now, max_idle, self.draining)
        self._timer = self.loop.call_later(interval, self._sweep)

    def drain(self, close_idle: bool = True) -> None:
        """Stop gracefully: a connection in the middle of a request finishes it, answers with
        ``Connection: close`` and closes. Idle keep-alive connections are closed now, or, with
        ``close_idle`` False (a worker replaced while the cluster goes on), left open until
        their next request, which gets ``Connection: close``, or until they have been idle for
        the keep-alive timeout: a client never has a connection closed under a request it is
        sending."""
        self.draining = True
        self.close_idle = close_idle
        if close_idle:
            for conn in list(self.connections):
                conn._drain()

    async def wait_closed(self, timeout: float) -> bool:
        """Wait until no live connection is left (``lingering`` ones do not count): True when
        none is, False after ``timeout`` s."""
        if not self.connections:
            return True
        waiter = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return not self.connections

    def close_all(self) -> None:
        """Abort every connection and stop the sweep (a hard stop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in [*self.connections, *self.lingering]:
            conn._abort()
        spares, self.carriers = self.carriers, []
        for carrier in spares:
            carrier[0].cancel()

    def linger(self, conn: HttpProtocol) -> None:
        """``conn`` is no longer live: it lingers until it closes (see ``lingering``)."""
        self._forget(conn)
        self.lingering.add(conn)

    def _forget(self, conn: HttpProtocol) -> None:
        self.connections.discard(conn)
        if not self.connections and self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
