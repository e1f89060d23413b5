"""Request, Headers, QueryParams, Response rendering and make_app, without sockets."""

from __future__ import annotations

import asyncio
import functools
import json
from collections import Counter, OrderedDict, defaultdict
from enum import StrEnum
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

import actorcluster.http as http_package
from actorcluster.http import Headers, Request, Response, make_app
from actorcluster.http.handler import ThreadedApp, is_async_handler
from actorcluster.http.request import QueryParams
from actorcluster.http.response import error_response, render

DATE = b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"


def test_public_names():
    assert sorted(http_package.__all__) == [
        "Headers",
        "HttpLimits",
        "HttpProtocol",
        "HttpServerState",
        "QueryParams",
        "Request",
        "Response",
        "make_app",
    ]


# -- Request ----------------------------------------------------------------------------------


def test_request_parses_lazily_and_caches():
    request = Request(b"GET", b"/a%2Fb%20c?x=1&x=2&e=", [(b"Host", b"h")], b"", "1.1", True)
    assert request.method == "GET"
    assert request.raw_path == b"/a%2Fb%20c"
    assert request.path == "/a/b c"
    assert request.path is request.path
    assert request.query_string == b"x=1&x=2&e="
    assert request.query["x"] == "1"
    assert request.query.getall("x") == ["1", "2"]
    assert request.query["e"] == ""
    assert request.query is request.query
    assert request.headers is request.headers
    assert request.client is None  # no transport: as for a Unix socket


def test_request_paths():
    def path(target: bytes) -> tuple[str, bytes, bytes]:
        request = Request(b"GET", target, [])
        return request.path, request.raw_path, request.query_string

    assert path(b"/") == ("/", b"/", b"")
    assert path(b"/caf%C3%A9") == ("/café", b"/caf%C3%A9", b"")
    assert path(b"/bad%FF") == ("/bad\ufffd", b"/bad%FF", b"")
    assert path(b"/p#frag") == ("/p", b"/p", b"")
    assert path(b"http://example.com:8080/abs?q=1") == ("/abs", b"/abs", b"q=1")
    assert path(b"*") == ("*", b"*", b"")


def test_request_method_and_json():
    request = Request(b"PROPFIND", b"/", [], b'{"a": [1, 2]}')
    assert request.method == "PROPFIND"
    assert request.json() == {"a": [1, 2]}
    with pytest.raises(ValueError):
        Request(b"POST", b"/", [], b"{not json").json()
    with pytest.raises(ValueError, match="nested too deeply"):  # not RecursionError
        Request(b"POST", b"/", [], b"[" * 100_000).json()


def test_request_client_from_the_transport():
    class Transport:
        def __init__(self, peer: Any) -> None:
            self.peer = peer

        def get_extra_info(self, name: str) -> Any:
            assert name == "peername"
            return self.peer

    assert Request(b"GET", b"/", [], transport=Transport(("10.0.0.1", 5))).client == (
        "10.0.0.1",
        5,
    )
    v6 = Transport(("::1", 5, 0, 0))
    assert Request(b"GET", b"/", [], transport=v6).client == ("::1", 5)
    assert Request(b"GET", b"/", [], transport=Transport("")).client is None


