"""The nodes of the running supervision tree: supervisors, HTTP pools and process children.

Plain state, built from the specs (actorcluster.specs); supervisor.py acts on it. Supervisors and
pools live in the primary; every leaf is an OS process (a process actor).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from .. import specs
from ..supervision import Backoff, Decision, Intensity, SupervisorLogic
from ..wire import incarnation_id
from .gateway import Link

STARTING, READY, STOPPING, DOWN = "starting", "ready", "stopping", "down"
PROMOTED = "promoted"  # a standby serving under its new name, not yet re-identified on the router
RESET_AFTER = 1.0  # a child that ran this long was stable: its backoff starts over


def shutdown_seconds(value: float | str | None, default: float) -> float:
    """Seconds between SIGTERM and SIGKILL: 0 for brutal_kill, inf for infinity."""
    if value is None:
        return default
    if value == specs.BRUTAL_KILL:
        return 0.0
    if value == specs.INFINITY:
        return math.inf
    return float(value)


class Leaf:
    """One process child: a user actor, or a member of an HTTP pool."""

    __slots__ = ("name", "kind", "target", "parent", "pool", "restart", "shutdown", "incarnation",
                 "pid", "state", "link", "last_heard", "since", "stop_requested", "kill_detail",
                 "restarts", "last_exit", "replacing", "stats", "usage")

    def __init__(self, name: str, kind: str, target: str, parent: SupervisorNode | None,
                 pool: PoolNode | None, restart: str, shutdown: float) -> None:
        self.name = name
        self.kind = kind  # "http" (a pool member) or "actor"
        self.target = target
        self.parent = parent
        self.pool = pool
        self.restart = restart
        self.shutdown = shutdown  # seconds; 0: SIGKILL at once
        self.incarnation = 0
        self.pid: int | None = None
        self.state = DOWN
        self.link: Link | None = None
        self.last_heard = 0.0
        self.since = 0.0
        self.stop_requested = False
        self.kill_detail = ""
        self.restarts = 0
        self.last_exit = ""  # how the last incarnation ended, for errors and status
        self.replacing = False  # a replacement being started (reload): not yet in the tree
        self.stats: dict[str, Any] = {}  # counters from the last heartbeat (requests, messages)
        self.usage: dict[str, float] = {}  # rss (bytes) and cpu (%), sampled by the primary

    @property
    def identity(self) -> str:
        return incarnation_id(self.name, self.incarnation).decode()

    @property
    def up(self) -> bool:
        return self.state in (READY, PROMOTED)

    @property
    def live(self) -> bool:
        return self.pid is not None or self.state == STARTING


class PoolNode:
    """An HTTP pool: one child of its supervisor; its members are restarted one by one."""

    def __init__(self, spec: specs.Pool, parent: SupervisorNode, workers: int,
                 graceful_timeout: float) -> None:
        self.name = spec.name
        self.spec = spec
        self.parent = parent
        self.restart = spec.restart
        self.state = DOWN
        self.restarts = 0
        shutdown = shutdown_seconds(spec.shutdown, graceful_timeout)
        self.members = {
            f"{spec.name}/{i}": Leaf(f"{spec.name}/{i}", "http", str(spec.http), parent, self,
                                     spec.restart, shutdown)
            for i in range(1, workers + 1)
        }


class SupervisorNode:
    """A supervisor: its children in start order and the pure logic that decides restarts.

    Exits and requests are handled one at a time under ``lock`` (a supervisor is one actor with
    one mailbox, as in OTP), in the order they came."""

    def __init__(self, spec: specs.Supervisor, parent: SupervisorNode | None) -> None:
        self.name = spec.name
        self.spec = spec
        self.parent = parent
        self.restart = spec.restart
        self.shutdown = shutdown_seconds(spec.shutdown, math.inf)
        self.children: dict[str, Leaf | PoolNode | SupervisorNode] = {}
        self.dynamic: set[str] = set()  # children from start_child, not from the spec
        self.state = DOWN
        self.restarts = 0
        self.lock = asyncio.Lock()
        self.started_once = False
        self.logic = self.new_logic()
        # the decision that starts each child of its ``start`` once its backoff is waited: a
        # later one naming the child (a sibling failed meanwhile) takes it over, to start it in
        # its own order after its own wait
        self.restarting: dict[str, Decision] = {}

    def new_logic(self) -> SupervisorLogic:
        """Fresh bookkeeping for a (re)start: every current child, taken to be running."""
        spec = self.spec
        b = spec.backoff
        backoff = Backoff(b.initial, b.max, RESET_AFTER) if b is not None else Backoff(0, 0)
        return SupervisorLogic(
            self.name, spec.strategy,
            [(name, child.restart) for name, child in self.children.items()],
            Intensity(spec.max_restarts, spec.within), backoff,
        )


Node = Leaf | PoolNode | SupervisorNode


def kind_of(node: Node) -> str:
    if isinstance(node, SupervisorNode):
        return "supervisor"
    if isinstance(node, PoolNode):
        return "pool"
    return "worker" if node.kind == "http" else "actor"


def is_up(node: Node) -> bool:
    if isinstance(node, Leaf):
        return node.up
    return node.state == READY


def is_running(node: Node) -> bool:
    """A process child alive (or starting), a pool or supervisor not down."""
    if isinstance(node, Leaf):
        return node.live
    return node.state != DOWN


def status_of(node: Node, now: float) -> dict[str, Any]:
    """The node and its subtree as JSON-able data (``actorcluster status``)."""
    if isinstance(node, Leaf):
        # the last heartbeat's counters: a dead incarnation's until the first of this one (a
        # promoted standby showed the killed worker's requests), so only this process's count
        stats = node.stats if node.pid and node.stats.get("pid") == node.pid else {}
        return {
            "name": node.name, "type": kind_of(node), "target": node.target, "pid": node.pid,
            "state": node.state, "incarnation": node.incarnation, "restarts": node.restarts,
            "uptime": round(now - node.since, 3) if node.up else 0.0,
            "restart": node.restart, "last_exit": node.last_exit or None,
            "requests": stats.get("requests") if node.kind == "http" else None,
            "messages": stats.get("messages", 0),
            "rss": int(node.usage["rss"]) if node.pid and "rss" in node.usage else None,
            "cpu": node.usage.get("cpu") if node.pid else None,
        }
    if isinstance(node, PoolNode):
        return {
            "name": node.name, "type": "pool", "target": str(node.spec.http),
            "state": node.state, "restarts": node.restarts, "restart": node.restart,
            "workers": len(node.members),
            "children": [status_of(m, now) for m in node.members.values()],
        }
    return {
        "name": node.name, "type": "supervisor", "strategy": node.spec.strategy,
        "max_restarts": node.spec.max_restarts, "within": node.spec.within,
        "state": node.state, "restarts": node.restarts, "restart": node.restart,
        "children": [status_of(c, now) for c in node.children.values()],
    }


def title(node: Node) -> str:
    if isinstance(node, Leaf):
        return "Worker" if node.kind == "http" else f"Actor {node.name}"
    return f"Supervisor {node.name}" if isinstance(node, SupervisorNode) else f"Pool {node.name}"


def who(node: Node, pid: int | None) -> str:
    """How logs name a process child: "Worker 123" (the cluster article's words), "Actor sink
    (pid 123)"; a supervisor or pool by its name."""
    if not pid:
        return title(node)
    return f"Worker {pid}" if isinstance(node, Leaf) and node.kind == "http" else (
        f"{title(node)} (pid {pid})")
