"""Dynamic children: OTP's supervisor functions, usable from any actor or handler.

Each is a request to the primary, which runs the supervisors; ``supervisor`` is a supervisor's
name ("root" for the top). They are coroutines: ``await start_child("root", ActorSpec(...))``.
A request that cannot be carried out raises ActorError with the reason (``ActorNotFound`` for a
supervisor that does not exist).
"""

from __future__ import annotations

from typing import Any

from .actor import ask
from .specs import ActorSpec, Pool, Supervisor

START_TIMEOUT = 60.0  # start_child waits until the new child is ready
STOP_TIMEOUT = 120.0  # terminate_child waits for the stop ladder


def spec_dict(spec: ActorSpec | Pool | Supervisor | dict[str, Any]) -> dict[str, Any]:
    """A child spec as the JSON the primary takes (targets as MODULE:ATTR strings)."""
    return spec if isinstance(spec, dict) else spec.to_dict()


async def start_child(supervisor: str, spec: ActorSpec | Supervisor | dict[str, Any],
                      timeout: float = START_TIMEOUT) -> dict[str, Any]:
    """Add ``spec`` as the last child of ``supervisor`` and start it; returns
    ``{"name", "type", "state", "pid", "restart"}`` once it is ready. A child that fails to
    start is not added (the error says why). A supervisor restarted by its parent comes back
    with the children of its spec only, as in OTP."""
    return await ask("primary", {"op": "start_child", "supervisor": supervisor,
                                 "spec": spec_dict(spec)}, timeout=timeout)


async def terminate_child(supervisor: str, name: str, timeout: float = STOP_TIMEOUT) -> None:
    """Stop child ``name`` (its stop ladder); it stays in the supervisor, not running, until
    restart_child or delete_child (a temporary child is deleted at once)."""
    await ask("primary", {"op": "terminate_child", "supervisor": supervisor, "name": name},
              timeout=timeout)


async def restart_child(supervisor: str, name: str, timeout: float = START_TIMEOUT
                        ) -> dict[str, Any]:
    """Start again a child that terminate_child stopped (an error if it is running)."""
    return await ask("primary", {"op": "restart_child", "supervisor": supervisor, "name": name},
                     timeout=timeout)


async def delete_child(supervisor: str, name: str, timeout: float = 5.0) -> None:
    """Forget a child that is not running (terminate_child it first)."""
    await ask("primary", {"op": "delete_child", "supervisor": supervisor, "name": name},
              timeout=timeout)


async def which_children(supervisor: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The children of ``supervisor`` in start order: name, type (actor, worker, pool,
    supervisor), state, pid (None but for processes) and restart type."""
    return await ask("primary", {"op": "which_children", "supervisor": supervisor},
                     timeout=timeout)


async def count_children(supervisor: str, timeout: float = 5.0) -> dict[str, int]:
    """OTP's counts: ``specs`` (children), ``active`` (running), ``supervisors``, ``workers``
    (every child that is not a supervisor: actors and pools)."""
    return await ask("primary", {"op": "count_children", "supervisor": supervisor},
                     timeout=timeout)
