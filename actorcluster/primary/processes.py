"""The process children of the supervision tree: spawning, readiness, the stop ladder, the
standby worker, heartbeats and hangs.

A mixin of SupervisionTree (supervisor.py), which decides what to start and stop; this part
talks to the processes: through the zygote (spawn), the router (system messages), the kernel
(signals) and psutil (memory and CPU).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import signal
import socket
from collections.abc import Callable
from typing import Any

from ..supervision import ExitReason
from ..wire import ExitCode
from .children import DOWN, PROMOTED, READY, STARTING, Leaf, title, who

log = logging.getLogger("actorcluster.supervisor")

SPARE_RETRY = 1.0
SPARE_DELAY = 0.1
STACK_DUMP_WAIT = 0.3
KILL_WAIT = 5.0  # after SIGKILL, how long to wait for the kernel to report the exit
# an unknown pid reaped this long ago is no process the zygote will report: a worker's orphan
EARLY_EXIT_KEEP = 10.0


class ProcessChildren:
    """The host class (SupervisionTree) provides: loop, config, spawner, router, gateway,
    heartbeat, spare, by_pid, by_id, candidates, retiring, stopping, on_recycle, _changed,
    _incarnations, _early_exits, _usage, _down() and leaves()."""

    # -- process children: spawn, ready, stop ---------------------------------------------------

    def _spec(self, leaf: Leaf) -> dict[str, Any]:
        c = self.config
        return {
            "id": leaf.identity, "name": leaf.name, "incarnation": leaf.incarnation,
            "kind": leaf.kind, "target": leaf.target, "router": self.router.endpoint,
            "primary_pid": os.getpid(), "heartbeat": self.heartbeat, "timeout": c.timeout,
            "graceful_timeout": c.graceful_timeout, "log_level": c.log_level, "loop": c.loop,
            "threads": c.threads, "keepalive": c.keepalive, "max_body": c.max_body,
            "request_timeout": c.request_timeout, "access_log": c.access_log,
            "family": int(self.gateway.family), "reads": self.router.reads_path,
            "metrics": c.metrics_bind is not None,  # time requests for the latency histogram
            "max_requests": c.max_requests + random.randint(0, c.max_requests_jitter)
            if c.max_requests else 0,
        }

    def spawn(self, leaf: Leaf, fresh: bool = False) -> None:
        """Start a new incarnation of ``leaf`` (or promote the standby into it). ``fresh``: a
        reload's replacement, forked from the reload's new zygote, never the standby (forked
        from the code the reload replaces)."""
        if self.stopping or leaf.live:
            return
        spare = self.spare
        if not fresh and leaf.pool is not None and spare is not None and spare is not leaf and (
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
        spec = self._spec(leaf)
        spec["reads_slot"] = self.router.track(leaf.identity.encode())
        try:
            self.spawner.spawn(spec, theirs.fileno(), fresh)
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
            log.warning("%s did not stop within %g s; killing it", who(leaf, leaf.pid),
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
        # a new read-counter slot, taken before the standby's is freed so that it differs: the
        # standby may still count a message on its old socket before it reads "promote"
        slot = self.router.track(leaf.identity.encode())
        self.router.untrack(old_identity)  # a standby is sent no actor messages by name
        self.router.send_system(old_identity, "promote", name=leaf.name,
                                incarnation=leaf.incarnation, reads_slot=slot)
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
        if self._spare_serial.live:
            return  # a replaced standby still exiting (one Leaf): its replacer starts the next
        self.spare = self._spare_serial  # one Leaf; its incarnation counts the spares
        self.spawn(self.spare)

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
            self.on_exit(pid, self._early_exits.pop(pid)[0])

    def on_spawn_error(self, identity: str, error: str) -> None:
        """The zygote could not import the target of a new child: it never started."""
        leaf = self.by_id.get(identity)
        if leaf is None or leaf.identity != identity:
            return
        if leaf.pid is not None or leaf.state != STARTING:
            return  # it was forked after all (its "ready" or "spawned" came): not a failure
        del self.by_id[identity]
        label = title(leaf)  # "Actor sink" names it already; "Worker" does not
        if leaf.kind == "http":
            label = f"{label} {leaf.name}"
        log.error("%s failed to boot: %s", label, error)
        self._down(leaf, ExitReason(code=ExitCode.BOOT_ERROR, detail=f"boot error: {error}"))

    def on_system(self, identity: bytes, message: dict[str, Any]) -> None:
        leaf = self.by_id.get(identity.decode(errors="replace"))
        if leaf is None or leaf.identity != identity.decode():
            if message.get("op") == "ready":
                # a process nobody waits for (forked by a zygote that died before saying so,
                # and already counted as failed and replaced): it must not serve beside the
                # replacement, so it stops, gracefully
                log.warning("an unexpected process %s (pid %s) reported ready; stopping it",
                            identity.decode(errors="replace"), message.get("pid"))
                self.router.send_system(identity, "stop")
            return  # a message from an incarnation that is already gone
        leaf.last_heard = self.loop.time()
        op = message["op"]
        if op == "heartbeat":
            leaf.stats = message
            return
        if op == "failed":  # it cannot start; its exit follows: the exit's detail says why
            if leaf.state == STARTING:
                leaf.kill_detail = f"boot error: {message.get('why', '')}"
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
            if leaf.pid is None and isinstance(message.get("pid"), int):
                # its "ready" (router) may overtake the zygote's "spawned" (spawner channel),
                # which comes once the worker is our child: who asked for it needs the pid now,
                # and its exit must be known as its own (the "spawned" never comes if the zygote
                # died before sending it; the process is then reaped as our orphan)
                leaf.pid = message["pid"]
                self.by_pid[leaf.pid] = leaf
            pid = leaf.pid
            if leaf.kind == "http":
                log.info("Worker %s started", pid)
            else:
                log.info("Actor %s (pid %s) started", leaf.name, pid)
            self._changed.set()

    # -- liveness -------------------------------------------------------------------------------

    def _all(self) -> list[Leaf]:
        """Every process child: the tree's, the standby, replacements starting, replaced ones
        finishing."""
        leaves = self.leaves(self.root)
        if self.spare is not None:
            leaves.append(self.spare)
        return leaves + list(self.candidates) + list(self.retiring)

    def _check_memory_limit(self, leaf: Leaf) -> None:
        """A worker above --max-memory before it served anything: the limit is below what a
        fresh worker takes, so every worker would be replaced as soon as it starts, for ever
        (PM2 does that silently). Said once, as a warning."""
        # not its last heartbeat's request count: a request in flight, or answered since that
        # heartbeat, may be what took the memory
        if getattr(self, "_memory_warned", False) or leaf.link is None or leaf.link.handed:
            return
        self._memory_warned = True
        log.warning("--max-memory %d MB is below what a fresh worker takes (RSS %.0f MB before "
                    "its first request): every worker is replaced as soon as it starts; raise "
                    "--max-memory", self.config.max_memory, leaf.usage["rss"] / 2**20)

    def tick(self) -> None:
        """Send heartbeats and kill children that stopped sending theirs; sample memory and
        CPU (status, --max-memory); forget exits of pids no spawn claimed (orphans)."""
        now = self.loop.time()
        for pid, (_status, reaped) in list(self._early_exits.items()):
            if now - reaped > EARLY_EXIT_KEEP:
                del self._early_exits[pid]
        limit = self.config.max_memory * 1024 * 1024
        for leaf in self._all():
            if leaf.pid is None or leaf.state == DOWN:
                continue
            leaf.usage = self._usage.sample(leaf.pid)
            if limit and leaf.usage.get("rss", 0) > limit and leaf.pool is not None and (
                    leaf in leaf.pool.members.values() and leaf.up):
                self._check_memory_limit(leaf)
                self.on_recycle(leaf, f"RSS {leaf.usage['rss'] / 2**20:.0f} MB above "
                                      f"--max-memory {self.config.max_memory} MB")
            if leaf.state in (READY, PROMOTED):
                self.router.send_system(leaf.identity.encode(), "heartbeat")
            silent = now - leaf.last_heard
            # a replaced worker finishing its work (reload, scale, recycling) still beats: stuck,
            # it would hold the operation up to --graceful-timeout, its stack never logged
            if leaf.kill_detail or (leaf.stop_requested and leaf not in self.retiring):
                continue
            stats = leaf.stats  # the last heartbeat's: a dead incarnation's until the first
            # of this one, so its figure counts only when it comes from this process
            busy = float(stats.get("busy") or 0.0) if stats.get("pid") == leaf.pid else 0.0
            if busy > self.config.timeout:
                self._hung(leaf, f"a handler running for {busy:.1f} s")
            elif silent > self.config.timeout:
                what = "no heartbeat" if leaf.state == READY else "not ready"
                self._hung(leaf, f"{what} for {silent:.1f} s")

    def _hung(self, leaf: Leaf, detail: str) -> None:
        """Log the child's Python stack (faulthandler on SIGUSR1), then kill it: a failure."""
        leaf.kill_detail = detail
        log.error("%s (%s): %s; its Python stack follows, then it is killed",
                  who(leaf, leaf.pid), leaf.name, detail)
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

    def live(self) -> list[Leaf]:
        return [leaf for leaf in self._all() if leaf.live]

    def kill_all(self) -> None:
        self.stopping = True
        for leaf in self.live():
            leaf.stop_requested = True
            self.send_signal(leaf, signal.SIGKILL)