# -- Headers ----------------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_keep_repeats():
    raw = [(b"Content-Type", b"text/html"), (b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2")]
    headers = Headers(raw)
    assert headers["content-type"] == headers["CONTENT-TYPE"] == "text/html"
    assert headers.get("set-cookie") == "a=1"
    assert headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert headers.get("missing") is None and headers.get("missing", "d") == "d"
    assert headers.getall("missing") == []
    assert "SET-COOKIE" in headers and "missing" not in headers
    assert list(headers.items()) == [
        ("content-type", "text/html"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]
    assert headers.keys() == ["content-type", "set-cookie"]
    assert len(headers) == 3
    assert headers.raw is raw
    with pytest.raises(KeyError):
        headers["missing"]


def test_header_values_are_latin1():
    assert Headers([(b"X", "é".encode("latin-1"))])["x"] == "é"


header_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126))


@given(st.lists(st.tuples(header_names, header_values), max_size=20))
def test_headers_lookup_matches_a_naive_scan(pairs):
    headers = Headers([(n.encode(), v.encode()) for n, v in pairs])
    assert list(headers.items()) == [(n.lower(), v.rstrip(" ")) for n, v in pairs]
    for name, _ in pairs:
        expected = [v.rstrip(" ") for n, v in pairs if n.lower() == name.lower()]
        assert headers.getall(name.swapcase()) == expected
        assert headers[name.upper()] == expected[0]


# -- QueryParams ------------------------------------------------------------------------------


def test_query_params():
    query = QueryParams(b"a=1&b=x+y&a=%C3%A9&flag&empty=")
    assert query["a"] == "1" and query.getall("a") == ["1", "é"]
    assert query["b"] == "x y"
    assert query["flag"] == "" and query["empty"] == ""
    assert query.get("missing") is None
    assert list(query) == ["a", "b", "flag", "empty"]
    assert len(query) == 4
    assert query.multi_items()[:2] == [("a", "1"), ("b", "x y")]
    with pytest.raises(TypeError):
        query["a"] = "2"  # read-only


query_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(st.lists(st.tuples(query_text.filter(bool), query_text), max_size=10))
def test_query_round_trips_urlencode(pairs):
    request = Request(b"GET", b"/?" + urlencode(pairs, quote_via=quote).encode(), [])
    assert request.query.multi_items() == pairs
    for key, _ in pairs:
        assert request.query.getall(key) == [v for k, v in pairs if k == key]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_path_round_trips_percent_encoding(text):
    request = Request(b"GET", b"/" + quote(text, safe="").encode(), [])
    assert request.path == "/" + text


# -- Response rendering ------------------------------------------------------------------------


def split(data: bytes) -> tuple[bytes, dict[bytes, list[bytes]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        headers.setdefault(name.lower(), []).append(value)
    return status, headers, body


def test_render_plain_values():
    for value, content_type, body in [
        ("hé", b"text/plain; charset=utf-8", "hé".encode()),
        (b"\x00", b"application/octet-stream", b"\x00"),
        ({"k": [1]}, b"application/json", b'{"k":[1]}'),
    ]:
        data, keep, stream = render(value, False, True, False, DATE)
        status, headers, sent = split(data)
        assert (status, keep, stream) == (b"HTTP/1.1 200 OK", True, None)
        assert headers[b"content-type"] == [content_type]
        assert headers[b"content-length"] == [str(len(body)).encode()]
        assert headers[b"server"] == [b"actorcluster"] and b"date" in headers
        assert b"connection" not in headers
        assert sent == body
    data, _, _ = render(None, False, True, False, DATE)
    status, headers, body = split(data)
    assert status == b"HTTP/1.1 204 No Content" and b"content-length" not in headers


def test_render_takes_subclasses_of_the_plain_types():
    class Color(StrEnum):
        RED = "red"

    class Raw(bytes):
        pass

    for value, content_type, body in [
        (Color.RED, b"text/plain; charset=utf-8", b"red"),
        (Raw(b"\x00"), b"application/octet-stream", b"\x00"),
        (OrderedDict(b=1, a=2), b"application/json", b'{"b":1,"a":2}'),
        (defaultdict(list, k=[1]), b"application/json", b'{"k":[1]}'),
        (Counter("aab"), b"application/json", b'{"a":2,"b":1}'),
        (type("Rows", (list,), {})([1, 2]), b"application/json", b"[1,2]"),
    ]:
        status, headers, sent = split(render(value, False, True, False, DATE)[0])
        assert status == b"HTTP/1.1 200 OK"
        assert (headers[b"content-type"], sent) == ([content_type], body)


def test_render_connection_headers():
    assert split(render("x", False, False, False, DATE)[0])[1][b"connection"] == [b"close"]
    assert split(render("x", False, True, True, DATE)[0])[1][b"connection"] == [b"keep-alive"]
    data, keep, _ = render(Response("x", headers={"Connection": "close"}), False, True, False, DATE)
    assert keep is False and split(data)[1][b"connection"] == [b"close"]


def test_render_head_keeps_the_length_and_drops_the_body():
    data, _, _ = render(Response("four"), True, True, False, DATE)
    _, headers, body = split(data)
    assert headers[b"content-length"] == [b"4"] and body == b""


def test_render_response_headers():
    response = Response(
        b"{}",
        status=418,
        headers=[("Set-Cookie", "a=1"), (b"Set-Cookie", b"b=2"), ("Content-Length", "999")],
        content_type="application/json",
    )
    status, headers, body = split(render(response, False, True, False, DATE)[0])
    assert status == b"HTTP/1.1 418 I'm a Teapot"
    assert headers[b"set-cookie"] == [b"a=1", b"b=2"]
    assert headers[b"content-length"] == [b"2"]  # the real length, not the user's
    assert headers[b"content-type"] == [b"application/json"]
    # the user's own Server and Date win over ours; a Content-Type header is kept
    response = Response("x", headers={"Server": "mine", "Date": "then", "Content-Type": "a/b"})
    _, headers, _ = split(render(response, False, True, False, DATE)[0])
    assert headers[b"server"] == [b"mine"] and headers[b"date"] == [b"then"]
    assert headers[b"content-type"] == [b"a/b"]


@pytest.mark.parametrize(
    "response",
    [
        Response("x", headers={"X-Bad": "a\r\nInjected: 1"}),
        Response("x", content_type="text/html\r\nSet-Cookie: a=1"),
        Response("x", content_type=b"text/html\nInjected: 1"),
        Response(iter(["x"]), content_type="text/html\0"),
        Response("x", headers={"Bad Name": "v"}),
        Response("x", status=99),
        Response("x", status=600),
        Response("x", status="200"),
        Response("x", status=True),
        Response(12345),
        Response({"a": 1}),
        Response(iter(["x"]), headers={"Content-Length": "-1"}),
    ],
)
def test_render_refuses_what_cannot_be_sent(response):
    with pytest.raises((ValueError, TypeError)):
        render(response, False, True, False, DATE)


def test_render_takes_a_status_from_http_status():
    data, _, _ = render(Response("gone\n", status=HTTPStatus.NOT_FOUND), False, True, False, DATE)
    assert data.startswith(b"HTTP/1.1 404 Not Found\r\n") and data.endswith(b"\r\n\r\ngone\n")


def test_render_refuses_other_types():
    with pytest.raises(TypeError, match="float"):
        render(1.5, False, True, False, DATE)


def test_render_streams():
    def chunks() -> Any:
        yield "a"

    data, keep, stream = render(Response(chunks()), False, True, False, DATE)
    _, headers, body = split(data)
    assert headers[b"transfer-encoding"] == [b"chunked"] and body == b""
    assert stream is not None and stream.chunked and stream.length is None
    data, keep, stream = render(
        Response(chunks(), headers={"Content-Length": "1"}), False, True, False, DATE
    )
    assert stream is not None and not stream.chunked and stream.length == 1
    _, keep, stream = render(Response(chunks()), False, True, True, DATE)  # HTTP/1.0
    assert keep is False and stream is not None and not stream.chunked


def test_204_and_304_have_no_body():
    for status in (204, 304):
        _, headers, body = split(render(Response("x", status=status), False, True, False, DATE)[0])
        assert body == b"" and b"content-length" not in headers


def test_a_none_body_is_an_empty_body():
    """Response(None, status=...) is Response(b"", ...), as in Starlette, aiohttp and Flask."""
    for status, length in ((201, [b"0"]), (204, None)):
        data, _, stream = render(Response(None, status=status), False, True, False, DATE)
        _, headers, body = split(data)
        assert (body, stream, headers.get(b"content-length")) == (b"", None, length)
        assert b"content-type" not in headers


def test_a_tuple_says_how_to_give_a_status():
    """Flask's `return body, 201` is refused with the way to do it here."""
    with pytest.raises(TypeError, match=r"return Response\(body, status=\.\.\."):
        render(({"a": 1}, 201), False, True, False, DATE)


def test_error_response_reveals_nothing():
    status, headers, body = split(error_response(500, DATE))
    assert status == b"HTTP/1.1 500 Internal Server Error"
    assert body == b"Internal Server Error" and headers[b"connection"] == [b"close"]


# -- make_app ---------------------------------------------------------------------------------


async def async_handler(request: Request) -> str:
    return "async"


def sync_handler(request: Request) -> str:
    return "sync"


class AsyncCallable:
    async def __call__(self, request: Request) -> str:
        return "object"


class SyncCallable:
    def __call__(self, request: Request) -> str:
        return "object"


def test_async_handlers_are_used_as_they_are():
    assert make_app(async_handler) is async_handler
    handler = AsyncCallable()
    assert make_app(handler) is handler
    assert is_async_handler(functools.partial(async_handler))


def test_sync_handlers_run_in_a_thread_pool():
    for handler in (sync_handler, SyncCallable(), functools.partial(sync_handler)):
        app = make_app(handler, threads=2)
        assert isinstance(app, ThreadedApp) and app.threads == 2

    app = make_app(sync_handler)

    async def call() -> str:
        return await app(Request(b"GET", b"/", []))

    try:
        assert asyncio.run(call()) == "sync"
    finally:
        app.shutdown()


def test_make_app_refuses_bad_arguments():
    with pytest.raises(TypeError):
        make_app("not callable")
    with pytest.raises(ValueError):
        make_app(sync_handler, threads=0)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # no JSON form: see the test below
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values) | st.lists(json_values))
def test_json_from_a_handler_is_compact_json_dumps(value):
    data, _, _ = render(value, False, True, False, DATE)
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert split(data)[2] == expected


def test_json_that_cannot_be_encoded():
    with pytest.raises(TypeError, match="not JSON serializable"):
        render({"a": object()}, False, True, False, DATE)
    for number in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="not JSON compliant"):
            render({"a": [number]}, False, True, False, DATE)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(RecursionError):
        render(cycle, False, True, False, DATE)


def test_json_with_a_lone_surrogate_is_escaped_not_a_500():
    # request.json() of '{"n": "\ud800"}' (valid JSON) holds a lone surrogate, which UTF-8
    # cannot encode: echoing it back (the docs' POST example) must not be a 500
    value = Request(b"POST", b"/", [], b'{"n": "\\ud800", "ok": "\xc3\xa9\\ud83d\\ude00"}').json()
    data, _, _ = render({"you_sent": value}, False, True, False, DATE)
    body = split(data)[2]
    assert body == '{"you_sent":{"n":"\\ud800","ok":"é😀"}}'.encode()
    assert json.loads(body) == {"you_sent": value}
