"""The supervision tree at run time: starts children in order, watches them, applies decisions.

The decisions are pure (actorcluster.supervision); this module does the I/O: spawning through the
zygote, liveness from the kernel (pidfd) and heartbeats, the stop ladder (SIGTERM, the child's
``shutdown`` seconds, SIGKILL), escalation from a supervisor that gave up to its parent, and the
dynamic-children requests. Each supervisor handles one event at a time, under its own lock, in
the order the events came (an OTP supervisor's mailbox); a parent may take a child's lock, never
the other way round, so the locks cannot deadlock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from .. import specs
from ..config import ClusterConfig
from ..errors import ConfigError
from ..supervision import Decision, ExitReason, GiveUp
from ..wire import ExitCode
from .children import (
    DOWN,
    PROMOTED,
    READY,
    STARTING,
    STOPPING,
    Leaf,
    Node,
    PoolNode,
    SupervisorNode,
    is_up,
    kind_of,
    shutdown_seconds,
    status_of,
)
from .dynamic_children import DynamicChildren, SupervisorError
from .gateway import Gateway
from .router import Router
from .spawner import Spawner
from .usage import Usage

log = logging.getLogger("actorcluster.supervisor")

SPARE_RETRY = 1.0
SPARE_DELAY = 0.1
STACK_DUMP_WAIT = 0.3
KILL_WAIT = 5.0  # after SIGKILL, how long to wait for the kernel to report the exit


class SupervisionTree(DynamicChildren):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        config: ClusterConfig,
        tree: specs.Supervisor,
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
        self.names: dict[str, Node] = {}  # every name in the tree: one namespace, as in Erlang
        self.root = self._build_supervisor(tree, None)
        self.started = False  # the whole tree has been up once
        self.stopping = False
        # A standby HTTP worker, forked and ready, out of rotation: a pool member that dies is
        # replaced by promoting it (no fork, no start-up on the critical path of a crash).
        self.spare: Leaf | None = None
        pool = self.pool
        self._spare_serial = Leaf(f"{pool.name}/standby", "http", str(pool.spec.http),
                                  pool.parent, pool, pool.restart, 0.0) if pool else None
        self.by_pid: dict[int, Leaf] = {}
        self.by_id: dict[str, Leaf] = {}
        self._early_exits: dict[int, int] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._incarnations: dict[str, int] = {}
        self.candidates: set[Leaf] = set()  # replacements starting (reload, recycling)
        self.retiring: set[Leaf] = set()  # replaced processes finishing their work
        self.restart_counts: Counter[tuple[str, str]] = Counter()  # (child, why) -> restarts
        self.on_recycle: Callable[[Leaf, str], None] = lambda leaf, why: None
        self._usage = Usage()

    # -- building -------------------------------------------------------------------------------

    def _register(self, node: Node) -> None:
        if node.name in self.names:
            raise ConfigError(f"the name {node.name!r} is already used in the tree")
        self.names[node.name] = node

    def _build(self, spec: specs.Spec, parent: SupervisorNode) -> Node:
        if isinstance(spec, specs.Supervisor):
            return self._build_supervisor(spec, parent)
        if isinstance(spec, specs.Pool):
            workers = spec.workers if isinstance(spec.workers, int) else self.config.workers
            pool = PoolNode(spec, parent, workers, self.config.graceful_timeout)
            self._register(pool)
            for member in pool.members.values():
                self._register(member)
            self.router.set_group(pool.name, list(pool.members))
            return pool
        leaf = Leaf(spec.name, "actor", str(spec.actor), parent, None, spec.restart,
                    shutdown_seconds(spec.shutdown, 5.0))
        self._register(leaf)
        return leaf

    def _build_supervisor(self, spec: specs.Supervisor, parent: SupervisorNode | None
                          ) -> SupervisorNode:
        node = SupervisorNode(spec, parent)
        self._register(node)
        for child in spec.children:
            node.children[child.name] = self._build(child, node)
        node.logic = node.new_logic()
        return node

    def _unregister(self, node: Node) -> None:
        for leaf in self.leaves(node):
            self.names.pop(leaf.name, None)
            self.router.forget(leaf.name)
        if isinstance(node, SupervisorNode):
            for child in list(node.children.values()):
                self._unregister(child)
        self.names.pop(node.name, None)

    @property
    def pool(self) -> PoolNode | None:
        return next((n for n in self.names.values() if isinstance(n, PoolNode)), None)

    def leaves(self, node: Node) -> list[Leaf]:
        if isinstance(node, Leaf):
            return [node]
        if isinstance(node, PoolNode):
            return list(node.members.values())
        return [leaf for child in node.children.values() for leaf in self.leaves(child)]

    # -- process children: spawn, ready, stop ---------------------------------------------------

    def _spec(self, leaf: Leaf) -> dict[str, Any]:
        c = self.config
        return {
            "id": leaf.identity, "name": leaf.name, "incarnation": leaf.incarnation,
            "kind": leaf.kind, "target": leaf.target, "router": self.router.endpoint,
            "primary_pid": os.getpid(), "heartbeat": self.heartbeat, "timeout": c.timeout,
            "graceful_timeout": c.graceful_timeout, "log_level": c.log_level, "loop": c.loop,
            "threads": c.threads, "keepalive": c.keepalive, "max_body": c.max_body,
            "family": int(self.gateway.family),
            "metrics": c.metrics_bind is not None,  # time requests for the latency histogram
            "max_requests": c.max_requests + random.randint(0, c.max_requests_jitter)
            if c.max_requests else 0,
        }

    def spawn(self, leaf: Leaf) -> None:
        """Start a new incarnation of ``leaf`` (or promote the standby into it)."""
        if self.stopping or leaf.live:
            return
        spare = self.spare
        if leaf.pool is not None and spare is not None and spare is not leaf and (
            spare.state == READY
        ):
            self._promote(leaf)
            return
        leaf.incarnation = self._next_incarnation(leaf.name)
        leaf.pid = None
        leaf.state = STARTING
        leaf.stop_requested = False
        leaf.kill_detail = ""
        leaf.since = leaf.last_heard = self.loop.time()
        self.by_id[leaf.identity] = leaf
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        leaf.link = self.gateway.open_link(leaf.name, ours)
        try:
            self.spawner.spawn(self._spec(leaf), theirs.fileno())
        finally:
            theirs.close()

    def _next_incarnation(self, name: str) -> int:
        """Incarnation numbers are never reused for a name, even when two processes carry it
        for a moment (a reload starts the replacement before the old one stops)."""
        number = self._incarnations.get(name, 0) + 1
        self._incarnations[name] = number
        return number

    async def until(self, done: Callable[[], bool], timeout: float = math.inf) -> bool:
        """Wait until ``done()`` (re-checked at every state change); False on timeout."""
        deadline = self.loop.time() + timeout
        while not done():
            left = deadline - self.loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), None if math.isinf(left) else left)
            except TimeoutError:
                return done()
        return True

    async def _start_leaf(self, leaf: Leaf) -> bool:
        """Start ``leaf`` and wait until it reports ready (True) or dies first (False)."""
        self.spawn(leaf)
        incarnation = leaf.incarnation
        await self.until(lambda: leaf.incarnation != incarnation or leaf.up or not leaf.live)
        return leaf.up

    async def stop_leaf(self, leaf: Leaf) -> None:
        """The stop ladder: SIGTERM, ``shutdown`` seconds, SIGKILL (brutal_kill: SIGKILL now)."""
        if not leaf.live:
            return
        leaf.stop_requested = True
        if leaf.link is not None:
            self.gateway.withdraw(leaf.link)
        incarnation = leaf.incarnation

        def gone() -> bool:
            return leaf.incarnation != incarnation or not leaf.live

        if leaf.shutdown > 0:
            self.send_signal(leaf, signal.SIGTERM)
            if await self.until(gone, leaf.shutdown):
                return
            log.warning("%s did not stop within %g s; killing it", _who(leaf, leaf.pid),
                        leaf.shutdown)
        self.send_signal(leaf, signal.SIGKILL)
        await self.until(gone, KILL_WAIT)

    def _promote(self, leaf: Leaf) -> None:
        """Replace ``leaf`` by the ready standby: it takes the name and goes into rotation."""
        spare = self.spare
        assert spare is not None and spare.pid is not None and spare.link is not None
        self.spare = None
        self.by_id.pop(spare.identity, None)
        old_identity = spare.identity.encode()
        leaf.incarnation = self._next_incarnation(leaf.name)
        leaf.pid, leaf.link = spare.pid, spare.link
        leaf.link.name = leaf.name
        spare.pid, spare.link, spare.state = None, None, DOWN
        leaf.state = PROMOTED
        leaf.stop_requested = False
        leaf.kill_detail = ""
        leaf.since = leaf.last_heard = self.loop.time()
        self.by_pid[leaf.pid] = leaf
        self.by_id[leaf.identity] = leaf
        self.router.send_system(old_identity, "promote", name=leaf.name,
                                incarnation=leaf.incarnation)
        self.gateway.add(leaf.link)
        log.info("Worker %s started", leaf.pid)
        self._changed.set()
        # the next standby starts a moment later, off the promoted worker's first requests
        self.loop.call_later(SPARE_DELAY, self.start_spare)

    def start_spare(self) -> None:
        if self.stopping or self.spare is not None or not self.config.standby:
            return
        if self._spare_serial is None or self._spare_serial.pool.state != READY:
            return
        self.spare = self._spare_serial  # one Leaf; its incarnation counts the spares
        self.spawn(self.spare)

    # -- subtrees: start and stop ---------------------------------------------------------------

    async def _start(self, node: Node) -> bool:
        """Start ``node`` (and its subtree, children in order); True when it is up."""
        if isinstance(node, Leaf):
            return await self._start_leaf(node)
        if isinstance(node, PoolNode):
            node.state = STARTING
            members = list(node.members.values())
            for member in members:
                self.spawn(member)
            await self.until(lambda: all(m.up or not m.live for m in members))
            node.state = READY
            self._changed.set()
            if self.started:
                self.start_spare()
            return all(m.up for m in members)
        async with node.lock:
            if node.started_once:
                self._reset_children(node)
            node.started_once = True
            node.logic = node.new_logic()
            node.state = STARTING
            up = True
            for child in list(node.children.values()):
                if self.stopping:
                    return False
                up = await self._start(child) and up
            node.state = READY
            self._changed.set()
            return up

    def _reset_children(self, node: SupervisorNode) -> None:
        """A restarted supervisor has the children of its spec again, as an OTP supervisor whose
        init runs again: dynamic children are gone, deleted ones are back."""
        static = [spec.name for spec in node.spec.children]
        for name in [n for n in node.children if n not in static]:
            self._unregister(node.children.pop(name))
        node.children = {
            spec.name: node.children.get(spec.name) or self._build(spec, node)
            for spec in node.spec.children
        }

    async def _stop(self, node: Node, lock: bool = True) -> None:
        """Stop ``node``; a supervisor stops its children in reverse start order, one by one."""
        if isinstance(node, Leaf):
            await self.stop_leaf(node)
            return
        if isinstance(node, PoolNode):
            node.state = STOPPING
            await asyncio.gather(*(self.stop_leaf(m) for m in node.members.values()))
            node.state = DOWN
            self._changed.set()
            return
        stopping = self._stop_children(node, lock)
        if math.isinf(node.shutdown):  # "infinity", the default: as long as its children take
            await stopping
            return
        try:  # a number of seconds (or brutal_kill): then every process under it is killed
            await asyncio.wait_for(stopping, node.shutdown or 0.001)
        except TimeoutError:
            log.warning("Supervisor %s did not stop within %g s; killing its processes",
                        node.name, node.shutdown)
            leaves = [leaf for leaf in self.leaves(node) if leaf.live]
            for leaf in leaves:
                leaf.stop_requested = True
                self.send_signal(leaf, signal.SIGKILL)
            await self.until(lambda: not any(leaf.live for leaf in leaves), KILL_WAIT)
            node.state = DOWN
            self._changed.set()

    async def _stop_children(self, node: SupervisorNode, lock: bool) -> None:
        if lock:
            async with node.lock:
                await self._stop_subtree(node, lock)
        else:  # the cluster is stopping: no supervisor decides anything any more
            await self._stop_subtree(node, lock)

    async def _stop_subtree(self, node: SupervisorNode, lock: bool) -> None:
        node.state = STOPPING
        node.logic.shutdown()
        for child in reversed(list(node.children.values())):
            await self._stop(child, lock)
        node.state = DOWN
        self._changed.set()

    async def start_all(self) -> None:
        """Start the whole tree; return when every child is up (the caller bounds the wait)."""
        await self._start(self.root)
        if not self.stopping:
            self.started = True
            self.start_spare()

    # -- events from the zygote, the router and the kernel ---------------------------------------

    def on_spawned(self, identity: str, pid: int) -> None:
        leaf = self.by_id.get(identity)
        if leaf is None or leaf.identity != identity:
            log.warning("unknown worker %s (pid %d) spawned; stopping it", identity, pid)
            os.kill(pid, signal.SIGKILL)
            return
        leaf.pid = pid
        self.by_pid[pid] = leaf
        if self.stopping or leaf.stop_requested:
            self.send_signal(leaf, signal.SIGTERM)
        if pid in self._early_exits:
            self.on_exit(pid, self._early_exits.pop(pid))

    def on_spawn_error(self, identity: str, error: str) -> None:
        """The zygote could not import the target of a new child: it never started."""
        leaf = self.by_id.pop(identity, None)
        if leaf is None or leaf.identity != identity:
            return
        log.error("%s %s failed to boot: %s", _what(leaf), leaf.name, error)
        self._down(leaf, ExitReason(code=ExitCode.BOOT_ERROR, detail=f"boot error: {error}"))

    def on_system(self, identity: bytes, message: dict[str, Any]) -> None:
        leaf = self.by_id.get(identity.decode(errors="replace"))
        if leaf is None or leaf.identity != identity.decode():
            return  # a message from an incarnation that is already gone
        leaf.last_heard = self.loop.time()
        op = message["op"]
        if op == "heartbeat":
            leaf.stats = message
            return
        if op == "recycle":
            if leaf.pool is not None and leaf in leaf.pool.members.values():
                self.on_recycle(leaf, str(message.get("reason", "")))
            return
        if op != "ready":
            return
        if leaf is self.spare:
            leaf.state = READY
            log.debug("standby worker %s ready", leaf.pid)
            return
        if leaf.state == PROMOTED:
            leaf.state = READY  # re-identified on the router under its new name
            self.router.bind(leaf.name, identity)
            return
        if leaf.state == STARTING:
            leaf.state = READY
            leaf.since = self.loop.time()
            self.router.bind(leaf.name, identity)
            if leaf.link is not None and leaf.kind == "http" and not self.stopping:
                self.gateway.add(leaf.link)
            pid = leaf.pid if leaf.pid else message.get("pid")
            if leaf.kind == "http":
                log.info("Worker %s started", pid)
            else:
                log.info("Actor %s (pid %s) started", leaf.name, pid)
            self._changed.set()

    def on_exit(self, pid: int, status: int) -> None:
        leaf = self.by_pid.pop(pid, None)
        if leaf is None:
            self._early_exits[pid] = status  # reaped before the zygote told us whose it was
            return
        self.by_id.pop(leaf.identity, None)
        self._down(leaf, ExitReason.from_wait_status(status, detail=leaf.kill_detail))

    def _down(self, leaf: Leaf, reason: ExitReason) -> None:
        pid = leaf.pid
        self.router.incarnation_down(leaf.name, leaf.identity.encode())
        if leaf.link is not None:
            self.gateway.close_link(leaf.link)
            leaf.link = None
        was_starting = leaf.state == STARTING
        uptime = 0.0 if was_starting else self.loop.time() - leaf.since
        leaf.state = DOWN
        leaf.pid = None
        leaf.usage = {}
        if pid is not None:
            self._usage.forget(pid)
        leaf.last_exit = reason.describe()
        self._changed.set()
        if leaf.stop_requested:
            log.info("%s stopped (%s)", _who(leaf, pid), reason.describe())
        if leaf is self.spare:
            self.spare = None
            if not self.stopping:
                log.warning("standby worker %s died (%s); starting another in %.0f s", pid,
                            reason.describe(), SPARE_RETRY)
                self.loop.call_later(SPARE_RETRY, self.start_spare)
            return
        if leaf.replacing or leaf in self.retiring:
            self.candidates.discard(leaf)
            self.retiring.discard(leaf)
            return  # a replacement that failed, or a replaced process that finished: no failure
        if self.stopping:
            self.router.forget(leaf.name)
            return
        if was_starting and not self.started and not leaf.stop_requested:
            # OTP: a child that cannot start fails its supervisor's start, up to the root
            verb = "failed to boot" if reason.code == ExitCode.BOOT_ERROR else "failed to start"
            self.halt(1, f"{_what(leaf)} {pid or ''} ({leaf.name}) {verb} "
                         f"({reason.describe()}){_chain(leaf.parent)}".replace("  ", " "))
            return
        if leaf.pool is not None:
            if not leaf.stop_requested:  # a member stopped on purpose is nothing to decide
                self._task(self._member_exited(leaf, pid, reason, uptime, was_starting))
        elif leaf.parent is not None:
            self._task(self._child_exited(leaf.parent, leaf.parent.logic, leaf, pid, reason,
                                          uptime, was_starting, leaf.stop_requested))

    # -- decisions ------------------------------------------------------------------------------

    def _task(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("supervision task failed", exc_info=task.exception())

    async def _member_exited(self, leaf: Leaf, pid: int | None, reason: ExitReason,
                             uptime: float, was_starting: bool) -> None:
        node, pool = leaf.parent, leaf.pool
        assert node is not None and pool is not None
        async with node.lock:
            if self.stopping or pool.state in (STOPPING, DOWN) or node.children.get(
                    pool.name) is not pool:
                return
            decision = node.logic.member_exited(pool.name, leaf.name, reason, time.monotonic(),
                                                uptime)
            if isinstance(decision, GiveUp):
                log.warning("%s died (%s), not restarting", _who(leaf, pid),
                            reason.describe())
                await self._give_up(node, decision)
                return
            restarting = bool(decision.start)
            log.warning("%s died (%s), %s%s", _who(leaf, pid), reason.describe(),
                        "restarting" if restarting else "not restarting",
                        " (it never became ready)" if was_starting else "")
            if not restarting:
                self.router.forget(leaf.name)
                return
            self.router.hold(leaf.name)
            leaf.restarts += 1
            self.restart_counts[leaf.name, _why(reason)] += 1
            if decision.delay > 0:
                await asyncio.sleep(decision.delay)
            if not self.stopping and pool.state not in (STOPPING, DOWN):
                self.spawn(leaf)

    async def _child_exited(self, node: SupervisorNode, logic: Any, child: Node,
                            pid: int | None, reason: ExitReason, uptime: float | None,
                            was_starting: bool = False, requested: bool = False) -> None:
        async with node.lock:
            if self.stopping or node.logic is not logic:
                return  # an exit reported to a supervisor that has restarted since
            decision = logic.child_exited(child.name, reason, time.monotonic(), uptime)
            if requested:
                return  # a stop the supervisor asked for: consumed, nothing to decide
            if isinstance(decision, GiveUp):
                log.warning("%s died (%s), not restarting", _who(child, pid),
                            reason.describe())
                await self._give_up(node, decision)
                return
            restarting = child.name in decision.start
            log.warning("%s died (%s), %s%s", _who(child, pid), reason.describe(),
                        "restarting" if restarting else "not restarting",
                        " (it never became ready)" if was_starting else "")
            if restarting:
                self.restart_counts[child.name, _why(reason)] += 1
            await self._execute(node, decision)
            if not restarting and child.name not in node.children:
                self._unregister(child)
            elif not restarting:
                for leaf in self.leaves(child):
                    self.router.forget(leaf.name)

    async def _execute(self, node: SupervisorNode, decision: Decision) -> None:
        """Stop, forget, wait, start: in that order, each list in its order (OTP's)."""
        for name in (*decision.stop, *decision.start):
            for leaf in self.leaves(node.children[name]):
                self.router.hold(leaf.name)
        for name in decision.stop:
            child = node.children[name]
            log.info("stopping %s %s (%s restarts it with its siblings)", kind_of(child), name,
                     node.spec.strategy)
            await self._stop(child)
        for name in decision.remove:
            removed = node.children.pop(name, None)
            if removed is not None:
                self._unregister(removed)
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        for name in decision.start:
            if self.stopping:
                return
            child = node.children[name]
            child.restarts += 1
            await self._start(child)

    async def _give_up(self, node: SupervisorNode, decision: GiveUp) -> None:
        """Intensity exceeded: stop every child (reverse order), then exit; the parent sees a
        failed child (escalation). The root giving up stops the cluster."""
        log.error("%s", decision.reason)
        for name in decision.stop:
            child = node.children.get(name)
            if child is not None:
                await self._stop(child)
        node.state = DOWN
        self._changed.set()
        parent = node.parent
        if parent is None:
            self.halt(1, decision.reason)
            return
        self._task(self._child_exited(parent, parent.logic, node, None,
                                      ExitReason(detail=decision.reason), None))

    # -- liveness -------------------------------------------------------------------------------

    def _all(self) -> list[Leaf]:
        """Every process child: the tree's, the standby, replacements starting, replaced ones
        finishing."""
        leaves = self.leaves(self.root)
        if self.spare is not None:
            leaves.append(self.spare)
        return leaves + list(self.candidates) + list(self.retiring)

    def tick(self) -> None:
        """Send heartbeats and kill children that stopped sending theirs; sample memory and
        CPU (status, --max-memory)."""
        now = self.loop.time()
        limit = self.config.max_memory * 1024 * 1024
        for leaf in self._all():
            if leaf.pid is None or leaf.state == DOWN:
                continue
            leaf.usage = self._usage.sample(leaf.pid)
            if limit and leaf.usage.get("rss", 0) > limit and leaf.pool is not None and (
                    leaf in leaf.pool.members.values() and leaf.up):
                self.on_recycle(leaf, f"RSS {leaf.usage['rss'] / 2**20:.0f} MB above "
                                      f"--max-memory {self.config.max_memory} MB")
            if leaf.state in (READY, PROMOTED):
                self.router.send_system(leaf.identity.encode(), "heartbeat")
            silent = now - leaf.last_heard
            if leaf.kill_detail or leaf.stop_requested:
                continue
            busy = float(leaf.stats.get("busy") or 0.0)  # a plain-def handler running
            if busy > self.config.timeout:
                self._hung(leaf, f"a handler running for {busy:.1f} s")
            elif silent > self.config.timeout:
                what = "no heartbeat" if leaf.state == READY else "not ready"
                self._hung(leaf, f"{what} for {silent:.1f} s")

    def _hung(self, leaf: Leaf, detail: str) -> None:
        """Log the child's Python stack (faulthandler on SIGUSR1), then kill it: a failure."""
        leaf.kill_detail = detail
        log.error("%s (%s): %s; its Python stack follows, then it is killed",
                  _who(leaf, leaf.pid), leaf.name, detail)
        self.send_signal(leaf, signal.SIGUSR1)
        self.loop.call_later(STACK_DUMP_WAIT, self._kill_if_same, leaf, leaf.pid)

    def _kill_if_same(self, leaf: Leaf, pid: int) -> None:
        if leaf.pid == pid:
            self.send_signal(leaf, signal.SIGKILL)

    def send_signal(self, leaf: Leaf, sig: int) -> None:
        if leaf.pid is None:
            return
        try:
            os.kill(leaf.pid, sig)
        except ProcessLookupError:
            pass

    # -- stopping the cluster -------------------------------------------------------------------

    def live(self) -> list[Leaf]:
        return [leaf for leaf in self._all() if leaf.live]

    async def stop_all(self, timeout: float) -> None:
        """Stop the tree: children in reverse start order, each by its stop ladder, the whole
        within ``timeout`` (the graceful timeout), then SIGKILL; 0 kills every process at once."""
        self.stopping = True
        for leaf in self._all():
            if leaf.link is not None:
                self.gateway.withdraw(leaf.link)
        if self.spare is not None:
            self.spare.stop_requested = True
            self.send_signal(self.spare, signal.SIGTERM)
        if timeout <= 0:
            self.kill_all()
        else:
            try:
                await asyncio.wait_for(self._stop(self.root, lock=False), timeout)
            except TimeoutError:
                log.warning("the graceful stop took more than %g s; killing what is left",
                            timeout)
                self.kill_all()
        if not await self.until(lambda: not self.live(), KILL_WAIT):
            self.kill_all()
            await self.until(lambda: not self.live(), KILL_WAIT)

    def kill_all(self) -> None:
        self.stopping = True
        for leaf in self.live():
            leaf.stop_requested = True
            self.send_signal(leaf, signal.SIGKILL)

    # -- what the primary answers ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.loop.time()
        tree = status_of(self.root, now)
        tree["standby"] = ({"pid": self.spare.pid, "state": self.spare.state}
                           if self.spare is not None else None)
        return tree


def _what(node: Node) -> str:
    if isinstance(node, Leaf):
        return "Worker" if node.kind == "http" else f"Actor {node.name}"
    return f"Supervisor {node.name}" if isinstance(node, SupervisorNode) else f"Pool {node.name}"


def _why(reason: ExitReason) -> str:
    """A short, bounded label for metrics: "signal SIGKILL", "exit code 1", "no heartbeat"."""
    if reason.code is None and reason.signal is None:
        return "supervisor gave up" if "gave up" in reason.detail else "unknown"
    base = reason.describe().split(":", 1)[0]
    detail = reason.detail.split(" for ", 1)[0].split(":", 1)[0] if reason.detail else ""
    return f"{base}: {detail}" if detail else base


def _who(node: Node, pid: int | None) -> str:
    """How logs name a process child: "Worker 123" (the cluster article's words), "Actor sink
    (pid 123)"; a supervisor or pool by its name."""
    if not pid:
        return _what(node)
    return f"Worker {pid}" if isinstance(node, Leaf) and node.kind == "http" else (
        f"{_what(node)} (pid {pid})")


def _chain(node: SupervisorNode | None) -> str:
    names = []
    while node is not None:
        names.append(node.name)
        node = node.parent
    return f" under {' < '.join(names)}" if len(names) > 1 else ""


__all__ = ["SupervisionTree", "SupervisorError", "is_up"]
