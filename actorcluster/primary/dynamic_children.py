"""OTP's dynamic-children functions, carried out by the primary's supervision tree.

``start_child``, ``terminate_child``, ``restart_child``, ``delete_child``, ``which_children`` and
``count_children`` arrive as requests to the primary (actorcluster.dynamic, the CLI). Each runs
under the supervisor's lock, like any event of that supervisor. A mixin of SupervisionTree: it
uses the tree's building, starting and stopping of subtrees.
"""

from __future__ import annotations

from typing import Any

from .. import specs
from ..errors import ActorError, ActorNotFound
from .children import DOWN, STOPPING, Leaf, Node, SupervisorNode, is_running, kind_of


class SupervisorError(ActorError):
    """A dynamic-children request that cannot be carried out (the message says why)."""


class DynamicChildren:
    def supervisor(self, name: str) -> SupervisorNode:
        node = self.names.get(name)
        if isinstance(node, SupervisorNode):
            return node
        known = ", ".join(n for n, v in self.names.items() if isinstance(v, SupervisorNode))
        if node is None:
            what = f"no supervisor named {name!r}"
        else:
            kind = kind_of(node)
            what = f"{name!r} is {'an' if kind == 'actor' else 'a'} {kind}, not a supervisor"
        raise ActorNotFound(f"{what}; the supervisors are: {known}")

    def _checkis_running(self, node: SupervisorNode, name: str) -> None:
        """OTP answers noproc for a supervisor that is not running: a child started (or
        restarted) under a terminated supervisor would run with no one to restart it, and the
        supervisor's own restart would drop it."""
        if node.state in (STOPPING, DOWN):
            raise SupervisorError(f"supervisor {node.name!r} is not running; cannot start "
                                  f"{name!r} under it (restart_child {node.name!r} first)")

    def _child(self, node: SupervisorNode, name: str) -> Node:
        child = node.children.get(name)
        if child is None:
            raise SupervisorError(f"supervisor {node.name!r} has no child {name!r}; its "
                                  f"children are: {', '.join(node.children) or 'none'}")
        return child

    async def start_child(self, supervisor: str, spec: specs.Spec) -> dict[str, Any]:
        node = self.supervisor(supervisor)
        if any(isinstance(n, specs.Pool) for _p, n in _walk(spec)):
            raise SupervisorError("an HTTP pool cannot be started at run time yet; declare it "
                                  "in the tree")
        async with node.lock:
            self._checkis_running(node, spec.name)
            taken = [n.name for _p, n in _walk(spec) if n.name in self.names]
            if taken:
                raise SupervisorError(f"the name {taken[0]!r} is already used in the tree")
            child = self._build(spec, node)
            node.children[child.name] = child
            node.dynamic.add(child.name)
            node.logic.add_child(child.name, child.restart)
            up = await self._start(child)
            if not up:
                why = self._why_not_up(child)  # before the stop adds its siblings' clean exits
                await self._stop(child)
                self._remove(node, child)
                raise SupervisorError(f"child {spec.name!r} failed to start ({why})")
            return self._brief(child)

    async def terminate_child(self, supervisor: str, name: str) -> None:
        node = self.supervisor(supervisor)
        async with node.lock:
            child = self._child(node, name)
            if is_running(child):
                node.logic.stop_requested(name)
            else:  # e.g. waiting for its backoff: no exit to come, and it is not started
                node.logic.not_started(name)
            await self._stop(child)
            # nothing comes back under its names until restart_child: a restart waiting for its
            # backoff (the child's, or one under it) held its name, which no stop lets go
            for leaf in self.leaves(child):
                self.router.forget(leaf.name)
            if child.restart == "temporary":  # as OTP: a temporary child is deleted
                self._remove(node, child)

    def _stopped_child(self, node: SupervisorNode, name: str) -> Node:
        child = self._child(node, name)
        if is_running(child):
            raise SupervisorError(f"child {name!r} of {node.name!r} is running; "
                                  "terminate_child it first")
        return child

    async def restart_child(self, supervisor: str, name: str) -> dict[str, Any]:
        node = self.supervisor(supervisor)
        async with node.lock:
            child = self._stopped_child(node, name)
            self._checkis_running(node, name)
            node.logic.child_started(name)
            if not await self._start(child):
                # as OTP: the child stays terminated and its supervisor is not affected: the
                # exit of an actor (on its way) is no failure to restart, nor to count; a
                # supervisor that failed to start has stopped what it started and reports none
                if isinstance(child, Leaf):
                    node.logic.stop_requested(name)
                else:
                    node.logic.not_started(name)
                raise SupervisorError(f"child {name!r} failed to start "
                                      f"({self._why_not_up(child)})")
            return self._brief(child)

    def _why_not_up(self, child: Node) -> str:
        """The exits of the processes that failed (not those stopped after them)."""
        return "; ".join(f"{leaf.name}: {leaf.last_exit}" for leaf in self.leaves(child)
                         if leaf.last_exit and not leaf.up and not leaf.stop_requested
                         ) or "it stopped before it was ready"

    async def delete_child(self, supervisor: str, name: str) -> None:
        node = self.supervisor(supervisor)
        async with node.lock:
            self._remove(node, self._stopped_child(node, name))

    def _remove(self, node: SupervisorNode, child: Node) -> None:
        """Forget ``child``: its supervisor's bookkeeping, the tree's names, the router's."""
        node.logic.remove_child(child.name)
        node.children.pop(child.name, None)
        node.dynamic.discard(child.name)
        self._unregister(child)

    def which_children(self, supervisor: str) -> list[dict[str, Any]]:
        return [self._brief(c) for c in self.supervisor(supervisor).children.values()]

    def count_children(self, supervisor: str) -> dict[str, int]:
        children = list(self.supervisor(supervisor).children.values())
        return {
            "specs": len(children),
            "active": sum(1 for c in children if is_running(c)),
            "supervisors": sum(1 for c in children if isinstance(c, SupervisorNode)),
            "workers": sum(1 for c in children if not isinstance(c, SupervisorNode)),
        }

    def _brief(self, node: Node) -> dict[str, Any]:
        return {"name": node.name, "type": kind_of(node), "state": node.state,
                "pid": node.pid if isinstance(node, Leaf) else None,
                "restart": node.restart}


def _walk(spec: specs.Spec) -> list[tuple[str, specs.Spec]]:
    if isinstance(spec, specs.Supervisor):
        return spec.walk()
    return [("", spec)]
