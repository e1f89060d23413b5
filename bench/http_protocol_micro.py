"""Micro-benchmark of actorcluster.http.HttpProtocol alone: one process, one event loop.

Serves a trivial handler on 127.0.0.1 and runs wrk against it from a child process:

    python bench/http_protocol_micro.py                      # uvloop, async handler returning str
    python bench/http_protocol_micro.py --loop asyncio --handler json --rounds 3
    python bench/http_protocol_micro.py --handler floor      # a bare httptools protocol

``--handler floor`` is not actorcluster: it parses with httptools and writes a constant response
of the same size, the ceiling any Python server on this parser and loop can reach on this
machine. On a shared, noisy machine compare against it within one run, and read the server's CPU
time per request (user + system), which noise disturbs less than requests per second.
Needs /usr/bin/wrk (or --wrk PATH).
"""

from __future__ import annotations

import os
import sys

# bench/http.py would shadow the standard library's `http` package: import from the repo root.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402

import httptools  # noqa: E402

from actorcluster.http import (  # noqa: E402
    HttpLimits,
    HttpProtocol,
    HttpServerState,
    Response,
    make_app,
)

BODY = "Hello, world!"


async def text(request):
    return BODY


async def json_handler(request):
    return {"hello": "world"}


async def response(request):
    return Response(BODY, headers={"X-Bench": "1"})


async def sleep0(request):
    await asyncio.sleep(0)
    return BODY


def sync(request):
    return BODY


HANDLERS = {
    "text": text,
    "json": json_handler,
    "response": response,
    "sleep0": sleep0,
    "sync": sync,
    "floor": None,
}


class Floor(asyncio.Protocol):
    """httptools and one write per request, nothing else."""

    def __init__(self, state: HttpServerState) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.headers = []
        self.transport.write(
            self.state.text_head + b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY.encode())
        )


async def one_round(args: argparse.Namespace) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    limits = HttpLimits()
    state = HttpServerState(loop, limits)
    state.start()
    handler = HANDLERS[args.handler]
    app = make_app(handler) if handler is not None else None

    def protocol() -> asyncio.Protocol:
        return HttpProtocol(app, state, limits) if app is not None else Floor(state)

    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.setblocking(False)
    port = listener.getsockname()[1]

    async def accept() -> None:  # as a worker adopts the connections handed to it
        while True:
            conn, _ = await loop.sock_accept(listener)
            await loop.connect_accepted_socket(protocol, conn)

    accepting = loop.create_task(accept())
    cmd = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    before = resource.getrusage(resource.RUSAGE_SELF)
    proc = await asyncio.create_subprocess_exec(
        *cmd, f"http://127.0.0.1:{port}/", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    after = resource.getrusage(resource.RUSAGE_SELF)
    accepting.cancel()
    state.close_all()
    listener.close()
    report = out.decode()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
    count = int(re.search(r"(\d+) requests in", report).group(1))
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / count * 1e6
    if args.verbose:
        print(report)
    print(f"{args.loop} {args.handler}: {rps:>9,.0f} req/s  server cpu {cpu:.2f} us/request")
    await asyncio.sleep(0.2)
    return rps, cpu


async def main(args: argparse.Namespace) -> None:
    results = [await one_round(args) for _ in range(args.rounds)]
    if args.rounds > 1:
        rps = statistics.median(r for r, _ in results)
        cpu = statistics.median(c for _, c in results)
        print(f"median of {args.rounds}: {rps:,.0f} req/s, {cpu:.2f} us/request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--handler", choices=sorted(HANDLERS), default="text")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wrk", default="/usr/bin/wrk")
    parser.add_argument("--verbose", action="store_true", help="print wrk's whole report")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
