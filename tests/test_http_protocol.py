"""HttpProtocol over real sockets on 127.0.0.1 (and one Unix socket pair).

The server runs in this process, on an event loop in a background thread, and serves every
accepted socket with ``serve_handed_off`` exactly as a worker does (a blocking descriptor, as the
primary passes it on; read at once if the request is there, else adopted by the event loop).
Normal requests go through httpx; malformed, pipelined, chunked and 100-continue requests
through raw sockets.
"""

from __future__ import annotations

import array
import asyncio
import contextvars
import email.utils
import gc
import json
import logging
import os
import re
import select
import shlex
import socket
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

from actorcluster.http import (
    HttpLimits,
    HttpProtocol,
    HttpServerState,
    Request,
    Response,
    make_app,
)
from actorcluster.http import protocol as http_protocol
from actorcluster.http.direct import DirectTransport, serve_handed_off

pytestmark = pytest.mark.timeout(20)

LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


# -- the server under test --------------------------------------------------------------------


class Server:
    """An HTTP server on 127.0.0.1 in a background event-loop thread."""

    def __init__(
        self, handler: Any, limits: HttpLimits, loop: str, sweep: float, accept: bool = True
    ) -> None:
        self.loop = LOOPS[loop]()
        self.limits = limits
        self.app = make_app(handler)
        self.state = HttpServerState(self.loop, limits)
        self.state.sweep_interval = sweep
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.exit_code: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.call(self.state.start)
        # accept=False: the test accepts, when the client has sent what it wants (hand_over)
        self._accepting = asyncio.run_coroutine_threadsafe(
            self._accept() if accept else asyncio.sleep(3600), self.loop
        )

    def _run(self) -> None:
        try:
            self.loop.run_forever()
        except SystemExit as exc:  # what stops a worker process
            self.exit_code = exc.code

    def protocol(self) -> HttpProtocol:
        return HttpProtocol(self.app, self.state, self.limits)

    async def _accept(self) -> None:
        while True:
            conn, _ = await self.loop.sock_accept(self.listener)
            conn.setblocking(True)
            # outside this task, as a worker's hand-off reader: an async handler that finishes
            # at once is then run inline (runner.py), not by a carrier task
            self.loop.call_soon(serve_handed_off, self.loop, conn, self.protocol())

    def hand_over(self, sent: bool = True) -> HttpProtocol:
        """Accept the next connection here, with what its client has sent so far in the
        socket's buffer, and serve it on the loop as a worker does; return its protocol.
        ``sent``: the client has sent something (or closed): wait until it is in the buffer, as
        TCP_DEFER_ACCEPT makes it for a worker (a loaded machine may deliver it a little late)."""
        self.listener.setblocking(True)
        try:
            conn, _ = self.listener.accept()
        finally:
            self.listener.setblocking(False)
        if sent:
            assert select.select([conn], [], [], 5)[0], "nothing arrived from the client"
        protocol = self.protocol()
        done = threading.Event()

        def serve() -> None:  # outside any task, as a worker's hand-off reader
            try:
                serve_handed_off(self.loop, conn, protocol)
            finally:
                done.set()

        self.loop.call_soon_threadsafe(serve)
        assert done.wait(10)
        return protocol

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the loop thread (awaiting it if it is async); return its result."""

        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def connections(self) -> int:
        return self.call(lambda: len(self.state.connections))

    def stop(self) -> None:
        if not self.thread.is_alive():  # the loop was stopped by the test (sys.exit)
            self.loop.close()
            self.listener.close()
            return
        self._accepting.cancel()
        self.call(self.state.close_all)
        self.call(asyncio.sleep, 0.01)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        self.listener.close()
        if hasattr(self.app, "shutdown"):
            self.app.shutdown()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(
        handler: Any,
        limits: HttpLimits | None = None,
        loop: str = "uvloop",
        sweep: float = 1.0,
        accept: bool = True,
    ) -> Server:
        server = Server(handler, limits or HttpLimits(), loop, sweep, accept)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# -- a raw HTTP client ------------------------------------------------------------------------


class Raw:
    """A blocking socket with just enough HTTP/1.1 response parsing for the tests."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()

    def send(self, data: bytes) -> Raw:
        self.sock.sendall(data)
        return self

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise EOFError(f"closed before {marker!r}; got {self.buf[:200]!r}")
        end = self.buf.index(marker) + len(marker)
        head = bytes(self.buf[:end])
        del self.buf[:end]
        return head

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"closed after {len(self.buf)} of {n} bytes")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """Read one response: (status, headers with lower-cased names, body)."""
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if head_only or status in (100, 204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")
                    return status, headers, body
                body += self.read_exactly(size)
                assert self.read_exactly(2) == b"\r\n"
        if "content-length" in headers:
            return status, headers, self.read_exactly(int(headers["content-length"]))
        return status, headers, self.read_to_eof()

    def closed(self) -> bool:
        """True when the server has closed the connection (EOF or reset), with no data left."""
        try:
            return not self.buf and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[..., Raw]]:
    opened: list[Raw] = []

    def connect(port: int, **kwargs: Any) -> Raw:
        conn = Raw(port, **kwargs)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def wait_for(probe: Callable[[], Any], timeout: float = 3.0) -> Any:
    """Poll ``probe`` until it returns something true (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not (result := probe()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return result


def get(path: str = "/", extra: str = "", version: str = "1.1") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: t\r\n{extra}\r\n".encode()


async def echo(request: Request) -> Any:
    """Describes the request; a few paths behave differently."""
    if request.path.startswith("/sleep/"):
        await asyncio.sleep(float(request.path.rsplit("/", 1)[1]))
    return {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path.decode(),
        "query": request.query.multi_items(),
        "headers": list(request.headers.items()),
        "body": request.body.decode("latin-1"),
        "version": request.http_version,
        "keep_alive": request.keep_alive,
        "client": request.client,
    }


# -- basics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_keep_alive_serves_many_requests_on_one_connection(serve, loop):
    server = serve(echo, loop=loop)
    with httpx.Client(base_url=server.url) as client:
        clients = {tuple(client.get(f"/n/{i}").json()["client"]) for i in range(5)}
        assert len(clients) == 1  # the same source port: one connection
        assert server.connections() == 1
        assert clients.pop()[0] == "127.0.0.1"
    assert server.call(lambda: server.state.requests_served) == 5


def test_limit_requests_is_reached_by_the_response_that_reaches_it(serve):
    # --max-requests: the worker is told as each response is counted, whatever the mix of
    # status classes (each class has its own bound; the total is taken only when one is hit)
    def handler(request: Request) -> Any:
        if request.path == "/boom":
            raise ValueError("boom")
        if request.path.startswith("/s/"):
            return Response(b"", status=int(request.path[3:]))
        return "ok"

    server = serve(handler)
    reached: list[tuple[int, int]] = []
    server.call(server.state.limit_requests, 23,
                lambda served: reached.append((served, server.state.requests_served)))
    paths = ["/", "/s/404", "/s/302", "/boom", "/s/201", "/", "/s/500", None]  # None: a 400
    answered = 0
    with httpx.Client(base_url=server.url) as client:
        for i in range(40):
            path = paths[i % len(paths)]
            if path is None:
                with socket.create_connection(("127.0.0.1", server.port)) as sock:
                    sock.sendall(b"NOT HTTP\r\n\r\n")
                    assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
            else:
                client.get(path)
            answered += 1
            assert server.call(lambda: list(reached)) == ([] if answered < 23 else [(23, 23)])
    assert server.call(lambda: server.state.requests_served) == 40


def test_request_attributes(serve):
    server = serve(echo)
    response = httpx.post(
        server.url + "/a%20b/c?x=1&x=2&y=&z=%C3%A9+f",
        content=b"payload",
        headers=[("X-Twice", "1"), ("X-Twice", "2")],
    )
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/a b/c"
    assert seen["raw_path"] == "/a%20b/c"
    assert seen["query"] == [["x", "1"], ["x", "2"], ["y", ""], ["z", "é f"]]
    assert ["x-twice", "1"] in seen["headers"] and ["x-twice", "2"] in seen["headers"]
    assert seen["body"] == "payload"
    assert seen["version"] == "1.1" and seen["keep_alive"] is True


async def returns(request: Request) -> Any:
    kind = request.path.strip("/")
    values = {
        "str": "héllo",
        "bytes": b"\x00\x01",
        "dict": {"a": [1, 2], "é": None},
        "list": [1, "two"],
        "none": None,
        "response": Response("made", status=201, headers=[("X-A", "1"), ("X-A", "2")]),
        "typed": Response(b"<p>", content_type="text/html"),
        "float": 1.5,
    }
    return values[kind]


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body"),
    [
        ("str", 200, "text/plain; charset=utf-8", "héllo".encode()),
        ("bytes", 200, "application/octet-stream", b"\x00\x01"),
        ("dict", 200, "application/json", '{"a":[1,2],"é":null}'.encode()),
        ("list", 200, "application/json", b'[1,"two"]'),
        ("none", 204, None, b""),
        ("response", 201, "text/plain; charset=utf-8", b"made"),
        ("typed", 200, "text/html", b"<p>"),
        ("float", 500, "text/plain; charset=utf-8", b"Internal Server Error"),
    ],
)
def test_return_values(serve, kind, status, content_type, body):
    server = serve(returns)
    response = httpx.get(f"{server.url}/{kind}")
    assert response.status_code == status
    assert response.headers.get("content-type") == content_type
    assert response.content == body
    if status == 204:
        assert "content-length" not in response.headers
    else:
        assert response.headers["content-length"] == str(len(body))
    if kind == "response":
        assert response.headers.get_list("x-a") == ["1", "2"]


def test_a_float_json_cannot_hold_is_a_500_not_invalid_json(serve, caplog):
    async def handler(request: Request) -> Any:
        value = {"/nan": float("nan"), "/inf": float("inf"), "/ninf": -float("inf")}.get(
            request.path, 1.5)
        return {"v": [value]}

    server = serve(handler)
    with httpx.Client(base_url=server.url) as client:
        for path in ("/nan", "/inf", "/ninf"):
            failed = client.get(path)
            assert (failed.status_code, failed.text) == (500, "Internal Server Error"), path
            assert client.get("/").json() == {"v": [1.5]}  # the same connection goes on
    assert "Out of range float values are not JSON compliant" in caplog.text


@pytest.mark.parametrize("kind", ["async", "waits", "sync"])
def test_a_str_without_a_utf8_form_is_a_500_and_the_connection_goes_on(serve, caplog, kind):
    """A lone surrogate (what request.json() gives for "\\ud800") in a returned str: a 500
    like any result that cannot be sent, not a connection dropped without an answer."""

    async def waits(request: Request) -> str:
        await asyncio.sleep(0.01)
        return f"Hello, {request.json()['name']}!"

    handler = {
        "async": lambda: returns_json_name,
        "waits": lambda: waits,
        "sync": lambda: lambda request: f"Hello, {request.json()['name']}!",
    }[kind]()
    server = serve(handler)
    with caplog.at_level(logging.ERROR, logger="actorcluster.http"):
        with httpx.Client(base_url=server.url) as client:
            failed = client.post("/", content=b'{"name": "\\ud800"}')
            assert (failed.status_code, failed.text) == (500, "Internal Server Error")
            assert client.post("/", content=b'{"name": "Ada"}').text == "Hello, Ada!"
            assert server.connections() == 1  # the same connection served both
    assert any("cannot send the handler's result: POST /" in r.getMessage()
               for r in caplog.records)


async def returns_json_name(request: Request) -> str:
    return f"Hello, {request.json()['name']}!"


def test_date_and_server_headers(serve):
    server = serve(returns)
    response = httpx.get(server.url + "/str")
    assert response.headers["server"] == "actorcluster"
    date = email.utils.parsedate_to_datetime(response.headers["date"])
    assert abs(date.timestamp() - time.time()) < 5


def test_handler_exception_is_500_logged_and_the_connection_keeps_serving(serve, caplog):
    async def handler(request: Request) -> str:
        if request.path == "/boom":
            raise RuntimeError("the secret detail")
        return "fine"

    server = serve(handler)
    with caplog.at_level(logging.ERROR, logger="actorcluster.http"):
        with httpx.Client(base_url=server.url) as client:
            failed = client.get("/boom")
            assert failed.status_code == 500
            assert failed.text == "Internal Server Error"
            assert "secret" not in failed.text
            assert client.get("/ok").text == "fine"
            assert server.connections() == 1  # the same connection served both
    [record] = [r for r in caplog.records if r.name == "actorcluster.http"]
    assert "GET /boom" in record.getMessage()
    assert record.exc_info is not None and "the secret detail" in str(record.exc_info[1])


def test_a_failed_handler_is_logged_with_its_path_as_sent(serve, caplog):
    """A decoded path would let a client write a line of its own into the log."""

    async def handler(request: Request) -> str:
        raise KeyError("orders")

    server = serve(handler)
    forged = "/x%0A2026-11-28T01:40:00.000+00:00%20[1]%20[INFO]%20Primary%201%20stopped"
    with caplog.at_level(logging.ERROR, logger="actorcluster.http"):
        assert httpx.get(server.url + forged).status_code == 500
        assert httpx.get(server.url + "/orders/7").status_code == 500
    messages = [r.getMessage() for r in caplog.records if r.name == "actorcluster.http"]
    assert messages == [f"handler failed: GET {forged}", "handler failed: GET /orders/7"]


class Escape(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt (as gevent's Timeout or
    pytest's Failed are): from a task it would not stop the loop, so it is a handler's failure."""


