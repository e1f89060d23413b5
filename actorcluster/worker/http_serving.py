"""An HTTP worker: adopts connections the gateway hands over, serves them with the user's handler.

The primary passes each accepted connection's file descriptor over this worker's hand-off socket
(SCM_RIGHTS). The worker acknowledges every descriptor as soon as it has it, so the gateway knows
which hand-offs were taken up; one not acknowledged when the worker dies is given to another worker.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import resource
import socket
import sys
from typing import Any

from ..actor import Actor
from ..http import HttpLimits, HttpProtocol, HttpServerState, make_app
from ..http.direct import serve_handed_off
from ..wire import HANDOFF_ACK, HANDOFF_MAX_FDS, HANDOFF_REFUSED
from .actor_host import ActorHost
from .process import ProcessActor

log = logging.getLogger("actorcluster.worker")
HANDOFF_BATCHES = 64  # hand-off datagrams read per wake-up at most (the reader is level-triggered)


def adopted_socket_class(family: socket.AddressFamily) -> type[socket.socket]:
    """socket.socket whose ``family`` and ``type`` are constants. The event loop reads them for
    every connection it adopts, and socket.socket's properties convert them to enums each time
    (3 reads: 8% of a worker's user time per connection with `Connection: close`)."""
    return type(f"Adopted{family.name}", (socket.socket,),
                {"__slots__": (), "family": family, "type": socket.SOCK_STREAM})


class HttpWorker(ProcessActor):
    def __init__(
        self, loop: asyncio.AbstractEventLoop, spec: dict[str, Any], handoff_fd: int, handler: Any
    ) -> None:
        super().__init__(loop, spec)
        self.limits = HttpLimits(
            # the primary's listening socket has TCP_NODELAY; accepted sockets inherit it
            max_body_bytes=spec["max_body"], keepalive_timeout=spec["keepalive"], nodelay=False,
            # as Node's http server: the headers' bound (60 s) within the whole request's
            headers_timeout=min(HttpLimits.headers_timeout, spec["request_timeout"]),
            request_timeout=spec["request_timeout"],
        )
        # spec["metrics"] (--metrics-bind): time each request for the latency histogram
        self.state = HttpServerState(loop, self.limits, timed=bool(spec.get("metrics")),
                                     access_log=bool(spec.get("access_log")))
        # ask_sync in a plain def receive would hold every connection of this worker while it
        # waits: refused here (RuntimeError), as anywhere else on the loop's own thread
        self.messenger.wait_in_place = None
        if isinstance(handler, type) and issubclass(handler, Actor):
            # An Actor as the handler: handle(request) serves HTTP, receive(message) takes the
            # cluster's messages (Node's process.on('message')).
            instance = handler()
            self.host = ActorHost(instance, spec["name"], self.identity, self.messenger)
            self.host.report_dead = self.report_dead
            handler = instance.handle
        # on_ready(): an optional function (plain or async) in the handler's module, run once
        # per worker before it is put in rotation (warm a cache, open a pool, check a database).
        # The module the target names comes first: the handler may be an object whose class
        # (its __module__) is a library's, or a functools.partial.
        self.on_ready = None
        target = spec.get("target")
        names = [target.partition(":")[0]] if isinstance(target, str) else []
        names.append(getattr(handler, "__module__", "") or "")
        for name in names:
            self.on_ready = getattr(sys.modules.get(name), "on_ready", None)
            if self.on_ready is not None:
                break
        self.app = make_app(handler, threads=spec["threads"])
        self.family = socket.AddressFamily(spec["family"])
        self.socket_class = adopted_socket_class(self.family)
        self.handoff = socket.socket(fileno=handoff_fd)
        self.handoff.setblocking(False)
        self._receiving = False
        self._full_logged = float("-inf")  # when we last logged that our open-file limit is reached
        self._recycle_reason: str | None = None  # --max-requests reached: why we are replaced

    async def start(self) -> None:
        self.state.start()
        limit = self.spec.get("max_requests") or 0
        if limit:
            # checked as each response is counted, not with the heartbeat: a heartbeat's worth
            # of requests is what --max-requests was overshot by
            self.state.limit_requests(limit, lambda served: self._recycle(
                f"served {served} requests (--max-requests {limit})"))
        self.loop.add_reader(self.handoff.fileno(), self._on_handoff)
        self._receiving = True

    async def ready_hook(self) -> bool:
        if self.on_ready is None:
            return True
        try:
            result = self.on_ready()
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001 - the worker cannot serve: say why, exit (boot error)
            log.exception("Worker %d: on_ready() raised; this worker cannot serve", os.getpid())
            return False
        return True

    async def drain(self, retire: bool = False) -> None:
        # Take up what the gateway already sent (it stopped sending before asking us to stop),
        # then serve until every connection is done.
        self._on_handoff()
        self._stop_receiving()
        self.state.drain(close_idle=not retire)
        await self.state.wait_closed(self.graceful_timeout)

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        state = self.state
        stats["requests"] = state.requests_served
        # pid: the primary's metrics tell one process's counters from its successor's
        stats["pid"] = os.getpid()
        stats["status"] = state.status_summary()  # {"2xx": n, "4xx": n, ...}
        if state.timed:
            stats["latency"] = state.latency_summary()  # per-bucket counts, not cumulative
        busy_for = getattr(self.app, "busy_for", None)  # plain def handlers, in threads
        if busy_for is not None:
            stats["busy"] = busy_for()
        return stats

    def _recycle(self, reason: str) -> None:
        """Ask to be replaced; we serve on until the replacement is ready, then retire."""
        self._recycle_reason = reason
        if not self._stopping:
            self.send_system("recycle", reason=reason)

    def check_limits(self) -> None:
        # Asked again with every heartbeat until we are retired: the primary drops a request
        # while it replaces another worker of the same name (our predecessor, still retiring,
        # when we reach the limit quickly) or before we are a member of the pool.
        if self._recycle_reason is not None:
            self.send_system("recycle", reason=self._recycle_reason)

    def _stop_receiving(self) -> None:
        if self._receiving:
            self._receiving = False
            self.loop.remove_reader(self.handoff.fileno())

    def _on_handoff(self) -> None:
        # Every hand-off waiting now, then one ack for all of them: the gateway sends a datagram
        # per wake-up, often of 1-3 fds, and an ack per datagram cost more than the rest of the
        # hand-off (each wakes the primary: 15 us a send in a profile of a pinned worker).
        received: list[int] = []
        acks = b""
        refused = False
        for _ in range(HANDOFF_BATCHES):
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.handoff, 256, HANDOFF_MAX_FDS)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._stop_receiving()
                self.lost_primary(f"hand-off socket: {exc}")
                break
            if not data and not fds:
                self._stop_receiving()
                self.lost_primary("hand-off socket closed")
                break
            received += fds
            if len(fds) == len(data):
                acks += HANDOFF_ACK * len(fds)
            else:
                # Our open-file limit is reached: the kernel gave us the first fds of the
                # datagram and dropped the rest (MSG_CTRUNC). Unanswered, the primary would hold
                # those clients for ever and, past MAX_PENDING, hand us nothing again.
                acks += HANDOFF_ACK * len(fds) + HANDOFF_REFUSED * (len(data) - len(fds))
                refused = True
        if not acks:
            return
        try:
            self.handoff.send(acks)
        except OSError:
            pass  # the primary is gone; the death signal is on its way
        if refused:
            self._log_full()
        for fd in received:
            self._adopt(fd)

    def _log_full(self) -> None:
        now = self.loop.time()
        if now - self._full_logged >= 1.0:  # at most once a second: a burst is one line
            self._full_logged = now
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            log.warning(
                "Worker %d: its open-file limit (%d, ulimit -n) is reached: connections it "
                "cannot take are answered 503; raise it (systemd: LimitNOFILE=)",
                os.getpid(), limit,
            )

    def _adopt(self, fd: int) -> None:
        try:
            # family and type given: otherwise the socket module asks the kernel for them
            conn = self.socket_class(self.family, socket.SOCK_STREAM, 0, fileno=fd)
        except OSError:
            os.close(fd)
            return
        # served at once, with the request already in the socket's buffer (direct.py)
        serve_handed_off(self.loop, conn, HttpProtocol(self.app, self.state, self.limits))
