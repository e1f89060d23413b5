"""The process-actor runtime: one DEALER to the router, heartbeats both ways, a graceful stop.

A behaviour (HTTP serving, a user actor) plugs in through hooks: ``start()`` before the worker
reports ready, ``drain()`` on a graceful stop; messages for the process go to its messenger and,
through it, to the hosted actor (``self.host``). The heartbeat timer runs on the same event loop
as the work, so a loop stuck in user code stops the heartbeats and the primary notices.

Stopping flushes the outbox and waits for the router to acknowledge a final "bye": ZeroMQ drops
what a disconnecting peer sent but the router had not read yet, so nothing sent before a stop is
lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import time
from typing import Any

import zmq

from .. import actor
from ..errors import ActorCrashed
from ..messenger import Messenger
from ..oslink import set_process_name
from ..wire import (
    DONE_TELLS,
    PRIMARY,
    ExitCode,
    Kind,
    decode_system,
    error_payload,
    incarnation_id,
    map_read_counters,
    system_frames,
)
from ..zmqio import LoopSocket, recv_frames
from .actor_host import ActorHost

log = logging.getLogger("actorcluster.worker")
NO_RECEIVE = "takes no messages: its handler is a function, not an Actor with receive()"

_SYSTEM = bytes((Kind.SYSTEM,))
_ASK = int(Kind.ASK)  # kinds up to it (tell, ask) are what the router keeps until read
# tells this process cannot take are reported to the router as dead letters, one system message
# for all those dropped within this many seconds of the first
DEAD_REPORT_DELAY = 0.05


class ProcessActor:
    """Connects to the router as ``name#incarnation`` and keeps the link to the primary alive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, spec: dict[str, Any]) -> None:
        self.loop = loop
        self.spec = spec
        self.identity = incarnation_id(spec["name"], spec["incarnation"])
        self.heartbeat_interval: float = spec["heartbeat"]
        self.timeout: float = spec["timeout"]
        self.graceful_timeout: float = spec["graceful_timeout"]
        # the read counter (wire.py): the primary learns from it, after a kill, what we never read
        self._reads: memoryview | None = None
        self._slot = 0
        if spec.get("reads") and spec.get("reads_slot") is not None:
            self._reads = map_read_counters(spec["reads"])[1]
            self._slot = int(spec["reads_slot"])
        self._context = zmq.Context(1)
        self.channel = self._connect_router()
        self._standby_channel: LoopSocket | None = None  # a promoted standby's first socket
        self.messenger = Messenger(loop, self.channel.send, self._deliver)
        self.messenger.wait_in_place = self._wait_in_place
        actor._install(self.messenger)
        self.host: ActorHost | None = None
        self._bye: asyncio.Future[None] | None = None
        self._last_heard = loop.time()
        self._beat_due = math.inf  # time.monotonic() of the next heartbeat, once ready
        self._finished: asyncio.Future[int] = loop.create_future()
        self._stopping = False
        self._sigterm = False  # SIGTERM came; the loop may not have run its stop yet
        self._dropped = 0  # tells dropped (no actor hosted) and not yet reported
        self._dropped_report: asyncio.TimerHandle | None = None

    def _connect_router(self) -> LoopSocket:
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, self.identity)
        dealer.setsockopt(zmq.LINGER, 1000)
        dealer.setsockopt(zmq.SNDHWM, 256)
        dealer.setsockopt(zmq.RCVHWM, 256)
        dealer.connect(self.spec["router"])
        return LoopSocket(self.loop, dealer, self._on_frames)

    def promote(self, name: str, incarnation: int, reads_slot: int | None = None) -> None:
        """A standby takes a dead worker's place: reconnect under the new incarnation id (a
        DEALER's identity is fixed at connect) and report ready under it."""
        if reads_slot is None:
            self._reads = None
        else:
            self._slot = reads_slot  # counting from 0 again: it is a new incarnation's slot
        self.spec["name"], self.spec["incarnation"] = name, incarnation
        self.identity = incarnation_id(name, incarnation)
        # The old socket stays open until we exit: the gateway hands us connections as soon as
        # it has sent "promote", so a handler may already have sent an ask on it, which closing
        # it would discard, or be waiting for the reply, which the router sends to the identity
        # that asked.
        self._standby_channel = self.channel
        self.channel = self._connect_router()
        self.messenger._send = self.channel.send
        set_process_name(f"ac {name}")
        if self.host is not None:
            self.host.rename(name, self.identity)
            self.host.counter = self._done_counter()
        self.send_system("ready", pid=os.getpid())

    # -- behaviour hooks ------------------------------------------------------------------------

    async def start(self) -> None:
        """Set up the behaviour; the worker reports ready when this returns."""

    async def drain(self, retire: bool = False) -> None:
        """Finish in-flight work on a graceful stop (bounded by graceful_timeout). ``retire``:
        the worker is being replaced (reload, scale down, recycling) while the cluster goes on,
        so idle connections are not cut now but closed between requests."""

    async def ready_hook(self) -> bool:
        """The behaviour's last step before "ready"; False: the worker cannot serve."""
        return True

    def stats(self) -> dict[str, Any]:
        """Counters sent to the primary with every heartbeat (status, metrics)."""
        # pid: the primary tells this incarnation's counters from its predecessor's
        return {"messages": self.host.handled if self.host is not None else 0,
                "pid": os.getpid()}

    def check_limits(self) -> None:
        """Called once per heartbeat: ask to be replaced when a limit is reached."""

    def lost_primary(self, why: str) -> None:
        log.error("Worker %d lost the primary (%s); exiting", os.getpid(), why)
        self.finish(ExitCode.PRIMARY_LOST)

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> int:
        # A plain handler, not the loop's: it runs between two messages of a burst the loop is
        # reading (zmqio reads many at a time, and a plain receive handles each run inline), so
        # the stop begins there (`_on_frames`) rather than after the whole burst.
        signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            await self.start()
        except Exception as exc:  # noqa: BLE001 - the worker cannot start: say why, exit
            log.exception("%s could not start", self.spec["name"])
            return self.boot_failed(f"{type(exc).__name__}: {exc}")
        if self.host is not None:
            self.host.crash = self.crash
            self.host.counter = self._done_counter()
            # a stop (SIGTERM) while an async on_start runs ends it, as one during on_ready
            # below: the stop no longer waits for it (the primary's shutdown time, then SIGKILL)
            starting = asyncio.ensure_future(self.host.start())
            await asyncio.wait((starting, self._finished), return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
            elif not starting.result():
                return self.boot_failed(self.host.start_error)
        # a stop (SIGTERM) while on_ready() runs ends it: the cluster is stopping, or the
        # reload that started us gave up; this process will never serve
        ready = asyncio.ensure_future(self.ready_hook())
        await asyncio.wait((ready, self._finished), return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
        elif not ready.result():
            return ExitCode.BOOT_ERROR
        else:
            self.send_system("ready", pid=os.getpid())
            self._last_heard = self.loop.time()
            self._beat_due = time.monotonic() + self.heartbeat_interval
            self.loop.call_later(self.heartbeat_interval, self._heartbeat)
        code = await self._finished
        self.channel.close(linger=1000)
        if self._standby_channel is not None:
            self._standby_channel.close(linger=1000)
        self._context.term()
        return code

    def boot_failed(self, why: str) -> int:
        """Tell the primary why this process cannot start (start_child's error names it) and
        wait until ZeroMQ has sent that before the process exits."""
        self.send_system("failed", why=why[:2000])
        self.channel.close(linger=1000)
        self._context.term()
        return ExitCode.BOOT_ERROR

    def _on_sigterm(self, _sig: int, _frame: Any) -> None:
        self._sigterm = True
        try:
            self.loop.call_soon_threadsafe(self.stop)
        except RuntimeError:  # the loop is closed: the process is ending anyway
            pass

    def stop(self, retire: bool = False) -> None:
        """Graceful stop (SIGTERM, or the primary's "stop" / "retire" message)."""
        if self._stopping:
            return
        self._stopping = True
        self.loop.create_task(self._stop(retire))

    async def _stop(self, retire: bool) -> None:
        try:
            await asyncio.wait_for(self.drain(retire), self.graceful_timeout)
        except TimeoutError:
            log.warning("Worker %d: graceful timeout; closing what is left", os.getpid())
        if self.host is not None:
            await self.host.stop()
        await self.goodbye()
        self.finish(ExitCode.OK)

    def crash(self, code: int = ExitCode.CRASHED) -> None:
        """Let it crash: the hosted actor raised; flush what it sent (its error reply) and exit
        (with ``code``: a ``sys.exit(0)`` in ``receive`` is a normal exit)."""
        if self._stopping:
            return
        self._stopping = True

        async def _crash() -> None:
            await self.goodbye()
            self.finish(code)

        self.loop.create_task(_crash())

    async def goodbye(self, timeout: float = 1.0) -> None:
        """Flush the outbox and wait until the router has read everything we sent."""
        self._report_dropped()
        deadline = self.loop.time() + timeout
        # what waits for a paused destination goes too: it would die with the process
        while not self.messenger.flush_all() and self.loop.time() < deadline:
            await asyncio.sleep(0.001)  # our pipe to the router is full: it is reading
        self._bye = self.loop.create_future()
        self.send_system("heartbeat", **self.stats())  # the last counters, for the metrics
        while not self.channel.send([PRIMARY, *system_frames("bye")]) and (
                self.loop.time() < deadline):
            await asyncio.sleep(0.001)  # refused: the pipe is full of what we sent just now
        try:
            await asyncio.wait_for(self._bye, timeout)
        except TimeoutError:
            log.warning("%s: the router did not acknowledge the stop within %.1f s",
                        self.identity.decode(), timeout)

    def finish(self, code: int) -> None:
        if not self._finished.done():
            self.messenger.fail_pending(ActorCrashed("this process is stopping"))
            self._finished.set_result(code)

    # -- the link to the primary ----------------------------------------------------------------

    def send_system(self, op: str, **fields: Any) -> None:
        self.channel.send([PRIMARY, *system_frames(op, **fields)])

    def _heartbeat(self) -> None:
        if self._finished.done():
            return
        silent = self.loop.time() - self._last_heard
        if silent > self.timeout:
            self.lost_primary(f"no heartbeat for {silent:.1f} s")
            return
        self._beat()
        if not self._stopping:
            self.check_limits()
        self.loop.call_later(self.heartbeat_interval, self._heartbeat)

    def _beat(self) -> None:
        self._beat_due = time.monotonic() + self.heartbeat_interval
        self.send_system("heartbeat", **self.stats())

    def _on_frames(self, frames: list[bytes]) -> None:
        self._last_heard = self.loop.time()
        if len(frames) < 3:
            log.warning("dropping a malformed message from the router (%d frames)", len(frames))
            return
        sender, header, *payload = frames
        if header[:1] == _SYSTEM and sender == PRIMARY:
            try:
                message = decode_system(payload[0])
            except ValueError:
                log.warning("dropping a malformed system message from the primary")
                return
            op = message["op"]
            if op == "stop":
                self.stop()
            elif op == "retire":
                self.stop(retire=True)
            elif op in ("pause", "resume"):
                self.messenger.on_flow(op, str(message.get("dest", "")).encode())
            elif op == "promote":
                slot = message.get("reads_slot")
                self.promote(str(message["name"]), int(message["incarnation"]),
                             None if slot is None else int(slot))
            elif op == "bye" and self._bye is not None and not self._bye.done():
                self._bye.set_result(None)
            return
        if self._sigterm and not self._stopping:
            self.stop()
        reads = self._reads
        if reads is not None and header and header[0] <= _ASK:  # a tell or an ask: read now
            # ... unless the actor crashed or is stopping: it will not handle it, so it is not
            # counted and the router gives it to the next incarnation when this process has
            # exited (or counts it as a dead letter)
            if self.host is None or not self.host.finished:
                reads[self._slot] += 1
        try:
            self.messenger.on_frames(sender, header, payload)
        except Exception:  # noqa: BLE001 - a malformed frame must not take the worker down
            log.exception("dropping a message from %r that could not be read", sender)

    def _wait_in_place(self, future: asyncio.Future, timeout: float) -> None:
        """``ask_sync`` inside the actor's plain ``def receive``, which holds this process's loop
        anyway (one message at a time): send the ask now and read the DEALER right here until
        the reply comes or ``timeout`` ends. Replies and flow control are handled as they come;
        every other message (the actor's next ones, a stop) waits, in order, until receive has
        returned. Heartbeats go on, so a long wait is not taken for a hang."""
        messenger = self.messenger
        sock = self.channel.sock
        later: list[list] = []
        now = time.monotonic()
        deadline = now + timeout
        beat = now + self.heartbeat_interval
        try:
            messenger.flush()
            while not future.done():
                now = time.monotonic()
                if now >= deadline:
                    messenger.time_out(future, timeout)
                    return
                if now >= beat:
                    beat = now + self.heartbeat_interval
                    self.send_system("heartbeat", **self.stats())
                if not sock.poll(max(1, int(1000 * min(deadline, beat) - 1000 * now)),
                                 zmq.POLLIN):
                    continue
                while not future.done():
                    try:
                        frames = recv_frames(sock)
                    except zmq.Again:
                        break
                    if self._answers_a_wait(frames):
                        self._on_frames(frames)
                        messenger.flush()  # a "resume" may have let the ask go
                    else:
                        self._last_heard = self.loop.time()  # heard, though handled later
                        later.append(frames)
        finally:
            self.channel.requeue(later)

    @staticmethod
    def _answers_a_wait(frames: list) -> bool:
        """A reply, an ask's error, or the router's flow control: handled during a wait."""
        if len(frames) < 3 or not frames[1]:
            return False
        kind = frames[1][0]
        if kind == Kind.REPLY or kind == Kind.ERROR:
            return True
        if frames[1][:1] == _SYSTEM and frames[0] == PRIMARY and len(frames) > 2:
            try:
                return decode_system(frames[2])["op"] in ("pause", "resume")
            except (ValueError, KeyError, TypeError):
                return False
        return False

    def report_dead(self, count: int, why: str) -> None:
        """Tells this process could not take: the router counts them under our name (and, as
        it reads the report, as finished with: wire.py)."""
        self.send_system("dead", count=count, why=why)

    def _done_counter(self) -> tuple[memoryview, int] | None:
        """Where the hosted actor counts the tells it finished with (wire.py)."""
        return None if self._reads is None else (self._reads, DONE_TELLS + self._slot)

    def _deliver(
        self, sender: bytes, kind: int, flags: int, count: int, corr: int, payload: list
    ) -> None:
        if self.host is not None:
            self.host.deliver(sender, kind, flags, count, corr, payload)
            # A burst of quick messages holds the loop for run after run (zmqio reads many
            # at a time), and the heartbeat timer waits for the loop: beat between runs too, so
            # an actor is taken for hung when one run is slow, not when it is merely busy.
            if time.monotonic() >= self._beat_due:
                self._beat()
            return
        if kind == Kind.ASK:
            why = error_payload("ActorError", f"{self.identity.decode()} {NO_RECEIVE}")
            for i in range(count):  # a coalesced run of asks: each waits for its own answer
                self.messenger.reply_error(sender, corr + i, why)
            return
        # a dead letter, counted by the router under our name (which logs it once per burst)
        self._dropped += count
        if self._dropped_report is None:
            self._dropped_report = self.loop.call_later(DEAD_REPORT_DELAY, self._report_dropped)

    def _report_dropped(self) -> None:
        if self._dropped_report is not None:
            self._dropped_report.cancel()
            self._dropped_report = None
        if self._dropped:
            self.report_dead(self._dropped, NO_RECEIVE)
            self._dropped = 0
