"""A ZeroMQ socket driven by an asyncio (or uvloop) event loop, without zmq.asyncio.

ZeroMQ's readiness fd is edge-triggered: it signals when the socket's state changes, not while
messages are waiting. So the reader drains until EAGAIN, and after we *send* (which can consume the
edge) a drain is scheduled once for the loop turn. Draining is bounded per call so one busy peer
cannot starve the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import zmq

DRAIN_BATCH = 512
log = logging.getLogger("actorcluster.zmq")


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
        self._closed = False
        loop.add_reader(self._fd, self._drain)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        recv = self.sock.recv_multipart
        for _ in range(DRAIN_BATCH):
            if self._closed:
                return
            try:
                frames = recv(zmq.NOBLOCK)
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

    def send(self, frames: list[bytes]) -> bool:
        """Send without blocking; False when ZeroMQ refused (peer unknown or full)."""
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK)
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
