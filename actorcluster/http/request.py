"""The request a handler receives: raw bytes from the parser, decoded only when asked for.

The protocol builds one `Request` per message from what httptools handed it (method, target,
the raw header pairs, the body). Nothing is decoded up front: `path`, `query`, `headers` and
`client` are computed on first access and cached in a slot, so a handler that looks at nothing
costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

import httptools

__all__ = ["Headers", "QueryParams", "Request"]

# Decoded method names, so the common ones are not decoded again for every request.
_METHODS = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")
}


class Headers:
    """Request headers: case-insensitive look-up, repeated headers kept in order.

    ``headers["content-type"]`` and ``get`` give the first value, ``getall`` every value.
    ``items()`` yields every pair in the order received, with lower-cased names;
    ``raw`` is the list of ``(name, value)`` bytes pairs exactly as received.
    Values are decoded as latin-1 (what HTTP/1.1 allows on the wire), without the whitespace
    around them (RFC 9112, 5.1: the parser drops what precedes a value, this what follows it).
    """

    __slots__ = ("raw", "_index")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw
        self._index: dict[str, list[str]] | None = None

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self.raw:
                index.setdefault(name.decode("latin-1").lower(), []).append(
                    value.decode("latin-1").rstrip(" \t")
                )
            self._index = index
        return index

    def __getitem__(self, name: str) -> str:
        return self._lookup()[name.lower()][0]

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of ``name``, or ``default`` when the header is absent."""
        values = self._lookup().get(name.lower())
        return values[0] if values else default

    def getall(self, name: str) -> list[str]:
        """Every value of ``name`` in the order received (an empty list when absent)."""
        return list(self._lookup().get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def keys(self) -> list[str]:
        """The distinct lower-cased names, in order of first appearance."""
        return list(self._lookup())

    def items(self) -> Iterator[tuple[str, str]]:
        """Every ``(name, value)`` pair in the order received, names lower-cased."""
        for name, value in self.raw:
            yield name.decode("latin-1").lower(), value.decode("latin-1").rstrip(" \t")

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Headers({list(self.items())!r})"


class QueryParams(Mapping[str, str]):
    """The query string as a read-only multi-mapping.

    ``query["a"]`` and ``get`` give the first value, ``getall("a")`` every value,
    ``multi_items()`` every pair in order. Blank values are kept (``?a=&b`` gives ``a=""``,
    ``b=""``); ``+`` decodes to a space and percent-escapes as UTF-8.
    """

    __slots__ = ("_pairs", "_index")

    def __init__(self, query: bytes | str = b"") -> None:
        if isinstance(query, bytes):
            query = query.decode("utf-8", "replace")
        self._pairs: list[tuple[str, str]] = parse_qsl(query, keep_blank_values=True)
        index: dict[str, list[str]] = {}
        for key, value in self._pairs:
            index.setdefault(key, []).append(value)
        self._index = index

    def __getitem__(self, key: str) -> str:
        return self._index[key][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def getall(self, key: str) -> list[str]:
        """Every value of ``key`` in order (an empty list when absent)."""
        return list(self._index.get(key, ()))

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(key, value)`` pair in the order of the query string."""
        return list(self._pairs)

    def __repr__(self) -> str:
        return f"QueryParams({self._pairs!r})"


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request target into (path, query), both still percent-encoded."""
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
        return path.partition(b"#")[0], query.partition(b"#")[0]
    if target == b"*":
        return target, b""
    try:  # absolute-form ("GET http://host/path HTTP/1.1"), as sent to proxies
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        return target, b""
    return url.path or b"/", url.query or b""


class Request:
    """One HTTP request, handed to the handler once its body has been read in full.

    Attributes:
        method: ``"GET"``, ``"POST"``, ...
        path: the path, percent-decoded (``/a%20b`` gives ``"/a b"``); see ``raw_path``.
        raw_path: the path as sent, still percent-encoded (bytes).
        query: the query string as a read-only multi-mapping (`QueryParams`).
        query_string: the query string as sent (bytes, without the ``?``).
        headers: `Headers` (case-insensitive, repeated headers kept).
        body: the whole body (bytes; a chunked body is already de-chunked).
        client: ``(host, port)`` of the peer for TCP, ``None`` for a Unix socket (and for a
            client gone before it is first asked for, as the event loop may not know then).
        http_version: ``"1.1"`` or ``"1.0"``.
        keep_alive: whether the client asked to keep the connection open after this request.

    The protocol creates requests; its constructor takes the parser's raw values.
    """

    __slots__ = (
        "_method",
        "_target",
        "_raw_headers",
        "body",
        "http_version",
        "keep_alive",
        "_transport",
        "_split",
        "_path",
        "_query",
        "_headers",
        "_client",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes = b"",
        http_version: str = "1.1",
        keep_alive: bool = True,
        transport: Any = None,
    ) -> None:
        self._method = method
        self._target = target
        self._raw_headers = headers
        self.body = body
        self.http_version = http_version
        self.keep_alive = keep_alive
        self._transport = transport
        # _split, _path, _query, _headers and _client stay unset until first asked for.

    @property
    def method(self) -> str:
        """The request method, e.g. ``"GET"``."""
        method = self._method
        return _METHODS.get(method) or method.decode("ascii", "replace")

    @property
    def target(self) -> bytes:
        """The request target exactly as sent on the request line."""
        return self._target

    def _parts(self) -> tuple[bytes, bytes]:
        try:
            return self._split
        except AttributeError:
            split = self._split = _split_target(self._target)
            return split

    @property
    def raw_path(self) -> bytes:
        """The path as sent, still percent-encoded."""
        return self._parts()[0]

    @property
    def path(self) -> str:
        """The path, percent-decoded as UTF-8 (undecodable bytes become U+FFFD)."""
        try:
            return self._path
        except AttributeError:
            raw = self._parts()[0]
            if b"%" in raw:
                raw = unquote_to_bytes(raw)
            path = self._path = raw.decode("utf-8", "replace")
            return path

    @property
    def query_string(self) -> bytes:
        """The query string as sent, without the ``?``."""
        return self._parts()[1]

    @property
    def query(self) -> QueryParams:
        """The query string as a read-only multi-mapping."""
        try:
            return self._query
        except AttributeError:
            query = self._query = QueryParams(self._parts()[1])
            return query

    @property
    def headers(self) -> Headers:
        """The request headers (case-insensitive, repeated headers kept)."""
        try:
            return self._headers
        except AttributeError:
            headers = self._headers = Headers(self._raw_headers)
            return headers

    @property
    def client(self) -> tuple[str, int] | None:
        """``(host, port)`` of the peer for a TCP connection, ``None`` for a Unix socket or a
        client gone before it is first asked for."""
        try:
            return self._client
        except AttributeError:
            peer = None
            if self._transport is not None:
                peer = self._transport.get_extra_info("peername")
            client = self._client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
            return client

    def json(self) -> Any:
        """The body decoded as JSON (raises ``ValueError`` when it is not valid JSON)."""
        try:
            return json.loads(self.body)
        except RecursionError as exc:
            # nesting deeper than Python's recursion limit ("[" * 100_000 fits in --max-body):
            # a handler that catches ValueError for a bad body must catch this one too
            raise ValueError(f"the JSON body is nested too deeply: {exc}") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._target.decode('latin-1')!r}>"
