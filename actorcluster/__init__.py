"""actorcluster: Erlang/OTP-style process actors and a round-robin HTTP cluster for Python."""

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