@pytest.mark.parametrize("kind", ["async at once", "async after a wait", "sync"])
def test_a_handler_raising_another_base_exception_is_500(serve, caplog, kind):
    async def at_once(request: Request) -> str:
        if request.path == "/boom":
            raise Escape("the secret detail")
        return "fine"

    async def after_a_wait(request: Request) -> str:
        await asyncio.sleep(0.01)
        return await at_once(request)

    def sync(request: Request) -> str:
        if request.path == "/boom":
            raise Escape("the secret detail")
        return "fine"

    handler = {"async at once": at_once, "async after a wait": after_a_wait, "sync": sync}[kind]
    server = serve(handler)
    with caplog.at_level(logging.ERROR, logger="actorcluster.http"):
        with httpx.Client(base_url=server.url, timeout=3) as client:
            failed = client.get("/boom")
            assert (failed.status_code, failed.text) == (500, "Internal Server Error")
            assert client.get("/ok").text == "fine"
    assert server.thread.is_alive()
    [record] = [r for r in caplog.records if r.name == "actorcluster.http"]
    assert "GET /boom" in record.getMessage() and isinstance(record.exc_info[1], Escape)


def test_sync_handler_runs_in_a_thread_and_does_not_block_the_loop(serve):
    def handler(request: Request) -> str:
        if request.path == "/slow":
            time.sleep(0.8)  # blocking I/O, as a sync handler may do
        return threading.current_thread().name

    server = serve(handler)
    slow: dict[str, Any] = {}

    def fetch_slow() -> None:
        slow["response"] = httpx.get(server.url + "/slow")

    thread = threading.Thread(target=fetch_slow)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    fast = httpx.get(server.url + "/fast")
    assert time.monotonic() - started < 0.5  # not after the slow one
    thread.join()
    assert fast.text.startswith("actorcluster-handler")
    assert slow["response"].text.startswith("actorcluster-handler")


def test_async_handler_runs_in_a_task_with_its_own_context(serve):
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")

    async def handler(request: Request) -> dict[str, Any]:
        assert asyncio.current_task() is not None
        request_id.set(request.path)
        before_wait = asyncio.current_task()
        async with asyncio.timeout(5):  # needs a current task
            await asyncio.sleep(0)
        async with asyncio.TaskGroup() as group:
            child = group.create_task(asyncio.sleep(0, result=request_id.get()))
        timed_out = False
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        except TimeoutError:
            timed_out = True
        return {
            "same_task": asyncio.current_task() is before_wait,
            "var": request_id.get(),
            "child": child.result(),
            "timed_out": timed_out,
        }

    async def quick(request: Request) -> str:
        async with asyncio.timeout(5):  # finishes without waiting: driven eagerly
            return str(asyncio.current_task() is not None)

    server = serve(handler)
    with httpx.Client(base_url=server.url) as client:
        for path in ("/one", "/two"):
            assert client.get(path).json() == {
                "same_task": True,
                "var": path,
                "child": path,
                "timed_out": True,
            }
    assert httpx.get(serve(quick).url).text == "True"


def test_context_variables_do_not_leak_between_requests(serve):
    seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="")

    async def handler(request: Request) -> str:
        before = seen.get()
        seen.set(request.path)  # finishes without waiting: driven eagerly
        return before

    server = serve(handler)
    with httpx.Client(base_url=server.url) as client:
        assert [client.get(p).text for p in ("/a", "/b", "/c")] == ["", "", ""]
        assert server.connections() == 1


@pytest.mark.parametrize("kind", ["async", "async after a wait", "sync"])
def test_sys_exit_in_a_handler_stops_the_worker_loop(serve, raw, kind):
    async def async_handler(request: Request) -> None:
        sys.exit(7)

    async def after_a_wait(request: Request) -> None:
        await asyncio.sleep(0.01)
        sys.exit(7)

    def sync_handler(request: Request) -> None:
        sys.exit(7)

    server = serve(
        {"async": async_handler, "async after a wait": after_a_wait, "sync": sync_handler}[kind]
    )
    raw(server.port).send(get("/"))
    server.thread.join(5)  # run_forever raised SystemExit: let it crash
    assert not server.thread.is_alive()
    assert server.exit_code == 7


