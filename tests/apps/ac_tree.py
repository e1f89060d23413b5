"""Actors for the supervision-tree tests (tests/test_tree.py)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from actorcluster import (
    Actor,
    count_children,
    delete_child,
    restart_child,
    start_child,
    terminate_child,
    which_children,
)


class Member(Actor):
    def receive(self, message: Any) -> Any:
        match message:
            case "pid":
                return os.getpid()
            case "exit":  # a normal exit
                sys.exit(0)
        raise ValueError(f"unknown {message!r}")


class Flaky(Member):
    """Fails in on_start while the file named by $AC_TREE_FLAG exists: a restart that fails."""

    def on_start(self) -> None:
        if os.path.exists(os.environ["AC_TREE_FLAG"]):
            raise RuntimeError("flagged")


class NeedsArgument(Member):
    """Cannot be made: the runtime makes an actor with no arguments."""

    def __init__(self, size: int) -> None:
        self.size = size


class Stubborn(Member):
    """Ignores SIGTERM: only the SIGKILL at the end of its shutdown time stops it."""

    def on_start(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Manager(Actor):
    """Drives the dynamic-children API from inside the cluster, as a user's actor would."""

    async def receive(self, message: Any) -> Any:
        op, *args = message
        calls = {"start_child": start_child, "terminate_child": terminate_child,
                 "restart_child": restart_child, "delete_child": delete_child,
                 "which_children": which_children, "count_children": count_children}
        return await calls[op](*args)


async def handler(request: Any) -> str:
    return f"{os.getpid()}\n"


def sync_handler(request: Any) -> Any:
    """A plain def handler (it runs in a thread): the dynamic-children requests by ask_sync."""
    from actorcluster import ask_sync

    return ask_sync("primary", {"op": "which_children", "supervisor": "root"}, timeout=5.0)
