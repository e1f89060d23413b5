"""Handlers used by the process tests."""

import asyncio
import os
import sys
import time


async def pid(request):
    return str(os.getpid())


async def slow(request):
    # tests wait for this line, not a fixed time, to know the request is in flight
    print(f"slow request in {os.getpid()}", flush=True)
    await asyncio.sleep(float(request.query.get("s", "1")))
    return f"slow done {os.getpid()}"


def blocking(request):
    print(f"slow request in {os.getpid()}", flush=True)
    time.sleep(float(request.query.get("s", "1")))
    return f"blocking done {os.getpid()}"


async def misbehave(request):
    match request.path:
        case "/exit":
            sys.exit(7)
        case "/os_exit":
            os._exit(9)
        case "/hang":
            while True:
                pass
        case "/raise":
            raise RuntimeError("secret detail that must not reach the client")
    return str(os.getpid())


not_callable = 42


def spin(request):
    """A plain def handler (it runs in a thread): /spin never returns, burning CPU."""
    if request.path == "/spin":
        while True:
            pass
    return str(os.getpid())


_hog: list[bytearray] = []


async def grow(request):
    """/grow keeps 80 MB alive in this worker (for --max-memory); ?s=S answers S seconds
    later (the memory is taken by a request still in flight)."""
    if request.path == "/grow":
        _hog.append(bytearray(80 * 1024 * 1024))  # zero-filled pages, all touched
        _hog[-1][::4096] = b"x" * len(range(0, len(_hog[-1]), 4096))
        await asyncio.sleep(float(request.query.get("s", "0")))
    return str(os.getpid())
