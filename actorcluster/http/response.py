"""`Response`, and turning whatever a handler returned into the bytes of one HTTP response.

`render` returns the whole response (status line, headers and body joined once) so the protocol
writes it with a single ``transport.write``. A streamed body (an iterable or async iterable of
chunks) is the one exception: `render` then returns the head and a `Stream` for the protocol to
send chunk by chunk.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

try:
    from json.encoder import c_encode_basestring, c_make_encoder
except ImportError:  # pragma: no cover - CPython has the C encoder
    c_make_encoder = c_encode_basestring = None

__all__ = ["Response", "Stream", "error_response", "render", "send_stream", "status_line"]

log = logging.getLogger("actorcluster.http")

SERVER = b"Server: actorcluster\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"
CLOSE = b"Connection: close\r\n"

_STATUS_LINES: dict[int, bytes] = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (s, s.phrase.encode("ascii")) for s in HTTPStatus
}

# Heads of the responses the plain return values produce, up to (not including) the Date line.
TEXT_200 = _STATUS_LINES[200] + SERVER + b"Content-Type: text/plain; charset=utf-8\r\n"
BYTES_200 = _STATUS_LINES[200] + SERVER + b"Content-Type: application/octet-stream\r\n"
JSON_200 = _STATUS_LINES[200] + SERVER + b"Content-Type: application/json\r\n"
EMPTY_204 = _STATUS_LINES[204] + SERVER
LAST_CHUNK = b"0\r\n\r\n"

# "Content-Length: n" and the end of the head of a keep-alive HTTP/1.1 response, for small n
CACHED_LENGTHS = 1024
LENGTH_END = [b"Content-Length: %d\r\n\r\n" % n for n in range(CACHED_LENGTHS)]

# RFC 9110 token characters for a header name; a value may not hold CR, LF or NUL.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\r\n\0]")


def _json_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _escape_surrogates(text: str) -> bytes:
    """JSON text holding a lone surrogate (``request.json()`` gives one for ``"\\ud800"``),
    which UTF-8 cannot encode: such a character can only be inside a JSON string, where
    ``backslashreplace`` writes it as the JSON escape ``\\ud800``, as ``json.dumps`` does."""
    return text.encode("utf-8", "backslashreplace")


if c_make_encoder is not None and c_encode_basestring is not None:
    # json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False) builds an
    # encoder per call; this one is built once (no circular-reference check: a cycle ends in
    # RecursionError). allow_nan=False: NaN and infinities have no JSON form (RFC 8259); written
    # as Python writes them, a browser's JSON.parse and most clients refuse the whole document,
    # so they are the handler's error (a 500, as Starlette does), not an unreadable 200.
    _json_chunks = c_make_encoder(
        None, _json_default, c_encode_basestring, None, ":", ",", False, False, False
    )

    def encode_json(value: Any) -> bytes:
        """``value`` as compact JSON, UTF-8 encoded."""
        text = "".join(_json_chunks(value, 0))
        try:
            return text.encode()
        except UnicodeEncodeError:
            return _escape_surrogates(text)

else:  # pragma: no cover

    def encode_json(value: Any) -> bytes:
        """``value`` as compact JSON, UTF-8 encoded."""
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        try:
            return text.encode()
        except UnicodeEncodeError:
            return _escape_surrogates(text)


def status_line(status: int) -> bytes:
    """The cached ``HTTP/1.1 <status> <reason>\\r\\n`` line."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


def connection_line(keep_alive: bool, http10: bool) -> bytes:
    """The Connection header, if one is needed (HTTP/1.1 keeps alive by default)."""
    if not keep_alive:
        return CLOSE
    return KEEP_ALIVE if http10 else b""


