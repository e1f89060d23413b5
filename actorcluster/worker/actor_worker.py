"""A worker whose behaviour is one user Actor (``--actor NAME=MODULE:Class``)."""

from __future__ import annotations

import asyncio
from typing import Any

from .actor_host import ActorHost
from .process import ProcessActor


class ActorWorker(ProcessActor):
    def __init__(self, loop: asyncio.AbstractEventLoop, spec: dict[str, Any], actor_class: Any):
        super().__init__(loop, spec)
        self.actor_class = actor_class

    async def start(self) -> None:
        # here, not in __init__: a class that cannot be made (an __init__ that takes arguments
        # or raises) is then a boot failure the starter hears the cause of
        self.host = ActorHost(self.actor_class(), self.spec["name"], self.identity,
                              self.messenger)
        self.host.report_dead = self.report_dead

    def stop(self, retire: bool = False) -> None:
        # nothing more is read from now on, not once the loop has read what waits in the socket:
        # the rest goes to the next incarnation (ActorHost.stop)
        if self.host is not None:
            self.host.close()
        super().stop(retire)
