"""Running a handler's result on the loop: the carrier task, `_Resume`, futures.

`HttpProtocol` inherits `_HandlerRunner`. ``app(request)`` returns a coroutine (an async
handler), a future (a sync handler in the thread pool), another awaitable, or the result itself.

No new task for an async handler that finishes without waiting: it is driven eagerly while a
spare *carrier* task of the connection is entered as the current task, in that task's context,
so ``asyncio.current_task()``, ``asyncio.timeout()`` and ``TaskGroup`` behave as in any task;
when the handler does wait, the carrier task carries on driving the same coroutine (`_Resume`)
and the connection takes a new spare for its next request. Spares are the worker's, not the
connection's: one a closing connection did not use goes back to ``HttpServerState.carriers``
for the next connection. A handler that sets a context variable also retires the spare, so
every request starts from the same context, as it would in a task of its own. The common path,
one async handler after another, is inlined in `HttpProtocol._run_queue`.

Each carrier drives its handlers through a *trampoline* (`_trampoline`): one generator, made
once, that takes each handler's coroutine with ``yield from``. A coroutine driven by hand with
``coro.send(None)`` returns its result by raising StopIteration, and making and catching that
exception was a seventh of the Python time of a request; ``yield from`` takes the result
without one (measured: 106 against 253 ns per handler call).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import types
from asyncio import CancelledError
from collections.abc import Awaitable, Generator
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .request import Request

try:  # the carrier task is entered around the eager first step of a handler (see above)
    from asyncio.tasks import _enter_task, _leave_task
except ImportError:  # pragma: no cover - CPython 3.11 to 3.13 have them

    def _enter_task(loop: Any, task: Any) -> None:
        raise RuntimeError("no eager start: the carrier task starts every handler")

    def _leave_task(loop: Any, task: Any) -> None:
        pass


log = logging.getLogger("actorcluster.http")

# (task, its context, the future through which a suspended handler is handed to the task,
#  a copy of the context as it was when the task was made, the trampoline's send, its outcome)
_Carrier = tuple[
    "asyncio.Task[None]",
    contextvars.Context,
    "asyncio.Future[Any]",
    contextvars.Context,
    Any,
    "_Outcome",
]

_DONE = object()  # what a trampoline yields when the handler it runs has returned


class _Outcome:
    """Where a trampoline puts the result of the handler that returned."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = None


@types.coroutine
def _trampoline(outcome: _Outcome) -> Generator[Any, Any, None]:
    """``send(coro)`` runs a handler's coroutine: it yields `_DONE` once the handler has returned
    (its result in ``outcome.value``), or what the handler yielded when it waits (then drive the
    trampoline on, as a coroutine, until it yields `_DONE`). An exception from the handler ends
    the trampoline: make a new one."""
    coro = yield
    while True:
        outcome.value = yield from coro
        coro = yield _DONE


def _new_trampoline() -> tuple[Any, _Outcome]:
    """A primed trampoline's ``send`` and its outcome."""
    outcome = _Outcome()
    trampoline = _trampoline(outcome)
    trampoline.send(None)
    return trampoline.send, outcome


class _Parked:
    """A future that a handler's first step waits on, on its way to the carrier task (`_park`)."""

    __slots__ = ("future",)

    def __init__(self, future: Any) -> None:
        self.future = future


def _park(yielded: Any) -> Any:
    """What a handler's first step yielded, to hand to its carrier task. That step ran outside
    any task, so a future it awaits stays marked as taken by a task (``_asyncio_future_blocking``)
    until the carrier runs, a loop turn later; another handler awaiting the same future meanwhile
    (a shared cache fill; ``await tell(...)`` to a paused actor, whose senders all wait on one
    future) would fail with "await wasn't used with future". So the mark comes off here and
    `_Resume` puts it back just before the task sees the future."""
    if getattr(yielded, "_asyncio_future_blocking", False):
        yielded._asyncio_future_blocking = False
        return _Parked(yielded)
    return yielded


class _Resume:
    """``await _Resume(coro, yielded)`` goes on driving a coroutine that was started by hand and
    suspended with ``yielded``, inside whatever task awaits it (as ``yield from`` would). With
    ``outcome``, ``coro`` is a trampoline: its handler's result is ``outcome.value`` once it
    yields `_DONE`."""

    __slots__ = ("coro", "yielded", "error", "outcome")

    def __init__(
        self,
        coro: Any,
        yielded: Any,
        error: BaseException | None = None,
        outcome: _Outcome | None = None,
    ) -> None:
        self.coro = coro
        self.yielded = yielded
        self.error = error  # to throw in first, instead of waiting for `yielded`
        self.outcome = outcome

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value, error, outcome = self.coro, self.yielded, self.error, self.outcome
        self.coro = self.yielded = self.error = self.outcome = None
        if error is not None:
            try:
                value = coro.throw(error)
            except StopIteration as stop:
                return stop.value
        elif type(value) is _Parked:
            value = value.future
            value._asyncio_future_blocking = True
        while True:
            if value is _DONE and outcome is not None:
                result, outcome.value = outcome.value, None
                return result
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _raise(exc: BaseException) -> None:
    raise exc


# What a handler may raise to stop its worker (let it crash), as from any task: everything else
# (any other BaseException too: a task would hold it as its result) is the request's 500.
STOPS_THE_WORKER = (SystemExit, KeyboardInterrupt)

MAX_SPARE_CARRIERS = 64  # spare carrier tasks a worker keeps for its next connections


