"""What the connections of one worker share: limits, the Date header, a coarse clock, the sweep.

One `HttpServerState` per worker; every `HttpProtocol` of the worker holds it. A 1 s timer (the
sweep) refreshes the cached Date header and the coarse clock ``now``, and closes keep-alive
connections idle for too long, so that no connection needs a timer of its own.
"""

from __future__ import annotations

import asyncio
import email.utils
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .response import TEXT_200

if TYPE_CHECKING:
    from .protocol import HttpProtocol

__all__ = ["HttpLimits", "HttpServerState"]

SWEEP_INTERVAL = 1.0  # seconds between two sweeps (Date header, coarse clock, idle connections)


@dataclass(frozen=True)
class HttpLimits:
    """Limits of one worker's HTTP server.

    Attributes:
        max_header_bytes: request line + headers; over it the answer is 431 and the connection
            closes.
        max_body_bytes: over it the answer is 413, before the body is read when Content-Length
            says so.
        keepalive_timeout: an idle keep-alive connection is closed after this many seconds
            (checked by a 1 s sweep, so it closes between this and this + 2 s).
    """

    max_header_bytes: int = 16384
    max_body_bytes: int = 1 << 20
    keepalive_timeout: float = 5.0


def _date_header() -> bytes:
    return b"Date: %s\r\n" % email.utils.formatdate(usegmt=True).encode("ascii")


class HttpServerState:
    """What the connections of one worker share: the Date header, a coarse clock, the sweep.

    Attributes:
        connections: the live `HttpProtocol` instances.
        requests_served: responses written since the state was made.
        draining: set by `drain`; every response from then on carries ``Connection: close``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: HttpLimits) -> None:
        self.loop = loop
        self.limits = limits
        self.connections: set[HttpProtocol] = set()
        self.requests_served = 0
        self.draining = False
        self.sweep_interval = SWEEP_INTERVAL
        # refreshed by the sweep; read by every response and request
        self.now = loop.time()
        self.date_header = self.text_head = b""
        self._set_date()
        self._timer: asyncio.TimerHandle | None = None
        self._waiters: list[asyncio.Future[None]] = []

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
        if self.draining:
            max_idle = interval
        else:
            # `now` is coarse: a connection's last activity was recorded up to one interval late
            max_idle = self.limits.keepalive_timeout + interval
        for conn in list(self.connections):
            conn._sweep(now, max_idle, self.draining)
        self._timer = self.loop.call_later(interval, self._sweep)

    def drain(self) -> None:
        """Stop gracefully: close idle connections now; a connection in the middle of a request
        finishes it, answers with ``Connection: close`` and closes. No new request is started."""
        self.draining = True
        for conn in list(self.connections):
            conn._drain()

    async def wait_closed(self, timeout: float) -> bool:
        """Wait until no connection is left: True when none is, False after ``timeout`` s."""
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
        for conn in list(self.connections):
            conn._abort()

    def _forget(self, conn: HttpProtocol) -> None:
        self.connections.discard(conn)
        if not self.connections and self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
