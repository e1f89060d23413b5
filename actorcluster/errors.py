"""The exception tree of actorcluster.

    ActorClusterError
    ├── ConfigError          a bad option or config value (names where it was and what is allowed)
    ├── TargetImportError    MODULE:ATTR could not be imported or is not usable
    ├── ClusterError         the cluster could not start or gave up
    │   ├── ClusterExists    a cluster with that name is already running
    │   └── ClusterNotFound  no running cluster by that name
    └── ActorError           a message could not be delivered or answered
        ├── ActorNotFound    no actor by that name (raised at once, not after the timeout)
        ├── AskTimeout       no reply within the timeout
        ├── ActorCrashed     the actor died while handling the ask
        │   └── RemoteError  it died because receive raised: remote type, message, traceback
        └── MailboxFull      the destination's mailbox stayed full

Lower-level errors (zmq, OS) are translated into the most specific of these at the boundary.
"""

from __future__ import annotations


class ActorClusterError(Exception):
    """Base of every error actorcluster raises on purpose."""


class ConfigError(ActorClusterError, ValueError):
    """A setting has a bad value."""


class TargetImportError(ActorClusterError, ImportError):
    """A ``module:attr`` target could not be imported or is not what it must be."""


class ClusterError(ActorClusterError, RuntimeError):
    """The cluster could not start, or its supervisor gave up."""


class ClusterExists(ClusterError):
    """A live cluster already uses that name."""


class ClusterNotFound(ClusterError):
    """No running cluster matches (the message lists the ones that run)."""


class ActorError(ActorClusterError):
    """Base of every messaging failure."""


class ActorNotFound(ActorError, LookupError):
    """No actor or group has that name."""


class AskTimeout(ActorError, TimeoutError):
    """No reply came within the ask's timeout."""


class ActorCrashed(ActorError):
    """The actor died while it was handling the ask."""


class MailboxFull(ActorError):
    """The destination's mailbox stayed full (flow control) past the sender's patience."""


class RemoteError(ActorCrashed):
    """The actor raised while handling the ask, and so crashed (let it crash: its supervisor
    restarts it). An ``except ActorCrashed`` catches it too.

    ``remote_type`` is the exception's type name, ``remote_message`` its text, ``remote_traceback``
    the formatted traceback from the actor's process.
    """

    def __init__(self, remote_type: str, remote_message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple:
        # An actor that catches it may send it on as a value; the default reduce would call
        # __init__ with the one formatted message.
        return (type(self), (self.remote_type, self.remote_message, self.remote_traceback))


_BY_NAME = {cls.__name__: cls for cls in (ActorNotFound, AskTimeout, ActorCrashed, MailboxFull)}


def error_from_payload(payload: dict) -> ActorError:
    """The exception an ERROR frame's JSON payload stands for."""
    kind = payload.get("error", "")
    if kind == "RemoteError":
        return RemoteError(payload.get("type", "Exception"), payload.get("message", ""),
                           payload.get("traceback", ""))
    return _BY_NAME.get(kind, ActorError)(payload.get("message", kind))
