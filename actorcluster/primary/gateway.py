"""The gateway actor: accepts connections and hands each to the next ready worker, round-robin.

The listening socket belongs to the primary, so a connection waiting in the backlog survives
anything that happens to a worker. A connection is passed to a worker with SCM_RIGHTS over that
worker's hand-off socket and the primary keeps its own descriptor until the worker acknowledges it:
a hand-off that fails, or that the worker never took up because it died, goes to the next worker.
A worker with too many unacknowledged hand-offs is skipped. With no worker ready the gateway stops
accepting (the kernel's backlog holds the clients) for a short grace period, in which a restarting
worker usually comes back; after it, clients get 503 with Retry-After until a worker is ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque

from ..wire import HANDOFF_MAX_FDS, HANDOFF_REFUSED, HANDOFF_TAG

log = logging.getLogger("actorcluster.gateway")

ACCEPT_BATCH = 64
MAX_PENDING = 16
REFUSED = HANDOFF_REFUSED[0]
NO_WORKER_GRACE = 1.0


def _unavailable(reason: bytes) -> bytes:
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Retry-After: 1\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"%s" % (len(reason), reason)
    )


UNAVAILABLE = _unavailable(b"no worker is ready yet\n")
AT_LIMIT = _unavailable(b"the server has too many connections open\n")


class Link:
    """The primary's end of one worker's hand-off socket, and the connection fds handed over that
    the worker has not acknowledged yet (plain ints: no socket object per connection)."""

    __slots__ = ("name", "sock", "pending", "closed", "handed")

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        self.sock = sock
        self.sock.setblocking(False)
        self.pending: deque[int] = deque()
        self.closed = False
        self.handed = 0  # connections sent to it, ever


class Gateway:
    def __init__(self, loop: asyncio.AbstractEventLoop, listener: socket.socket | None) -> None:
        """``listener`` is None for a tree without an HTTP pool: nothing to accept."""
        self.loop = loop
        self.listener = listener
        self.family = listener.family if listener is not None else socket.AF_UNIX
        if listener is not None:
            listener.setblocking(False)
        self.rotation: list[Link] = []
        self._next = 0
        self._waiting: deque[int] = deque()
        self._accepting = False
        self._rejecting = False
        self._grace: asyncio.TimerHandle | None = None
        self.handed_off = 0
        self.rejected = 0

    # -- the rotation ---------------------------------------------------------------------------

    def open_link(self, name: str, sock: socket.socket) -> Link:
        link = Link(name, sock)
        self.loop.add_reader(sock.fileno(), self._on_acks, link)
        return link

    def add(self, link: Link) -> None:
        """The worker is ready: put it in rotation."""
        if link.closed or link in self.rotation:
            return
        self.rotation.append(link)
        self._rejecting = False
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self._flush_waiting()

    def withdraw(self, link: Link) -> None:
        """Take the worker out of rotation (it is stopping); its pending hand-offs stay with it."""
        if link in self.rotation:
            self.rotation.remove(link)

    def close_link(self, link: Link) -> None:
        """The worker is gone: connections it never acknowledged go to another worker."""
        if link.closed:
            return
        self.withdraw(link)
        link.closed = True
        self.loop.remove_reader(link.sock.fileno())
        link.sock.close()
        orphans = list(link.pending)
        link.pending.clear()
        if orphans:
            log.info("re-handing %d connection(s) %s never took up", len(orphans), link.name)
            self._dispatch(orphans)

    # -- accepting ------------------------------------------------------------------------------

    def start(self) -> None:
        self._resume_accepting()

    def close(self) -> None:
        """Stop accepting for good; whatever is waiting gets a 503."""
        self._pause_accepting()
        if self._grace is not None:
            self._grace.cancel()
        while self._waiting:
            self._reject(self._waiting.popleft())
        if self.listener is not None:
            self.listener.close()

    @property
    def open(self) -> bool:
        return self.listener is not None and self.listener.fileno() != -1

    def _resume_accepting(self) -> None:
        if not self._accepting and self.open:
            self._accepting = True
            self.loop.add_reader(self.listener.fileno(), self._on_accept)

    def _pause_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            self.loop.remove_reader(self.listener.fileno())  # type: ignore[union-attr]

    def _on_accept(self) -> None:
        accepted = []
        accept = self.listener._accept  # type: ignore[union-attr]  # the raw fd: a socket object per connection costs 10%
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # EMFILE and friends: back off a little rather than spin
                log.error("accept failed: %s", exc)
                self._pause_accepting()
                self.loop.call_later(0.1, self._resume_accepting)
                break
            accepted.append(conn)
        if self._rejecting:
            for conn in accepted:
                self._reject(conn)
        elif accepted:
            self._dispatch(accepted)

    # -- handing off ----------------------------------------------------------------------------

    def _pick(self) -> Link | None:
        rotation = self.rotation
        for _ in range(len(rotation)):
            self._next = (self._next + 1) % len(rotation)
            link = rotation[self._next]
            if len(link.pending) < MAX_PENDING:
                return link
        return None

    def _dispatch(self, conns: list[int]) -> None:
        batches: dict[Link, list[int]] = {}
        for conn in conns:
            link = self._pick() if not self._waiting else None
            if link is None:
                self._hold(conn)
            else:
                batches.setdefault(link, []).append(conn)
                link.pending.append(conn)  # counts toward the bound while we pick
        for link, batch in batches.items():
            self._send(link, batch)

    def _send(self, link: Link, batch: list[int]) -> None:
        for start in range(0, len(batch), HANDOFF_MAX_FDS):
            chunk = batch[start : start + HANDOFF_MAX_FDS]
            try:
                socket.send_fds(link.sock, [HANDOFF_TAG * len(chunk)], chunk)
            except OSError as exc:
                # Full (BlockingIOError) or the worker is gone (EPIPE, ECONNRESET): take back what
                # was not sent and give it to the others.
                unsent = batch[start:]
                for conn in unsent:
                    link.pending.remove(conn)
                if not isinstance(exc, BlockingIOError):
                    self.withdraw(link)
                self._dispatch(unsent)
                return
            self.handed_off += len(chunk)
            link.handed += len(chunk)

    def _on_acks(self, link: Link) -> None:
        while True:
            try:
                acks = link.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                acks = b""
            if not acks:  # the worker's end closed: it died or exited
                self.close_link(link)
                return
            pending = link.pending
            if HANDOFF_REFUSED not in acks:
                for _ in range(min(len(acks), len(pending))):
                    os.close(pending.popleft())
            else:  # the worker could not take these (its open-file limit): 503, not a hang
                for ack in acks[: len(pending)]:
                    fd = pending.popleft()
                    if ack == REFUSED:
                        self._reject(fd, AT_LIMIT)
                    else:
                        os.close(fd)
        if self._waiting:
            self._flush_waiting()

    # -- nobody to take it ----------------------------------------------------------------------

    def _hold(self, conn: int) -> None:
        self._waiting.append(conn)
        self._pause_accepting()
        if not self.rotation and self._grace is None:
            self._grace = self.loop.call_later(NO_WORKER_GRACE, self._grace_over)

    def _flush_waiting(self) -> None:
        waiting, self._waiting = list(self._waiting), deque()
        if waiting:
            self._dispatch(waiting)
        if not self._waiting:
            self._resume_accepting()

    def _grace_over(self) -> None:
        self._grace = None
        if self.rotation:
            return
        log.warning("no worker is ready: answering 503 until one is")
        self._rejecting = True
        while self._waiting:
            self._reject(self._waiting.popleft())
        self._resume_accepting()

    def _reject(self, fd: int, answer: bytes = UNAVAILABLE) -> None:
        self.rejected += 1
        conn = socket.socket(fileno=fd)
        try:
            conn.setblocking(False)
            conn.send(answer)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        # Read what the client sent before closing, or the kernel answers it with a reset that
        # can destroy the 503 before the client reads it.
        handle = self.loop.call_later(1.0, self._finish_reject, conn)
        self.loop.add_reader(conn.fileno(), self._drain_rejected, conn, handle)

    def _drain_rejected(self, conn: socket.socket, handle: asyncio.TimerHandle) -> None:
        try:
            if conn.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        handle.cancel()
        self._finish_reject(conn)

    def _finish_reject(self, conn: socket.socket) -> None:
        if conn.fileno() != -1:
            self.loop.remove_reader(conn.fileno())
            conn.close()
