"""The supervisor actor: starts the workers, watches them, applies the restart decisions.

The decisions themselves are pure (actorcluster.supervision); this module does the I/O: spawning
through the zygote, liveness from SIGCHLD and heartbeats, the stop ladder (SIGTERM, wait, SIGKILL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from ..config import ClusterConfig
from ..supervision import (
    Decision,
    ExitReason,
    GiveUp,
    Intensity,
    Restart,
    Strategy,
    SupervisorLogic,
)
from ..wire import ExitCode, incarnation_id
from .gateway import Gateway, Link
from .router import Router
from .spawner import Spawner

log = logging.getLogger("actorcluster.supervisor")

STARTING, READY, STOPPING, DOWN = "starting", "ready", "stopping", "down"
PROMOTED = "promoted"  # a standby serving under its new name, not yet re-identified on the router
SPARE = "web/standby"
SPARE_RETRY = 1.0
SPARE_DELAY = 0.1
STACK_DUMP_WAIT = 0.3


class Child:
    __slots__ = ("name", "kind", "target", "incarnation", "pid", "state", "link", "last_heard",
                 "since", "stop_requested", "kill_detail", "restarts")

    def __init__(self, name: str, kind: str, target: str) -> None:
        self.name = name
        self.kind = kind  # "http" (a member of the pool) or "actor"
        self.target = target
        self.incarnation = 0
        self.pid: int | None = None
        self.state = DOWN
        self.link: Link | None = None
        self.last_heard = 0.0
        self.since = 0.0
        self.stop_requested = False
        self.kill_detail = ""
        self.restarts = 0

    @property
    def identity(self) -> str:
        return incarnation_id(self.name, self.incarnation).decode()


class Supervisor:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: ClusterConfig,
        spawner: Spawner,
        router: Router,
        gateway: Gateway,
        halt: Callable[[int, str], None],
    ) -> None:
        self.loop = loop
        self.config = config
        self.spawner = spawner
        self.router = router
        self.gateway = gateway
        self.halt = halt
        self.heartbeat = min(1.0, config.timeout / 4)
        children = [Child(name, "actor", target) for name, target in config.actors]
        pool = [f"web/{i}" for i in range(1, config.workers + 1)]
        children += [Child(name, "http", config.target) for name in pool]
        self.children = {c.name: c for c in children}
        router.set_group("web", pool)
        self.logic = SupervisorLogic(
            "root",
            Strategy.ONE_FOR_ONE,
            [(c.name, Restart.PERMANENT) for c in children],
            Intensity(config.max_restarts, config.within),
        )
        self.started = False  # every child has been ready once: the cluster is up
        # A standby HTTP worker, forked and ready, not in rotation: a worker that dies is
        # replaced by promoting it (no fork, no start-up on the critical path of a crash).
        self.spare: Child | None = None
        self._spare_serial = Child(SPARE, "http", config.target)
        self.by_pid: dict[int, Child] = {}
        self.by_id: dict[str, Child] = {}
        self._early_exits: dict[int, int] = {}
        self._changed = asyncio.Event()
        self.stopping = False

    # -- starting -------------------------------------------------------------------------------

    def _spec(self, child: Child) -> dict[str, Any]:
        c = self.config
        return {
            "id": child.identity, "name": child.name, "incarnation": child.incarnation,
            "kind": child.kind, "target": child.target, "router": self.router.endpoint,
            "primary_pid": os.getpid(), "heartbeat": self.heartbeat, "timeout": c.timeout,
            "graceful_timeout": c.graceful_timeout, "log_level": c.log_level, "loop": c.loop,
            "threads": c.threads, "keepalive": c.keepalive, "max_body": c.max_body,
            "family": int(self.gateway.listener.family),
        }

    def start_child(self, child: Child) -> None:
        if self.stopping:
            return
        spare = self.spare
        if child.kind == "http" and spare is not None and spare is not child and (
            spare.state == READY
        ):
            self._promote(child)
            return
        child.incarnation += 1
        child.pid = None
        child.state = STARTING
        child.stop_requested = False
        child.kill_detail = ""
        child.since = child.last_heard = self.loop.time()
        self.by_id[child.identity] = child
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        child.link = self.gateway.open_link(child.name, ours)
        try:
            self.spawner.spawn(self._spec(child), theirs.fileno())
        finally:
            theirs.close()

    async def start_all(self) -> None:
        """Start every child in order; return when all are ready (the caller bounds the wait)."""
        for child in self.children.values():
            self.start_child(child)
        while any(c.state != READY for c in self.children.values()):
            self._changed.clear()
            await self._changed.wait()
        self.started = True
        self._start_spare()

    def _start_spare(self) -> None:
        if self.stopping or self.spare is not None or not self.config.standby:
            return
        if not any(c.kind == "http" for c in self.children.values()):
            return
        self.spare = self._spare_serial  # one Child object; its incarnation counts the spares
        self.start_child(self.spare)

    def _promote(self, child: Child) -> None:
        """Replace ``child`` by the ready standby: it takes the name and goes into rotation."""
        spare = self.spare
        assert spare is not None and spare.pid is not None and spare.link is not None
        self.spare = None
        self.by_id.pop(spare.identity, None)
        old_identity = spare.identity.encode()
        child.incarnation += 1
        child.pid, child.link = spare.pid, spare.link
        child.link.name = child.name
        spare.pid, spare.link, spare.state = None, None, DOWN
        child.state = PROMOTED
        child.stop_requested = False
        child.kill_detail = ""
        child.since = child.last_heard = self.loop.time()
        self.by_pid[child.pid] = child
        self.by_id[child.identity] = child
        self.router.send_system(old_identity, "promote", name=child.name,
                                incarnation=child.incarnation)
        self.gateway.add(child.link)
        log.info("Worker %s started", child.pid)
        self._changed.set()
        # the next standby starts a moment later, off the promoted worker's first requests
        self.loop.call_later(SPARE_DELAY, self._start_spare)

    def on_spawned(self, identity: str, pid: int) -> None:
        child = self.by_id.get(identity)
        if child is None or child.identity != identity:
            log.warning("unknown worker %s (pid %d) spawned; stopping it", identity, pid)
            os.kill(pid, signal.SIGKILL)
            return
        child.pid = pid
        self.by_pid[pid] = child
        if self.stopping:
            self._signal(child, signal.SIGTERM)
        if pid in self._early_exits:
            self.on_exit(pid, self._early_exits.pop(pid))

    def on_system(self, identity: bytes, message: dict[str, Any]) -> None:
        child = self.by_id.get(identity.decode(errors="replace"))
        if child is None or child.identity != identity.decode():
            return  # a message from an incarnation that is already gone
        child.last_heard = self.loop.time()
        op = message["op"]
        if op == "ready" and child is self.spare:
            child.state = READY
            log.debug("standby worker %s ready", child.pid)
            return
        if op == "ready" and child.state == PROMOTED:
            child.state = READY  # re-identified on the router under its new name
            self.router.bind(child.name, identity)
            return
        if op == "ready" and child.state == STARTING:
            child.state = READY
            child.since = self.loop.time()
            self.router.bind(child.name, identity)
            if child.link is not None and not self.stopping:
                self.gateway.add(child.link)
            pid = child.pid if child.pid else message.get("pid")
            if child.kind == "http":
                log.info("Worker %s started", pid)
            else:
                log.info("Actor %s (pid %s) started", child.name, pid)
            self._changed.set()

    # -- exits ----------------------------------------------------------------------------------

    def on_exit(self, pid: int, status: int) -> None:
        child = self.by_pid.pop(pid, None)
        if child is None:
            self._early_exits[pid] = status  # reaped before the zygote told us whose it was
            return
        self.by_id.pop(child.identity, None)
        self.router.incarnation_down(child.name, child.identity.encode())
        reason = ExitReason.from_wait_status(status, detail=child.kill_detail)
        if child.link is not None:
            self.gateway.close_link(child.link)
            child.link = None
        was_starting = child.state == STARTING
        child.state = DOWN
        child.pid = None
        self._changed.set()
        if child is self.spare:
            self.spare = None
            if not self.stopping:
                log.warning("standby worker %d died (%s); starting another in %.0f s", pid,
                            reason.describe(), SPARE_RETRY)
                self.loop.call_later(SPARE_RETRY, self._start_spare)
            return
        uptime = self.loop.time() - child.since if not was_starting else 0.0
        decision = self.logic.child_exited(child.name, reason, time.monotonic(), uptime)
        if self.stopping or child.stop_requested:
            if self.stopping:
                self.router.forget(child.name)
            return  # a stop we asked for; the logic knows it too and decided nothing
        what = "Worker" if child.kind == "http" else f"Actor {child.name}"
        if reason.code == ExitCode.BOOT_ERROR and was_starting and not self.started:
            self.halt(1, f"{what} {pid} ({child.name}) failed to boot ({reason.describe()})")
            return
        if isinstance(decision, GiveUp):
            log.warning("%s %d died (%s), not restarting", what, pid, reason.describe())
            self.halt(1, decision.reason)
            return
        verb = "restarting" if child.name in decision.start else "not restarting"
        log.warning("%s %d died (%s), %s%s", what, pid, reason.describe(), verb,
                    " (it never became ready)" if was_starting else "")
        self._apply(decision)
        for name in (*decision.stop, *decision.start):
            self.router.hold(name)
        if child.name not in decision.start:
            self.router.forget(child.name)

    def _apply(self, decision: Decision) -> None:
        for name in decision.stop:
            child = self.children[name]
            if child.pid is not None:
                child.stop_requested = True
                self._signal(child, signal.SIGTERM)
        for name in decision.start:
            self.children[name].restarts += 1
        if decision.start:
            if decision.delay > 0:
                self.loop.call_later(decision.delay, self._start_names, decision.start)
            else:
                self._start_names(decision.start)

    def _start_names(self, names: tuple[str, ...]) -> None:
        for name in names:
            self.start_child(self.children[name])

    # -- liveness -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Send heartbeats and kill children that stopped sending theirs."""
        now = self.loop.time()
        for child in self._all():
            if child.pid is None or child.state in (DOWN, STOPPING):
                continue
            if child.state in (READY, PROMOTED):
                self.router.send_system(child.identity.encode(), "heartbeat")
            silent = now - child.last_heard
            if silent > self.config.timeout and not child.kill_detail:
                what = "no heartbeat" if child.state == READY else "not ready"
                child.kill_detail = f"{what} for {silent:.1f} s"
                log.error("Worker %d (%s): %s; its Python stack follows, then it is killed",
                          child.pid, child.name, child.kill_detail)
                self._signal(child, signal.SIGUSR1)
                self.loop.call_later(STACK_DUMP_WAIT, self._kill_if_same, child, child.pid)

    def _kill_if_same(self, child: Child, pid: int) -> None:
        if child.pid == pid:
            self._signal(child, signal.SIGKILL)

    def _signal(self, child: Child, sig: int) -> None:
        if child.pid is None:
            return
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            pass

    # -- stopping -------------------------------------------------------------------------------

    def _all(self) -> list[Child]:
        children = list(self.children.values())
        return children + [self.spare] if self.spare is not None else children

    def live(self) -> list[Child]:
        return [c for c in self._all() if c.pid is not None or c.state == STARTING]

    async def stop_all(self, timeout: float) -> None:
        """Stop every child in reverse start order: SIGTERM, wait up to ``timeout``, SIGKILL."""
        self.stopping = True
        self.logic.shutdown()
        order = [self.children[name] for name in self.logic.shutdown_order()]
        if self.spare is not None:
            order.insert(0, self.spare)
        for child in order:
            if child.link is not None:
                self.gateway.withdraw(child.link)
        for child in order:
            child.stop_requested = True
            self._signal(child, signal.SIGTERM if timeout > 0 else signal.SIGKILL)
        if not await self._wait_down(timeout):
            for child in self.live():
                log.warning("Worker %s (%s) did not stop within %.1f s; killing it",
                            child.pid, child.name, timeout)
                self._signal(child, signal.SIGKILL)
            await self._wait_down(5.0)

    def kill_all(self) -> None:
        self.stopping = True
        self.logic.shutdown()
        for child in self.live():
            self._signal(child, signal.SIGKILL)

    async def _wait_down(self, timeout: float) -> bool:
        deadline = self.loop.time() + timeout
        while self.live():
            left = deadline - self.loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return not self.live()
        return True

    # -- what the primary answers ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.loop.time()
        return {
            "name": "root",
            "strategy": "one_for_one",
            "max_restarts": self.config.max_restarts,
            "within": self.config.within,
            "children": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "target": c.target,
                    "pid": c.pid,
                    "state": c.state,
                    "incarnation": c.incarnation,
                    "restarts": c.restarts,
                    "uptime": round(now - c.since, 3) if c.state == READY else 0.0,
                }
                for c in self.children.values()
            ],
            "standby": {"pid": self.spare.pid, "state": self.spare.state}
            if self.spare is not None else None,
        }
