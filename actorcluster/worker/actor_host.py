"""Hosts one user Actor in a process: its mailbox, on_start / on_stop, replies, let it crash.

Messages are handled one at a time, in arrival order. A plain ``def receive`` runs inline as the
messages arrive (no task, no queue); an ``async def receive`` runs in one mailbox task that awaits
each message before the next. An exception escaping ``receive`` answers the ask that caused it
with RemoteError (an ActorCrashed carrying what was raised), then the process exits (let it crash)
and its supervisor starts a new one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import traceback
from collections import deque
from collections.abc import Callable
from pickle import loads
from typing import Any

from ..actor import Actor, ActorRef
from ..messenger import Messenger
from ..wire import Kind, decode, error_payload, unpack_batch

log = logging.getLogger("actorcluster.actor")

ASK = Kind.ASK


def _is_async(receive: Callable[..., Any]) -> bool:
    """``async def receive``, also under a plain-def decorator made with functools.wraps (say a
    logging one) that returns the coroutine: run inline as a plain receive, its coroutine was
    never awaited, so tells were lost without a word and asks failed on pickling it."""
    if inspect.iscoroutinefunction(receive):
        return True
    try:
        return inspect.iscoroutinefunction(inspect.unwrap(receive))
    except ValueError:  # a __wrapped__ cycle
        return False


class ActorHost:
    def __init__(self, instance: Actor, name: str, identity: bytes, messenger: Messenger) -> None:
        self.actor = instance
        self.name = name
        self.messenger = messenger
        self.crash: Callable[..., None] = lambda code=1: os._exit(code)
        # a tell that cannot be read: the process reports it to the router (a counted dead
        # letter); only logged until the process wires it
        self.report_dead: Callable[[int, str], None] = lambda count, why: log.warning(
            "dead letter: %s", why)
        instance.ref = ActorRef(identity.decode())
        instance.sender = None
        messenger.own = frozenset((name.encode(), identity))
        self._async = _is_async(instance.receive)
        self._mailbox: deque = deque()
        self._wakeup: asyncio.Event | None = None
        self._consumer: asyncio.Task | None = None
        self._in_hand = False  # the mailbox task is inside receive (an async def one)
        self._crashed = False
        self._closed = False  # stopping: takes no more messages
        self.handled = 0
        self.started = False  # on_start returned: on_stop is owed at a graceful stop
        # the shared slot counting the tells finished with (wire.py; None: not tracked)
        self.counter: tuple[memoryview, int] | None = None
        self.start_error = ""  # why on_start failed, for the one who started the actor

    @property
    def finished(self) -> bool:
        """It will handle nothing more (receive raised or exited, or a graceful stop began; the
        process is ending)."""
        return self._crashed or self._closed

    def rename(self, name: str, identity: bytes) -> None:
        self.name = name
        self.actor.ref = ActorRef(identity.decode())
        self.messenger.own = frozenset((name.encode(), identity))

    async def start(self) -> bool:
        """Run on_start; False (and the traceback logged) if it raised."""
        try:
            result = self.actor.on_start()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - a failed start is reported, not raised
            log.exception("Actor %s failed in on_start", self.name)
            self.start_error = f"on_start raised {type(exc).__name__}: {exc}"
            return False
        self.started = True
        if self._async:
            self._wakeup = asyncio.Event()
            self._consumer = asyncio.get_running_loop().create_task(self._consume())
            self._consumer.add_done_callback(self._consumer_ended)
        return True

    def _consumer_ended(self, task: asyncio.Task) -> None:
        """The mailbox task of an ``async def receive`` ended: by a stop (cancelled) or a crash
        (already handled), or by an error outside ``receive`` itself. Such an actor would take
        messages and never handle them again: let it crash, its supervisor starts a new one."""
        if task.cancelled() or self._crashed:
            return
        exc = task.exception()
        if exc is None:
            return
        self._crashed = True
        log.error("Actor %s: its mailbox failed outside receive:\n%s", self.name,
                  "".join(traceback.format_exception(exc)).rstrip())
        self.crash(1)

    def close(self) -> None:
        """A graceful stop begins: read nothing more (`stop` finishes what was read)."""
        self._closed = True

    async def stop(self) -> None:
        """Graceful stop: finish what was already read (the message in hand included), then
        on_stop. What arrives from now on is not read: the router gives it to the next
        incarnation, or counts it as a dead letter (the process reads no counter for it)."""
        self.close()
        if not self.started:  # stopped during its on_start: it never ran, nothing to undo
            return
        if self._consumer is not None:
            while (self._mailbox or self._in_hand) and not self._crashed:
                await asyncio.sleep(0.01)
            self._consumer.cancel()
        try:
            result = self.actor.on_stop()
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001
            log.exception("Actor %s failed in on_stop", self.name)

    def deliver(
        self, sender: bytes, kind: int, flags: int, count: int, corr: int, payload: list
    ) -> None:
        if self._crashed or self._closed:
            return
        try:
            if flags:
                messages = [decode(flags, payload)]
            else:
                messages = [loads(data) for data in unpack_batch(count, payload)]
        # BaseException: unpickling runs any __reduce__, and a SystemExit raised there would end
        # the actor for one bad message
        except BaseException:  # noqa: BLE001 - one unreadable message must not cost the others
            self._deliver_readable(sender, kind, flags, count, corr, payload)
            return
        if self._async:
            for i, message in enumerate(messages):
                self._mailbox.append((sender, kind, message, corr + i))
            assert self._wakeup is not None
            self._wakeup.set()
            return
        messenger = self.messenger
        messenger.in_sync_receive = True  # ask_sync may wait in place (actor._blocking)
        try:
            self._receive_all(sender, kind, corr, messages)
        finally:
            messenger.in_sync_receive = False

    def _receive_all(self, sender: bytes, kind: int, corr: int, messages: list) -> None:
        """A plain ``def receive`` for each message of a run, inline."""
        actor = self.actor
        receive = actor.receive
        actor.sender = ActorRef(sender.decode())  # one sender for the whole batch
        if kind != ASK:
            counter = self.counter
            if counter is None:
                try:
                    for message in messages:
                        receive(message)
                except BaseException as exc:  # noqa: BLE001 - let it crash
                    self._crash(exc, sender, kind, corr)
                    return
            else:
                # each one counted as it is done: a kill -9 in the middle of the run leaves the
                # primary the exact number read and never handled (dead letters, not silence)
                table, slot = counter
                done = table[slot]
                try:
                    for message in messages:
                        receive(message)
                        done += 1
                        table[slot] = done
                except BaseException as exc:  # noqa: BLE001 - let it crash
                    table[slot] = done + 1  # the one it raised on was delivered
                    self._crash(exc, sender, kind, corr)
                    return
            self.handled += len(messages)
            return
        reply = self.messenger.reply
        for i, message in enumerate(messages):
            try:
                result = receive(message)
            except BaseException as exc:  # noqa: BLE001 - let it crash, after answering
                self._crash(exc, sender, kind, corr + i)
                return
            try:
                reply(sender, corr + i, result)
            except TypeError as exc:  # the result cannot be pickled: the asker must hear of it
                self._unpicklable_reply(sender, corr + i, exc)
        self.handled += len(messages)

    def _deliver_readable(
        self, sender: bytes, kind: int, flags: int, count: int, corr: int, payload: list
    ) -> None:
        """A run with a message that cannot be unpickled here (a class this process cannot
        import, a broken __reduce__): deliver the others one by one, in order; the asker of an
        unreadable one gets an ActorError at once, an unreadable tell is a dead letter."""
        try:
            pickles = [payload] if flags else [[data] for data in unpack_batch(count, payload)]
        except ValueError as exc:
            pickles = [None] * count
            why: str = f"a malformed run of messages ({exc})"
        for i, frames in enumerate(pickles):
            try:
                if frames is None:
                    raise ValueError(why)
                decode(flags, frames)
            except BaseException as exc:  # noqa: BLE001 - what the sender needs to hear
                self._unreadable(sender, kind, corr + i, f"{type(exc).__name__}: {exc}")
                continue
            self.deliver(sender, kind, flags, 1, corr + i, frames)

    def _unreadable(self, sender: bytes, kind: int, corr: int, why: str) -> None:
        text = f"{self.name} could not read a message from {sender.decode(errors='replace')}: {why}"
        if kind == ASK:
            self.messenger.reply_error(sender, corr, error_payload("ActorError", text))
        else:
            self.report_dead(1, text)

    async def _consume(self) -> None:
        mailbox = self._mailbox
        actor = self.actor
        reply = self.messenger.reply
        assert self._wakeup is not None
        task = asyncio.current_task()
        assert task is not None
        while True:
            while not mailbox:
                self._wakeup.clear()
                await self._wakeup.wait()
            sender, kind, message, corr = mailbox.popleft()
            actor.sender = ActorRef(sender.decode())
            self._in_hand = True
            try:
                result = await actor.receive(message)
            except asyncio.CancelledError as exc:
                if task.cancelling():  # this task was cancelled: the process is stopping
                    raise
                # receive let out the CancelledError of something it awaited (a task someone
                # cancelled): a crash like any other. Raised on, it ended this task as if
                # cancelled, and the actor took messages and never handled one again
                self._tell_done(kind)
                self._crash(exc, sender, kind, corr)
                return
            except BaseException as exc:  # noqa: BLE001
                self._tell_done(kind)  # the one it raised on was delivered
                self._crash(exc, sender, kind, corr)
                return
            finally:
                self._in_hand = False
            self._tell_done(kind)
            self.handled += 1
            if kind == ASK:
                self._reply(reply, sender, corr, result)

    def _tell_done(self, kind: int) -> None:
        if kind != ASK and self.counter is not None:
            table, slot = self.counter
            table[slot] += 1

    def _reply(self, reply: Callable, sender: bytes, corr: int, result: Any) -> None:
        try:
            reply(sender, corr, result)
        except TypeError as exc:  # the result cannot be pickled: the asker must hear of it
            self._unpicklable_reply(sender, corr, exc)

    def _unpicklable_reply(self, sender: bytes, corr: int, exc: TypeError) -> None:
        # not a crash: the actor handled the message and goes on
        self.messenger.reply_error(sender, corr, error_payload(
            "ActorError", f"{self.name}: the reply cannot be sent: {exc}"))

    def _crash(self, exc: BaseException, sender: bytes, kind: int, corr: int) -> None:
        self._crashed = True
        if isinstance(exc, SystemExit):  # sys.exit() in receive: the actor ends, with that code
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            log.info("Actor %s exits (sys.exit(%r))", self.name, exc.code)
            if kind == ASK and code == 0:  # a normal end (a transient child's work is done)
                self.messenger.reply(sender, corr, None)
            elif kind == ASK:  # it failed instead of answering: the asker hears that, not None
                self.messenger.reply_error(sender, corr, error_payload(
                    "ActorCrashed", f"actor {self.name!r} exited (sys.exit({exc.code!r})) while "
                    "handling the ask"))
            self.crash(code)
            return
        text = "".join(traceback.format_exception(exc))
        log.error("Actor %s crashed handling a message from %s:\n%s", self.name,
                  sender.decode(errors="replace"), text.rstrip())
        if kind == ASK:
            self.messenger.reply_error(sender, corr, error_payload(
                "RemoteError", str(exc), type(exc).__name__, text))
        self.crash()
