"""The supervision tree at run time: starts children in order, watches them, applies decisions.

The decisions are pure (actorcluster.supervision); this module carries them out: subtrees
started in order and stopped in reverse order, exits turned into decisions, escalation from a
supervisor that gave up to its parent. The processes themselves (spawn, ready, the stop ladder,
the standby, heartbeats) are processes.py's part; the dynamic-children requests are
dynamic_children.py's. Each supervisor handles one event at a time, under its own lock, in
the order the events came (an OTP supervisor's mailbox); a parent may take a child's lock, never
the other way round, so the locks cannot deadlock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from .. import specs
from ..config import ClusterConfig
from ..errors import ConfigError
from ..supervision import Decision, ExitReason, GiveUp, Restart
from ..wire import ExitCode
from .children import (
    DOWN,
    READY,
    STARTING,
    STOPPING,
    Leaf,
    Node,
    PoolNode,
    SupervisorNode,
    is_running,
    is_up,
    kind_of,
    shutdown_seconds,
    status_of,
    who,
)
from .dynamic_children import DynamicChildren, SupervisorError
from .gateway import Gateway
from .processes import KILL_WAIT, SPARE_RETRY, ProcessChildren
from .router import Router
from .spawner import Spawner
from .usage import Usage

log = logging.getLogger("actorcluster.supervisor")



class SupervisionTree(ProcessChildren, DynamicChildren):
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
        self._early_exits: dict[int, tuple[int, float]] = {}  # pid -> (status, when reaped)
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._incarnations: dict[str, int] = {}
        self.candidates: set[Leaf] = set()  # replacements starting (reload, recycling)
        self.retiring: set[Leaf] = set()  # replaced processes finishing their work
        self.restart_counts: Counter[tuple[str, str]] = Counter()  # (child, why) -> restarts
        self.on_recycle: Callable[[Leaf, str], None] = lambda leaf, why: None
        # told of every process exit while the Leaf still holds that process's last heartbeat:
        # a replaced Leaf leaves the tree, a restarted one gets its successor's heartbeats
        self.on_process_exit: Callable[[Leaf], None] = lambda leaf: None
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
            node.restarting.clear()  # the waits of the last run start nothing (another logic)
            node.state = STARTING
            up = True
            for child in list(node.children.values()):
                if self.stopping:
                    return False
                started = await self._start(child)
                if not started and not is_running(child) and self.started:
                    # OTP: a supervisor whose child fails to start fails to start itself: it
                    # stops what it started (the exit on its way is then no failure of its own)
                    # and its caller decides (its parent's strategy, restart_child's error)
                    await self._stop_subtree(node, lock=True)
                    return False
                up = started and up
            node.state = READY
            self._changed.set()
            return up

    def _reset_children(self, node: SupervisorNode) -> None:
        """A restarted supervisor has the children of its spec again, as an OTP supervisor whose
        init runs again: dynamic children are gone, deleted ones are back."""
        static = [spec.name for spec in node.spec.children]
        # a dynamic child may bear the name of a deleted spec child: the spec's comes back
        for name in [n for n in node.children if n not in static or n in node.dynamic]:
            self._unregister(node.children.pop(name))
        node.dynamic.clear()
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
            _mark_down(node)
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
        # Every name of the tree is known from now on, though its children start one after
        # the other: a message to one not up yet (a pipeline's sink, told by its source that
        # started first) is held for its first incarnation, as for a restart (bounded alike),
        # not a dead letter "no such actor"
        for leaf in self.leaves(self.root):
            self.router.hold(leaf.name)
        self.router.tree_known = True
        await self._start(self.root)
        if not self.stopping:
            self.started = True
            self.start_spare()

    # -- events from the zygote, the router and the kernel ---------------------------------------

    def on_exit(self, pid: int, status: int) -> None:
        leaf = self.by_pid.pop(pid, None)
        if leaf is None:
            # reaped before the zygote told us whose it was, or not ours at all: an orphan of a
            # worker's (a helper it daemonized) that the kernel re-parented to the subreaper.
            # tick() forgets the latter, or each would grow the primary and wait for a process
            # forked later under the same pid, taken for dead as soon as it started.
            self._early_exits[pid] = (status, self.loop.time())
            return
        self.by_id.pop(leaf.identity, None)
        self._down(leaf, ExitReason.from_wait_status(status, detail=leaf.kill_detail))

    def _down(self, leaf: Leaf, reason: ExitReason) -> None:
        self.on_process_exit(leaf)
        pid = leaf.pid
        # held at once for a child that may be restarted (the decision comes a moment later,
        # and a message meanwhile must not find the name gone); the decision forgets it if not
        self.router.incarnation_down(leaf.name, leaf.identity.encode(),
                                     hold=not (leaf.stop_requested or self.stopping))
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
        if leaf.stop_requested or self.stopping:  # stopping: a SIGTERM to the whole group
            log.info("%s stopped (%s)", who(leaf, pid), reason.describe())  # reached it first
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
            # "Worker 4711 (web/1) failed to start", "Actor sink (pid 4712) failed to start"
            named = f" ({leaf.name})" if leaf.kind == "http" else ""
            self.halt(1, f"{who(leaf, pid)}{named} {verb} "
                         f"({reason.describe()}){_chain(leaf.parent)}")
            return
        if leaf.pool is not None:
            if not leaf.stop_requested:  # a member stopped on purpose is nothing to decide
                self._task(self._member_exited(leaf, leaf.incarnation, pid, reason, uptime,
                                               was_starting))
        elif leaf.parent is not None:
            self._task(self._child_exited(leaf.parent, leaf.parent.logic, leaf, _run(leaf), pid,
                                          reason, uptime, was_starting, leaf.stop_requested))

    # -- decisions ------------------------------------------------------------------------------

    def _task(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("supervision task failed", exc_info=task.exception())

    async def _member_exited(self, leaf: Leaf, run: int, pid: int | None, reason: ExitReason,
                             uptime: float, was_starting: bool) -> None:
        node, pool = leaf.parent, leaf.pool
        assert node is not None and pool is not None
        async with node.lock:
            if self.stopping or pool.state in (STOPPING, DOWN) or node.children.get(
                    pool.name) is not pool or leaf.incarnation != run:
                return  # the pool was restarted since (a sibling's failure): a successor runs
            decision = node.logic.member_exited(pool.name, leaf.name, reason, time.monotonic(),
                                                uptime)
            if isinstance(decision, GiveUp):
                log.warning("%s died (%s), not restarting", who(leaf, pid),
                            reason.describe())
                await self._give_up(node, decision)
                return
            restarting = bool(decision.start)
            _log_exit(leaf, pid, reason, restarting, was_starting)
            if not restarting:
                self.router.forget(leaf.name)
                return
            self.router.hold(leaf.name)
            leaf.restarts += 1
            self.restart_counts[leaf.name, _why(reason)] += 1
        # the backoff is this member's: waited without the supervisor's lock (see _child_exited)
        if decision.delay > 0:
            await self._back_off(decision.delay)
        # nothing if the pool's restart started it meanwhile, nor once a scale took it out of
        # the pool (it would serve outside the tree, unknown to every scale, reload and stop)
        if not self.stopping and pool.state not in (STOPPING, DOWN) and node.children.get(
                pool.name) is pool and pool.members.get(leaf.name) is leaf:
            self.spawn(leaf)

    async def _child_exited(self, node: SupervisorNode, logic: Any, child: Node, run: object,
                            pid: int | None, reason: ExitReason, uptime: float | None,
                            was_starting: bool = False, requested: bool = False) -> None:
        """``run``: the child's :func:`_run` when it exited."""
        async with node.lock:
            if self.stopping or node.logic is not logic:
                return  # an exit reported to a supervisor that has restarted since
            if _run(child) != run:
                # the exit of a run that has been replaced since (several children died at
                # once: the decision on the first stopped and restarted the others), as OTP
                # ignores the EXIT of a pid it no longer supervises; starting the successor
                # told the logic (child_started) not to wait for it
                return
            expected = logic.expecting(child.name)  # before this exit: a GiveUp stops all
            decision = logic.child_exited(child.name, reason, time.monotonic(), uptime)
            if expected and not requested:
                # it died on its own as its supervisor was stopping it (a sibling's restart,
                # its supervisor's own stop): that stop consumes the exit, as OTP's shutdown
                # does; whoever stops it decides what comes next and holds its name
                log.info("%s died (%s) as %s was stopping it", who(child, pid),
                         reason.describe(), f"supervisor {node.name!r}")
            if requested or expected:
                return  # a stop the supervisor asked for: consumed, nothing to decide
            if isinstance(decision, GiveUp):
                log.warning("%s died (%s), not restarting", who(child, pid),
                            reason.describe())
                await self._give_up(node, decision)
                return
            restarting = child.name in decision.start
            _log_exit(child, pid, reason, restarting, was_starting)
            if restarting:
                self.restart_counts[child.name, _why(reason)] += 1
            for name in decision.start:
                node.restarting[name] = decision
            await self._execute(node, decision)
            if not restarting and child.name not in node.children:
                self._unregister(child)
            elif not restarting:
                for leaf in self.leaves(child):
                    self.router.forget(leaf.name)
            if decision.delay <= 0:
                await self._start_decided(node, decision)
                return
        # The backoff is the failed child's (per child): waited without the supervisor's lock,
        # so that its other children's exits and the requests for it are handled meanwhile,
        # and then only what is still to be started is started.
        await self._back_off(decision.delay)
        async with node.lock:
            if not self.stopping and node.logic is logic and not logic.stopped:
                await self._start_decided(node, decision)

    async def _execute(self, node: SupervisorNode, decision: Decision) -> None:
        """Stop, then forget: in that order, each list in its order (OTP's); the caller waits
        the backoff, then starts (_start_decided)."""
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

    async def _start_decided(self, node: SupervisorNode, decision: Decision) -> None:
        """Start the children of ``decision.start`` in order, but those that a backoff's wait
        saw deleted, terminated (the logic no longer expects them running), started, or taken
        over by a later decision."""
        for i, name in enumerate(decision.start):
            if self.stopping:
                return
            if node.restarting.get(name) is not decision:
                continue  # a later decision starts it, after its own wait, in its own order
            del node.restarting[name]
            child = node.children.get(name)
            if child is None or name not in node.logic.running or is_running(child):
                continue
            node.logic.child_started(name)  # no exit of an earlier run is waited for now
            child.restarts += 1
            if not await self._start(child) and not is_running(child):
                # OTP: a child that fails to start ends the restart there; the ones after it
                # (which may depend on it: rest_for_one) wait for the decision on its exit
                for rest in decision.start[i + 1:]:
                    if node.restarting.get(rest) is not decision:
                        continue  # a later decision's to start
                    del node.restarting[rest]
                    later = node.children.get(rest)
                    if later is None or is_running(later):
                        continue  # deleted, or started meanwhile by restart_child
                    node.logic.not_started(rest)
                    # still held, not forgotten: the restart its failure causes starts them
                    # again (a dead letter "not coming back" was false); what waits longer
                    # than --hold-seconds expires into dead letters as in any restart
                if isinstance(child, SupervisorNode):  # no process: its failure is told here
                    why = f"supervisor {child.name!r} failed to start ({self._why_not_up(child)})"
                    self._task(self._child_exited(node, node.logic, child, _run(child), None,
                                                  ExitReason(detail=why), None))
                return

    async def _back_off(self, delay: float) -> None:
        """Wait ``delay`` before a restart, or until the cluster stops: the task waiting (and
        those waiting for its supervisor's lock) then end, not outlive the loop."""
        await self.until(lambda: self.stopping, delay)

    async def _give_up(self, node: SupervisorNode, decision: GiveUp) -> None:
        """Intensity exceeded: stop every child (reverse order), then exit; the parent sees a
        failed child (escalation). The root giving up stops the cluster."""
        parent = node.parent
        if parent is not None:  # the root's line is halt()'s: printed once, as the last word
            log.error("%s", decision.reason)
        for name in decision.stop:
            child = node.children.get(name)
            if child is not None:
                await self._stop(child)
        node.state = DOWN
        self._changed.set()
        if parent is None:
            self.halt(1, decision.reason)
            return
        self._task(self._child_exited(parent, parent.logic, node, _run(node), None,
                                      ExitReason(detail=decision.reason), None))

    # -- stopping the cluster -------------------------------------------------------------------

    async def stop_all(self, timeout: float) -> None:
        """Stop the tree: children in reverse start order, each by its stop ladder, the whole
        within ``timeout`` (the graceful timeout), then SIGKILL; 0 kills every process at once."""
        self.stopping = True
        self._changed.set()  # ends a restart's back-off (_back_off)
        for leaf in self._all():
            if leaf.link is not None:
                self.gateway.withdraw(leaf.link)
        # nothing starts once the stop began: neither the standby nor a replacement that a
        # reload or a recycling is waiting for (left alone, it became ready, then was killed)
        for leaf in [self.spare, *self.candidates]:
            if leaf is not None:
                leaf.stop_requested = True
                self.send_signal(leaf, signal.SIGTERM)
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

    # -- what the primary answers ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.loop.time()
        tree = status_of(self.root, now)
        tree["standby"] = ({"pid": self.spare.pid, "state": self.spare.state}
                           if self.spare is not None else None)
        # replaced by a reload (or scaled away) and finishing their connections: processes a
        # user sees in `ps` beside the tree's, for up to --graceful-timeout
        tree["retiring"] = sorted(
            ({**status_of(leaf, now), "state": "retiring"} for leaf in self.retiring
             if leaf.live),
            key=lambda node: (node["name"], node["pid"] or 0))
        return tree


