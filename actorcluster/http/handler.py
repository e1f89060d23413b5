"""Adapt a user's handler to the one shape the protocol calls: ``app(request) -> awaitable``.

An ``async def`` handler already has that shape and is returned as it is: the protocol drives
its coroutine on the event loop. A plain ``def`` handler is wrapped so each call runs in a
thread pool: a handler that blocks on I/O (a database driver, ``requests``, ``time.sleep``) then
stalls only its own request, never the worker's other connections.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["make_app", "is_async_handler"]

App = Callable[[Any], Awaitable[Any]]


def is_async_handler(handler: Any) -> bool:
    """True for an ``async def`` function, a partial of one, or an object whose ``__call__`` is
    ``async``."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    if inspect.isfunction(handler) or inspect.ismethod(handler) or inspect.isbuiltin(handler):
        return False
    call = getattr(type(handler), "__call__", None)  # noqa: B004 - the method, not callable()
    return inspect.iscoroutinefunction(call)


class ThreadedApp:
    """Runs a synchronous handler in a thread pool that is created on the first request."""

    __slots__ = ("handler", "threads", "_executor", "_lock", "_started")

    def __init__(self, handler: Callable[[Any], Any], threads: int) -> None:
        self.handler = handler
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}  # thread -> when its current call began

    def _call(self, request: Any) -> Any:
        thread = threading.get_ident()
        self._started[thread] = time.monotonic()
        try:
            return self.handler(request)
        finally:
            del self._started[thread]

    def busy_for(self) -> float:
        """Seconds the longest-running call has been running (0 when none is): a handler stuck
        in a loop in a thread does not stop the event loop's heartbeats, so the worker reports
        this instead and the primary treats a call longer than --timeout as a hang."""
        started = list(self._started.values())
        return time.monotonic() - min(started) if started else 0.0

    def _start(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.threads, thread_name_prefix="actorcluster-handler"
                )
            return self._executor

    def __call__(self, request: Any) -> asyncio.Future[Any]:
        executor = self._executor or self._start()
        return asyncio.get_running_loop().run_in_executor(executor, self._call, request)

    def shutdown(self, wait: bool = False) -> None:
        """Stop the thread pool (handlers already running finish unless the process exits)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)

    def __repr__(self) -> str:
        return f"<ThreadedApp {self.handler!r} threads={self.threads}>"


def make_app(handler: Callable[[Any], Any], *, threads: int = 32) -> App:
    """Adapt a user handler to ``app(request) -> awaitable result``.

    ``async def handler(request)`` (or an object whose ``__call__`` is async) is returned as it
    is and awaited on the loop. A plain ``def handler(request)`` runs in a
    ``ThreadPoolExecutor(threads)``, created lazily, so a handler blocking on I/O never stalls
    the worker's other connections. The returned `ThreadedApp` has a ``shutdown()`` method.
    """
    if not callable(handler):
        raise TypeError(f"a handler must be callable, not {type(handler).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    if is_async_handler(handler):
        return handler
    return ThreadedApp(handler, threads)
