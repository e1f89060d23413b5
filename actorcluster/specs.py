"""What a supervision tree is made of: ``Supervisor``, ``Pool`` and ``ActorSpec``.

One model, three ways in: a TOML file (config_file.py), a Python object (``actorcluster run
examples.tree:tree``) and the options of ``actorcluster run TARGET --workers N --actor NAME=...``
(:func:`default_tree`) all produce these. They are plain data. Targets may be given as objects in
Python (an Actor subclass, a handler function); :meth:`to_dict` turns them into ``MODULE:ATTR``
strings, the only form the primary ever sees (it never imports user code).

Checking a tree (names, values, the paths in error messages) is config_file.py's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS = ("permanent", "transient", "temporary")
BRUTAL_KILL = "brutal_kill"  # SIGKILL at once
INFINITY = "infinity"  # wait as long as it takes (the default for supervisors)
ROOT = "root"


def target_string(target: Any) -> Any:
    """``MODULE:ATTR`` for a class or function defined at a module's top level; anything else
    (a string, or a value the checker will reject) is returned as it is."""
    if isinstance(target, str) or not callable(target):
        return target
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return target
    return f"{module}:{qualname}"


@dataclass(frozen=True)
class ActorSpec:
    """A user actor: one supervised process running ``actor`` (an Actor subclass)."""

    name: str
    actor: str | type
    restart: str = "permanent"
    shutdown: float | str = 5.0  # seconds between SIGTERM and SIGKILL, or "brutal_kill"

    kind = "actor"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "actor": target_string(self.actor),
                "restart": self.restart, "shutdown": self.shutdown}


# Workers in one HTTP pool, at most. A typo (`--workers 1000000`, `scale web 1000000`) would fork
# until the primary stops answering (about 1,400 here) and the machine with it; gunicorn and PM2
# take any number. 1024 is far beyond what a machine's cores can use for HTTP.
MAX_WORKERS = 1024


@dataclass(frozen=True)
class Pool:
    """An HTTP pool: ``workers`` interchangeable processes serving ``http`` (a handler).

    The pool is one child of its supervisor; a worker that dies is restarted alone whatever the
    supervisor's strategy, and counts toward the supervisor's restart intensity. The pool is a
    group under its name (``broadcast(name, ...)``); its workers are ``NAME/1``, ``NAME/2``...
    """

    name: str = "web"
    http: str | Callable[..., Any] = ""
    workers: int | str = "auto"  # "auto": --workers, else the CPUs this process may use
    restart: str = "permanent"
    shutdown: float | str | None = None  # None: the cluster's --graceful-timeout

    kind = "pool"

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "http": target_string(self.http), "workers": self.workers,
                "restart": self.restart}
        if self.shutdown is not None:
            data["shutdown"] = self.shutdown
        return data


@dataclass(frozen=True)
class Backoff:
    """Delay before the restarts of a child that keeps failing: 0, initial, 2*initial ... max."""

    initial: float = 0.05
    max: float = 5.0

    def to_dict(self) -> dict[str, Any]:
        return {"initial": self.initial, "max": self.max}


@dataclass(frozen=True)
class Supervisor:
    """A supervisor: starts ``children`` in order and restarts them by ``strategy``; more than
    ``max_restarts`` restarts within ``within`` seconds and it stops its children and exits,
    which its own supervisor sees as the failure of a child (escalation)."""

    name: str = ROOT
    strategy: str = "one_for_one"
    children: tuple[ActorSpec | Pool | Supervisor, ...] | list[Any] = ()
    max_restarts: int = 5
    within: float = 10.0
    backoff: Backoff | None = field(default_factory=Backoff)  # None: restart at once
    restart: str = "permanent"
    shutdown: float | str = INFINITY

    kind = "supervisor"

    def to_dict(self) -> dict[str, Any]:
        children = [c.to_dict() if hasattr(c, "to_dict") else c for c in self.children]
        backoff = self.backoff.to_dict() if isinstance(self.backoff, Backoff) else (
            False if self.backoff is None else self.backoff)  # TOML has no null: false
        return {"name": self.name, "strategy": self.strategy, "max_restarts": self.max_restarts,
                "within": self.within, "backoff": backoff, "restart": self.restart,
                "shutdown": self.shutdown, "children": children}

    def walk(self) -> list[tuple[str, ActorSpec | Pool | Supervisor]]:
        """Every node with its path (``supervisor.children[1]``), depth first, in start order."""
        found: list[tuple[str, Any]] = []

        def visit(node: Any, path: str) -> None:
            found.append((path, node))
            if isinstance(node, Supervisor):
                for i, child in enumerate(node.children):
                    visit(child, f"{path}.children[{i}]")

        visit(self, "supervisor")
        return found

    def targets(self) -> list[tuple[str, str, str]]:
        """``(path, target, kind)`` of every leaf; kind is "actor" or "http"."""
        out = []
        for path, node in self.walk():
            if isinstance(node, ActorSpec):
                out.append((f"{path}.actor", str(target_string(node.actor)), "actor"))
            elif isinstance(node, Pool):
                out.append((f"{path}.http", str(target_string(node.http)), "http"))
        return out

    def with_workers(self, workers: int) -> Supervisor:
        """This tree with every pool of a fixed size sized ``workers`` (--workers given wins over
        a file's or a Python tree's ``workers = N``; ``"auto"`` means --workers already)."""
        children = tuple(
            child.with_workers(workers) if isinstance(child, Supervisor)
            else replace(child, workers=workers)
            if isinstance(child, Pool) and child.workers != "auto" else child
            for child in self.children)
        return replace(self, children=children)


Spec = ActorSpec | Pool | Supervisor


def default_tree(target: str, workers: int | str, actors: tuple[tuple[str, str], ...],
                 max_restarts: int, within: float) -> Supervisor:
    """The tree ``actorcluster run TARGET --workers N --actor NAME=MODULE:Class`` describes:
    a one_for_one root with the actors first, then the HTTP pool ``web``."""
    children: list[Spec] = [ActorSpec(name, actor) for name, actor in actors]
    children.append(Pool("web", target, workers))
    return Supervisor(ROOT, "one_for_one", tuple(children), max_restarts, within)
