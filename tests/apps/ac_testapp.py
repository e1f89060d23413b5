"""Handlers used by the process tests."""

import asyncio
import os
import sys
import time


async def pid(request):
    return str(os.getpid())


async def slow(request):
    await asyncio.sleep(float(request.query.get("s", "1")))
    return f"slow done {os.getpid()}"


def blocking(request):
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
