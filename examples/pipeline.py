"""A two-stage pipeline for the supervision-tree examples: a Source feeds a Sink.

The Sink depends on the Source (it only makes sense with the Source that fed it), so they sit
under a `rest_for_one` supervisor: if the Source dies, the Sink is restarted after it; if the Sink
dies, only the Sink is. See docs/supervision.md.

    actorcluster ask source '["emit", 3]'     -> 3 (items sent to the sink)
    actorcluster ask sink '"count"'            -> 3
"""

from __future__ import annotations

from typing import Any

from actorcluster import Actor, tell


class Source(Actor):
    def on_start(self) -> None:
        self.sent = 0

    def receive(self, message: Any) -> Any:
        match message:
            case ("emit", int(n)):
                for _ in range(n):
                    self.sent += 1
                    tell("sink", ("item", self.sent))
                return n
            case "sent":
                return self.sent
        raise ValueError(f"Source does not understand {message!r}")


class Sink(Actor):
    def on_start(self) -> None:
        self.items: list[int] = []

    def receive(self, message: Any) -> Any:
        match message:
            case ("item", int(i)):
                self.items.append(i)
            case "count":
                return len(self.items)
            case "stop":  # a normal exit: a transient child is not restarted after it
                raise SystemExit(0)
            case _:
                raise ValueError(f"Sink does not understand {message!r}")
