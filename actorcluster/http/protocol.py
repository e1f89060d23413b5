"""The HTTP/1.1 server protocol that runs inside each worker process.

One `HttpProtocol` per connection (TCP or Unix, served by ``direct.serve_handed_off``, which
hands it to ``loop.connect_accepted_socket`` when it needs the event loop), one
`HttpServerState` (state.py) per worker. The path of a request::

    data_received -> httptools parser callbacks -> Request queued (on_message_complete)
        -> _run_queue: one request at a time per connection, in order
        -> app(request): a coroutine is driven right here, in the connection's carrier task
           (runner.py); a future (a sync handler in the thread pool) calls back when done
        -> _respond: status line + headers + body joined once, one transport.write (for the
           common case at the end of the loop turn, with the turn's other responses: see
           HttpServerState.write_soon)

Handler code never runs inside a parser callback: requests are queued while the parser runs and
handled after ``feed_data`` returns, so a pipelined burst is answered in order and a protocol
error found later in the same burst is answered after the responses before it.

Speed: no timer per request (the state's 1 s sweep closes idle connections with a coarse
clock), a cached Date header, cached status lines, and no new task for an async handler that
finishes without waiting (see runner.py).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from types import CoroutineType
from typing import Any

import httptools

from .request import Request
from .response import (
    CACHED_LENGTHS,
    LENGTH_END,
    Response,
    Stream,
    connection_line,
    error_response,
    render,
    send_stream,
)
from .runner import (
    _DONE,
    _Carrier,
    _enter_task,
    _HandlerRunner,
    _leave_task,
    _new_trampoline,
    _park,
)
from .state import LATENCY_BUCKETS, HttpLimits, HttpServerState

__all__ = ["HttpLimits", "HttpServerState", "HttpProtocol"]

log = logging.getLogger("actorcluster.http")
access_log = logging.getLogger("actorcluster.access")
_new_request = Request.__new__
_clock = time.monotonic
_bisect = bisect.bisect_left
FIRST_BUCKET = LATENCY_BUCKETS[0]

MAX_PIPELINE = 32  # parsed requests waiting on one connection before it stops reading
# Pieces of one request body kept as they arrived before they are merged (`_merge_pieces`): a
# body read whole, or in the socket's 64 KiB reads, never has this many.
MAX_PIECES = 1024
# Responses up to this size wait for the end of the loop turn (HttpServerState.write_soon);
# a larger one is written at once, so a full transport pauses the next request at once.
DEFER_MAX = 16 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Lingering close after a protocol error (nginx's lingering_close): the worker shuts its side and
# reads and drops what the client still sends, until its EOF or these bounds, then closes.
LINGER_TIME = 2.0  # seconds in all
LINGER_MAX_BYTES = 16 << 20  # dropped, past which the connection is closed anyway
NO_TRAILERS = 1 << 62  # _trailers_from outside a chunk header
# What a Host value may hold (RFC 9112, 3.2: uri-host [":" port], RFC 3986): unreserved,
# pct-encoded and sub-delims, and the ":" and brackets of a port and an IP literal. A value with
# anything else ("a b", "evil/path", "user@host", raw UTF-8) is a 400, as the RFC requires.
_HOST_CHARS = (b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
               b"-._~%!$&'()*+,;=:[]")


def _peer(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "-"


def _log_access(request: Request, status: int, seconds: float) -> None:
    """One line per response, as uvicorn's access log, with the time from the request's last
    byte to the response written (its head, for a streamed body)."""
    access_log.info('%s - "%s %s HTTP/%s" %d %.1fms', _peer(request.client), request.method,
                    request._target.decode("latin-1"), request.http_version, status,
                    seconds * 1000.0)


def _named(request: Request) -> str:
    """``GET /path`` for the log, the path as sent: decoded, a ``%0A`` in it would let a client
    write a line of its own into the log (the parser refuses control characters as sent)."""
    return f"{request.method} {request.raw_path.decode('latin-1')}"


class _HttpError(Exception):
    """Raised from a parser callback to stop parsing and answer ``status``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HttpProtocol(asyncio.Protocol, _HandlerRunner):
    """One HTTP/1.1 connection: parses requests, runs ``app`` for each in order, writes responses.

    ``app(request)`` returns an awaitable (see `make_app`) or, for a sync app, the result itself.
    """

    __slots__ = (
        "_app",
        "_state",
        "_loop",
        "_max_header",
        "_max_body",
        "_nodelay",
        "_parser",
        "transport",
        "_input_done",
        "_eof",
        "_closed",
        "_last_active",
        "_received",
        "_chunk_start",
        "_write_paused",
        "_read_paused",
        "_drain_waiter",
        "_in_message",
        "_headers_done",
        "_msg_lo",
        "_msg_hi",
        "_partial_lo",
        "_partial_since",
        "_target",
        "_headers",
        "_body",
        "_body_len",
        "_trailers_from",
        "_continue_pending",
        "_version",
        "_host",
        "_queue",
        "_busy",
        "_current",
        "_error",
        "_carrier",
        "_running",
        "_streaming",
        "_aborted",
        "_starts",
        "_linger",
        "_dropped",
    )

    def __init__(self, app: Callable[[Request], Any], state: HttpServerState, limits: HttpLimits):
        # configuration
        self._app = app
        self._state = state
        self._loop = state.loop
        self._max_header = limits.max_header_bytes
        self._max_body = limits.max_body_bytes
        self._nodelay = limits.nodelay
        self._parser = httptools.HttpRequestParser(self)
        # the connection
        self.transport: Any = None
        self._input_done = False  # ignore what arrives from now on (error, close decided, EOF)
        self._eof = False  # the client half-closed: answer what is queued, then close
        self._closed = False  # connection_lost was called
        self._last_active = state.now  # coarse clock, for the idle sweep
        self._received = 0  # bytes received so far, and where the current chunk started:
        self._chunk_start = 0  # bounds on the size of a header block without counting per header
        # flow control
        self._write_paused = False
        self._read_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # the message being parsed
        self._in_message = False
        self._headers_done = False
        self._msg_lo = 0  # the message began between these two byte counts
        self._msg_hi = 0
        # the message that was left incomplete by a chunk (its _msg_lo) and since when: for the
        # headers and request timeouts, kept only for messages that span chunks (no cost else)
        self._partial_lo = -1
        self._partial_since = 0.0
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] | None = None  # a list once the body has started
        self._body_len = 0
        self._trailers_from = NO_TRAILERS  # where the trailer fields begin in _headers
        self._continue_pending = False  # a 100 Continue waits for the responses before it
        self._version: str | None = None  # "1.1" or "1.0", read once per connection
        self._host = b""  # the connection's last Host value found valid: checked once
        # requests parsed and not answered yet
        self._queue: deque[Request] = deque()
        self._busy = False  # a request is being handled (or its body streamed)
        self._current: Request | None = None
        self._error = 0  # the status of a protocol error, answered once the queue is empty
        # the spare task an async handler runs in (see the module docstring)
        self._carrier: _Carrier | None = None
        self._running: asyncio.Task[None] | None = None  # a handler that waits, or a stream
        self._streaming = False  # _running sends a streamed body
        self._aborted = False
        # with a timed state (metrics on): when each queued request's message was complete
        self._starts: deque[float] | None = deque() if state.timed else None
        # lingering close after an error (`_linger_close`): its timer, and the bytes dropped
        self._linger: asyncio.TimerHandle | None = None
        self._dropped = 0

    # -- protocol interface ----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket") if self._nodelay else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._last_active = self._state.now
        self._state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._input_done:
            if self._linger is not None:
                self._drop(len(data))
            return
        self._last_active = self._state.now
        received = self._received
        self._chunk_start = received
        self._received = received + len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # on_message_complete queued the request that asks to switch protocols
            if self._queue and self._only_offers_h2c(self._queue[-1]):
                self._go_on_after_upgrade(data[exc.args[0]:])
            else:
                if self._queue:
                    self._queue.pop()
                    if self._starts:
                        self._starts.pop()
                self._protocol_error(501)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HttpError):
                self._protocol_error(cause.status)
            else:
                log.error("HTTP parser callback failed", exc_info=cause)
                self._protocol_error(500)
        except httptools.HttpParserError as exc:
            log.debug("malformed request: %s", exc)
            self._protocol_error(400)
        else:
            if self._in_message:
                self._partial_message()
        queue = self._queue
        if queue:
            if len(queue) >= MAX_PIPELINE:
                self._update_reading()
            if not self._busy:
                self._run_queue()

    def eof_received(self) -> bool:
        self._input_done = True
        if self._state.writes:  # answers waiting for the end of the turn leave before a close
            self._state.flush_writes()
        if self._busy or self._queue or self._error:
            if self._linger is not None:
                return False  # lingering after an error: the client is done sending, close
            self._eof = True
            return True  # keep the transport open to write the responses still owed
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._take_no_more()
        self._state._forget(self)
        if self._linger is not None:
            self._linger.cancel()
            self._state.lingering.discard(self)
        self._retire_carrier(reuse=True)
        self._wake_writer()
        if self._streaming and self._running is not None:
            # a stream waiting for its next chunk (a quiet event stream) would wait, holding
            # its generator open, until it had one: nobody is left to send it to
            self._running.cancel()
        # the parser refers to this protocol (its callbacks) and this protocol to the parser:
        # breaking the cycle frees both now, by reference counting, instead of in a collection
        self._parser = None

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()
        self._update_reading()
        if self._queue and not self._busy:
            self._loop.call_soon(self._run_queue)

    # -- parser callbacks (kept minimal: they run for every request) ------------------------

    # No on_message_begin (one call less per request): the first on_url of a message begins it,
    # and on_message_complete resets the rest for the next message.

    def on_url(self, url: bytes) -> None:
        if self._in_message:
            self._target += url  # the target arrived in pieces
        else:
            self._in_message = True
            self._target = url
            self._msg_lo = self._chunk_start
            self._msg_hi = self._received

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        headers = self._headers
        if len(headers) != 1 or headers[0][0] != b"Host" or headers[0][1] != self._host:
            self._check_host()  # not a lone Host line with the value checked before (wrk's)
        # the header block is at most this many bytes: count exactly only when it might be over
        if self._received - self._msg_lo > self._max_header:
            if self._header_size() > self._max_header:
                raise _HttpError(431)

    def on_body(self, body: bytes) -> None:
        if self._body is None:
            self._start_body(announce=False)
        self._body_len += len(body)
        if self._body_len > self._max_body:
            raise _HttpError(413)
        pieces = self._body
        pieces.append(body)  # type: ignore[union-attr]
        if len(pieces) >= MAX_PIECES:  # type: ignore[arg-type]
            self._merge_pieces()

    # Only a chunked body calls these two. The parser gives the trailer fields that may follow
    # the last chunk to on_header: they are not merged into the request's headers (RFC 9110,
    # 6.5.1: a client must not be able to add a header after the body) and, with the headers,
    # stay under the header limit (else a client could send them without end).

    def on_chunk_header(self) -> None:
        if self._version == "1.0" or (self._version is None and self._first_version() == "1.0"):
            # Transfer-Encoding is HTTP/1.1's: RFC 9112, 6.1 says to treat the framing of such
            # an HTTP/1.0 message as faulty (an old proxy in front would have read it another
            # way: request smuggling), as nginx does: 400 and close.
            raise _HttpError(400)
        if self._body is None:  # the first chunk (or the last of an empty body)
            self._start_body(announce=False)
        self._trailers_from = len(self._headers)

    def on_chunk_complete(self) -> None:
        trailers_from = self._trailers_from
        self._trailers_from = NO_TRAILERS
        headers = self._headers
        if len(headers) > trailers_from:
            if self._header_size() > self._max_header:
                raise _HttpError(431)
            del headers[trailers_from:]

    def on_message_complete(self) -> None:
        self._in_message = False
        self._continue_pending = False
        body = self._body
        if body is None:
            body = b""
        elif len(body) == 1 and type(body[0]) is bytes:
            body = body[0]
        else:
            body = b"".join(body)
        parser = self._parser
        # Request.__init__, inlined (a third of the cost of creating one)
        request = _new_request(Request)
        request._method = parser.get_method()
        request._target = self._target
        request._raw_headers = self._headers
        request.body = body
        request.http_version = self._version or self._first_version()
        request.keep_alive = parser.should_keep_alive()
        request._transport = self.transport
        self._queue.append(request)
        if self._starts is not None:
            self._starts.append(_clock())
        self._headers = []
        self._headers_done = False
        self._body = None

    def _check_host(self) -> None:
        """RFC 9112, 3.2: a 400 for an HTTP/1.1 request without Host (as in Node and nginx), and
        for any request with more than one Host (a proxy in front may have read another one) or
        with a Host value that is not a host and port."""
        host = None
        for name, value in self._headers:
            if len(name) == 4 and name.lower() == b"host":
                if host is not None:
                    raise _HttpError(400)
                host = value
                # the parser keeps trailing whitespace, which is not part of a value (RFC 9112, 5)
                if value.rstrip(b" \t").translate(None, _HOST_CHARS):
                    raise _HttpError(400)
        if host is None:
            if (self._version or self._first_version()) == "1.1":
                raise _HttpError(400)
        else:
            self._host = host

    def _first_version(self) -> str:
        # The parser formats the version anew on each call (slow): read it for the first request
        # of the connection only; a client does not change its HTTP version on a connection.
        self._version = version = self._parser.get_http_version()
        if version != "1.1" and version != "1.0":  # 0.9, or 2.0 in HTTP/1's syntax
            raise _HttpError(505)
        return version

    # -- upgrades ----------------------------------------------------------------------------

    @staticmethod
    def _only_offers_h2c(request: Request) -> bool:
        """A request that offers HTTP/2 (``curl --http2`` with an http:// URL) goes on in
        HTTP/1.1 when the server does not switch (RFC 9110, 7.8: a server may ignore Upgrade);
        a WebSocket client has nothing to go on with. With a body (the parser took it for the
        new protocol's bytes) or CONNECT, the request cannot be served."""
        headers = request.headers
        return (
            request._method != b"CONNECT"
            and headers.get("upgrade", "").lower() == "h2c"
            and headers.get("content-length", "0") == "0"
            and "transfer-encoding" not in headers
        )

    def _go_on_after_upgrade(self, rest: bytes) -> None:
        """Serve the queued request in HTTP/1.1; what followed it is parsed anew (the parser
        stays paused after an upgrade)."""
        self._parser = httptools.HttpRequestParser(self)
        if rest:
            self._received -= len(rest)  # data_received counts them
            self.data_received(rest)

    # -- limits, 100-continue, errors -------------------------------------------------------

    def _header_size(self) -> int:
        size = len(self._target) + 20  # method, spaces, version, CRLFs
        for name, value in self._headers:
            size += len(name) + len(value) + 4
        return size

    def _partial_message(self) -> None:
        """After ``feed_data`` returned in the middle of a message."""
        if self._partial_lo != self._msg_lo:  # a message spanning chunks: since when
            self._partial_lo = self._msg_lo
            self._partial_since = self._state.now
        if not self._headers_done:
            # every byte since the chunk the message began in is header; more were before it
            if self._received - self._msg_hi > self._max_header or (
                self._received - self._msg_lo > self._max_header
                and self._header_size() > self._max_header
            ):
                self._protocol_error(431)
        elif self._body is None:
            try:
                self._start_body(announce=True)
            except _HttpError as exc:
                self._protocol_error(exc.status)
        elif len(self._headers) > self._trailers_from:  # trailer fields arriving in pieces
            if self._header_size() > self._max_header:
                self._protocol_error(431)

    def _merge_pieces(self) -> None:
        """Many pieces of body (tiny chunks): one growing buffer instead of an object each. A
        1 MiB body in 2-byte chunks would otherwise be 500,000 bytes objects, 27 MB held for
        one connection; the buffer grows in place (amortized), so merging costs one copy."""
        pieces = self._body
        first = pieces[0]  # type: ignore[index]
        if type(first) is not bytearray:
            first = bytearray(first)
        first += b"".join(pieces[1:])  # type: ignore[index]
        self._body = [first]  # type: ignore[list-item]

    def _start_body(self, announce: bool) -> None:
        """The headers are in and the body has not been read: check its declared size, and
        send ``100 Continue`` if the client waits for it (``announce``)."""
        self._body = []
        self._body_len = 0
        length = -1
        expect = False
        codings = None
        for name, value in self._headers:
            size = len(name)
            if size == 14 and name.lower() == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _HttpError(400) from None
            elif size == 6 and name.lower() == b"expect":
                expect = value.strip().lower() == b"100-continue"
            elif size == 17 and name.lower() == b"transfer-encoding":
                codings = value if codings is None else codings + b"," + value
        if codings is not None and codings.strip().lower() != b"chunked":
            # The parser took the framing from the last coding, chunked; the ones before it
            # (gzip, ...) would reach the handler undone, as if the body were plain. RFC 9112,
            # 6.1: 501 for a coding the server does not understand (as h11 answers).
            raise _HttpError(501)
        if length > self._max_body:
            raise _HttpError(413)
        if announce and expect and (self._version or self._first_version()) == "1.1":
            if self._busy or self._queue:
                self._continue_pending = True  # after the responses the client still waits for
            else:
                self._write(CONTINUE)

    def _protocol_error(self, status: int) -> None:
        """Stop reading; answer ``status`` after the responses already owed, then close."""
        self._error = status
        self._in_message = False
        self._continue_pending = False
        self._input_done = True
        if not self._busy and not self._queue:
            self._send_error()

    def _send_error(self) -> None:
        if not self._closed:
            self._write(error_response(self._error, self._state.date_header))
            self._state.count(self._error // 100)  # not timed: no complete message
            if self._state.access_log:  # no request line to show: it could not be read
                peer = self.transport.get_extra_info("peername")
                access_log.info('%s - "-" %d', _peer(peer), self._error)
        self._linger_close()

    def _linger_close(self) -> None:
        """Close after an error answer without resetting the connection over what the client
        is still sending (a body over the limit, the rest of a huge head).

        A close with unread bytes in the socket (or more arriving) makes the kernel answer with
        a reset, which fails the client's send and, on a real network, can destroy the answer
        before the client reads it. So, as nginx's lingering close: shut our side (FIN, after
        the answer), read and drop what comes until the client's EOF, `LINGER_TIME` or
        `LINGER_MAX_BYTES`, then close. A lingering connection is no longer a live one
        (`HttpServerState.lingering`): the sweep and a graceful stop do not wait for it."""
        self._take_no_more()
        if self._state.writes:
            self._state.flush_writes()
        if self._closed:
            return
        transport = self.transport
        if self._eof or not transport.can_write_eof():  # the client sent all it will
            transport.close()
            return
        try:
            transport.write_eof()
        except (OSError, RuntimeError):  # gone meanwhile (uvloop: a closed handle)
            transport.close()
            return
        self._linger = self._loop.call_later(LINGER_TIME, self._linger_over)
        self._state.linger(self)
        self._update_reading()  # the queue is empty: read again unless the client is not reading

    def _drop(self, size: int) -> None:
        self._dropped += size
        if self._dropped > LINGER_MAX_BYTES:
            self._linger_over()

    def _linger_over(self) -> None:
        if not self._closed:
            if self.transport.get_write_buffer_size():
                self.transport.abort()  # a client that reads nothing would hold close() forever
            else:
                self.transport.close()

    def _write(self, data: bytes) -> None:
        """Write now, after the responses that wait for the end of the loop turn
        (`HttpServerState.write_soon`): a connection's bytes leave in order."""
        if self._state.writes:
            self._state.flush_writes()
        self.transport.write(data)

    def _take_no_more(self) -> None:
        """Read no more requests and forget those queued (the connection is ending)."""
        self._input_done = True
        self._queue.clear()
        if self._starts:
            self._starts.clear()

    def _close_soon(self) -> None:
        """Read no more; close at the end of the loop turn, after the answer waiting for it
        (with `Connection: close` the closes of a turn then go together with its writes)."""
        self._take_no_more()
        self._state.closing.append(self)

    def _close(self) -> None:
        self._take_no_more()
        if self._state.writes:
            self._state.flush_writes()
        if not self._closed:
            self.transport.close()

    def _abort(self) -> None:
        self._aborted = True
        self._take_no_more()
        self._retire_carrier()  # now, in case the loop stops before connection_lost
        if self._running is not None:
            self._running.cancel()  # a hard stop: the handler has nobody to answer
        if not self._closed:
            self.transport.abort()

    def _idle(self) -> bool:
        return not (self._busy or self._queue or self._in_message)

    def _sweep(self, now: float, max_idle: float, draining: bool) -> None:
        if self._closed:
            return
        if self._in_message and not self._input_done:
            if self._partial_lo == self._msg_lo:
                limits = self._state.limits
                limit = limits.request_timeout if self._headers_done else limits.headers_timeout
                if now - self._partial_since >= limit:
                    self._request_timed_out()
                    return
            if self._busy or self._queue or draining:
                return  # (draining: the request arriving is answered, then we close)
            if now - self._last_active >= max_idle:
                self._request_timed_out()  # it stopped arriving
            return
        if self._busy or self._queue:
            return
        if now - self._last_active >= max_idle:
            if self._write_paused:
                self._abort()  # a client that stopped reading would hold close() forever
            else:
                self._close()

    def _request_timed_out(self) -> None:
        if self._write_paused:
            self._abort()  # a client that stopped reading would hold the 408 and the close
        else:
            self._protocol_error(408)  # answered after any response still owed, then closed

    def _drain(self) -> None:
        if self._idle() and not self._closed:
            self._close()

    # -- flow control --------------------------------------------------------------------------

    def _update_reading(self) -> None:
        pause = self._write_paused or len(self._queue) >= MAX_PIPELINE
        if pause != self._read_paused and not self._closed:
            self._read_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _wake_writer(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _writable(self) -> None:
        if self._write_paused and not self._closed:
            waiter = self._drain_waiter
            if waiter is None:
                waiter = self._drain_waiter = self._loop.create_future()
            await waiter

    # -- handling requests -------------------------------------------------------------------

    def _run_queue(self) -> None:
        """Handle queued requests one after another; must not run inside a task."""
        queue = self._queue
        loop = self._loop
        while queue and not self._busy and not self._write_paused and not self._closed:
            request = queue.popleft()
            self._busy = True
            try:
                coro = self._app(request)
            except Exception:
                self._fail(request)
                continue
            if type(coro) is not CoroutineType:
                self._handle_other(request, coro)
                continue
            # _drive, inlined: the path of every request to an async handler
            task, context, slot, base, send, outcome = self._carrier or self._new_carrier()
            try:
                _enter_task(loop, task)
            except RuntimeError:  # inside another task (not from the event loop): hand it over
                self._drive(request, coro)
                continue
            try:
                yielded = context.run(send, coro)  # through the carrier's trampoline
            except BaseException:
                _leave_task(loop, task)
                self._carrier = (task, context, slot, base, *_new_trampoline())  # it ended
                self._drive_failed(request)
                continue
            _leave_task(loop, task)
            if yielded is not _DONE:  # it waits: the carrier carries it on; the next gets a new one
                self._carrier = None
                self._running = task
                slot.set_result((self, request, send.__self__, _park(yielded), outcome))
                continue
            result = outcome.value
            outcome.value = None
            if context != base:  # it set a context variable: the next request starts afresh
                self._retire_carrier()
            self._respond(request, result)  # outside the except block: no exception context
        if self._read_paused:
            self._update_reading()
        if self._busy or self._closed:
            return
        if not queue:
            if self._error:
                self._send_error()
            elif self._eof:
                self._close()
            elif self._continue_pending:
                self._continue_pending = False
                self._write(CONTINUE)

    def _run_queue_soon(self) -> None:
        if self._queue or self._error or self._eof or self._continue_pending:
            self._loop.call_soon(self._run_queue)

    def _fail(self, request: Request, exc: BaseException | None = None) -> None:
        """Answer 500 for a handler that raised (call inside the ``except`` or pass ``exc``)."""
        log.error(
            "handler failed: %s", _named(request), exc_info=exc if exc is not None else True
        )
        self._respond_error(request, 500)

    def _respond_error(self, request: Request, status: int) -> None:
        self._busy = False
        if self._closed:
            return
        state = self._state
        keep = request.keep_alive and not state.draining
        conn = connection_line(keep, request.http_version == "1.0")
        data = error_response(status, state.date_header, request._method == b"HEAD", conn)
        self._write(data)
        state.count(status // 100)
        if self._starts is not None:
            self._timed(request, status)
        self._done(keep)

    def _respond(self, request: Request, result: Any) -> None:
        """Write the response for ``result`` with one ``transport.write`` (unless streamed)."""
        if self._closed:
            self._busy = False
            return
        state = self._state
        keep = request.keep_alive and not state.draining
        if type(result) is str:  # the common case, inlined
            try:
                body = result.encode()
            except UnicodeEncodeError:  # a lone surrogate (from request.json()): no UTF-8 form
                log.exception("cannot send the handler's result: %s", _named(request))
                self._respond_error(request, 500)
                return
            size = len(body)
            if keep and size < CACHED_LENGTHS and request.http_version == "1.1":
                end = LENGTH_END[size]
            else:
                conn = connection_line(keep, request.http_version == "1.0")
                end = b"Content-Length: %d\r\n%s\r\n" % (size, conn)
            if request._method == b"HEAD":
                body = b""
            deferred = size <= DEFER_MAX
            if deferred:
                state.write_soon(self, b"".join((state.text_head, end, body)))
            else:
                self._write(b"".join((state.text_head, end, body)))
            counts = state.status_counts  # HttpServerState.count, inlined
            counts[2] += 1
            if counts[2] >= state.status_bounds[2]:  # --max-requests: see limit_requests
                state.count_bound()
            if self._starts is not None:
                self._timed(request, 200)
            self._busy = False
            if keep:
                self._last_active = state.now
            elif deferred:
                self._close_soon()
            else:
                self._close()
            return
        try:
            data, keep, stream = render(
                result,
                request._method == b"HEAD",
                keep,
                request.http_version == "1.0",
                state.date_header,
            )
        except Exception:
            log.exception("cannot send the handler's result: %s", _named(request))
            self._respond_error(request, 500)
            return
        if stream is None and len(data) <= DEFER_MAX:
            state.write_soon(self, data)
        else:
            self._write(data)
        if isinstance(result, Response):
            status = result.status
        else:  # what render() wrote for a bare value: None is 204 No Content
            status = 200 if result is not None else 204
        status_class = status // 100
        counts = state.status_counts  # HttpServerState.count, inlined
        counts[status_class] += 1
        if counts[status_class] >= state.status_bounds[status_class]:
            state.count_bound()
        if self._starts is not None:
            self._timed(request, status)
        if stream is None:
            self._done(keep)
        else:
            self._streaming = True
            self._running = self._loop.create_task(self._send_stream(request, stream, keep))

    def _timed(self, request: Request, status: int) -> None:
        """The response to the oldest queued request is written: into the histogram
        (`HttpServerState.observe`, inlined: it runs for every request when metrics are on),
        and into the access log when it is on."""
        starts = self._starts
        if starts:
            seconds = _clock() - starts.popleft()
            state = self._state
            state.latency_counts[
                0 if seconds <= FIRST_BUCKET else _bisect(LATENCY_BUCKETS, seconds)
            ] += 1
            state.latency_sum += seconds
            if state.access_log:
                _log_access(request, status, seconds)

    def _done(self, keep: bool) -> None:
        self._busy = False
        self._current = None
        if keep:
            self._last_active = self._state.now
        else:
            self._close()

    async def _send_stream(self, request: Request, stream: Stream, keep: bool) -> None:
        try:
            complete = await send_stream(
                stream, self._write, self._writable, lambda: self._closed
            )
        except asyncio.CancelledError:
            if not self._closed:
                raise  # _abort: the worker is stopping at once
            complete = False  # connection_lost: the client is gone
        except Exception:
            log.exception("streaming the body failed: %s", _named(request))
            complete = False
        self._running = None
        self._streaming = False
        # an incomplete body: the client cannot tell where it ends, so the connection closes
        self._done(keep and complete)
        self._run_queue_soon()
