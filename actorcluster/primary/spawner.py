"""The primary's side of the zygote: start it, have it import the app, ask it for workers.

The zygote is a fresh interpreter (never a fork of the primary, which holds a ZeroMQ context and
its threads). It imports the app once; every worker is then a fork of that clean, pre-imported
process, which makes a respawn cost a few milliseconds.

A reload starts a second zygote (``prepare``) next to the current one, which goes on forking
every restart meanwhile; only the reload's replacements are asked of the new one (``fresh``).
The reload then adopts it (``adopt``: the old one exits) or, when it failed, discards it
(``discard``): the code that keeps being forked is always the code that is known to start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import socket
import subprocess
from collections.abc import Callable
from typing import Any

from ..errors import ClusterError, TargetImportError
from ..wire import SPAWNER_MAX, decode_control, encode_control
from .zygote_launch import launch, take_early, workdir

log = logging.getLogger("actorcluster.spawner")
SPAWN_LOST_GRACE = 1.0  # seconds a spawn the dead zygote never answered may still say ready


class Spawner:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_spawned: Callable[[str, int], None],
        on_spawn_error: Callable[[str, str], None],
    ) -> None:
        self.loop = loop
        self.on_spawned = on_spawned
        self.on_spawn_error = on_spawn_error
        self.workdir = workdir()
        self.pid: int | None = None
        self.restarting = False
        self._waiting: list[tuple[dict[str, Any], int]] = []
        # ids of the spawns asked of the current zygote and not answered yet: if it dies first,
        # they died with it (see ``reaped``)
        self._pending: set[str] = set()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self.retired: set[int] = set()  # zygotes a reload replaced or discarded, not reaped
        self._fresh: tuple[subprocess.Popen, socket.socket] | None = None  # a reload's zygote

    async def start(self, targets: list[tuple[str, str]], log_level: str, timeout: float,
                    entry: str | None = None) -> dict[str, Any] | None:
        """Start the zygote and wait until it imported every (target, kind) and ``entry``;
        returns the supervision tree ``entry`` describes (as a dict), or None for a handler.
        A target that fails raises TargetImportError with the target in ``.target``."""
        self._proc, self._sock = take_early(self.workdir) or self._launch()
        self.pid = self._proc.pid
        tree = await self._load(self._sock, targets, log_level, timeout, entry)
        self.loop.add_reader(self._sock.fileno(), self._on_readable, self._sock)
        return tree

    def _launch(self) -> tuple[subprocess.Popen, socket.socket]:
        return launch(self.workdir)

    async def _load(self, sock: socket.socket, targets: list[tuple[str, str]], log_level: str,
                    timeout: float, entry: str | None) -> dict[str, Any] | None:
        names = ", ".join([t for t, _ in targets] + ([entry] if entry else []))
        try:
            sock.send(encode_control("load", targets=targets, log_level=log_level, entry=entry))
            sock.setblocking(False)
            data = await asyncio.wait_for(self.loop.sock_recv(sock, SPAWNER_MAX), timeout)
        except TimeoutError:
            raise ClusterError(f"importing {names} took more than {timeout} s") from None
        except (BrokenPipeError, ConnectionResetError):
            # it died before it read `load` (an early zygote reads it only once it has loaded
            # the worker runtime): the message it left unread resets the channel, not EOF
            data = b""
        if not data:
            raise ClusterError(f"the zygote exited while importing {names}")
        reply = decode_control(data)
        if reply["op"] == "load_error":
            error = TargetImportError(reply["error"])
            error.target = reply.get("target")  # type: ignore[attr-defined]
            raise error
        return reply.get("tree")

    def spawn(self, spec: dict[str, Any], handoff_fd: int, fresh: bool = False) -> None:
        """Ask the zygote for a worker; its pid arrives through ``on_spawned``. While a new
        zygote is starting, the request waits (with its own copy of the fd). ``fresh``: ask the
        zygote a reload prepared, with the new code (a spawn error if it is gone)."""
        if fresh:
            try:
                if self._fresh is None or self._fresh[0].returncode is not None:
                    raise ConnectionResetError
                self._send_spawn(self._fresh[1], spec, handoff_fd)
            except OSError:
                self.loop.call_soon(self.on_spawn_error, spec["id"],
                                    "the reload's new zygote is gone")
            return
        if self._sock is None or self.restarting:
            self._waiting.append((spec, os.dup(handoff_fd)))
            return
        try:
            self._send_spawn(self._sock, spec, handoff_fd)
        except OSError:
            # the zygote died and the primary has not reaped it yet: never sent, so the next
            # zygote forks it (its start sends what waits), with no risk of two processes
            self._waiting.append((spec, os.dup(handoff_fd)))
            return
        self._pending.add(spec["id"])

    def _send_spawn(self, sock: socket.socket, spec: dict[str, Any], handoff_fd: int) -> None:
        message = encode_control("spawn", spec=spec)
        while True:
            try:
                socket.send_fds(sock, [message], [handoff_fd])
                return
            except BlockingIOError:
                pass
            # The channel is full: hundreds of spawns asked at once (a pool starting, a scale
            # up) without this loop reading the zygote's replies, so the zygote may be waiting
            # to send one. Waiting here without reading them would wait for ever: read what is
            # there (handled once the caller returns, in order), then wait for room.
            for reply in self._receive(sock):
                self.loop.call_soon(self._dispatch, reply)
            select.select([sock], [sock], [], 1.0)

    @property
    def fresh_pid(self) -> int | None:
        """The pid of the zygote a reload started, until the reload adopts or discards it."""
        return None if self._fresh is None else self._fresh[0].pid

    async def prepare(self, targets: list[tuple[str, str]], log_level: str, timeout: float,
                      ) -> None:
        """Start a new zygote that imports the code as it is now on disk (a reload), next to
        the current one, which goes on forking every other spawn. If the new one cannot import
        the code, it is discarded and the error raised."""
        self.discard()
        proc, sock = self._launch()
        self._fresh = (proc, sock)
        try:
            await self._load(sock, targets, log_level, timeout, None)
            if proc.returncode is not None:
                raise ClusterError("the new zygote exited after importing the code")
        except BaseException:
            self.discard()
            raise
        self.loop.add_reader(sock.fileno(), self._on_readable, sock)

    def adopt(self) -> None:
        """The reload succeeded: the new zygote forks everything from now on; the old one is
        told to exit (its channel closes)."""
        if self._fresh is None:
            return
        (proc, sock), self._fresh = self._fresh, None
        self._pending.clear()  # the old zygote forks what it was asked before it exits
        old_proc, old_sock, old_pid = self._proc, self._sock, self.pid
        self._proc, self._sock, self.pid = proc, sock, proc.pid
        if old_pid is not None and old_proc is not None:
            self._retire(old_proc)
        if old_sock is not None:
            self._close(old_sock)

    def discard(self) -> None:
        """The reload failed (or the cluster stops): the new zygote exits, the old one stays."""
        if self._fresh is None:
            return
        (proc, sock), self._fresh = self._fresh, None
        self._close(sock)
        if proc.returncode is None:  # a reaped pid may be reused: never count it as ours
            self._retire(proc)

    def fresh_reaped(self) -> None:
        """The primary reaped the zygote a reload started, before the reload adopted or
        discarded it. Its channel stays open until then (``prepare`` may be reading it); spawns
        asked of it from now on fail at once."""
        if self._fresh is not None:
            self._fresh[0].returncode = -1  # reaped by the primary's waitpid loop, not Popen

    def _retire(self, proc: subprocess.Popen) -> None:
        """A zygote told to exit (its channel is closed): reaped without a word, and killed if
        it lingers (a pid not reaped yet is still ours to signal)."""
        # The primary's waitpid loop reaps it: a returncode keeps Popen from reaping it too
        # (a dropped Popen is polled by the next Popen), which would leave the pid in `retired`.
        proc.returncode = -1
        self.retired.add(proc.pid)
        self.loop.call_later(1.0, self._kill_lingering, proc.pid)

    async def restart(self, targets: list[tuple[str, str]], log_level: str, timeout: float) -> None:
        """A new zygote after the last one died; spawn requests made meanwhile go to it."""
        self.restarting = True
        try:
            await self.start(targets, log_level, timeout)
        finally:
            self.restarting = False
        waiting, self._waiting = self._waiting, []
        for spec, fd in waiting:
            try:
                self.spawn(spec, fd)
            finally:
                os.close(fd)

    def _on_readable(self, sock: socket.socket) -> None:
        for message in self._receive(sock):
            self._dispatch(message)

    def _receive(self, sock: socket.socket) -> list[dict[str, Any]]:
        """The zygote's replies waiting on ``sock``."""
        messages = []
        while True:
            try:
                data = sock.recv(SPAWNER_MAX)
            except (BlockingIOError, InterruptedError):
                return messages
            except OSError:
                data = b""
            if not data:
                self.loop.remove_reader(sock.fileno())
                return messages  # that zygote is gone; the primary learns it from SIGCHLD
            messages.append(decode_control(data))

    def _dispatch(self, message: dict[str, Any]) -> None:
        self._pending.discard(message.get("id", ""))
        if message["op"] == "spawned":
            self.on_spawned(message["id"], int(message["pid"]))
        elif message["op"] == "spawn_error":
            self.on_spawn_error(message["id"], str(message["error"]))

    def reaped(self) -> None:
        """The primary reaped the zygote."""
        if self._proc is not None:
            self._proc.returncode = -1  # reaped by the primary's waitpid loop, not Popen
        self.pid = None
        if self._sock is not None:  # what it answered before it died counts
            for message in self._receive(self._sock):
                self._dispatch(message)
        self._close_channel()
        # A spawn it was asked and never answered died with it (a kill -9 before it read the
        # request): without an answer the child stayed "starting", without a pid, for ever,
        # and its supervisor's next decisions waited behind it. Its start failed, so its
        # supervisor restarts it, from the next zygote.
        # It may also have forked one and died before saying so: that process says "ready"
        # (with its pid) to the router. So the verdict waits a moment, and a child heard from
        # meanwhile is kept (on_spawn_error leaves a child with a pid alone); one that says
        # ready later, its start already failed, is told to stop (processes.on_system).
        lost, self._pending = self._pending, set()
        for identity in sorted(lost):
            self.loop.call_later(SPAWN_LOST_GRACE, self.on_spawn_error, identity,
                                 "the zygote died before it answered")

    def stop(self) -> None:
        """Ask the zygote to exit: closing its channel is the request; SIGKILL if it lingers."""
        self.discard()
        self._close_channel()
        waiting, self._waiting = self._waiting, []  # for a new zygote that will not come now
        for _spec, fd in waiting:
            os.close(fd)
        if self.pid is not None:
            self.loop.call_later(1.0, self._kill_lingering, self.pid)

    def _close_channel(self) -> None:
        if self._sock is not None:
            self._close(self._sock)
            self._sock = None

    def _close(self, sock: socket.socket) -> None:
        try:
            self.loop.remove_reader(sock.fileno())
        except (ValueError, OSError):
            pass
        sock.close()

    def _kill_lingering(self, pid: int) -> None:
        if self.pid == pid or pid in self.retired:  # not reaped yet, so the pid is still ours
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