async def _carry(slot: asyncio.Future[Any]) -> None:
    """The body of a carrier task: wait until a connection hands it a suspended handler, then
    drive it to the end for that connection (any connection of the worker: spares are shared)."""
    error = None
    try:
        owner, request, coro, yielded, outcome = await slot
    except CancelledError as exc:
        if not slot.done() or slot.cancelled():
            return  # a spare that was never used: the connection or the worker is gone
        # cancelled (by the handler's own timeout or task group) before its first step here
        owner, request, coro, yielded, outcome = slot.result()
        error = exc
    await owner._carry_on(request, coro, yielded, error, outcome)


class _HandlerRunner:
    """The handler-running half of `HttpProtocol` (a mixin: the state lives in its slots)."""

    __slots__ = ()

    _loop: asyncio.AbstractEventLoop
    _busy: bool
    _aborted: bool
    _current: Request | None
    _carrier: _Carrier | None
    _running: asyncio.Task[None] | None
    _state: Any  # the worker's HttpServerState: holds the spare carriers

    if TYPE_CHECKING:

        def _run_queue(self) -> None: ...
        def _run_queue_soon(self) -> None: ...
        def _respond(self, request: Request, result: Any) -> None: ...
        def _fail(self, request: Request, exc: BaseException | None = None) -> None: ...
        def _abort(self) -> None: ...

    def _drive(self, request: Request, coro: Any) -> None:
        """Run a handler's coroutine up to its first real wait, in the carrier task's context
        (the same as the loop in `_run_queue`, for the less common callers)."""
        task, context, slot, base, send, outcome = self._carrier or self._new_carrier()
        loop = self._loop
        try:
            _enter_task(loop, task)
        except RuntimeError:  # inside another task: let the carrier start the coroutine itself
            self._carrier = None
            self._running = task
            slot.set_result((self, request, coro, None, None))
            return
        try:
            yielded = context.run(send, coro)
        except BaseException:
            _leave_task(loop, task)
            self._carrier = (task, context, slot, base, *_new_trampoline())  # that one ended
            self._drive_failed(request)
            return
        _leave_task(loop, task)
        if yielded is not _DONE:
            self._carrier = None
            self._running = task
            slot.set_result((self, request, send.__self__, _park(yielded), outcome))
            return
        result, outcome.value = outcome.value, None
        if context != base:
            self._retire_carrier()
        self._respond(request, result)

    def _handle_other(self, request: Request, result: Any) -> None:
        """``app`` returned something else than a coroutine: a future, an awaitable, a value."""
        if asyncio.isfuture(result):
            self._current = request
            result.add_done_callback(self._future_done)
        elif hasattr(result, "__await__"):
            self._drive(request, _await(result))
        else:
            self._respond(request, result)

    def _drive_failed(self, request: Request) -> None:
        """The first step of a handler raised (call inside the ``except``): answer 500."""
        exc = sys.exc_info()[1]
        if isinstance(exc, STOPS_THE_WORKER):
            # stop the worker, as they would from a task. (Raised here they would not: uvloop
            # turns them into a "fatal error on transport".)
            self._loop.call_soon(_raise, exc)
            # Nobody will answer this request: drop the connection now. Left open, a connection
            # served as it was handed over (http/direct.py) would be given to the event loop in
            # a task that the stopping loop never runs ("Task was destroyed but it is pending!").
            self._abort()
            return
        self._fail(request)

    def _new_carrier(self) -> _Carrier:
        spares = self._state.carriers
        if spares:  # a spare a closed connection left unused: no task to make
            self._carrier = carrier = spares.pop()
            return carrier
        context = contextvars.copy_context()
        slot = self._loop.create_future()
        task = self._loop.create_task(_carry(slot), context=context)
        # `base` shares the context's variables until a handler sets one (then they differ)
        self._carrier = carrier = (task, context, slot, context.copy(), *_new_trampoline())
        return carrier

    def _retire_carrier(self, reuse: bool = False) -> None:
        """Drop the connection's spare carrier; ``reuse``: the connection is done with it and
        it was never used, so another connection of the worker may take it (with
        ``Connection: close`` traffic, one task less per connection)."""
        carrier, self._carrier = self._carrier, None
        if carrier is None:
            return
        spares = self._state.carriers
        if reuse and not carrier[2].done() and len(spares) < MAX_SPARE_CARRIERS and (
                not self._aborted):
            spares.append(carrier)
        else:
            carrier[0].cancel()

    async def _carry_on(self, request: Request, coro: Any, yielded: Any,
                        error: BaseException | None, outcome: _Outcome | None) -> None:
        try:
            result = await _Resume(coro, yielded, error, outcome)
        except CancelledError:
            self._running = None
            if self._aborted:
                return  # close_all: nobody is left to answer
            self._fail(request)
        except STOPS_THE_WORKER:
            raise
        except BaseException:
            self._running = None
            self._fail(request)
        else:
            self._running = None
            self._respond(request, result)
        self._run_queue_soon()

    def _future_done(self, future: asyncio.Future[Any]) -> None:
        request = self._current
        assert request is not None
        if future.cancelled():
            self._fail(request, CancelledError())
        elif (exc := future.exception()) is not None:
            if isinstance(exc, STOPS_THE_WORKER):
                raise exc  # from a sync handler too
            self._fail(request, exc)
        else:
            result = future.result()
            if type(result) is CoroutineType:  # a sync callable that returned a coroutine
                self._drive(request, result)
            else:
                self._respond(request, result)
        if not self._busy:
            self._run_queue()