class Response:
    """A response with a status, headers and a body.

    Args:
        body: ``str`` (sent as UTF-8), ``bytes``, or an iterable / async iterable of ``str`` or
            ``bytes`` chunks. A chunked body is sent with ``Transfer-Encoding: chunked``, or with
            the ``Content-Length`` you set yourself (then the chunks must add up to it).
        status: the status code (200 to 599).
        headers: a dict or a list of ``(name, value)`` pairs (``str`` or ``bytes``). A list may
            repeat a name (``Set-Cookie``). ``Content-Length``, ``Transfer-Encoding`` and
            ``Connection`` are managed by the server; ``Connection: close`` is honoured, and
            so is ``Content-Length`` with an empty body in the answer to a HEAD request.
        content_type: sets ``Content-Type`` (default: ``text/plain; charset=utf-8`` for a
            ``str`` body, ``application/octet-stream`` for any other non-empty body).
    """

    __slots__ = ("body", "status", "headers", "content_type")

    def __init__(
        self,
        body: Any = b"",
        status: int = 200,
        headers: Mapping[Any, Any] | Iterable[tuple[Any, Any]] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.headers = headers
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


class Stream:
    """A body still to be sent: chunks from ``body``, framed ``chunked`` or raw."""

    __slots__ = ("body", "chunked", "length")

    def __init__(self, body: Any, chunked: bool, length: int | None) -> None:
        self.body = body
        self.chunked = chunked
        self.length = length


def _header_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


def _simple(head: bytes, date: bytes, body: bytes, head_only: bool, conn: bytes) -> bytes:
    return b"%s%sContent-Length: %d\r\n%s\r\n%s" % (
        head,
        date,
        len(body),
        conn,
        b"" if head_only else body,
    )


def render(
    result: Any, head_only: bool, keep_alive: bool, http10: bool, date: bytes
) -> tuple[bytes, bool, Stream | None]:
    """Encode a handler's return value.

    Returns ``(data, keep_alive, stream)``: ``data`` is the whole response (or only its head when
    ``stream`` is not None), ``keep_alive`` whether the connection may stay open after it.
    Raises ``TypeError`` or ``ValueError`` for a value that cannot be sent (the caller answers 500).
    """
    kind = type(result)
    conn = connection_line(keep_alive, http10)
    if kind is str:
        return _simple(TEXT_200, date, result.encode(), head_only, conn), keep_alive, None
    if kind is bytes:
        return _simple(BYTES_200, date, result, head_only, conn), keep_alive, None
    if kind is dict or kind is list:
        body = encode_json(result)
        return _simple(JSON_200, date, body, head_only, conn), keep_alive, None
    if result is None:
        return EMPTY_204 + date + conn + b"\r\n", keep_alive, None
    if isinstance(result, Response):
        return _render_response(result, head_only, keep_alive, http10, date)
    for base in (str, bytes, dict, list):
        if isinstance(result, base):  # a subclass (a StrEnum, an OrderedDict, a Counter ...)
            return render(base(result), head_only, keep_alive, http10, date)
    hint = ""
    if kind is tuple:  # Flask's `return body, 201`
        hint = ("; for another status or headers return Response(body, status=..., headers=...), "
                "with json.dumps(value) and content_type='application/json' for JSON")
    raise TypeError(
        f"the handler returned {kind.__name__}; expected str, bytes, dict, list, Response or "
        f"None{hint}"
    )


def _render_response(
    response: Response, head_only: bool, keep_alive: bool, http10: bool, date: bytes
) -> tuple[bytes, bool, Stream | None]:
    status = response.status
    if type(status) is not int:  # an HTTPStatus is an int too; a bool is not a status
        if not isinstance(status, int) or isinstance(status, bool):
            raise ValueError(f"Response status must be an int from 200 to 599, not {status!r}")
        status = int(status)
    if not 200 <= status <= 599:
        raise ValueError(f"Response status must be an int from 200 to 599, not {status!r}")
    lines = [status_line(status)]
    has_server = has_date = False
    content_type = response.content_type
    length: int | None = None
    raw_headers = response.headers
    if raw_headers is not None:
        pairs = raw_headers.items() if isinstance(raw_headers, Mapping) else raw_headers
        for name, value in pairs:
            name_b = _header_bytes(name)
            value_b = _header_bytes(value)
            if not _TOKEN.match(name_b) or _BAD_VALUE.search(value_b):
                raise ValueError(f"invalid response header {name!r}: {value!r}")
            lower = name_b.lower()
            if lower == b"content-length":
                length = int(value_b)
                if length < 0:
                    raise ValueError(f"invalid Content-Length {value!r}")
                continue
            if lower == b"transfer-encoding":
                continue
            if lower == b"connection":
                if b"close" in value_b.lower():
                    keep_alive = False
                continue
            if lower == b"content-type":
                if content_type is not None:
                    continue  # the content_type argument wins
                content_type = ""  # set by the user's header: add no default
            elif lower == b"server":
                has_server = True
            elif lower == b"date":
                has_date = True
            lines.append(b"%s: %s\r\n" % (name_b, value_b))
    if not has_server:
        lines.append(SERVER)
    if not has_date:
        lines.append(date)

    body = response.body
    if body is None:  # no body, as Starlette, aiohttp and Flask take it
        body = b""
    stream = None
    bodyless = status == 204 or status == 304
    if isinstance(body, str):
        body = body.encode()
        default_type = "text/plain; charset=utf-8"
    elif isinstance(body, bytes | bytearray | memoryview):
        body = bytes(body)
        default_type = "application/octet-stream"
    elif isinstance(body, Mapping):
        raise TypeError(
            "a dict is not a Response body: return the dict itself (sent as JSON), or pass "
            "json.dumps(...) with content_type='application/json'"
        )
    elif isinstance(body, AsyncIterable | Iterable):
        stream, body = body, b""
        default_type = "application/octet-stream"
    else:
        raise TypeError(f"Response body must be str, bytes or an iterable, not {type(body)}")
    size = len(body)
    if head_only and not size and length is not None:
        # A handler that answers HEAD itself leaves the body out and says how long GET's would
        # be (RFC 9110, 9.3.2): that is the length to send, as uvicorn and Node do, not 0.
        size = length
    if content_type is None and (size or stream is not None) and not bodyless:
        content_type = default_type
    if content_type:
        content_type = _header_bytes(content_type)
        if _BAD_VALUE.search(content_type):  # a header value like any other: no injection
            raise ValueError(f"invalid content_type {response.content_type!r}")
        lines.append(b"Content-Type: %s\r\n" % content_type)

    result_stream = None
    if bodyless:
        body = b""
        _close_quietly(stream)
    elif stream is None:
        lines.append(b"Content-Length: %d\r\n" % size)
    elif length is not None:
        lines.append(b"Content-Length: %d\r\n" % length)
        result_stream = Stream(stream, chunked=False, length=length)
    elif not http10:
        lines.append(b"Transfer-Encoding: chunked\r\n")
        result_stream = Stream(stream, chunked=True, length=None)
    else:  # an HTTP/1.0 client knows no chunked encoding: the body ends when the connection does
        keep_alive = False
        result_stream = Stream(stream, chunked=False, length=None)
    lines.append(connection_line(keep_alive, http10))
    lines.append(b"\r\n")
    if head_only:
        if result_stream is not None:
            _close_quietly(result_stream.body)
            result_stream = None
    elif body:
        lines.append(body)
    return b"".join(lines), keep_alive, result_stream


def _close_quietly(body: Any) -> None:
    """Close a generator that will not be iterated (a sync one now; an async one is left to GC)."""
    close = getattr(body, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # the user's cleanup must not turn into our failure
            pass


def error_response(status: int, date: bytes, head_only: bool = False, conn: bytes = CLOSE) -> bytes:
    """A short plain-text response that reveals nothing but the reason phrase of ``status``."""
    body = HTTPStatus(status).phrase.encode()
    head = status_line(status) + SERVER + b"Content-Type: text/plain; charset=utf-8\r\n"
    return _simple(head, date, body, head_only, conn)


async def send_stream(
    stream: Stream,
    write: Callable[[bytes], None],
    writable: Callable[[], Awaitable[None]],
    closed: Callable[[], bool],
) -> bool:
    """Send ``stream.body`` chunk by chunk with ``write``, awaiting ``writable()`` after each.

    Returns True when the whole body was sent, False when the connection closed first. Raises
    what the body raised, or ``TypeError`` / ``ValueError`` for a bad chunk or a body that does
    not match its Content-Length. A body not sent to its end is closed (``aclose``/``close``).
    """
    body, chunked, length = stream.body, stream.chunked, stream.length
    is_async = isinstance(body, AsyncIterable)
    sent = 0
    complete = False
    try:
        iterator: Any = body.__aiter__() if is_async else iter(body)
        while not closed():
            try:
                chunk = await iterator.__anext__() if is_async else next(iterator)
            except (StopAsyncIteration, StopIteration):
                complete = True
                break
            if isinstance(chunk, str):
                chunk = chunk.encode()
            elif isinstance(chunk, memoryview):
                chunk = chunk.tobytes()  # its len() counts items (4-byte ints ...), not bytes
            elif not isinstance(chunk, bytes | bytearray):
                raise TypeError(f"a body chunk must be str or bytes, not {type(chunk).__name__}")
            if not chunk:
                continue  # an empty chunk would end a chunked body
            sent += len(chunk)
            if length is not None and sent > length:
                raise ValueError(f"the body is longer than its Content-Length {length}")
            write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await writable()
        if complete and length is not None and sent != length:
            complete = False
            raise ValueError(f"the body is {sent} bytes, its Content-Length says {length}")
    finally:
        if not complete:
            await _close_body(body)
    if closed():
        return False
    if chunked:
        write(LAST_CHUNK)
    return True


async def _close_body(body: Any) -> None:
    aclose = getattr(body, "aclose", None)
    try:
        if aclose is not None:
            await aclose()
        else:
            _close_quietly(body)
    except Exception:
        log.exception("closing a response body failed")