def _log_exit(child: Node, pid: int | None, reason: ExitReason, restarting: bool,
              was_starting: bool) -> None:
    """The line for a child's exit its supervisor decided on. A transient or temporary child
    that exits normally did what it was meant to do: no warning."""
    never = " (it never became ready)" if was_starting else ""
    if restarting and not reason.abnormal:  # a permanent child that ended normally
        log.info("%s exited normally (%s), restarting (%s)", who(child, pid),
                 reason.describe(), child.restart)
    elif restarting:
        log.warning("%s died (%s), restarting%s", who(child, pid), reason.describe(), never)
    elif child.restart == Restart.PERMANENT:
        log.warning("%s died (%s), not restarting%s", who(child, pid), reason.describe(), never)
    elif not reason.abnormal:
        log.info("%s exited normally, not restarting (%s)", who(child, pid), child.restart)
    else:
        log.warning("%s died (%s), not restarting (%s)%s", who(child, pid), reason.describe(),
                    child.restart, never)


def _run(node: Node) -> object:
    """What tells one run of a child from the next: a process's incarnation number, a
    supervisor's bookkeeping (made anew at each start)."""
    if isinstance(node, Leaf):
        return node.incarnation
    return node.logic if isinstance(node, SupervisorNode) else node  # a pool's are its members'


def _mark_down(node: SupervisorNode | PoolNode) -> None:
    """The stop of a subtree cut short by its supervisor's shutdown time leaves the supervisors
    and pools under it half-way ("stopping"); their processes are gone, so they are down."""
    node.state = DOWN
    if isinstance(node, SupervisorNode):
        for child in node.children.values():
            if not isinstance(child, Leaf):
                _mark_down(child)


def _why(reason: ExitReason) -> str:
    """A short, bounded label for metrics: "signal SIGKILL", "exit code 1", "no heartbeat"."""
    if reason.code is None and reason.signal is None:
        return "supervisor gave up" if "gave up" in reason.detail else "unknown"
    base = reason.describe().split(":", 1)[0]
    detail = reason.detail.split(" for ", 1)[0].split(":", 1)[0] if reason.detail else ""
    return f"{base}: {detail}" if detail else base


def _chain(node: SupervisorNode | None) -> str:
    names = []
    while node is not None:
        names.append(node.name)
        node = node.parent
    return f" under {' < '.join(names)}" if len(names) > 1 else ""


__all__ = ["SupervisionTree", "SupervisorError", "is_up"]
