"""Changing a running cluster without downtime: reload, scale, recycle.

Every HTTP worker is replaced the same way (``replace``): start the replacement (a new
incarnation of the same name, forked from the current zygote), wait until it is ready (it is
then in rotation and the name routes to it), then tell the old process to *retire*: it takes no
new connection, answers its in-flight requests, closes each keep-alive connection after its next
response (``Connection: close``) or once it has been idle for the keep-alive timeout, and exits.
A replacement that does not become ready within the ready timeout is killed and the old worker
goes on serving: never stopped on a timeout.

A user actor cannot have two processes under one name, so it is reloaded by a stop then a start
(messages to it are held by the router meanwhile). One operation runs at a time.

A reload forks its replacements from a new zygote started next to the current one; every other
fork meanwhile (a crash's restart, a new standby) still comes from the current one. Only a
reload that succeeded adopts the new zygote (then the standby, forked from the old code, is
replaced); a failed one discards it, so whatever is restarted later runs the code that was
serving, never the code that just failed to start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..specs import MAX_WORKERS
from .children import DOWN, Leaf, PoolNode, SupervisorNode
from .processes import KILL_WAIT
from .supervisor import SupervisionTree, SupervisorError

log = logging.getLogger("actorcluster.supervisor")


class Rolling:
    def __init__(self, tree: SupervisionTree,
                 new_zygote: Callable[[], Awaitable[None]]) -> None:
        self.tree = tree
        self.new_zygote = new_zygote  # a zygote with the code on disk, next to the current one
        self.lock = asyncio.Lock()  # one reload / scale / recycle at a time
        self._recycling: set[str] = set()
        # the size the last scale asked for while scales wait for the lock or run: SIGTTIN /
        # SIGTTOU count from it, so two signals during a reload make two workers, not one
        self.wanted: int | None = None
        self._scales = 0
        tree.on_recycle = self.recycle

    # -- one worker -----------------------------------------------------------------------------

    async def replace(self, old: Leaf, ready_timeout: float, fresh: bool = False) -> Leaf:
        """Start a new incarnation of the pool member ``old``, put it in rotation once ready,
        then retire ``old``. SupervisorError (and ``old`` untouched) if it does not get ready.
        ``fresh``: fork it from the reload's new zygote."""
        tree = self.tree
        pool = old.pool
        assert pool is not None
        new = Leaf(old.name, old.kind, old.target, old.parent, pool, old.restart, old.shutdown)
        new.restarts = old.restarts
        new.replacing = True
        tree.candidates.add(new)
        tree.spawn(new, fresh)
        ready = await tree.until(lambda: new.up or not new.live, ready_timeout)
        if not (ready and new.up) or tree.stopping:
            why = ("the cluster is stopping" if tree.stopping
                   else new.last_exit or f"not ready within {ready_timeout:g} s")
            if new.live:
                new.stop_requested = True
                tree.send_signal(new, signal.SIGKILL)
                await tree.until(lambda: not new.live, KILL_WAIT)
            tree.candidates.discard(new)
            raise SupervisorError(f"the new {old.name} did not start ({why}); " + (
                f"{old.name} was not replaced" if tree.stopping
                else f"{old.name} (pid {old.pid}) goes on serving"))
        new.replacing = False
        tree.candidates.discard(new)
        if pool.members.get(old.name) is old:
            pool.members[old.name] = new
            tree.names[old.name] = new
        self.retire(old)
        return new

    def retire(self, old: Leaf) -> None:
        """Out of rotation; the process finishes its work (see the module's docstring)."""
        tree = self.tree
        if not old.live:
            return
        old.stop_requested = True
        tree.retiring.add(old)
        if old.link is not None:
            tree.gateway.withdraw(old.link)
        if old.pid is None or not tree.router.send_system(old.identity.encode(), "retire"):
            tree.send_signal(old, signal.SIGTERM)  # not connected yet: the plain graceful stop

    async def _retired(self, leaves: list[Leaf]) -> None:
        """Wait for replaced processes to exit: the graceful timeout, then SIGKILL."""
        tree = self.tree
        grace = tree.config.graceful_timeout + 1.0
        if await tree.until(lambda: not any(leaf.live for leaf in leaves), grace):
            return
        for leaf in leaves:
            if leaf.live:
                log.warning("%s did not finish within %g s; killing it", leaf.name, grace)
                tree.send_signal(leaf, signal.SIGKILL)
        await tree.until(lambda: not any(leaf.live for leaf in leaves), KILL_WAIT)

    # -- reload ---------------------------------------------------------------------------------

    async def reload(self, child: str | None, batch: int, ready_timeout: float) -> dict[str, Any]:
        """Rolling restart of ``child`` (a name anywhere in the tree; None: everything) with the
        code as it is now on disk. Returns what was replaced; SupervisorError on failure."""
        tree = self.tree
        if batch < 1:
            raise SupervisorError("--batch must be at least 1")
        node = tree.root if child is None else tree.names.get(child)
        if node is None:
            raise SupervisorError(f"no child named {child!r}; see `actorcluster status`")
        async with self.lock:
            if tree.stopping or not tree.started:
                raise SupervisorError("the cluster is " + ("stopping" if tree.stopping
                                                           else "still starting"))
            leaves = [leaf for leaf in tree.leaves(node) if leaf.live]
            log.info("reload of %s: %d process(es), %d at a time", child or "every child",
                     len(leaves), batch)
            try:
                await self.new_zygote()
            except Exception as exc:  # noqa: BLE001 - say why, keep the old code serving
                raise SupervisorError(f"reload stopped: the new code does not load: {exc}; "
                                      "every worker goes on serving the old code") from None
            replaced: list[dict[str, Any]] = []
            retiring: list[Leaf] = []
            members = [leaf for leaf in leaves if leaf.pool is not None]
            try:
                for at in range(0, len(members), batch):
                    group = members[at:at + batch]
                    news = await asyncio.gather(*(self.replace(old, ready_timeout, fresh=True)
                                                  for old in group), return_exceptions=True)
                    failed = [n for n in news if isinstance(n, BaseException)]
                    for old, new in zip(group, news, strict=True):
                        if isinstance(new, Leaf):
                            retiring.append(old)
                            replaced.append({"name": new.name, "old_pid": old.pid,
                                             "pid": new.pid})
                    if failed:
                        raise failed[0]
                for leaf in leaves:
                    if leaf.pool is None:
                        old_pid = leaf.pid
                        await self._restart_actor(leaf, ready_timeout)
                        replaced.append({"name": leaf.name, "old_pid": old_pid,
                                         "pid": leaf.pid})
            except BaseException:
                # the new code failed somewhere: nothing restarted from now on may fork it
                tree.spawner.discard()
                log.warning("reload of %s failed: the new zygote is discarded; restarts fork "
                            "the code that was serving", child or "every child")
                raise
            finally:
                await self._retired(retiring)
            tree.spawner.adopt()
            if members:
                await self._replace_standby()
            tree.start_spare()
            log.info("reload of %s done: %d process(es) replaced", child or "every child",
                     len(replaced))
            return {"replaced": replaced}

    async def _replace_standby(self) -> None:
        """The standby was forked from the old code: once it exited, a new one is forked from
        the adopted zygote (one Leaf serves every standby, so never two at once)."""
        tree = self.tree
        spare, tree.spare = tree.spare, None
        if spare is None or not spare.live:
            return
        log.info("standby worker %s is replaced: it was forked from the old code", spare.pid)
        spare.stop_requested = True
        tree.retiring.add(spare)
        tree.send_signal(spare, signal.SIGTERM)
        await self._retired([spare])

    async def _restart_actor(self, leaf: Leaf, ready_timeout: float) -> None:
        tree = self.tree
        parent = leaf.parent
        assert parent is not None
        async with parent.lock:
            if tree.names.get(leaf.name) is not leaf or not leaf.live:
                return
            parent.logic.stop_requested(leaf.name)
            tree.router.hold(leaf.name)
            await tree.stop_leaf(leaf)
            parent.logic.child_started(leaf.name)
            tree.spawn(leaf, fresh=True)
            # a stop ends the reload at once (as for a pool's replacement, `replace`): the
            # stop takes the new process with the rest; it did not "start with the new code",
            # and nothing will restart it
            ready = await tree.until(lambda: leaf.up or not leaf.live or tree.stopping,
                                     ready_timeout)
            if tree.stopping:
                raise SupervisorError(f"reload stopped: the cluster is stopping; actor "
                                      f"{leaf.name} was not replaced")
            if not ready or not leaf.up:
                if leaf.live:  # not ready in time: a failure to start, as a crash is
                    tree.send_signal(leaf, signal.SIGKILL)
                raise SupervisorError(f"reload stopped: actor {leaf.name} did not start with "
                                      f"the new code ({leaf.last_exit or 'not ready in time'}); "
                                      "its supervisor restarts it with the old code, as after "
                                      "a crash")

    # -- scale ----------------------------------------------------------------------------------

    def scale(self, pool_name: str, workers: int,
              ready_timeout: float) -> Coroutine[Any, Any, dict[str, Any]]:
        """Grow or shrink the pool to ``workers``: new workers join once ready; the last ones
        leave gracefully (as a reload retires them). Checked, and ``wanted`` set, at once (two
        signals handled in one loop turn count from each other); carried out in turn."""
        tree = self.tree
        pool = tree.names.get(pool_name)
        if not isinstance(pool, PoolNode):
            raise SupervisorError(f"{pool_name!r} is not an HTTP pool; the pool is "
                                  f"{tree.pool.name if tree.pool else 'missing'}")
        if workers < 1:
            raise SupervisorError("a pool keeps at least one worker (use terminate-child to "
                                  "stop it)")
        if workers > MAX_WORKERS:
            raise SupervisorError(f"a pool has at most {MAX_WORKERS} workers, not {workers}")
        if tree.stopping or not tree.started:
            raise SupervisorError("the cluster is " + ("stopping" if tree.stopping
                                                       else "still starting"))
        self.wanted = workers
        self._scales += 1
        return self._scale(pool, workers, ready_timeout)

    async def _scale(self, pool: PoolNode, workers: int, ready_timeout: float) -> dict[str, Any]:
        try:
            return await self._resize(pool, workers, ready_timeout)
        finally:
            self._scales -= 1
            if not self._scales:
                self.wanted = None

    async def _resize(self, pool: PoolNode, workers: int, ready_timeout: float) -> dict[str, Any]:
        tree = self.tree
        async with self.lock:
            node: SupervisorNode = pool.parent
            async with node.lock:
                before = len(pool.members)
                started: list[Leaf] = []
                while len(pool.members) < workers:
                    name = f"{pool.name}/{len(pool.members) + 1}"
                    leaf = Leaf(name, "http", str(pool.spec.http), node, pool, pool.restart,
                                next(iter(pool.members.values())).shutdown)
                    pool.members[name] = leaf
                    tree.names[name] = leaf
                    started.append(leaf)
                    tree.spawn(leaf)
                leaving: list[Leaf] = []
                while len(pool.members) > workers:
                    name, leaf = pool.members.popitem()
                    tree.names.pop(name, None)
                    leaving.append(leaf)
                    self.retire(leaf)
                tree.router.set_group(pool.name, list(pool.members))
            await tree.until(lambda: all(leaf.up or not leaf.live for leaf in started),
                             ready_timeout)
            await self._retired(leaving)
            for leaf in leaving:
                tree.router.forget(leaf.name)
            log.info("pool %s scaled from %d to %d worker%s", pool.name, before, workers,
                     "" if workers == 1 else "s")
            return {"pool": pool.name, "before": before, "workers": len(pool.members),
                    "ready": sum(1 for leaf in pool.members.values() if leaf.up)}

    # -- recycling (--max-requests, --max-memory) -----------------------------------------------

    def recycle(self, leaf: Leaf, why: str) -> None:
        """Replace ``leaf`` gracefully, one worker at a time (asked by the worker or by the
        memory check)."""
        if leaf.name in self._recycling or self.tree.stopping:
            return
        self._recycling.add(leaf.name)
        log.info("Worker %s (%s) is replaced: %s", leaf.pid, leaf.name, why)
        task = self.tree.loop.create_task(self._recycle(leaf))
        task.add_done_callback(_log_failure)

    async def _recycle(self, leaf: Leaf) -> None:
        try:
            async with self.lock:
                pool = leaf.pool
                if self.tree.stopping or pool is None or pool.members.get(leaf.name) is not leaf:
                    return
                if leaf.state == DOWN:
                    return
                try:
                    await self.replace(leaf, self.tree.config.timeout)
                except SupervisorError as exc:
                    log.error("recycling %s: %s", leaf.name, exc)
                    return
                await self._retired([leaf])
        finally:
            self._recycling.discard(leaf.name)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("recycling failed", exc_info=task.exception())
