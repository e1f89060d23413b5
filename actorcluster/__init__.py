"""actorcluster: Erlang/OTP-style process actors and a round-robin HTTP cluster for Python."""

from .actor import Actor, ActorRef, ask, ask_all, ask_sync, broadcast, lookup, tell
from .client import Client, connect
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

__version__ = "0.1.0"

__all__ = [
    "Actor",
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
    "RemoteError",
    "Request",
    "Response",
    "TargetImportError",
    "__version__",
    "ask",
    "ask_all",
    "ask_sync",
    "broadcast",
    "connect",
    "lookup",
    "tell",
]
