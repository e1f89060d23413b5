"""A handler with a readiness hook (docs/operations.md, "Readiness").

    actorcluster run examples.ready:handler

on_ready() runs once in each worker before the gateway gives it a connection; a request never
sees a worker whose cache is still cold. If on_ready() raises, the worker cannot serve: at
start-up the cluster stops with the error, during `actorcluster reload` the reload stops and the
old workers go on serving.
"""

import asyncio
import os

CACHE: dict[str, str] = {}


async def on_ready():
    await asyncio.sleep(0.05)  # stands for warming a cache, opening a connection pool ...
    CACHE["greeting"] = f"hello from worker {os.getpid()}, warmed up\n"


async def handler(request):
    return CACHE["greeting"]  # never a KeyError: no request comes before on_ready() returned
