"""A ZeroMQ socket driven by an asyncio (or uvloop) event loop, without zmq.asyncio.

ZeroMQ's readiness fd is edge-triggered: it signals when the socket's state changes, not while
messages are waiting. So the reader drains until EAGAIN, and after we *send* (which can consume the
edge) a drain is scheduled once for the loop turn. Draining is bounded per call so one busy peer
cannot starve the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import zmq

DRAIN_BATCH = 512
log = logging.getLogger("actorcluster.zmq")

# pyzmq's compiled socket methods, without zmq.Socket's Python layer (argument checks per frame,
# enum arithmetic on the flags): half the cost of send_multipart + recv_multipart for our 3-5
# frame messages (8.6 -> 4.7 us a pair), paid per ZeroMQ message by the router and every process.
_send, _recv, _get = zmq.backend.Socket.send, zmq.backend.Socket.recv, zmq.backend.Socket.get
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)


def send_frames(sock: zmq.Socket, frames: list) -> None:
    """``sock.send_multipart(frames, zmq.NOBLOCK)``, the same errors (zmq.Again, ...)."""
    last = len(frames) - 1
    for i in range(last):
        _send(sock, frames[i], _MORE)
    _send(sock, frames[last], _NOBLOCK)


def recv_frames(sock: zmq.Socket) -> list:
    """``sock.recv_multipart(zmq.NOBLOCK)``: raises zmq.Again when nothing is waiting."""
    frames = [_recv(sock, _NOBLOCK)]
    while _get(sock, _RCVMORE):
        frames.append(_recv(sock, _NOBLOCK))
    return frames


class LoopSocket:
    """Calls ``on_message(frames)`` from the loop for every multipart message on ``sock``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket,
        on_message: Callable[[list[bytes]], None],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.on_message = on_message
        self._fd = sock.getsockopt(zmq.FD)
        self._scheduled = False
        self._draining = False
        self._closed = False
        self._backlog: deque[list] = deque()  # read out of turn (`requeue`): handled first
        loop.add_reader(self._fd, self._drain)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self.loop.call_soon(self._drain)

    def drain_soon(self) -> None:
        """For who sends on ``sock`` directly: a send can consume the readiness edge, so what
        peers sent meanwhile is read in a drain this loop turn (unless one is running: it reads
        on until EAGAIN)."""
        if not self._draining:
            self._schedule()

    def _drain(self) -> None:
        self._scheduled = False
        self._draining = True
        try:
            self._drain_some()
        finally:
            self._draining = False

    def _drain_some(self) -> None:
        sock = self.sock
        backlog = self._backlog
        for _ in range(DRAIN_BATCH):
            if self._closed:
                return
            try:
                frames = backlog.popleft() if backlog else recv_frames(sock)
            except zmq.Again:
                return
            except zmq.ZMQError:
                if self._closed:
                    return
                raise
            try:
                self.on_message(frames)
            except Exception:  # noqa: BLE001 - one bad message must not stall the socket
                log.exception("a message could not be handled; dropping it")
        self._schedule()  # more may be waiting; let the rest of the loop run first

    def requeue(self, messages: list[list]) -> None:
        """Messages someone read from the socket out of turn (a blocking wait on the loop's own
        thread): handled by ``on_message`` before anything still in the socket, in this order."""
        self._backlog.extend(messages)
        if messages:
            self._schedule()

    def send(self, frames: list[bytes]) -> bool:
        """Send without blocking; False when ZeroMQ refused (peer unknown or full)."""
        try:
            send_frames(self.sock, frames)
        except (zmq.Again, zmq.ZMQError):
            return False
        finally:
            self._schedule()
        return True

    def close(self, linger: int = 0) -> None:
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self._fd)
        self.sock.close(linger=linger)