@pytest.mark.parametrize("loop", LOOPS)
def test_sys_exit_in_a_handler_leaves_no_adoption_pending(serve, raw, loop, caplog):
    """The handler runs as the connection is handed over and stops the worker: the connection
    is dropped then, not given to the event loop in a task the stopping loop never runs
    ("Task was destroyed but it is pending!" and a never-awaited coroutine in the log)."""

    async def exits(request: Request) -> None:
        sys.exit(7)

    # what earlier tests' stopped loops left (a task pending when a loop closed is reported
    # when it is collected): collected now, not counted against this test below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()
    caplog.clear()
    server = serve(exits, loop=loop, accept=False)
    conn = raw(server.port).send(get("/"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        server.hand_over()
        server.thread.join(5)
        assert server.exit_code == 7
        server.loop.close()  # as a worker's main does once its loop has stopped
        gc.collect()
    # (the harness's own pending accept task is destroyed with the loop too: not ours)
    noise = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [line for line in noise if "DirectTransport" in line], noise
    assert conn.closed()


# -- HTTP/1.0, pipelining, HEAD, bodies --------------------------------------------------------


def test_http10_closes_unless_keep_alive_is_asked_for(serve, raw):
    server = serve(returns)
    conn = raw(server.port).send(b"GET /str HTTP/1.0\r\n\r\n")
    status, headers, body = conn.response()
    assert (status, headers["connection"], body) == (200, "close", "héllo".encode())
    assert conn.closed()

    conn = raw(server.port)
    for _ in range(2):
        conn.send(b"GET /str HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (200, "keep-alive")


def test_connection_close_from_the_client_or_the_handler(serve, raw):
    server = serve(returns)
    conn = raw(server.port).send(get("/str", "Connection: close\r\n"))
    assert conn.response()[1]["connection"] == "close"
    assert conn.closed()

    async def bye(request: Request) -> Response:
        return Response("bye", headers={"Connection": "close"})

    conn = raw(serve(bye).port).send(get("/") + get("/never"))
    status, headers, body = conn.response()
    assert (headers["connection"], body) == ("close", b"bye")
    assert conn.closed()


class CountingTransport:
    """Just enough of a transport to count the writes of a protocol driven by hand."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        pass


@pytest.mark.parametrize("kind", ["str", "bytes", "dict", "none", "response", "float"])
def test_one_write_per_response(kind):
    async def run() -> list[bytes]:
        loop = asyncio.get_running_loop()
        state = HttpServerState(loop, HttpLimits())
        protocol = HttpProtocol(make_app(returns), state, HttpLimits())
        transport = CountingTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        loop.call_soon(protocol.data_received, get(f"/{kind}") + get(f"/{kind}"))
        await asyncio.sleep(0.01)
        protocol.connection_lost(None)
        return transport.writes

    writes = asyncio.run(run())
    assert len(writes) == 2  # two requests, two writes: head and body joined once
    assert all(w.startswith(b"HTTP/1.1 ") for w in writes)


@pytest.mark.parametrize("loop", LOOPS)
def test_pipelined_requests_are_answered_in_order(serve, raw, loop):
    server = serve(echo, loop=loop)
    # later requests finish sooner: the answers must still come in request order
    delays = [0.01, 0.0, 0.005, 0.0, 0.002] * 10
    conn = raw(server.port)
    conn.send(b"".join(get(f"/sleep/{d}?i={i}") for i, d in enumerate(delays)))
    for i in range(len(delays)):
        status, _, body = conn.response()
        assert status == 200
        assert json.loads(body)["query"] == [["i", str(i)]]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_closed_under_its_answer_costs_the_others_nothing(serve, raw, loop):
    # Answers wait for the end of the loop turn: one whose transport was aborted meanwhile is
    # dropped, and the answers of the other connections of that turn still leave.
    async def handler(request: Request) -> str:
        if request.path == "/block":
            time.sleep(0.3)  # holds the loop while the next two requests arrive together
        elif request.path == "/gone":
            request._transport.abort()
        return request.path

    server = serve(handler, loop=loop)
    blocker, gone, fine = raw(server.port), raw(server.port), raw(server.port)
    blocker.send(get("/block"))
    time.sleep(0.1)
    gone.send(get("/gone"))
    fine.send(get("/fine"))
    assert blocker.response()[2] == b"/block"
    assert fine.response()[2] == b"/fine"
    assert gone.read_to_eof() == b""
    assert wait_for(lambda: server.connections() <= 2)


@pytest.mark.parametrize("loop", LOOPS)
def test_responses_kept_for_the_end_of_the_turn_leave_in_order(serve, raw, loop):
    # Small responses wait for the end of the loop turn; a large one, a stream, a 500 and a
    # close are written at once: each must still leave after the small ones before it.
    async def handler(request: Request) -> Any:
        kind, i = request.path.strip("/").split("/")
        if kind == "small":
            return f"s{i}"
        if kind == "json":
            return {"j": int(i)}
        if kind == "big":
            return i * 20_000  # over the deferral bound: written at once
        if kind == "stream":
            async def body() -> Any:
                yield f"t{i}".encode()
            return Response(body())
        raise RuntimeError("boom")

    server = serve(handler, loop=loop)
    conn = raw(server.port)
    plan = ["small", "json", "big", "small", "stream", "small", "fail", "small", "json"] * 3
    conn.send(b"".join(get(f"/{kind}/{i % 10}") for i, kind in enumerate(plan))
              + get("/small/9", "Connection: close\r\n"))
    for i, kind in enumerate(plan):
        status, _, body = conn.response()
        expected = {"small": f"s{i % 10}".encode(), "json": f'{{"j":{i % 10}}}'.encode(),
                    "big": str(i % 10).encode() * 20_000, "stream": f"t{i % 10}".encode()}
        if kind == "fail":
            assert status == 500
        else:
            assert (status, body) == (200, expected[kind]), (i, kind)
    status, headers, body = conn.response()
    assert (status, body, headers["connection"]) == (200, b"s9", "close")
    assert conn.read_to_eof() == b""  # and then the server closed the connection


@pytest.mark.parametrize("loop", LOOPS)
def test_handlers_that_return_raise_or_wait_follow_one_another_on_a_connection(serve, raw, loop):
    # Each connection's carrier runs async handlers through one generator, replaced when a
    # handler raises and handed to the carrier task when one waits: every mix must answer.
    async def handler(request: Request) -> Any:
        kind, i = request.path.strip("/").split("/")
        if kind.startswith("wait"):
            await asyncio.sleep(0.001)
        if kind.endswith("raise"):
            raise RuntimeError(f"boom {i}")
        return {"i": int(i), "task": asyncio.current_task() is not None}

    server = serve(handler, loop=loop)
    plan = ["now", "now-raise", "now", "wait", "now", "wait-raise", "now-raise", "wait", "now"]
    for _ in range(2):  # and again on a new connection, with the spare carriers left behind
        conn = raw(server.port)
        conn.send(b"".join(get(f"/{kind}/{i}") for i, kind in enumerate(plan * 3)))
        for i, kind in enumerate(plan * 3):
            status, _, body = conn.response()
            if kind.endswith("raise"):
                assert status == 500, (i, kind)
            else:
                assert (status, json.loads(body)) == (200, {"i": i, "task": True}), (i, kind)
        conn.close()


@pytest.mark.parametrize("loop", LOOPS)
def test_handlers_started_in_one_loop_turn_may_await_one_future(serve, raw, loop):
    # Several handlers awaiting the same future (a shared cache fill; `await tell(...)` to a
    # paused actor, which hands every sender the one future of its resume): a handler's first
    # step runs outside its task, so the next one must not find the future still "taken".
    shared: dict[str, asyncio.Future[str]] = {}

    async def handler(request: Request) -> str:
        if "f" not in shared:
            shared["f"] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.05, shared["f"].set_result, "filled")
        return await shared["f"] + request.path

    server = serve(handler, loop=loop, accept=False)
    conns = [raw(server.port).send(get(f"/{i}")) for i in range(3)]
    accepted = []
    server.listener.setblocking(True)
    for _ in conns:
        conn, _ = server.listener.accept()
        assert select.select([conn], [], [], 5)[0]
        accepted.append(conn)

    def serve_all() -> None:  # in one loop turn, as a worker's hand-off reader may
        for conn in accepted:
            serve_handed_off(server.loop, conn, server.protocol())

    server.loop.call_soon_threadsafe(serve_all)
    for i, conn in enumerate(conns):
        status, _, body = conn.response()
        assert (status, body) == (200, f"filled/{i}".encode())


def test_a_long_pipeline_pauses_reading_and_completes(serve, raw):
    reading: list[bool] = []

    async def handler(request: Request) -> str:
        reading.append(request._transport.is_reading())
        await asyncio.sleep(0.001)
        return request.query["i"]

    server = serve(handler)
    conn = raw(server.port)
    count = 300  # more than the 32 a connection queues before it stops reading
    conn.send(b"".join(get(f"/?i={i}") for i in range(count)))
    seen = [conn.response()[2].decode() for _ in range(count)]
    assert seen == [str(i) for i in range(count)]
    assert reading[0] is False  # 299 requests were waiting: the connection stopped reading
    assert reading[-1] is True  # and read again once they were answered


@pytest.mark.parametrize("loop", LOOPS)
def test_chunked_request_body(serve, raw, loop):
    server = serve(echo, loop=loop)
    conn = raw(server.port)
    conn.send(
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    status, _, body = conn.response()
    assert status == 200
    assert json.loads(body)["body"] == "hello world!"
    # the chunks may also arrive one by one
    conn.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    for piece in (b"3\r\nabc\r\n", b"3\r\ndef\r\n", b"0\r\n\r\n"):
        time.sleep(0.01)
        conn.send(piece)
    assert json.loads(conn.response()[2])["body"] == "abcdef"


def test_a_body_in_tiny_chunks_is_not_kept_as_an_object_per_chunk(serve, raw):
    # 100,000 chunks of 2 bytes: kept as one bytes object each, the 200 KB body held ~4.5 MB
    # (27 MB for a 1 MiB body: a cheap way for a client to make a worker bloat)
    import tracemalloc

    async def peak(request: Request) -> Any:
        return {"peak": tracemalloc.get_traced_memory()[1], "ok": request.body == b"ab" * 100000}

    server = serve(peak)
    conn = raw(server.port)
    request = (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"2\r\nab\r\n" * 100000 + b"0\r\n\r\n")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = json.loads(conn.send(request).response()[2])
    finally:
        tracemalloc.stop()
    assert result["ok"]
    assert result["peak"] - base < 2_000_000, result["peak"] - base  # 0.8 MB here


def test_header_values_exclude_the_whitespace_around_them(serve, raw):
    server = serve(echo)
    conn = raw(server.port).send(get("/", "X-Token: \t secret  \t\r\nX-Empty:   \r\n"))
    described = json.loads(conn.response()[2])
    assert described["headers"] == [["host", "t"], ["x-token", "secret"], ["x-empty", ""]]


def test_trailer_fields_are_dropped_and_count_toward_the_header_limit(serve, raw):
    server = serve(echo)
    conn = raw(server.port)
    conn.send(
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Trailer: t\r\nHost: evil\r\n\r\n"
    )
    described = json.loads(conn.response()[2])
    assert described["body"] == "abc"
    assert described["headers"] == [["host", "t"], ["transfer-encoding", "chunked"]]

    # an endless trailer section is cut off at the header limit, as an endless header block is
    conn = raw(server.port)
    conn.send(
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
    )
    line = b"X-Pad: " + b"p" * 1000 + b"\r\n"
    try:
        for _ in range(8):  # 32 KiB in all, twice the limit
            conn.send(line * 4)
            time.sleep(0.005)
        conn.send(b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, headers, _ = conn.response()
    assert (status, headers["connection"]) == (431, "close")
    assert httpx.get(server.url + "/after").json()["path"] == "/after"


def test_an_http_1_0_request_with_transfer_encoding_is_400(serve, raw):
    """RFC 9112, 6.1: the framing of an HTTP/1.0 message with Transfer-Encoding is faulty."""
    server = serve(echo)
    for body in (b"3\r\nabc\r\n0\r\n\r\n", b"0\r\n\r\n"):
        conn = raw(server.port)
        conn.send(b"POST /up HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + body)
        status, headers, _ = conn.response()
        assert (status, headers["connection"]) == (400, "close")
    assert httpx.get(server.url + "/after").json()["path"] == "/after"


def test_content_length_body_in_pieces(serve, raw):
    server = serve(echo)
    conn = raw(server.port)
    conn.send(b"PUT /p HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
    time.sleep(0.05)
    conn.send(b"56789")
    assert json.loads(conn.response()[2])["body"] == "0123456789"


async def streams(request: Request) -> Response:
    kind = request.path.strip("/")

    async def agen() -> Any:
        for part in ("one ", "", b"two ", "three"):  # the empty chunk must not end the body
            await asyncio.sleep(0)
            yield part

    if kind == "async":
        return Response(agen())
    if kind == "sync":
        return Response(iter(["a", "b", "c"]), content_type="text/plain")
    if kind == "length":
        return Response(agen(), headers={"Content-Length": "13"})
    if kind == "short":
        return Response(agen(), headers={"Content-Length": "99"})
    if kind == "broken":

        async def broken() -> Any:
            yield "start"
            raise RuntimeError("mid-body")

        return Response(broken())
    return Response("plain")


def test_streamed_responses(serve, raw):
    server = serve(streams)
    conn = raw(server.port)
    conn.send(get("/async"))
    status, headers, body = conn.response()
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert body == b"one two three"
    conn.send(get("/sync"))
    status, headers, body = conn.response()
    assert (headers["content-type"], body) == ("text/plain", b"abc")
    conn.send(get("/length"))
    status, headers, body = conn.response()
    assert "transfer-encoding" not in headers
    assert (headers["content-length"], body) == ("13", b"one two three")
    conn.send(get("/plain"))
    assert conn.response()[2] == b"plain"  # the connection is still in step

    # HTTP/1.0 knows no chunked encoding: the body ends with the connection
    conn = raw(server.port).send(get("/async", version="1.0"))
    status, headers, body = conn.response()
    assert headers["connection"] == "close" and "transfer-encoding" not in headers
    assert body == b"one two three"


def test_streamed_memoryview_chunks_are_framed_by_their_bytes(serve, raw):
    """len() of a memoryview counts its items: a view of 4-byte ints must still be framed (chunk
    size, Content-Length) by its bytes, or the client reads a corrupt body."""
    ints = array.array("i", [1, 2])

    async def handler(request: Request) -> Response:
        chunks = [memoryview(ints), bytearray(b"!")]
        headers = {"Content-Length": "9"} if request.path == "/length" else None
        return Response(iter(chunks), headers=headers)

    server = serve(handler)
    conn = raw(server.port)
    for path in ("/chunked", "/length"):
        conn.send(get(path))
        assert conn.response()[2] == ints.tobytes() + b"!"
    conn.send(get("/chunked"))
    assert conn.response()[2] == ints.tobytes() + b"!"  # the connection is still in step


@pytest.mark.parametrize("kind", ["broken", "short"])
def test_a_failed_stream_closes_the_connection(serve, raw, caplog, kind):
    server = serve(streams)
    conn = raw(server.port).send(get(f"/{kind}"))
    conn.read_until(b"\r\n\r\n")
    conn.read_to_eof()  # the server closes instead of pretending the body is complete
    assert any("streaming the body failed" in r.getMessage() for r in caplog.records)
    assert httpx.get(server.url + "/plain").text == "plain"


def test_head_has_the_get_headers_and_no_body(serve, raw):
    server = serve(streams)
    conn = raw(server.port)
    conn.send(get("/plain"))
    _, get_headers, _ = conn.response()
    conn.send(b"HEAD /plain HTTP/1.1\r\nHost: t\r\n\r\n" + get("/plain"))
    status, head_headers, _ = conn.response(head_only=True)
    assert status == 200
    assert head_headers["content-length"] == get_headers["content-length"] == "5"
    assert head_headers["content-type"] == get_headers["content-type"]
    assert conn.response()[2] == b"plain"  # no body bytes came between the two
    conn.send(b"HEAD /async HTTP/1.1\r\nHost: t\r\n\r\n" + get("/plain"))
    assert conn.response(head_only=True)[1]["transfer-encoding"] == "chunked"
    assert conn.response()[2] == b"plain"


def test_head_of_a_plain_return_value(serve, raw):
    server = serve(returns)
    conn = raw(server.port)
    conn.send(b"HEAD /dict HTTP/1.1\r\nHost: t\r\n\r\n" + get("/bytes"))
    _, headers, _ = conn.response(head_only=True)
    assert headers["content-length"] == str(len('{"a":[1,2],"é":null}'.encode()))
    assert conn.response()[2] == b"\x00\x01"


def test_head_answered_without_a_body_keeps_the_content_length_the_handler_set(serve, raw):
    """A handler that answers HEAD itself (a file's size from stat, no read) leaves the body out
    and sets Content-Length: the client gets that length, as GET would, not 0 (RFC 9110, 9.3.2;
    uvicorn and Node send it as set). A body the handler did send still has its own length."""

    async def files(request: Request) -> Response:
        body = b"" if request.method == "HEAD" else b"x" * 1000
        if request.path == "/sent":
            body = b"x" * 1000
        return Response(body, headers={"Content-Length": "1000"})

    server = serve(files)
    conn = raw(server.port)
    conn.send(get("/file"))
    _, get_headers, body = conn.response()
    assert body == b"x" * 1000
    conn.send(b"HEAD /file HTTP/1.1\r\nHost: t\r\n\r\n" + get("/file"))
    status, head_headers, _ = conn.response(head_only=True)
    assert status == 200
    assert head_headers["content-length"] == get_headers["content-length"] == "1000"
    assert head_headers["content-type"] == get_headers["content-type"]
    assert conn.response()[2] == b"x" * 1000  # no body bytes came between the two
    conn.send(b"HEAD /sent HTTP/1.1\r\nHost: t\r\n\r\n" + get("/file"))
    assert conn.response(head_only=True)[1]["content-length"] == "1000"
    assert conn.response()[2] == b"x" * 1000


# -- 100-continue and limits -------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_expect_100_continue(serve, raw, loop):
    server = serve(echo, loop=loop)
    conn = raw(server.port)
    conn.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert conn.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.send(b"hello")
    status, _, body = conn.response()
    assert status == 200 and json.loads(body)["body"] == "hello"


def test_expect_100_continue_over_the_limit_is_413_before_the_body(serve, raw):
    server = serve(echo, HttpLimits(max_body_bytes=1000))
    conn = raw(server.port)
    conn.send(
        b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n"
    )
    status, headers, _ = conn.response()
    assert (status, headers["connection"]) == (413, "close")
    assert conn.closed()


def test_body_over_the_limit_is_413(serve, raw):
    server = serve(echo, HttpLimits(max_body_bytes=1000))
    conn = raw(server.port)
    conn.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
    assert conn.response()[0] == 413  # at once, from Content-Length alone
    assert conn.closed()

    conn = raw(server.port)
    conn.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.send(b"200\r\n" + b"x" * 512 + b"\r\n")
    conn.send(b"200\r\n" + b"x" * 512 + b"\r\n")  # 1024 > 1000
    assert conn.response()[0] == 413
    assert conn.closed()

    body = b"x" * 1000  # exactly the limit is fine
    response = httpx.post(server.url + "/up", content=body)
    assert response.status_code == 200 and response.json()["body"] == body.decode()


@pytest.mark.parametrize("split", [False, True])
def test_headers_over_the_limit_are_431(serve, raw, split):
    server = serve(echo)
    big = "X-Big: " + "b" * 17000 + "\r\n"
    request = get("/", big)
    conn = raw(server.port)
    if split:  # a slow client: the header block arrives in small pieces
        for i in range(0, len(request), 4096):
            try:
                conn.send(request[i : i + 4096])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.005)
    else:
        conn.send(request)
    status, headers, _ = conn.response()
    assert (status, headers["connection"]) == (431, "close")
    assert httpx.get(server.url + "/after").json()["path"] == "/after"


def test_headers_just_under_the_limit_are_fine(serve, raw):
    server = serve(echo)
    headers = "".join(f"X-H{i}: {'v' * 1000}\r\n" for i in range(14))  # ~14 KiB
    conn = raw(server.port).send(get("/", headers))
    assert conn.response()[0] == 200


def test_a_long_url_is_431(serve, raw):
    server = serve(echo)
    conn = raw(server.port).send(get("/" + "u" * 20000))
    assert conn.response()[0] == 431


# -- lingering close: an error found while the client is still sending --------------------------

BIG_POST = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n"


def send_all(conn: Raw, data: bytes) -> OSError | None:
    """``sendall``; the error it raised (a reset, a broken pipe), or None."""
    try:
        conn.sock.sendall(data)
    except OSError as exc:
        return exc
    return None


def lingering(server: Server) -> int:
    return server.call(lambda: len(server.state.lingering))


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("served", ["directly", "by the event loop"])
def test_a_413_reaches_a_client_still_sending_its_body(serve, raw, loop, served):
    """The 413 is found from Content-Length while the client sends its 2 MB body. Closing over
    the unread body would send a reset: the client's send fails and the 413 may be destroyed
    before it reads it. The worker shuts its side, reads and drops the rest until the client's
    EOF (nginx's lingering close), so the send completes and the 413 is read, then EOF."""
    server = serve(echo, loop=loop, accept=False)
    conn = raw(server.port)
    body = b"x" * 2_000_000
    if served == "directly":  # the head and some body are there when the worker reads
        conn.send(BIG_POST + body[:60000])
        server.hand_over()
        rest = body[60000:]
    else:
        server.hand_over(sent=False)
        rest = BIG_POST + body
    assert send_all(conn, rest) is None
    status, headers, answer = conn.response()
    assert (status, headers["connection"], answer) == (413, "close", b"Request Entity Too Large")
    assert conn.read_to_eof() == b""
    assert lingering(server) == 1  # until the client closes its side
    conn.sock.shutdown(socket.SHUT_WR)
    assert wait_for(lambda: lingering(server) == 0)
    assert server.call(lambda: server.state.status_summary()) == {"4xx": 1}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("served", ["directly", "by the event loop"])
def test_a_431_reaches_a_client_that_sends_a_huge_head_whole(serve, raw, loop, served):
    server = serve(echo, loop=loop, accept=False)
    conn = raw(server.port)
    head = get("/", "X-Big: " + "b" * 100_000 + "\r\n")
    if served == "directly":  # more than the worker's first read is there: it answers from it
        conn.send(head[:70000])
        server.hand_over()
        head = head[70000:]
    else:
        server.hand_over(sent=False)
    assert send_all(conn, head) is None
    status, headers, _ = conn.response()
    assert (status, headers["connection"]) == (431, "close")
    assert conn.read_to_eof() == b""
    # the worker still reads (and drops) what comes: the connection was not closed under it
    for _ in range(2):
        assert send_all(conn, b"more") is None
        time.sleep(0.02)
    conn.close()
    assert wait_for(lambda: lingering(server) == 0)
    conn = raw(server.port).send(get("/after"))
    server.hand_over()
    assert json.loads(conn.response()[2])["path"] == "/after"


def test_a_client_that_never_closes_is_closed_after_the_linger_time(serve, raw, monkeypatch):
    """Lingering is bounded (LINGER_TIME, 2 s), and neither the sweep nor a graceful stop
    waits for it: the connection is no longer one of the live ones."""
    monkeypatch.setattr(http_protocol, "LINGER_TIME", 0.3)
    server = serve(echo, HttpLimits(keepalive_timeout=0.05), sweep=0.05)
    conn = raw(server.port).send(BIG_POST + b"x" * 1000)
    assert conn.response()[0] == 413
    started = time.monotonic()
    assert conn.read_to_eof() == b""  # the worker's side is shut; it still reads ours
    assert (lingering(server), server.connections()) == (1, 0)
    server.call(server.state.drain, False)
    assert server.call(server.state.wait_closed, 0.1) is True  # does not wait for it
    conn.send(b"x" * 1000)  # still read and dropped
    time.sleep(0.1)
    assert lingering(server) == 1  # the sweep left it alone
    assert wait_for(lambda: lingering(server) == 0)
    assert 0.25 < time.monotonic() - started < 1.0
    # closed for good: the client's next bytes get a reset
    errors = [send_all(conn, b"x") or time.sleep(0.05) for _ in range(5)]
    assert any(isinstance(error, OSError) for error in errors)


def test_lingering_drops_a_bounded_number_of_bytes(serve, raw, monkeypatch):
    monkeypatch.setattr(http_protocol, "LINGER_MAX_BYTES", 256 * 1024)
    server = serve(echo)
    conn = raw(server.port)
    started = time.monotonic()
    assert send_all(conn, BIG_POST + b"x" * 2_000_000) is None  # into the socket buffers
    assert wait_for(lambda: lingering(server) == 0)  # the client has not closed: the bytes bound
    assert time.monotonic() - started < 1.0  # (not LINGER_TIME)
    errors = [send_all(conn, b"x" * 65536) or time.sleep(0.02) for _ in range(5)]
    assert any(isinstance(error, OSError) for error in errors)  # closed for good


def test_a_lingering_connection_is_aborted_by_close_all(serve, raw):
    server = serve(echo)
    conn = raw(server.port).send(BIG_POST)
    assert conn.response()[0] == 413
    assert wait_for(lambda: lingering(server) == 1)
    server.call(server.state.close_all)
    assert conn.closed()
    assert lingering(server) == 0


def test_an_http_1_1_request_without_host_is_400(serve, raw):
    """RFC 9112, 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, as Node,
    nginx and h11 do; a handler may rely on it. HTTP/1.0 has no Host to require."""
    server = serve(echo)
    conn = raw(server.port).send(b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n" + get("/"))
    assert conn.response()[0] == 400
    assert conn.closed()
    conn = raw(server.port).send(b"GET / HTTP/1.1\r\n\r\n")
    assert conn.response()[0] == 400
    conn = raw(server.port).send(b"GET / HTTP/1.1\r\nX-A: b\r\nhost: t\r\n\r\n")
    status, _, body = conn.response()
    assert status == 200 and ["host", "t"] in json.loads(body)["headers"]
    conn = raw(server.port).send(b"GET / HTTP/1.0\r\n\r\n")
    assert conn.response()[0] == 200


def test_the_access_log_has_a_line_per_response(serve, raw):
    """--access-log: client, request line, status and time, as uvicorn's; also for a handler
    that returned None (204, not 200), one that raised (500) and a request that could not be
    read (no request line: "-")."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("actorcluster.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)

    async def app(request: Request) -> Any:
        if request.path == "/raise":
            raise RuntimeError("boom")
        if request.path == "/none":
            return None
        return Response(b"", status=418) if request.path == "/teapot" else "ok"

    try:
        server = serve(app)
        server.state.access_log = server.state.timed = True  # as HttpWorker sets it up
        post = b"POST /raise HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        conn = raw(server.port).send(get("/a?b=1") + get("/teapot") + get("/none") + post)
        assert [conn.response()[0] for _ in range(4)] == [200, 418, 204, 500]
        conn = raw(server.port).send(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        assert conn.response()[0] == 400
        wait_for(lambda: len(lines) >= 5)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    patterns = [r'GET /a\?b=1 HTTP/1.1" 200', r'GET /teapot HTTP/1.1" 418',
                r'GET /none HTTP/1.1" 204', r'POST /raise HTTP/1.1" 500', r'"-" 400$']
    assert len(lines) == 5, lines
    for line, pattern in zip(lines, patterns, strict=True):
        assert re.fullmatch(r'127\.0\.0\.1:\d+ - "' + r"(.*)", line), line
        assert re.search(pattern, line), (pattern, line)
        assert pattern.endswith("$") or re.search(r"\d \d+\.\dms$", line), line


@pytest.mark.parametrize(
    ("host_lines", "status"),
    [
        (b"Host: a\r\nHost: b\r\n", 400),  # which one would a proxy in front have used?
        (b"Host: a\r\nX-A: b\r\nhost: a\r\n", 400),  # even the same value twice
        (b"Host: a b\r\n", 400),
        (b"Host: evil.example/path\r\n", 400),
        (b"Host: user@evil.example\r\n", 400),
        (b"Host: \xc3\xa9.example\r\n", 400),
        (b"X-A: b\r\nHost: a\\b\r\n", 400),  # checked on the slow path too
        (b"Host: \r\n", 200),  # RFC 9112, 3.2: empty when the target has no authority
        (b"Host: a \t\r\n", 200),  # whitespace around a value is not part of it
        (b"Host: [::1]:8000\r\n", 200),
        (b"Host: xn--e1afmkfd.example:80\r\n", 200),
        (b"X-A: b\r\nHost: a-b_c~d.%41!$&'()*+,;=\r\n", 200),
    ],
)
def test_more_than_one_host_or_a_host_that_is_no_host_is_400(serve, raw, host_lines, status):
    """RFC 9112, 3.2: a server MUST answer 400 to a request with more than one Host field line
    or a Host whose value is not uri-host [":" port]; the worker goes on serving others."""
    server = serve(echo)
    conn = raw(server.port).send(b"GET / HTTP/1.1\r\n" + host_lines + b"\r\n" + get("/"))
    assert conn.response()[0] == status
    if status == 400:
        assert conn.closed()
    else:
        assert conn.response()[0] == 200
    assert raw(server.port).send(get("/")).response()[0] == 200


@pytest.mark.parametrize(
    ("coding", "status"),
    [
        (b"Transfer-Encoding: gzip, chunked\r\n", 501),  # a coding we cannot undo (as h11)
        (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 501),
        (b"Transfer-Encoding: chunked, chunked\r\n", 400),  # RFC 9112, 6.1: at most once
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Transfer-Encoding:  Chunked \r\n", 200),
    ],
)
def test_a_transfer_coding_other_than_chunked_is_refused(serve, raw, coding, status):
    """The handler gets the body as sent: a body in a coding the worker does not decode (gzip
    under chunked) would reach it as if it were plain. 501 as h11 answers; the worker goes on."""
    server = serve(echo)
    for body in (b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n"):
        conn = raw(server.port).send(b"POST / HTTP/1.1\r\nHost: t\r\n" + coding + b"\r\n"
                                     + body + get("/"))
        assert conn.response()[0] == status
        if status != 200:
            assert conn.closed()
    assert raw(server.port).send(get("/")).response()[0] == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ],
)
def test_malformed_requests_are_400_and_the_server_goes_on(serve, raw, request_bytes):
    server = serve(echo)
    conn = raw(server.port).send(request_bytes)
    status, headers, body = conn.response()
    assert (status, headers["connection"], body) == (400, "close", b"Bad Request")
    assert conn.closed()
    assert httpx.get(server.url + "/next").status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/2.0\r\nHost: t\r\n\r\n",
        b"POST / HTTP/2.0\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        b"GET / HTTP/0.9\r\n\r\n",
        b"GET /\r\n\r\n",  # HTTP/0.9's form
    ],
)
def test_http_versions_other_than_1_0_and_1_1_are_505(serve, raw, request_bytes):
    server = serve(echo)
    conn = raw(server.port).send(request_bytes)
    status, headers, _ = conn.response()
    assert (status, headers["connection"]) == (505, "close")
    assert conn.closed()
    assert httpx.get(server.url + "/next").json()["version"] == "1.1"


def test_an_error_after_pipelined_requests_comes_after_their_answers(serve, raw):
    server = serve(echo)
    conn = raw(server.port)
    conn.send(get("/sleep/0.05?i=0") + get("/?i=1") + b"GARBAGE\r\n\r\n")
    assert [conn.response()[0] for _ in range(3)] == [200, 200, 400]
    assert conn.closed()


def test_upgrade_requests_are_501(serve, raw):
    server = serve(echo)
    conn = raw(server.port)
    conn.send(get("/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\n"))
    status, headers, _ = conn.response()
    assert (status, headers["connection"]) == (501, "close")
    assert conn.closed()
    assert httpx.get(server.url + "/next").status_code == 200


def test_an_offer_to_switch_to_h2c_is_ignored_and_answered_in_http11(serve, raw):
    # what curl --http2 sends for an http:// URL; it goes on in HTTP/1.1 when not switched
    server = serve(echo)
    offer = (
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
    )
    conn = raw(server.port).send(get("/first", offer) + get("/second"))
    status, headers, body = conn.response()
    assert (status, json.loads(body)["path"]) == (200, "/first")
    assert "upgrade" not in headers and "connection" not in headers
    status, _, body = conn.response()
    assert (status, json.loads(body)["path"]) == (200, "/second")
    # with a body, the parser took the body for the new protocol's bytes: still refused
    conn = raw(server.port).send(
        b"POST /up HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 3\r\n\r\nabc"
    )
    assert conn.response()[0] == 501


# -- timeouts, draining, closing ---------------------------------------------------------------


def test_idle_keep_alive_connections_are_closed(serve, raw):
    server = serve(echo, HttpLimits(keepalive_timeout=0.2), sweep=0.05)
    idle = raw(server.port).send(get("/"))
    busy = raw(server.port).send(get("/sleep/0.6"))
    assert idle.response()[0] == 200
    started = time.monotonic()
    assert idle.closed()  # blocks until the sweep closes it
    assert 0.15 < time.monotonic() - started < 1.5
    assert busy.response()[0] == 200  # a request in progress is not idle


def trickle(conn: Raw, pieces: list[bytes], every: float, until: float) -> int:
    """Send ``pieces`` one by one, ``every`` seconds apart, until the server closes the
    connection or ``until`` seconds pass; how many were sent."""
    started = time.monotonic()
    for sent, piece in enumerate(pieces):
        if time.monotonic() - started > until:
            return sent
        try:
            conn.sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return sent
        time.sleep(every)
    return len(pieces)


@pytest.mark.parametrize(
    ("what", "head", "pieces"),
    [
        ("headers", b"GET /slow HTTP/1.1\r\nHost: t\r\n", [b"X-A: 1\r\n"] * 40),
        ("body", b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n",
         [b"x"] * 40),
    ],
)
def test_a_request_trickling_in_gets_408_in_bounded_time(
    serve, raw, monkeypatch, what, head, pieces
):
    # slowloris: a byte now and then keeps the connection from ever being idle
    monkeypatch.setattr(http_protocol, "LINGER_TIME", 0.2)  # after the 408: the thread's end
    limits = HttpLimits(keepalive_timeout=5.0, headers_timeout=1.0, request_timeout=2.0)
    server = serve(echo, limits, sweep=0.1)
    slow = raw(server.port).send(get("/") + head)
    assert slow.response()[0] == 200  # a request before it on the connection is answered
    started = time.monotonic()
    # pieces in a thread: a sendall to a closed connection must not stop the test's reads
    thread = threading.Thread(target=trickle, args=(slow, pieces, 0.2, 6.0), daemon=True)
    thread.start()
    status, headers, body = slow.response()
    waited = time.monotonic() - started
    assert (status, headers["connection"], body) == (408, "close", b"Request Timeout")
    assert (0.9 if what == "headers" else 1.9) < waited < 4.0
    assert slow.closed()
    thread.join(7)
    with httpx.Client(base_url=server.url) as client:  # the worker serves on
        assert client.get("/").status_code == 200
    assert server.call(lambda: server.state.status_summary()) == {"2xx": 2, "4xx": 1}


def test_a_request_that_stops_arriving_gets_408_after_the_idle_timeout(serve, raw):
    server = serve(echo, HttpLimits(keepalive_timeout=0.5), sweep=0.1)
    stalled = raw(server.port).send(b"GET / HTTP/1.1\r\nHost: t\r\nX-A:")
    started = time.monotonic()
    status, headers, _ = stalled.response()
    assert (status, headers["connection"]) == (408, "close")
    assert 0.4 < time.monotonic() - started < 2.0
    assert stalled.closed()


def test_requests_that_each_arrive_whole_never_time_out(serve, raw):
    # The timeouts bound a request from its first byte to its last, not a connection's life:
    # complete requests now and then (and one that spans two sends, quickly) are all served.
    limits = HttpLimits(keepalive_timeout=5.0, headers_timeout=0.5, request_timeout=0.5)
    server = serve(echo, limits, sweep=0.1)
    conn = raw(server.port)
    for i in range(8):
        request = get(f"/?i={i}")
        conn.sock.sendall(request[:10])
        time.sleep(0.05)
        conn.sock.sendall(request[10:])
        status, _, body = conn.response()
        assert (status, json.loads(body)["query"]) == (200, [["i", str(i)]])
        time.sleep(0.2)  # 1.6 s in all, three times the timeouts


@pytest.mark.parametrize("loop", LOOPS)
def test_drain_closes_idle_connections_and_finishes_requests_in_progress(serve, raw, loop):
    server = serve(echo, loop=loop)
    idle = raw(server.port).send(get("/"))
    assert idle.response()[0] == 200
    busy = raw(server.port).send(get("/sleep/0.3") + get("/?never"))
    time.sleep(0.1)
    assert server.connections() == 2
    server.call(server.state.drain)
    assert idle.closed()
    status, headers, _ = busy.response()
    assert (status, headers["connection"]) == (200, "close")
    assert busy.closed()  # the pipelined second request was not started
    assert server.call(server.state.wait_closed, 2) is True


def test_wait_closed_times_out_and_close_all_aborts(serve, raw):
    server = serve(echo)
    conn = raw(server.port).send(get("/sleep/5"))
    time.sleep(0.1)
    server.call(server.state.drain)
    assert server.call(server.state.wait_closed, 0.1) is False
    server.call(server.state.close_all)
    assert conn.closed()
    assert server.call(server.state.wait_closed, 1) is True


@pytest.mark.parametrize("loop", LOOPS)
def test_client_half_close_still_gets_its_answers(serve, raw, loop):
    server = serve(echo, loop=loop)
    conn = raw(server.port)
    conn.send(get("/sleep/0.05?i=0") + get("/?i=1"))
    conn.sock.shutdown(socket.SHUT_WR)
    assert [conn.response()[0] for _ in range(2)] == [200, 200]
    assert conn.closed()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_and_at_once_half_close_gets_its_answer(serve, raw, loop):
    # the answer waits for the end of the loop turn; the end of input must not lose it
    async def handler(request: Request) -> str:
        return "quick"

    server = serve(handler, loop=loop)
    for _ in range(20):
        conn = raw(server.port)
        conn.send(get("/") + get("/"))
        conn.sock.shutdown(socket.SHUT_WR)
        assert [conn.response()[2] for _ in range(2)] == [b"quick", b"quick"]
        assert conn.closed()


def test_client_gone_mid_request(serve, raw):
    server = serve(echo)
    conn = raw(server.port).send(get("/sleep/0.1"))
    conn.close()
    time.sleep(0.2)
    assert server.connections() == 0
    assert httpx.get(server.url + "/").status_code == 200


# -- flow control ------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_a_full_transport_stops_reading_and_handling(serve, raw, loop):
    handled: list[str] = []

    async def handler(request: Request) -> Any:
        handled.append(request.path)
        if request.path == "/big":
            return b"x" * (16 << 20)
        return "small"

    server = serve(handler, loop=loop)
    conn = raw(server.port, rcvbuf=16384)
    conn.send(get("/big") + get("/small"))
    [protocol] = wait_for(lambda: server.call(lambda: list(server.state.connections)))
    # the client reads nothing: the server's transport fills up
    assert wait_for(lambda: server.call(lambda: protocol._write_paused))
    time.sleep(0.1)
    assert handled == ["/big"]  # the second request waits for the transport to drain
    assert len(conn.response()[2]) == 16 << 20
    assert conn.response()[2] == b"small"
    assert handled == ["/big", "/small"]


def test_a_stream_waits_while_the_client_does_not_read(serve, raw):
    produced = []

    async def handler(request: Request) -> Response:
        async def body() -> Any:
            for i in range(10000):  # 640 MiB if nothing held it back
                produced.append(i)
                yield b"y" * 65536

        return Response(body())

    server = serve(handler)
    conn = raw(server.port, rcvbuf=4096)
    conn.send(get("/"))
    time.sleep(0.3)
    assert 0 < len(produced) < 500
    conn.close()
    time.sleep(0.1)
    assert server.connections() == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_a_stream_waiting_for_its_next_chunk_is_closed_when_the_client_goes(serve, raw, loop):
    """An event stream on a quiet channel: the connection is lost (the client resets it) while
    the generator waits for its next event. The generator is closed then (its finally runs), not
    when its next event comes an hour later. (A client's FIN alone is a half-close, after which
    a client may still read: the stream goes on until a write fails.)"""
    events: list[str] = []

    async def handler(request: Request) -> Response:
        async def body() -> Any:
            try:
                yield "data: hello\n\n"
                await asyncio.sleep(3600)  # no event for an hour
                yield "data: late\n\n"
            finally:
                events.append("closed")

        return Response(body(), content_type="text/event-stream")

    server = serve(handler, loop=loop)
    conn = raw(server.port)
    conn.send(get("/"))
    conn.read_until(b"data: hello")
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # with linger 0: a reset
    assert wait_for(lambda: events) == ["closed"]
    assert wait_for(lambda: server.connections() == 0)
    assert server.call(lambda: [t for t in asyncio.all_tasks() if "_send_stream" in repr(t)]) == []


# -- a handed-off connection served before the event loop has it (direct.py) --------------
#
# The client sends before the server accepts (Server.hand_over), so what it sent is in the
# socket's buffer when the worker gets it, as when the primary hands a connection over.


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_already_there_is_answered_without_the_event_loop(serve, raw, loop):
    server = serve(echo, loop=loop, accept=False)
    conn = raw(server.port).send(get("/one", "Connection: close\r\n"))
    protocol = server.hand_over()
    status, headers, body = conn.response()
    assert (status, headers["connection"]) == (200, "close")
    answer = json.loads(body)
    assert answer["path"] == "/one"
    assert answer["client"] == list(conn.sock.getsockname())  # peername, from the socket itself
    assert conn.closed()
    assert wait_for(lambda: server.connections() == 0)
    # served by plain system calls: the event loop never adopted the socket
    assert isinstance(server.call(lambda: protocol.transport), DirectTransport)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_keep_alive_connection_is_adopted_by_the_event_loop_after_its_first_answer(
    serve, raw, loop
):
    server = serve(echo, loop=loop, accept=False)
    conn = raw(server.port).send(get("/one"))
    protocol = server.hand_over()
    assert json.loads(conn.response()[2])["path"] == "/one"
    wait_for(lambda: not isinstance(server.call(lambda: protocol.transport), DirectTransport))
    for path in ("/two", "/three"):
        conn.send(get(path))
        assert json.loads(conn.response()[2])["path"] == path
    conn.send(get("/four") + get("/five"))  # pipelined, read by the event loop's transport
    assert [json.loads(conn.response()[2])["path"] for _ in "ab"] == ["/four", "/five"]


@pytest.mark.parametrize("loop", LOOPS)
def test_reading_paused_by_a_long_pipeline_stays_paused_once_the_event_loop_has_it(
    serve, raw, loop
):
    """40 pipelined requests in the first read pause reading (MAX_PIPELINE) while the first one
    waits; the event loop adopts the socket meanwhile and must not read more (uvloop starts
    reading after connection_made, which lost a pause made in it). Answered in order after."""
    go = asyncio.Event()

    async def handler(request: Request) -> str:
        if request.path == "/first":
            await go.wait()
        return request.path

    server = serve(handler, loop=loop, accept=False)
    conn = raw(server.port).send(get("/first") + b"".join(get(f"/{i}") for i in range(40)))
    protocol = server.hand_over()
    assert wait_for(
        lambda: not isinstance(server.call(lambda: protocol.transport), DirectTransport)
    )
    conn.send(get("/more"))
    time.sleep(0.05)
    queued, reading = server.call(lambda: (len(protocol._queue), protocol.transport.is_reading()))
    assert (queued, reading) == (40, False)
    server.call(go.set)
    paths = [conn.response()[2] for _ in range(42)]
    assert paths == [b"/first"] + [f"/{i}".encode() for i in range(40)] + [b"/more"]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("sent", ["nothing", "half the headers", "the headers", "half the body"])
def test_a_request_not_all_there_is_read_by_the_event_loop(serve, raw, loop, sent):
    server = serve(echo, loop=loop, accept=False)
    message = (
        b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        b"0123456789"
    )
    split = {"nothing": 0, "half the headers": 20, "the headers": len(message) - 10,
             "half the body": len(message) - 5}[sent]
    conn = raw(server.port)
    if split:
        conn.send(message[:split])
    server.hand_over(sent=bool(split))
    time.sleep(0.05)
    conn.send(message[split:])
    status, _, body = conn.response()
    assert (status, json.loads(body)["body"]) == (200, "0123456789")
    assert conn.closed()
    assert wait_for(lambda: server.connections() == 0)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("keep_alive", [False, True])
@pytest.mark.parametrize("kind", ["bytes", "stream"])
def test_an_answer_the_socket_cannot_take_at_once_is_finished_by_the_event_loop(
    serve, raw, loop, keep_alive, kind
):
    """8 MiB to a client that reads nothing for 0.2 s: the socket takes part of it, the event
    loop adopts the socket and writes the rest (a stream is paused meanwhile), then closes or
    serves the next request in order."""
    big = bytes(range(256)) * (8 * 4096)

    def handler(request: Request) -> Any:
        if request.path == "/small":
            return "small"
        if kind == "bytes":
            return big
        return Response(iter([big[i:i + 16384] for i in range(0, len(big), 16384)]))

    server = serve(handler, loop=loop, accept=False)
    conn = raw(server.port, rcvbuf=65536)
    if keep_alive:
        conn.send(get("/big") + get("/small"))
    else:
        conn.send(get("/big", "Connection: close\r\n"))
    server.hand_over()
    time.sleep(0.2)
    status, headers, body = conn.response()
    assert (status, len(body)) == (200, len(big)) and body == big
    if keep_alive:
        assert conn.response()[2] == b"small"
        conn.send(get("/small", "Connection: close\r\n"))
        assert conn.response()[2] == b"small"
    else:
        assert headers["connection"] == "close"
    assert conn.closed()
    assert wait_for(lambda: server.connections() == 0)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("how", ["closed", "reset", "request then reset"])
def test_a_client_gone_before_the_worker_reads_costs_nothing(serve, raw, loop, how, caplog):
    server = serve(echo, loop=loop, accept=False)
    conn = raw(server.port)
    if how == "request then reset":
        conn.send(get("/"))
    if how != "closed":
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    server.hand_over()
    assert wait_for(lambda: server.connections() == 0)
    # the server goes on
    conn = raw(server.port).send(get("/after", "Connection: close\r\n"))
    server.hand_over()
    assert json.loads(conn.response()[2])["path"] == "/after"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_answered_directly_is_freed_by_reference_counting(serve, raw, loop):
    """A protocol and its DirectTransport refer to each other; unless the transport forgets the
    protocol at connection_lost (as the event loop's transports do), each connection served
    without the event loop would be a cycle left to the garbage collector."""
    server = serve(echo, loop=loop)

    def alive() -> int:
        kinds = (HttpProtocol, DirectTransport)
        return server.call(lambda: sum(isinstance(o, kinds) for o in gc.get_objects()))

    gc.collect()
    gc.disable()
    try:
        before = alive()
        for _ in range(10):
            conn = raw(server.port).send(get("/", "Connection: close\r\n"))
            assert conn.response()[0] == 200 and conn.closed()
        assert wait_for(lambda: server.connections() == 0)
        assert alive() == before
    finally:
        gc.enable()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("kind", ["async", "plain"])
def test_request_client_of_a_request_whose_client_reset_before_the_event_loop_had_it(
    serve, raw, loop, kind, caplog
):
    """The request is read directly; the client resets; the handler waits, so the event loop
    adopts a dead socket (uvloop's transport of it has no socket object), then the handler asks
    for request.client: None (the peer is gone, as asyncio answers), not a 500 and a traceback."""
    seen: list[Any] = []

    async def waits(request: Request) -> str:
        await asyncio.sleep(0.1)
        seen.append(request.client)
        return "late"

    def blocks(request: Request) -> str:
        time.sleep(0.1)
        seen.append(request.client)
        return "late"

    server = serve(waits if kind == "async" else blocks, loop=loop, accept=False)
    conn = raw(server.port).send(get("/"))
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    server.hand_over()
    assert wait_for(lambda: seen) and wait_for(lambda: server.connections() == 0)
    assert seen[0] is None or seen[0][0] == "127.0.0.1"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("when", ["before", "while"])
def test_an_abort_while_the_event_loop_adopts_the_socket(serve, raw, loop, when, caplog):
    """A hard stop (close_all) in the loop turn that hands the socket to the event loop
    ("before" its task took it) or in the next, once the task has given the socket to the
    event loop and before its transport's connection_made ("while")."""
    server = serve(echo, loop=loop, accept=False)
    conn = raw(server.port)  # nothing sent: the event loop is to wait for the request
    server.listener.setblocking(True)
    sock, _ = server.listener.accept()
    protocol = server.protocol()

    def serve_and_abort() -> None:
        serve_handed_off(server.loop, sock, protocol)
        if when == "before":
            server.state.close_all()
        else:  # after the adopting task's first step, which schedules connection_made
            server.loop.call_soon(abort_and_open)

    def abort_and_open() -> None:
        server.state.close_all()
        # a descriptor opened now may take the socket's number if the abort freed it: the
        # transport the event loop is making of the socket must not close it by that number
        opened.append(socket.socket())

    opened: list[socket.socket] = []

    server.call(serve_and_abort)
    assert conn.closed()
    assert wait_for(lambda: server.connections() == 0)
    assert server.call(lambda: protocol._closed)
    for sock in opened:
        os.fstat(sock.fileno())  # still open: nobody closed it by its number
        sock.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- other sockets -----------------------------------------------------------------------------


def test_a_unix_socket_connection(serve):
    server = serve(echo)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        server.call(server.loop.connect_accepted_socket, server.protocol, theirs)
        ours.settimeout(5)
        ours.sendall(get("/unix"))
        data = b""
        while not data.endswith(b"}"):
            data += ours.recv(65536)
    seen = json.loads(data.partition(b"\r\n\r\n")[2])
    assert seen["path"] == "/unix" and seen["client"] is None


# -- the examples in docs/handlers.md ----------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "handlers.md"


def doc_examples() -> list[tuple[str, str]]:
    """(python code, console session) pairs: each python block and the block after it."""
    blocks = re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(), re.S)
    return [
        (code, console)
        for (lang, code), (_, console) in zip(blocks, blocks[1:], strict=False)
        if lang == "python" and "$ curl" in console
    ]


def curl(url: str, console: str) -> list[tuple[str, str]]:
    """Run each ``$ curl`` of a console session with httpx: (expected output, actual output)."""
    results = []
    for command in re.split(r"^\$ ", console, flags=re.M)[1:]:
        line, _, expected = command.partition("\n")
        args = shlex.split(line)
        if args[0] != "curl":
            continue
        headers, data, target = {}, None, ""
        args = iter(args[1:])
        for arg in args:
            if arg == "-H":
                name, _, value = next(args).partition(":")
                headers[name] = value.strip()
            elif arg == "-d":
                data = next(args).encode()
            elif not arg.startswith("-"):
                target = arg.replace("http://127.0.0.1:8000", url)
        method = "POST" if data is not None else "GET"
        response = httpx.request(method, target, headers=headers, content=data)
        results.append((expected, response.text))
    return results


@pytest.mark.parametrize("code, console", doc_examples())
def test_the_examples_in_docs_handlers_md(serve, code, console):
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    server = serve(namespace["handler"])
    results = curl(server.url, console)
    assert results
    for expected, actual in results:
        assert actual.strip() == expected.strip()


def test_docs_has_every_example():
    assert len(doc_examples()) == 7


def test_a_closed_connection_leaves_no_cyclic_garbage():
    """Connection: close traffic makes one protocol per request: each must be freed by reference
    counting when it closes (a cycle would leave it to the garbage collector, whose runs cost the
    worker a few percent at 27k connections/s)."""
    import gc

    async def handler(request):
        return "hello\n"

    async def main() -> int:
        loop = asyncio.get_running_loop()
        limits = HttpLimits(nodelay=False)
        state = HttpServerState(loop, limits)
        state.start()
        app = make_app(handler)
        server = await loop.create_server(lambda: HttpProtocol(app, state, limits),
                                          "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def one() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await reader.read()).endswith(b"hello\n")
            writer.close()

        for _ in range(20):  # warm up: caches, spare carriers
            await one()
        await asyncio.sleep(0.05)
        gc.collect()
        gc.disable()
        try:
            for _ in range(100):
                await one()
            await asyncio.sleep(0.05)
            found = gc.collect()
        finally:
            gc.enable()
            state.close_all()
            server.close()
            await server.wait_closed()
        return found

    assert uvloop.run(main()) == 0
