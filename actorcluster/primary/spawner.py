"""The primary's side of the zygote: start it, have it import the app, ask it for workers.

The zygote is a fresh interpreter (never a fork of the primary, which holds a ZeroMQ context and
its threads). It imports the app once; every worker is then a fork of that clean, pre-imported
process, which makes a respawn cost a few milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from ..errors import ClusterError, TargetImportError
from ..wire import SPAWNER_MAX, decode_control, encode_control

log = logging.getLogger("actorcluster.spawner")


class Spawner:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_spawned: Callable[[str, int], None],
        on_spawn_error: Callable[[str, str], None],
    ) -> None:
        self.loop = loop
        self.on_spawned = on_spawned
        self.on_spawn_error = on_spawn_error
        self.pid: int | None = None
        self.restarting = False
        self._waiting: list[tuple[dict[str, Any], int]] = []
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self.retired: set[int] = set()  # zygotes replaced by a reload, reaped as they exit

    async def start(self, targets: list[tuple[str, str]], log_level: str, timeout: float,
                    entry: str | None = None) -> dict[str, Any] | None:
        """Start the zygote and wait until it imported every (target, kind) and ``entry``;
        returns the supervision tree ``entry`` describes (as a dict), or None for a handler.
        A target that fails raises TargetImportError with the target in ``.target``."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        # `actorcluster run` imports the app from the current directory, like `python -m` does.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
        # The zygote leaves SIGTERM and SIGINT to the primary (it stops when its channel closes);
        # started with them blocked (a signal mask survives exec), it cannot die of one sent to
        # the whole process group while its interpreter starts. Here they wait, not get lost.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "actorcluster.worker.zygote", str(theirs.fileno()),
                 str(os.getpid())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        theirs.close()
        self.pid = self._proc.pid
        self._sock = ours
        ours.send(encode_control("load", targets=targets, log_level=log_level, entry=entry))
        ours.setblocking(False)
        try:
            data = await asyncio.wait_for(self.loop.sock_recv(ours, SPAWNER_MAX), timeout)
        except TimeoutError:
            names = ", ".join([t for t, _ in targets] + ([entry] if entry else []))
            raise ClusterError(f"importing {names} took more than {timeout} s") from None
        if not data:
            names = ", ".join([t for t, _ in targets] + ([entry] if entry else []))
            raise ClusterError(f"the zygote exited while importing {names}")
        reply = decode_control(data)
        if reply["op"] == "load_error":
            error = TargetImportError(reply["error"])
            error.target = reply.get("target")  # type: ignore[attr-defined]
            raise error
        self.loop.add_reader(ours.fileno(), self._on_readable)
        return reply.get("tree")

    def spawn(self, spec: dict[str, Any], handoff_fd: int) -> None:
        """Ask the zygote for a worker; its pid arrives through ``on_spawned``. While a new
        zygote is starting, the request waits (with its own copy of the fd)."""
        if self._sock is None or self.restarting:
            self._waiting.append((spec, os.dup(handoff_fd)))
            return
        self._sock.setblocking(True)  # tiny datagrams the zygote reads at once
        try:
            socket.send_fds(self._sock, [encode_control("spawn", spec=spec)], [handoff_fd])
        finally:
            self._sock.setblocking(False)

    async def replace(self, targets: list[tuple[str, str]], log_level: str, timeout: float
                      ) -> None:
        """A new zygote that imports the code as it is now on disk (a reload); the old one is
        told to exit once the new one has imported everything. If the new one cannot import
        the code, it is gone and the old one stays: the error is raised."""
        old_sock, old_proc, old_pid = self._sock, self._proc, self.pid
        self._sock = None
        try:
            await self.start(targets, log_level, timeout)
        except BaseException:
            if self.pid is not None and self.pid != old_pid:
                self.retired.add(self.pid)
                if self._proc is not None and self._proc.poll() is None:
                    self._proc.kill()
            if self._sock is not None and self._sock is not old_sock:
                self._sock.close()
            self._sock, self._proc, self.pid = old_sock, old_proc, old_pid
            raise
        if old_pid is not None:
            self.retired.add(old_pid)
        if old_sock is not None:
            try:
                self.loop.remove_reader(old_sock.fileno())
            except (ValueError, OSError):
                pass
            old_sock.close()  # the old zygote's cue to exit

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

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(SPAWNER_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.loop.remove_reader(self._sock.fileno())
                return  # the zygote is gone; the primary learns it from SIGCHLD
            message = decode_control(data)
            if message["op"] == "spawned":
                self.on_spawned(message["id"], int(message["pid"]))
            elif message["op"] == "spawn_error":
                self.on_spawn_error(message["id"], str(message["error"]))

    def reaped(self) -> None:
        """The primary reaped the zygote."""
        if self._proc is not None:
            self._proc.returncode = -1  # reaped by the primary's waitpid loop, not Popen
        self.pid = None
        self._close_channel()

    def stop(self) -> None:
        """Ask the zygote to exit: closing its channel is the request; SIGKILL if it lingers."""
        self._close_channel()
        waiting, self._waiting = self._waiting, []  # for a new zygote that will not come now
        for _spec, fd in waiting:
            os.close(fd)
        if self.pid is not None:
            self.loop.call_later(1.0, self._kill_lingering, self.pid)

    def _close_channel(self) -> None:
        if self._sock is not None:
            try:
                self.loop.remove_reader(self._sock.fileno())
            except (ValueError, OSError):
                pass
            self._sock.close()
            self._sock = None

    def _kill_lingering(self, pid: int) -> None:
        if self.pid == pid:  # not reaped yet, so the pid is still the zygote's
            os.kill(pid, signal.SIGKILL)
