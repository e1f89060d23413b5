"""One process's side of the router: a coalescing outbox, pending asks, and incoming dispatch.

Per-message cost in Python, not bandwidth, limits a message bus, so outgoing messages are queued
per destination and flushed once per event-loop turn (or every BATCH messages): many messages in
one ZeroMQ message, forwarded by the router as they are. Order per destination is kept: a run of
tells, then a run of asks, ... each run one ZeroMQ message.

Flow control: when a destination's mailbox is full the router says "pause" for it; the messenger
keeps that destination's messages in its own queue (so the router's memory does not grow) until
"resume". The same happens when ZeroMQ refuses a send because this process's own pipe to the
router is full. ``tell`` returns an awaitable that completes at once normally, and only once there
is room again in those two cases, so ``await tell(...)`` is the waiting form; past QUEUE_LIMIT
queued messages ``tell`` raises MailboxFull, and an ask still queued when its timeout ends raises
MailboxFull.
"""

from __future__ import annotations

import asyncio
import json
import numbers
import threading
from collections import deque
from collections.abc import Callable, Generator
from itertools import count as counter
from pickle import dumps as _dumps
from pickle import loads
from typing import Any
from weakref import ref as _weak

from .errors import ActorError, MailboxFull, error_from_payload
from .wire import (
    BY_VALUE as _BY_VALUE,
)
from .wire import (
    FLAG_BROADCAST,
    FLAG_JSON,
    HEADER,
    PRIMARY,
    Kind,
    decode,
    dumps_json,
    encode,
    needs_cloudpickle,
    pack_batch,
    unpack_batch,
)
from .wire import (
    MAIN_MARK as _MAIN,
)

BATCH = 256  # messages per ZeroMQ message at most
# Asks and replies leave in runs of at most ASK_BATCH, sent as soon as a run is full. A burst of
# 64 asks then travels as two ZeroMQ messages: the receiver works on the first half while the
# sender still makes the second, and the replies come back in halves too, so the sender, the
# router and the receiver work at once instead of passing one batch round a ring (measured with
# 64 asks always in flight: 32 -> +15% asks/s over 256; 16 and 48 in between).
ASK_BATCH = 32
QUEUE_LIMIT = 100_000  # messages queued for one paused destination before tell() refuses
RETRY = 0.001  # seconds between retries while ZeroMQ refuses (our own pipe is full)
MAX_TIMEOUT = 1e9  # seconds; an infinite timeout would overflow the loop's timer

TELL, ASK, REPLY, ERROR = Kind.TELL, Kind.ASK, Kind.REPLY, Kind.ERROR
_pack = HEADER.pack
_unpack = HEADER.unpack


class _Done:
    """The awaitable ``tell`` returns when the message went straight into the outbox."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield

    def __repr__(self) -> str:
        return "<sent>"


SENT = _Done()


class _Yield:
    """What ``tell`` returns for a large message sent at once, and for the small one that
    completed a run of BATCH (sent at once too): awaited, it gives the loop one turn (as
    ``asyncio.sleep(0)``), in which the message leaves and a "pause" from the router can
    arrive. A loop of ``await tell(...)`` would otherwise never let the loop run, and send
    everything before it heard of a full mailbox: past the router's OUTBOX_LIMIT, dead letters
    (600,000 of 2,000,000 small tells to a stopped actor). Other small messages never pay for
    it: it would split their coalesced runs."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield

    def __repr__(self) -> str:
        return "<sent>"


YIELD = _Yield()


