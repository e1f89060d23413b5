"""Attach to a running cluster from outside it: a script, a test, the `send`/`ask` commands.

    with actorcluster.connect("counter") as cluster:     # the cluster's --name
        cluster.tell("counter", ("add", 1))
        print(cluster.ask("counter", "get"))
        print(cluster.ask("primary", "status"))

The client is a DEALER on the cluster's router (ipc, in the user's private run directory, so only
the same user can attach). It runs its own event loop in a background thread; its methods are
plain blocking calls, safe from any thread and from inside another event loop. A client's
methods always use that client, whatever other clients are open (to the same cluster or to
another one). Outside a cluster's processes, the module-level ``tell``/``ask``/``ask_all``/
``broadcast``/``ask_sync`` use the most recently opened client that is still open. Once closed,
a client's sending methods raise ActorError at once. Messages sent *to* the client (to
``client.ref``) wait in ``client.receive()``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import queue
import threading
import uuid
from pathlib import Path
from typing import Any

import zmq

from . import actor, rundir
from .actor import ActorRef
from .errors import ActorError, ClusterNotFound
from .messenger import Messenger
from .wire import (
    PRIMARY,
    Kind,
    decode,
    decode_system,
    error_payload,
    incarnation_id,
    system_frames,
    unpack_batch,
)
from .zmqio import LoopSocket

_SYSTEM = bytes((Kind.SYSTEM,))


def find_cluster(name: str | None) -> str:
    """The run directory of the cluster called ``name`` (or of the only one running)."""
    running = rundir.running()
    # one started with another XDG_RUNTIME_DIR (a systemd unit's Environment=) is elsewhere
    where = (f"in {rundir.base_dir()} (clusters started with the same XDG_RUNTIME_DIR as this "
             "command)")
    if name is None:
        if len(running) == 1:
            return str(rundir.cluster_dir(next(iter(running))))
        if not running:
            raise ClusterNotFound(f"no actorcluster is running {where}")
        raise ClusterNotFound(f"several clusters run ({', '.join(sorted(running))}): "
                              "choose one with --name")
    if name not in running:
        listed = ", ".join(sorted(running)) or "none"
        raise ClusterNotFound(f"no cluster named {name!r} is running {where}; running: {listed}")
    return str(rundir.cluster_dir(name))


_END = object()  # put in a client's inbox once it can receive nothing more (closed, or gone)


class Client:
    def __init__(self, name: str | None = None) -> None:
        directory = find_cluster(name)
        self.identity = incarnation_id(f"client/{os.getpid()}-{uuid.uuid4().hex[:8]}", 1)
        self.ref = ActorRef(self.identity.decode())
        self.inbox: queue.Queue[Any] = queue.Queue()  # (sender, message) pairs, then _END
        self._bye: asyncio.Future[None] | None = None
        self._closed = False
        self._gone = ""  # why the cluster is gone (its primary exited), once it is
        self._leaving: asyncio.Task[None] | None = None  # the last flush when it stops (_leave)
        self._primary_fd = -1
        self._loop = asyncio.new_event_loop()
        self._context = zmq.Context(1)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(directory, ready),
                                        name="actorcluster-client", daemon=True)
        self._thread.start()
        ready.wait(5)

    def _run(self, directory: str, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, self.identity)
        dealer.setsockopt(zmq.LINGER, 1000)
        dealer.connect(f"ipc://{directory}/router")
        self._channel = LoopSocket(self._loop, dealer, self._on_frames)
        # the primary tells the clients that said hello when it stops, and reads on until each
        # has said bye (`_leave`): what they sent until then is delivered or counted, not lost
        self._channel.send([PRIMARY, *system_frames("hello")])
        self.messenger = Messenger(self._loop, self._channel.send, self._deliver)
        actor._attach(self.messenger)
        self._watch_primary(directory)
        ready.set()
        self._loop.run_forever()
        self._unwatch_primary()
        self._channel.close(linger=1000)
        self._loop.close()  # a call that raced close() fails instead of waiting forever

    def _watch_primary(self, directory: str) -> None:
        """Learn from the kernel when the cluster's primary exits (a pidfd becomes readable),
        so that waiting asks fail at once instead of at their timeouts, and later calls too."""
        pid = rundir.read_pid(Path(directory))
        try:
            fd = os.pidfd_open(pid) if pid else -1
        except OSError:  # gone already, or a kernel without pidfds: the timeouts still hold
            fd = -1
        if fd < 0:
            return
        self._primary_fd = fd

        def gone() -> None:
            self._unwatch_primary()
            self._gone = f"the cluster stopped (its primary, pid {pid}, exited)"
            self.messenger.refuse(self._gone)  # the module-level tell() too
            self.messenger.fail_pending(ActorError(self._gone))
            self.messenger.release_paused(ActorError(self._gone))
            self.inbox.put(_END)  # a receive() waiting (even with no timeout) hears it now

        self._loop.add_reader(fd, gone)

    def _unwatch_primary(self) -> None:
        fd, self._primary_fd = self._primary_fd, -1
        if fd >= 0:
            self._loop.remove_reader(fd)
            os.close(fd)

    def _on_frames(self, frames: list[bytes]) -> None:
        if len(frames) < 3:
            return
        sender, header, *payload = frames
        if header[:1] == _SYSTEM and sender == PRIMARY:
            message = decode_system(payload[0])
            if message["op"] in ("pause", "resume"):
                self.messenger.on_flow(message["op"], str(message.get("dest", "")).encode())
            elif message["op"] == "bye" and self._bye is not None and not self._bye.done():
                self._bye.set_result(None)
            elif message["op"] == "stopping" and not self._gone and not self._closed:
                self._gone = "the cluster is stopping"
                self.messenger.refuse(self._gone)
                self._leaving = self._loop.create_task(self._leave())
            return
        self.messenger.on_frames(sender, header, payload)

    async def _leave(self, timeout: float = 1.0) -> None:
        """The cluster is stopping: send what was told (every tell accepted before `refuse`
        is queued on this loop already), then say bye. The primary reads until then, so each
        of those messages is delivered or counted as a dead letter, none lost in a buffer."""
        deadline = self._loop.time() + timeout
        while not self.messenger.flush_all() and self._loop.time() < deadline:
            await asyncio.sleep(0.001)  # our pipe to the router is full: it is reading
        while not self._channel.send([PRIMARY, *system_frames("bye")]) and (
                self._loop.time() < deadline):
            await asyncio.sleep(0.001)
        self.messenger.release_paused(None)  # flush_all sent what they wait for

    def _deliver(
        self, sender: bytes, kind: int, flags: int, count: int, corr: int, payload: list
    ) -> None:
        if kind == Kind.ASK:  # nothing here could answer: the asker hears it now, not at timeout
            why = (f"{self.identity.decode()} is a client: it takes tells (client.receive()) "
                   "and cannot answer an ask")
            for i in range(count):
                self.messenger.reply_error(sender, corr + i, error_payload("ActorError", why))
            return
        if flags:
            messages = [decode(flags, payload)]
        else:
            messages = [pickle.loads(data) for data in unpack_batch(count, payload)]
        for message in messages:
            self.inbox.put((ActorRef(sender.decode()), message))

    # -- the API --------------------------------------------------------------------------------

    def _open(self) -> Messenger:
        if self._closed:
            raise ActorError("this client is closed: connect() again to send")
        if self._gone:
            raise ActorError(f"{self._gone}: nothing was sent")
        return self.messenger

    def tell(self, target: str | ActorRef, message: Any) -> None:
        self._open().tell(target, message)

    def broadcast(self, group: str | ActorRef, message: Any) -> None:
        self._open().tell(group, message, broadcast=True)

    def ask(self, target: str | ActorRef, message: Any, timeout: float = 5.0) -> Any:
        messenger = self._open()
        return actor._blocking(messenger, lambda: messenger.ask(target, message, timeout),
                               timeout)

    def ask_all(self, group: str | ActorRef, message: Any, timeout: float = 5.0) -> list[Any]:
        """Ask every live member of ``group``; their replies, in member order."""
        messenger = self._open()
        return actor._blocking(
            messenger, lambda: actor._ask_all(messenger, group, message, timeout), timeout)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.ask("primary", "status", timeout)

    def receive(self, timeout: float | None = 5.0) -> tuple[ActorRef, Any]:
        """The next message sent to this client, with its sender; queue.Empty on timeout.
        Once the client is closed or its cluster stopped, and what had arrived was received:
        ActorError at once, as the other methods raise (not a wait for ever with no timeout)."""
        item = self.inbox.get(timeout=timeout)
        if item is _END:
            self.inbox.put(_END)  # for the next call, and for any other thread waiting
            raise ActorError("this client is closed: connect() again to receive" if self._closed
                             else f"{self._gone}: nothing more can arrive")
        return item

    def close(self) -> None:
        """Send what is queued, then detach. Asks still waiting raise ActorError."""
        if self._closed:
            return
        self._closed = True
        messenger = getattr(self, "messenger", None)
        if messenger is not None:
            actor._detach(messenger)
        if self._loop.is_running():
            done = asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
            done.result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._context.term()
        self.inbox.put(_END)

    async def _drain(self, timeout: float = 2.0) -> None:
        """Send what is queued and wait until the router has read it: ZeroMQ drops what a
        disconnecting peer sent but the router had not read yet."""
        if self._gone:  # stopping or stopped: no bye of ours to wait for
            if self._leaving is not None:  # stopping: let the last flush and bye finish first
                await asyncio.wait({self._leaving}, timeout=timeout)
            self.messenger.fail_pending(ActorError(self._gone))
            return
        deadline = self._loop.time() + timeout
        # what waits for a paused destination goes too (into the router's bounded outbox for
        # it): it would be lost with the client, uncounted
        while not self.messenger.flush_all() and self._loop.time() < deadline:
            await asyncio.sleep(0.001)  # our pipe to the router is full: it is reading
        self._bye = self._loop.create_future()
        while not self._channel.send([PRIMARY, *system_frames("bye")]) and (
                self._loop.time() < deadline):
            await asyncio.sleep(0.001)
        try:
            await asyncio.wait_for(self._bye, max(0.1, deadline - self._loop.time()))
        except TimeoutError:
            pass
        self.messenger.fail_pending(ActorError("this client was closed while the ask waited"))
        self.messenger.release_paused(None)  # flush_all sent what they wait for

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(name: str | None = None) -> Client:
    """Attach to the running cluster called ``name`` (default: the only one running)."""
    return Client(name)
