"""Serve a handed-off connection with plain system calls until it needs the event loop.

With ``Connection: close`` each connection carries one request, and that request is in the
socket's buffer by the time the worker has the descriptor: the primary's TCP listener has
``TCP_DEFER_ACCEPT``, so the kernel offers a connection for accept once its first bytes are in
(without it, 44-69% of them were, in close-mode runs of wrk). The event loop's transport
costs more than serving that request: a task to adopt the socket, registering it with epoll, a
loop turn to learn that it is readable, unregistering it on close.

`serve_handed_off` reads what is there with one ``recv``. A `DirectTransport` then gives the
protocol what a transport gives it (``write``, ``close``, ``get_extra_info``, ...), each a plain
system call on the socket. If, once the loop turn's answers are written, the protocol has closed
the connection, that was all. Otherwise (a keep-alive connection, a request not all there, a
handler that waits, a write the socket could not take at once) the event loop adopts the socket
as it would have from the start, and the transport hands over: what the protocol wrote meanwhile
goes first, and from then on the protocol talks to the event loop's transport.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

__all__ = ["DirectTransport", "serve_handed_off"]

log = logging.getLogger("actorcluster.http")
RECV_SIZE = 65536  # as much as the event loop's transport reads at once
DONTWAIT = socket.MSG_DONTWAIT  # the descriptor as accepted is blocking; the worker must not be
# Writes held until the event loop has the socket, past which the protocol is asked to pause
# (its streamed body would wait): asyncio's default high-water mark.
HIGH_WATER = 64 * 1024


def serve_handed_off(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.Protocol
) -> None:
    """Serve ``sock``, a connection handed to this worker, with ``protocol``."""
    try:
        data = sock.recv(RECV_SIZE, DONTWAIT)
    except (BlockingIOError, InterruptedError):
        data = None  # nothing yet: the event loop waits for it
    except OSError as exc:  # reset before the worker got to it
        log.debug("dropping a handed-off connection: %s", exc)
        sock.close()
        return
    if data == b"":  # the client closed without a request: nothing to answer
        sock.close()
        return
    transport = DirectTransport(loop, sock, protocol)
    protocol.connection_made(transport)
    if data is None:
        transport._adopt()
        return
    protocol.data_received(data)
    # after the answers of this loop turn are written (HttpServerState.write_soon was called
    # before this, so its flush runs first): closed by then, or the event loop takes it
    loop.call_soon(transport._adopt_unless_closed)


class _Handover(asyncio.Protocol):
    """What the event loop's new transport calls first: it hands the connection to the real
    protocol (``set_protocol``), so everything after goes straight to that protocol."""

    __slots__ = ("_direct",)

    def __init__(self, direct: DirectTransport) -> None:
        self._direct = direct

    def connection_made(self, transport: Any) -> None:
        self._direct._hand_over(transport)


class DirectTransport(asyncio.Transport):
    """A transport that writes to the socket directly until the event loop adopts it."""

    __slots__ = (
        "_loop", "_sock", "_protocol", "_real", "_pending", "_pending_size",
        "_closing", "_lost", "_adopting", "_given", "_read_paused", "_write_paused",
        "_eof_pending",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.Protocol
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._protocol: Any = protocol  # None once connection_lost was called here
        self._real: Any = None  # the event loop's transport, once it has the socket
        self._pending: list[bytes] | None = None  # written while the event loop adopts it
        self._pending_size = 0
        self._closing = False  # close() was called
        self._lost = False  # over: the socket is closed (or to be) and connection_lost follows
        self._adopting = False  # the event loop is to take the socket
        self._given = False  # ... and may have it: only its transport may close it now
        self._read_paused = False
        self._write_paused = False  # we asked the protocol to pause
        self._eof_pending = False  # write_eof was called: the event loop's transport does it

    # -- the transport interface -------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        real = self._real
        if real is not None:
            real.write(data)
            return
        if self._lost or self._closing:
            return
        pending = self._pending
        if pending is None:
            try:
                sent = self._sock.send(data, DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:  # the client is gone (reset, broken pipe)
                self._pending = None
                self._end(exc)
                return
            if sent == len(data):
                return
            data = bytes(memoryview(data)[sent:])
            pending = self._pending = []
            self._adopt()  # the event loop writes the rest when the socket takes it
        pending.append(bytes(data))
        self._pending_size += len(data)
        if self._pending_size > HIGH_WATER and not self._write_paused:
            self._write_paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """Shut the write side once what was written is sent. Only the error path calls it,
        to read on after its answer (lingering close), which takes the event loop: it adopts
        the socket and its transport shuts it, after what is pending (see _hand_over)."""
        real = self._real
        if real is not None:
            real.write_eof()
        elif not (self._lost or self._closing):
            self._eof_pending = True
            self._adopt()

    def close(self) -> None:
        real = self._real
        if real is not None:
            real.close()
        elif not self._closing:
            self._closing = True
            if self._pending is None:
                self._end(None)
            # else: the event loop's transport closes once it has written what is pending

    def abort(self) -> None:
        real = self._real
        if real is not None:
            real.abort()
        else:
            self._closing = True
            self._pending = None
            self._end(None)

    def is_closing(self) -> bool:
        real = self._real
        return real.is_closing() if real is not None else self._closing or self._lost

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        real = self._real
        if real is not None:
            try:
                return real.get_extra_info(name, default)
            except AttributeError:
                # uvloop, for a socket the client reset before the event loop took it (its
                # request was read here, so a handler runs): the transport has no socket object
                return default
        if name == "socket":
            return self._sock
        if name in ("peername", "sockname") and not self._lost:
            try:
                return self._sock.getpeername() if name == "peername" else self._sock.getsockname()
            except OSError:
                return default
        return default

    def pause_reading(self) -> None:
        self._read_paused = True  # kept after the hand-over too: see _connect
        real = self._real
        if real is not None:
            real.pause_reading()

    def resume_reading(self) -> None:
        self._read_paused = False
        real = self._real
        if real is not None:
            real.resume_reading()

    def is_reading(self) -> bool:
        real = self._real
        return real.is_reading() if real is not None else not self._read_paused

    def get_write_buffer_size(self) -> int:
        real = self._real
        return real.get_write_buffer_size() if real is not None else self._pending_size

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    # -- adoption by the event loop ------------------------------------------------------------

    def _end(self, exc: BaseException | None) -> None:
        """The connection is over: close the socket and tell the protocol, unless the event loop
        has the socket already (it is then closed through its transport, see _hand_over)."""
        if self._lost:
            return
        self._lost = True
        if not self._given:
            self._sock.close()
            self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        # The protocol refers to this transport (its ``transport``): forgetting it, as the event
        # loop's transports do, frees both by reference counting when the connection ends,
        # rather than leaving a cycle per connection to the garbage collector.
        protocol, self._protocol = self._protocol, None
        protocol.connection_lost(exc)

    def _adopt_unless_closed(self) -> None:
        if not (self._closing or self._lost):
            self._adopt()

    def _adopt(self) -> None:
        if not self._adopting:
            self._adopting = True
            self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        if self._lost:  # ended before the event loop could take it
            return
        # From here the socket is the event loop's: closing it ourselves could close another
        # connection's descriptor, once the number is reused.
        self._given = True
        try:
            await self._loop.connect_accepted_socket(lambda: _Handover(self), self._sock)
        except OSError as exc:  # the client went away meanwhile (the socket is not taken)
            if self._real is None:  # else its transport tells the protocol
                self._sock.close()
                self._lost = True
                self._connection_lost(exc)
            return
        real, protocol = self._real, self._protocol
        # uvloop starts reading after connection_made returns, so the pause_reading in
        # _hand_over is lost under it; by now reading has started under both loops. Until here
        # the protocol paused and resumed through this transport, which kept track.
        if self._read_paused and not self._lost:
            real.pause_reading()
        if getattr(protocol, "transport", None) is self:
            protocol.transport = real  # type: ignore[attr-defined]  # straight to it from now on

    def _hand_over(self, real: Any) -> None:
        protocol = self._protocol
        real.set_protocol(protocol)
        self._real = real
        if self._lost:  # ended while the event loop was taking it: connection_lost comes from it
            real.abort()
            return
        if self._read_paused:  # asyncio's transport then starts no reading (uvloop: _connect)
            real.pause_reading()
        if self._write_paused:
            self._write_paused = False
            protocol.resume_writing()  # real.write below pauses it again if it must
        pending, self._pending = self._pending, None
        if pending:
            real.write(b"".join(pending))
        if self._eof_pending:
            real.write_eof()
        if self._closing:
            real.close()