class _Resumed:
    """What ``tell`` returns while the destination is paused (or the pipe is full): awaited, it
    waits for the resume. Through a shield: the future is shared by every tell waiting for that
    destination, and a task cancelled while it waits (an HTTP request that timed out,
    ``asyncio.wait_for``) would otherwise cancel it for all of them (CancelledError in each)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, None, None]:
        return (yield from asyncio.shield(self.future).__await__())

    def __repr__(self) -> str:
        return "<waiting for room>"


class _RoomElsewhere:
    """What ``tell`` returns to a caller on another thread (a script's own event loop using a
    client) while the destination is paused or the pipe is full: awaited, it waits on that
    caller's loop until the messenger's loop has room again, as ``await tell`` does inside the
    cluster. Not awaited (a plain ``client.tell``), it costs nothing."""

    __slots__ = ("messenger", "dest")

    def __init__(self, messenger: Messenger, dest: bytes) -> None:
        self.messenger = messenger
        self.dest = dest

    def __await__(self) -> Generator[Any, None, None]:
        done = asyncio.run_coroutine_threadsafe(self.messenger.room(self.dest),
                                                self.messenger.loop)
        return (yield from asyncio.wrap_future(done).__await__())

    def __repr__(self) -> str:
        return "<sent>"


LARGE = 64 * 1024  # bytes: a tell of at least this much yields (_Yield)

Deliver = Callable[[bytes, int, int, int, int, list], None]  # sender kind flags count corr


def _waiting(ref: Callable[[], asyncio.Future | None]) -> bool:
    """Whether the ask behind a deadline entry still waits for its reply."""
    future = ref()
    return future is not None and not future.done()


def check_timeout(timeout: Any) -> float:
    """An ask's timeout, or ValueError: seconds above 0, finite (NaN and inf refused); a
    TypeError that says so for what is not a number (None, as Ray's "wait forever", or "5")."""
    if not isinstance(timeout, numbers.Real) or isinstance(timeout, bool):
        raise TypeError(f"ask timeout: a number of seconds above 0 (at most {MAX_TIMEOUT:g}), "
                        f"not {timeout!r}; every ask has a timeout")
    if not 0.0 < timeout <= MAX_TIMEOUT:  # also False for NaN
        raise ValueError(f"ask timeout: a number of seconds above 0 (at most {MAX_TIMEOUT:g}), "
                         f"not {timeout!r}")
    return float(timeout)


def _unreadable_reply(sender: bytes, exc: BaseException) -> ActorError:
    return ActorError(f"the reply from {sender.decode(errors='replace')} cannot be read here "
                      f"({type(exc).__name__}: {exc}): is its type importable in this process?")


def target_bytes(target: Any) -> bytes:
    """A destination frame from a name, an ActorRef, or bytes."""
    if isinstance(target, str):
        return target.encode()
    if isinstance(target, bytes):
        return target
    name = getattr(target, "name", None)
    if isinstance(name, str):
        return name.encode()
    raise TypeError(f"a target is a name or an ActorRef, not a {type(target).__name__}")


class Messenger:
    """Sends and receives actor messages for one process over its DEALER."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[list], bool],
        deliver: Deliver | None = None,
    ) -> None:
        self.loop = loop
        self._send = send
        self.deliver = deliver
        self.thread = threading.get_ident()
        self._out: dict[bytes, list[list]] = {}  # destination -> runs
        self._dests: dict[str, bytes] = {}  # name -> destination frame, cached
        self._oob: list = []  # out-of-band buffers of the fast path (loop thread only)
        # timeout -> (deadline, weak reference to the future, dest), in deadline order. Weak: an
        # answered ask's future holds its reply, which must not live on until the deadline
        # (a large reply asked for with timeout=30, hundreds a second); an ask still waiting
        # is held by its run or by _pending.
        self._deadlines: dict[float, deque] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._paused: dict[bytes, asyncio.Future] = {}  # destination -> resumed
        self._pending: dict[int, asyncio.Future] = {}
        self._corr = counter(1)
        self._scheduled = False
        self._final = False  # the process is stopping: paused destinations are sent to too
        self._blocked = False  # ZeroMQ refused: retry on a timer
        self._room: asyncio.Future | None = None  # done when the pipe takes messages again
        self.sent = 0
        self.received = 0
        # A client's tells come from its callers' threads: once its cluster stops (or is
        # stopping) they are refused with this reason. The gate makes the check and the queueing
        # of one tell a single step, so every tell that passed it is queued on the loop before
        # `refuse` returns (and is sent by the client's last flush, before its "bye").
        self.refusing = ""
        self._gate = threading.Lock()
        # ask_sync on the loop's own thread, inside an actor's plain `def receive` (which holds
        # the loop anyway: one message at a time): the process waits for the reply in place.
        self.in_sync_receive = False
        self.wait_in_place: Callable[[asyncio.Future, float], None] | None = None
        # the destinations of this process's own actor (its name, its incarnation id), if any
        self.own: frozenset[bytes] = frozenset()

    # -- sending --------------------------------------------------------------------------------
    # Per destination, a list of runs: [kind, flags, payloads, extra]. A plain message (flags 0)
    # joins the last run when it has the same kind, so queueing it costs one list.append; extra
    # is the ask futures of an ASK run, the first correlation id of a REPLY run.

    def tell(self, target: Any, message: Any, *, broadcast: bool = False) -> Any:
        # The fast path: a plain message on the loop's thread joins the last run of the same
        # destination in this loop turn: one pickle.dumps and one list.append.
        runs = self._out.get(self._dests.get(target))  # type: ignore[arg-type]
        if runs and not broadcast and not self._blocked and not self._paused:
            last = runs[-1]
            if last[0] == TELL and last[1] == 0 and threading.get_ident() == self.thread:
                data = self._plain(message)
                if data is not None:
                    payloads = last[2]
                    payloads.append(data)
                    if len(payloads) >= BATCH:
                        if not self._flush_one(self._dests[target], runs):
                            self._block()
                        return YIELD  # a full run left: awaited, hear a "pause" (_Yield)
                    return SENT if len(data) < LARGE else YIELD
        dest, flags, frames = self._address(target, message)
        if broadcast:
            flags |= FLAG_BROADCAST
        if self._paused or self._blocked:
            # Refused here, in the caller's thread, before anything is queued: a tell that
            # raised is never sent (a client's tell from its caller's thread included).
            self._check_room(dest)
        if threading.get_ident() != self.thread:
            with self._gate:
                if self.refusing:
                    raise ActorError(f"{self.refusing}: nothing was sent")
                self.loop.call_soon_threadsafe(self._enqueue, dest, TELL, flags, frames, None)
            # read from this thread, as _check_room does: a pause that is arriving is seen by
            # the next tell
            if dest in self._paused or self._blocked:
                return _RoomElsewhere(self, dest)
            return SENT
        sent = self._enqueue(dest, TELL, flags, frames, None)
        if sent is SENT and sum(memoryview(f).nbytes for f in frames) >= LARGE:
            return YIELD
        return sent

    def _address(self, target: Any, message: Any) -> tuple[bytes, int, list]:
        """(destination frame, flags, payload frames); TypeError here, at the sender, when the
        message cannot be pickled: nothing is sent. The primary gets JSON, never pickle."""
        dest = self._dests.get(target) if type(target) is str else None
        if dest is None:
            dest = self._dest(target)
        if dest == PRIMARY:
            try:
                return dest, FLAG_JSON, [dumps_json(message, strict=True)]
            except (TypeError, ValueError, RecursionError) as exc:  # as if unpicklable: none sent
                raise TypeError(f"cannot send a {type(message).__name__} to the primary: its "
                                f"messages are JSON ({exc})") from None
        flags, frames = self._encode(message)
        return dest, flags, frames

    def _plain(self, message: Any) -> bytes | None:
        """The pickle of a plain message (no out-of-band buffer, no reference to __main__ or to
        a module registered to travel by value, not a large bytes-like), or None when it needs
        wire.encode. Loop thread only: the buffer list is reused."""
        kind = type(message)
        if kind is bytes or kind is bytearray or kind is memoryview:
            return None
        oob = self._oob
        try:
            data = _dumps(message, 5, buffer_callback=oob.append)
        except Exception:  # noqa: BLE001 - wire.encode raises the right error
            return None
        if oob:
            oob.clear()
            return None
        if _MAIN in data or (_BY_VALUE and needs_cloudpickle(data)):
            return None
        return data

    def _encode(self, message: Any) -> tuple[int, list]:
        """wire.encode, cheaper for plain data on the loop's thread."""
        if threading.get_ident() == self.thread:
            data = self._plain(message)
            if data is not None:
                return 0, [data]
        return encode(message)

    def _dest(self, target: Any) -> bytes:
        dest = target_bytes(target)
        if type(target) is str and len(self._dests) < 4096:
            self._dests[target] = dest
        return dest

    def ask(self, target: Any, message: Any, timeout: float = 5.0) -> asyncio.Future:
        """Send an ask; the returned future (await it) gets the reply or the error. A plain
        future, not a coroutine, so gathering many asks creates no task per ask."""
        if not 0.0 < timeout <= MAX_TIMEOUT:
            check_timeout(timeout)
        future = self.loop.create_future()
        # The fast path, as tell's: a plain message joins this turn's run of asks.
        dest = self._dests.get(target) if type(target) is str else None
        runs = self._out.get(dest)  # type: ignore[arg-type]
        last = runs[-1] if runs else None
        if (last is not None and last[0] == ASK and last[1] == 0 and not self._blocked
                and not self._paused and threading.get_ident() == self.thread
                and (data := self._plain(message)) is not None):
            payloads = last[2]
            payloads.append(data)
            last[3].append(future)
            if len(payloads) >= ASK_BATCH and not self._flush_one(dest, runs):  # type: ignore
                self._block()
        else:
            dest, flags, frames = self._address(target, message)
            self._enqueue(dest, ASK, flags, frames, future)
        # One timer for all asks, not a timer handle per ask: asks with the same timeout expire
        # in the order they were made, so one deque per timeout value is kept in deadline order.
        deadline = self.loop.time() + timeout
        queue = self._deadlines.get(timeout)
        if queue is None:
            queue = self._deadlines[timeout] = deque()
        queue.append((deadline, _weak(future), dest))
        if self._timer is None or deadline < self._timer_when:
            self._arm(deadline)
        if len(queue) > 4096 and len(queue) > 4 * len(self._pending):
            self._deadlines[timeout] = deque(e for e in queue if _waiting(e[1]))
        return future

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = self.loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        earliest = None
        for timeout, queue in list(self._deadlines.items()):
            while queue and (queue[0][0] <= now or not _waiting(queue[0][1])):
                _deadline, ref, dest = queue.popleft()
                future = ref()
                if future is not None and not future.done():
                    self._ask_timed_out(future, dest, timeout)
            if not queue:
                del self._deadlines[timeout]
            elif earliest is None or queue[0][0] < earliest:
                earliest = queue[0][0]
        if earliest is not None:
            self._arm(earliest)

    def reply(self, to: bytes, correlation: int, result: Any) -> None:
        flags, frames = self._encode(result)
        runs = self._out.get(to)
        if flags == 0 and runs and not self._blocked and not self._paused:
            last = runs[-1]  # the fast path: the next reply of an open run of replies
            if last[0] == REPLY and last[1] == 0 and last[3] + len(last[2]) == correlation:
                last[2].append(frames[0])
                if len(last[2]) >= ASK_BATCH and not self._flush_one(to, runs):
                    self._block()
                return
        self._enqueue(to, REPLY, flags, frames, correlation)

    def reply_error(self, to: bytes, correlation: int, payload: bytes) -> None:
        self._enqueue(to, ERROR, FLAG_JSON, [payload], correlation)

    def _enqueue(self, dest: bytes, kind: int, flags: int, frames: list, extra: Any) -> Any:
        runs = self._out.get(dest)
        if runs is None:
            # Every message waits for the end of the loop turn: sending the first one at once
            # looked good for a lone ask (-10% latency) but split every burst in two and cost
            # 25% of the asks/s with 64 in flight.
            runs = self._out[dest] = []
            if not self._scheduled:
                self._scheduled = True
                self.loop.call_soon(self.flush)
        elif not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)
        last = runs[-1] if runs else None
        if flags == 0 and last is not None and last[0] == kind and last[1] == 0 and (
            kind != REPLY or extra == last[3] + len(last[2])
        ):
            last[2].append(frames[0])
            if kind == ASK:
                last[3].append(extra)
            size = len(last[2])
        else:
            if flags == 0:
                runs.append([kind, 0, [frames[0]], [extra] if kind == ASK else extra])
            else:
                runs.append([kind, flags, frames, extra])
            size = 1
        resumed = self._paused.get(dest)
        if resumed is None and self._blocked:
            resumed = self._room  # our own pipe is full: the sender waits as for a pause
        if resumed is None:
            if size >= (BATCH if kind == TELL else ASK_BATCH):
                if not self._flush_one(dest, runs):
                    self._block()
                if kind == TELL:
                    return YIELD  # a full run left: awaited, hear a "pause" (_Yield)
            return SENT
        return _Resumed(resumed) if kind == TELL else SENT

    def _check_room(self, dest: bytes) -> None:
        """MailboxFull if QUEUE_LIMIT messages already wait here for a paused ``dest`` (or while
        our own pipe is full)."""
        if (dest in self._paused or self._blocked) and self.queued_for(dest) >= QUEUE_LIMIT:
            raise MailboxFull(f"{dest.decode(errors='replace')!r}: mailbox full and "
                              f"{QUEUE_LIMIT} messages already waiting; this one was not sent")

    def _send_one(self, dest: bytes, kind: int, flags: int, frames: list, extra: Any) -> bool:
        corr = next(self._corr) if kind == ASK else (extra or 0)
        if not self._send([dest, _pack(kind, flags, 1, corr), *frames]):
            return False
        if kind == ASK:
            self._pending[corr] = extra
        self.sent += 1
        return True

    def queued_for(self, dest: bytes) -> int:
        return sum(len(run[2]) if run[1] == 0 else 1 for run in self._out.get(dest, ()))

    def flush(self) -> None:
        """Send what is queued (once per loop turn)."""
        self._scheduled = False
        if self._blocked:
            return
        for dest in list(self._out):
            if dest in self._paused and not self._final:
                continue
            if not self._flush_one(dest, self._out[dest]):
                self._block()
                return
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    def flush_all(self) -> bool:
        """The process is stopping: send everything, to paused destinations too (the router
        keeps those in the destination's bounded outbox, and counts what does not fit as dead
        letters), rather than let it die with the process. True when nothing is left queued;
        else our own pipe to the router is full: call again in a moment."""
        self._final = True
        self.flush()
        return not self._out

    def _block(self) -> None:
        """ZeroMQ refused a send (our pipe to the router is full): retry on a short timer."""
        if not self._blocked:
            self._blocked = True
            if self._room is None:
                self._room = self.loop.create_future()
            self.loop.call_later(RETRY, self._unblock)

    def _unblock(self) -> None:
        self._blocked = False
        self.flush()

    def _flush_one(self, dest: bytes, runs: list) -> bool:
        send = self._send
        while runs:
            kind, flags, payloads, extra = run = runs[0]
            if flags:  # one message with its own frames
                if kind == ASK and extra.done():  # timed out while it waited: never sent
                    runs.pop(0)
                    continue
                if not self._send_one(dest, kind, flags, payloads, extra):
                    return False
                runs.pop(0)
                continue
            if kind == ASK and any(f.done() for f in extra):
                keep = [i for i, f in enumerate(extra) if not f.done()]
                run[2] = payloads = [payloads[i] for i in keep]
                run[3] = extra = [extra[i] for i in keep]
            while payloads:
                chunk = payloads[:BATCH] if len(payloads) > BATCH else payloads
                n = len(chunk)
                if kind == ASK:
                    corr = next(self._corr)
                    for _ in range(n - 1):
                        next(self._corr)
                elif kind == REPLY:
                    corr = extra
                else:
                    corr = 0
                if not send([dest, _pack(kind, 0, n, corr), *pack_batch(chunk)]):
                    return False
                if kind == ASK:
                    pending = self._pending
                    for i in range(n):
                        pending[corr + i] = extra[i]
                    run[3] = extra = extra[n:]
                elif kind == REPLY:
                    run[3] = extra = extra + n
                run[2] = payloads = payloads[n:]
                self.sent += n
            runs.pop(0)
        del self._out[dest]
        return True

    def time_out(self, future: asyncio.Future, timeout: float) -> None:
        """End an ask made with ``timeout`` whose time is up now (a wait in place, during which
        the loop's timer could not run): AskTimeout, or MailboxFull if it was never sent."""
        for _deadline, ref, dest in reversed(self._deadlines.get(timeout, ())):
            if ref() is future:
                self._ask_timed_out(future, dest, timeout)
                return

    def _ask_timed_out(self, future: asyncio.Future, dest: bytes, timeout: float) -> None:
        if future.done():
            return
        from .errors import AskTimeout

        name = dest.decode(errors="replace")
        runs = self._out.get(dest, ())
        if any(run[0] == ASK and (run[3] is future or future in run[3]) for run in runs
               if isinstance(run[3], list) or run[3] is future):
            future.set_exception(MailboxFull(
                f"ask to {name!r}: its mailbox stayed full for {timeout} s"))
        elif dest in self.own:  # the likeliest cause: the hint saves a search
            future.set_exception(AskTimeout(
                f"ask to {name!r}: no reply within {timeout} s (that is this actor itself: an "
                "ask it awaits inside its own receive is handled only after that receive "
                "returns)"))
        else:
            future.set_exception(AskTimeout(f"ask to {name!r}: no reply within {timeout} s"))

    # -- receiving ------------------------------------------------------------------------------

    def on_frames(self, sender: bytes, header: bytes, payload: list) -> None:
        """A message from the router (anything but the runtime's own system messages)."""
        kind, flags, count, corr = _unpack(header)
        if kind == REPLY:
            pending = self._pending
            if flags:
                future = pending.pop(corr, None)
                if future is not None and not future.done():
                    try:
                        value = (json.loads(payload[0]) if flags & FLAG_JSON
                                 else decode(flags, payload))
                    # (unpickling runs any __reduce__: a SystemExit there too)
                    except BaseException as exc:  # noqa: BLE001 - this asker's error, nobody else's
                        future.set_exception(_unreadable_reply(sender, exc))
                    else:
                        future.set_result(value)
                return
            for i, data in enumerate(unpack_batch(count, payload)):
                future = pending.pop(corr + i, None)
                if future is not None and not future.done():
                    try:
                        value = loads(data)
                    except BaseException as exc:  # noqa: BLE001 - the other replies still count
                        future.set_exception(_unreadable_reply(sender, exc))
                    else:
                        future.set_result(value)
            return
        if kind == ERROR:
            future = self._pending.pop(corr, None)
            if future is not None and not future.done():
                future.set_exception(error_from_payload(json.loads(payload[0])))
            return
        self.received += count
        if self.deliver is not None:
            self.deliver(sender, kind, flags, count, corr, payload)

    def on_flow(self, op: str, dest: bytes) -> None:
        """The router's flow control: "pause" or "resume" sending to ``dest``."""
        if op == "pause":
            if dest not in self._paused:
                self._paused[dest] = self.loop.create_future()
            return
        resumed = self._paused.pop(dest, None)
        if resumed is not None and not resumed.done():
            resumed.set_result(None)
        if dest in self._out and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)

    def refuse(self, why: str) -> None:
        """Refuse the tells of other threads from now on (ActorError: ``why``); those already
        accepted are queued on the loop by the time this returns."""
        with self._gate:
            self.refusing = why

    async def room(self, dest: bytes) -> None:
        """Until ``dest`` is not paused and our own pipe takes messages (on the loop)."""
        while True:
            waiting = self._paused.get(dest)
            if waiting is None and self._blocked:
                waiting = self._room
            if waiting is None:
                return
            await asyncio.shield(waiting)  # shared: a caller's cancel must not cancel it

    def release_paused(self, exc: BaseException | None) -> None:
        """Nothing will resume: whoever awaits room stops waiting, raising ``exc`` (a client's
        cluster stopped: what it queued is lost) or not (None: the client closed after sending
        everything, paused destinations included)."""
        waiting = [*self._paused.values(), self._room]
        self._paused = {}
        self._room = None
        for future in waiting:
            if future is None or future.done():
                continue
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning if none awaited

    def fail_pending(self, exc: BaseException) -> None:
        """Every pending ask fails (the process is stopping): no caller waits forever."""
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)

    @property
    def queued(self) -> int:
        return sum(self.queued_for(dest) for dest in self._out)
