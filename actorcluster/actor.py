"""Actors, references to them, and the functions that send messages from any process actor.

Every process of a cluster (an HTTP worker, a user actor) has one messenger; ``tell``/``ask``/...
use it. Outside a cluster, each client attached with ``connect`` has its own, and these functions
use the most recently opened client that is still open. Inside an actor, ``self.sender`` is the
sender of the message being handled and ``self.ref`` the actor's own reference.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ActorError, ActorNotFound, AskTimeout
from .messenger import check_timeout, target_bytes

if TYPE_CHECKING:
    from .messenger import Messenger

T = TypeVar("T")

_messenger: Messenger | None = None  # the process's own, in a cluster's process
# Open clients' messengers, oldest first. Each client keeps its own: a client's methods never
# look here, so opening or closing one client never changes what another one talks to.
_clients: list[Messenger] = []
_clients_lock = threading.Lock()


def _install(messenger: Messenger | None) -> None:
    global _messenger
    _messenger = messenger


def _attach(messenger: Messenger) -> None:
    """A client opened: the module-level functions use it until a newer one opens."""
    with _clients_lock:
        _clients.append(messenger)


def _detach(messenger: Messenger) -> None:
    with _clients_lock:
        if messenger in _clients:
            _clients.remove(messenger)


def _current() -> Messenger:
    messenger = _messenger
    if messenger is not None:
        return messenger
    with _clients_lock:
        if _clients:
            return _clients[-1]
    raise ActorError(
        "no cluster here: tell/ask work inside a cluster's processes (handlers and actors), "
        "or after actorcluster.connect()"
    )


def _on_loop(messenger: Messenger, work: Callable[[], Awaitable[T]]) -> concurrent.futures.Future:
    """Run ``work()`` on the messenger's event loop, from any other thread or event loop: the
    messenger's futures belong to its own loop and must be made and awaited there. ``work()``
    runs in the callback itself, as a tell from another thread is queued, not in a task's first
    step a loop turn later: an ask made before a tell leaves before it (order per pair)."""
    result: concurrent.futures.Future = concurrent.futures.Future()

    def finish(inner: asyncio.Future) -> None:
        if inner.cancelled():
            result.set_exception(asyncio.CancelledError())
        elif inner.exception() is not None:
            result.set_exception(inner.exception())  # type: ignore[arg-type]
        else:
            result.set_result(inner.result())

    def start() -> None:
        if not result.set_running_or_notify_cancel():
            return
        try:
            inner = asyncio.ensure_future(work(), loop=messenger.loop)
        except BaseException as exc:  # noqa: BLE001 - the caller's error (TypeError ...)
            result.set_exception(exc)
            return
        inner.add_done_callback(finish)

    messenger.loop.call_soon_threadsafe(start)
    return result


def _awaitable(messenger: Messenger, work: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    """``work()`` for a caller that awaits it: on the messenger's own thread as it is, from
    another thread or event loop (a client's caller) run on the messenger's loop."""
    if threading.get_ident() == messenger.thread:
        return work()
    return asyncio.wrap_future(_on_loop(messenger, work))


def _blocking(messenger: Messenger, work: Callable[[], Awaitable[T]], timeout: float,
              target: Any = None) -> T:
    """``work()``'s result for plain blocking code in a thread that is not the messenger's.
    ``work`` ends by itself within ``timeout``; the extra second only bounds a stalled loop.
    ``target``: the actor ``work`` asks, if it is one."""
    if threading.get_ident() == messenger.thread:
        wait = messenger.wait_in_place
        if wait is None or not messenger.in_sync_receive:
            raise RuntimeError(
                "ask_sync() was called on the event loop's own thread, which it would stall; "
                "use `await ask(...)` there (ask_sync is for plain def handlers, threads and "
                "an actor's plain def receive)"
            )
        if target is not None and target_bytes(target) in messenger.own:
            # its own mailbox waits behind this receive: the ask could only time out (OTP's
            # gen_server:call to itself fails at once too, with calling_self)
            raise ActorError(
                f"{target_bytes(target).decode(errors='replace')!r} asked itself with ask_sync "
                "inside its own receive, which would wait until the timeout: the ask is handled "
                "only after this receive returns; call the method directly, or tell(self.ref, "
                "...) to handle it next")
        # An actor's plain `def receive`: it holds its process's loop anyway (one message at a
        # time), so the process waits for the reply right here (worker/process.py).
        future = work()
        wait(future, check_timeout(timeout))  # type: ignore[arg-type]
        return future.result()  # type: ignore[union-attr]
    check_timeout(timeout)
    future = _on_loop(messenger, work)
    try:
        return future.result(max(timeout, 0.0) + 1.0)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise AskTimeout(f"no reply within {timeout:g} s") from None


class ActorRef:
    """A reference to an actor by name (``"counter"``, ``"web/2"``, a group like ``"web"``) or
    by incarnation id (``"counter#3"``: that one incarnation only). Picklable: send it in a
    message so the receiver can answer."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):  # else the first send fails with "not a ActorRef"
            raise TypeError(f"an actor's name is a str, not a {type(name).__name__}: {name!r}")
        self.name = name

    def tell(self, message: Any) -> Any:
        """Send and return at once (``await`` the result to wait while the mailbox is full)."""
        return _current().tell(self.name, message)

    def ask(self, message: Any, timeout: float = 5.0) -> Awaitable[Any]:
        """Send; ``await`` the result for the reply (the return value of ``receive``)."""
        return ask(self.name, message, timeout)

    def ask_sync(self, message: Any, timeout: float = 5.0) -> Any:
        return ask_sync(self.name, message, timeout)

    @property
    def base_name(self) -> str:
        """The name without the incarnation number."""
        return self.name.partition("#")[0]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"ActorRef({self.name!r})"

    def __reduce__(self) -> tuple:
        return (ActorRef, (self.name,))


class Actor:
    """Subclass it and define ``receive(self, message)`` (plain or ``async def``).

    ``receive``'s return value answers an ``ask``. ``on_start`` runs in the actor's process
    before the first message, ``on_stop`` on a graceful stop. An exception escaping ``receive``
    crashes the actor's process (let it crash): the asker gets RemoteError (an ActorCrashed that
    carries what was raised), the supervisor starts a new incarnation. An HTTP worker's handler
    may also be an Actor with ``handle(request)``.
    """

    sender: ActorRef | None = None
    ref: ActorRef

    def on_start(self) -> Any:
        """Runs before the first message (may be ``async def``)."""

    def receive(self, message: Any) -> Any:
        """Handle one message; the return value answers an ask."""
        raise NotImplementedError(f"{type(self).__name__} has no receive()")

    def on_stop(self) -> Any:
        """Runs on a graceful stop (may be ``async def``)."""


def tell(target: str | ActorRef, message: Any) -> Any:
    """Send ``message`` to ``target`` (a name, an ActorRef, or a group name: one member, in
    turn) and return at once. Raises TypeError at once if the message cannot be pickled.
    The return value may be awaited: it completes when the destination has room."""
    messenger = _messenger
    if messenger is None:
        messenger = _current()  # raises the explanation
    return messenger.tell(target, message)


def ask(target: str | ActorRef, message: Any, timeout: float = 5.0) -> Awaitable[Any]:
    """Send ``message``; ``await`` the result for the reply. It raises ActorNotFound (no such
    name, at once), AskTimeout, ActorCrashed, RemoteError or MailboxFull.

    The result is a future, not a coroutine: ``asyncio.gather`` of many asks creates no task per
    ask (use ``asyncio.ensure_future``, not ``create_task``, to hold one)."""
    messenger = _current()
    # The messenger's loop is the one running on its thread (cheaper to ask than the loop is:
    # asyncio.get_running_loop() makes a getpid() system call).
    if threading.get_ident() != messenger.thread:  # a client used from its caller's own loop
        return _awaitable(messenger, lambda: messenger.ask(target, message, timeout))
    return messenger.ask(target, message, timeout)


def ask_sync(target: str | ActorRef, message: Any, timeout: float = 5.0) -> Any:
    """``ask`` for plain (sync) code running in a thread, e.g. a ``def`` HTTP handler: it
    blocks that thread only, never the event loop. On the loop's own thread it raises
    RuntimeError (use ``await ask(...)`` there)."""
    messenger = _current()
    return _blocking(messenger, lambda: messenger.ask(target, message, timeout), timeout,
                     target)


def lookup(name: str) -> ActorRef:
    """A reference to the actor or group ``name`` (a ``str``; anything else is a TypeError).
    Whether it exists is not checked here: sending to a name that does not exist makes a dead
    letter (tell) or raises ActorNotFound (ask)."""
    return ActorRef(name)


def broadcast(group: str | ActorRef, message: Any) -> Any:
    """Send ``message`` to every live member of ``group`` (e.g. the HTTP pool ``"web"``)."""
    return _current().tell(group, message, broadcast=True)


async def ask_all(group: str | ActorRef, message: Any, timeout: float = 5.0) -> list[Any]:
    """Ask every live member of ``group`` and return their replies (in member order)."""
    messenger = _current()
    return await _awaitable(messenger, lambda: _ask_all(messenger, group, message, timeout))


async def _ask_all(messenger: Messenger, group: str | ActorRef, message: Any, timeout: float
                   ) -> list[Any]:
    """ask_all on the messenger's loop; ``timeout`` bounds the whole, members' look-up included."""
    group = target_bytes(group).decode()  # a name or a reference (lookup("web")), as for tell
    deadline = messenger.loop.time() + check_timeout(timeout)
    members = await messenger.ask("primary", {"op": "members", "group": group}, timeout)
    if not members:
        raise ActorNotFound(f"no live member in group {group!r}")
    left = deadline - messenger.loop.time()
    if left <= 0:  # the look-up took it all (an ask's timeout must be above 0)
        raise AskTimeout(f"ask_all to {group!r}: no reply within {timeout:g} s")
    return list(await asyncio.gather(*(messenger.ask(m, message, left) for m in members)))
