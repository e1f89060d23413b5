"""actorcluster: Erlang/OTP-style process actors and a round-robin HTTP cluster for Python."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The public names load on first use (PEP 562): the primary and the command line import
# actorcluster's submodules, not the user API, and every process start paid for all of it
# (HTTP, client, actor machinery: about a quarter of the primary's start-up).
_HOMES = {
    **dict.fromkeys(["Actor", "ActorRef", "ask", "ask_all", "ask_sync", "broadcast", "lookup",
                     "tell"], ".actor"),
    **dict.fromkeys(["Client", "connect"], ".client"),
    **dict.fromkeys(["count_children", "delete_child", "restart_child", "start_child",
                     "terminate_child", "which_children"], ".dynamic"),
    **dict.fromkeys(["ActorClusterError", "ActorCrashed", "ActorError", "ActorNotFound",
                     "AskTimeout", "ClusterError", "ClusterExists", "ClusterNotFound",
                     "ConfigError", "MailboxFull", "RemoteError", "TargetImportError"], ".errors"),
    **dict.fromkeys(["Request", "Response"], ".http"),
    **dict.fromkeys(["ActorSpec", "Pool", "Supervisor"], ".specs"),
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from .actor import Actor, ActorRef, ask, ask_all, ask_sync, broadcast, lookup, tell
    from .client import Client, connect
    from .dynamic import (
        count_children,
        delete_child,
        restart_child,
        start_child,
        terminate_child,
        which_children,
    )
    from .errors import (
        ActorClusterError,
        ActorCrashed,
        ActorError,
        ActorNotFound,
        AskTimeout,
        ClusterError,
        ClusterExists,
        ClusterNotFound,
        ConfigError,
        MailboxFull,
        RemoteError,
        TargetImportError,
    )
    from .http import Request, Response
    from .specs import ActorSpec, Pool, Supervisor

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorSpec",
    "ActorClusterError",
    "ActorCrashed",
    "ActorError",
    "ActorNotFound",
    "ActorRef",
    "AskTimeout",
    "Client",
    "ClusterError",
    "ClusterExists",
    "ClusterNotFound",
    "ConfigError",
    "MailboxFull",
    "Pool",
    "RemoteError",
    "Request",
    "Response",
    "Supervisor",
    "TargetImportError",
    "__version__",
    "ask",
    "ask_all",
    "ask_sync",
    "broadcast",
    "connect",
    "count_children",
    "delete_child",
    "lookup",
    "restart_child",
    "start_child",
    "tell",
    "terminate_child",
    "which_children",
]


# The modules that `import actorcluster` used to load: code that reads them as attributes after a
# bare import (actorcluster.errors.AskTimeout) gets them loaded then.
_MODULES = frozenset(["actor", "client", "dynamic", "errors", "http", "specs"])


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        if name in _MODULES:
            return importlib.import_module(f".{name}", __name__)  # binds it here as it loads
        raise AttributeError(f"module 'actorcluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
