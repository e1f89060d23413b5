"""actorcluster: Erlang/OTP-style process actors and a round-robin HTTP cluster for Python."""

from .errors import (
    ActorClusterError,
    ClusterError,
    ClusterExists,
    ConfigError,
    TargetImportError,
)
from .http import Request, Response

__version__ = "0.1.0"

__all__ = [
    "ActorClusterError",
    "ClusterError",
    "ClusterExists",
    "ConfigError",
    "Request",
    "Response",
    "TargetImportError",
    "__version__",
]
