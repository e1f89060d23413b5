"""The actors that bench/messaging.py measures (each runs as its own process actor).

    actorcluster run bench.msg_apps:handler --workers 1 --name msgbench \\
        --actor sender=bench.msg_apps:Sender --actor receiver=bench.msg_apps:Receiver \\
        --actor slow=bench.msg_apps:SlowReceiver \\
        --actor pinger=bench.msg_apps:Sender --actor ponger=bench.msg_apps:Receiver

A Sender is driven by asks from the benchmark (``("tell", target, n, payload)``, ...); it does the
work from inside the cluster and answers with what it measured. A Receiver counts the messages
that are not its own commands and answers an ask with its count.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actorcluster import Actor, ask, tell

SMALL = "small"
LARGE = "64KiB"
LARGE_SIZE = 64 * 1024
COUNT, RESET = "count", "reset"  # a Receiver's commands; anything else is a message it counts


async def handler(request: Any) -> str:
    """The trivial HTTP handler the cluster needs; the benchmark never calls it."""
    return "ok"


def payload(kind: str, i: int) -> Any:
    """Message number ``i``: a small dict, or a 64 KiB bytes (one shared object)."""
    if kind == SMALL:
        return {"i": i, "kind": "tick"}
    if kind == LARGE:
        return _LARGE
    raise ValueError(f"unknown payload {kind!r}")


_LARGE = bytes(LARGE_SIZE)


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of an ascending list, nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class Receiver(Actor):
    """Counts messages; ``"count"`` answers the count, ``"reset"`` sets it to 0."""

    def on_start(self) -> None:
        self.n = 0

    def receive(self, message: Any) -> Any:
        if message == COUNT:
            return self.n
        if message == RESET:
            self.n = 0
            return 0
        self.n += 1
        return self.n


class SlowReceiver(Receiver):
    """A Receiver that takes 0.5 ms per counted message (blocking, as slow user code does)."""

    delay = 0.0005

    def receive(self, message: Any) -> Any:
        if message == COUNT or message == RESET:
            return super().receive(message)
        time.sleep(self.delay)
        self.n += 1
        return self.n


class Sender(Actor):
    """Runs a measurement on request and answers with its result.

    ``("tell", target, n, kind)``      tell ``n`` messages, then ask until ``target`` counted them;
                                       -> seconds from the first tell to the last one counted
    ``("ask1", target, n, kind)``      ``n`` asks, one outstanding -> their round trips in seconds
    ``("asks", target, waves, width, kind)``  ``waves`` x gather of ``width`` asks -> seconds
    ``("window", target, total, width, kind)``  ``total`` asks, ``width`` always outstanding
                                       (each reply starts the next) -> seconds
    ``("flood", target, n, kind)``     ``n`` x ``await tell`` -> (seconds, seconds waited, waits)
    ``("ping_start", target)``         ask ``target`` in a loop, one outstanding, until
    ``"ping_stop"``                    -> the round trips in seconds (``None`` for a failed ask)
    """

    def on_start(self) -> None:
        self._ping: asyncio.Task[list[float | None]] | None = None
        self._pinging = False

    async def receive(self, message: Any) -> Any:
        match message:
            case ("tell", str(target), int(n), str(kind)):
                return await self._tell(target, n, kind)
            case ("ask1", str(target), int(n), str(kind)):
                return await self._ask1(target, n, kind)
            case ("asks", str(target), int(waves), int(width), str(kind)):
                return await self._asks(target, waves, width, kind)
            case ("window", str(target), int(total), int(width), str(kind)):
                return await self._window(target, total, width, kind)
            case ("flood", str(target), int(n), str(kind)):
                return await self._flood(target, n, kind)
            case ("ping_start", str(target)):
                self._pinging = True
                self._ping = asyncio.get_running_loop().create_task(self._pinger(target))
                return True
            case "ping_stop":
                self._pinging = False
                return await self._ping if self._ping is not None else []
        raise ValueError(f"unknown command {message!r}")

    async def _tell(self, target: str, n: int, kind: str) -> float:
        await ask(target, RESET)
        messages = [payload(kind, i) for i in range(n)]
        start = time.perf_counter()
        for message in messages:
            tell(target, message)
        while await ask(target, COUNT, timeout=60.0) < n:
            await asyncio.sleep(0.0005)
        return time.perf_counter() - start

    async def _ask1(self, target: str, n: int, kind: str) -> list[float]:
        clock = time.perf_counter
        times = []
        for i in range(n):
            message = payload(kind, i)
            start = clock()
            await ask(target, message)
            times.append(clock() - start)
        return times

    async def _asks(self, target: str, waves: int, width: int, kind: str) -> float:
        start = time.perf_counter()
        for w in range(waves):
            await asyncio.gather(*(ask(target, payload(kind, w * width + i))
                                   for i in range(width)))
        return time.perf_counter() - start

    async def _window(self, target: str, total: int, width: int, kind: str) -> float:
        # ``width`` lanes, each one ask outstanding: as soon as a reply lands its lane asks again
        lanes = [range(lane, total, width) for lane in range(width)]

        async def lane(numbers: range) -> None:
            for i in numbers:
                await ask(target, payload(kind, i))

        start = time.perf_counter()
        await asyncio.gather(*(lane(numbers) for numbers in lanes))
        return time.perf_counter() - start

    async def _flood(self, target: str, n: int, kind: str) -> tuple[float, float, int]:
        clock = time.perf_counter
        waited = 0.0
        waits = 0
        start = clock()
        for i in range(n):
            pending = tell(target, payload(kind, i))
            if isinstance(pending, asyncio.Future):  # the destination is paused: wait for room
                before = clock()
                await pending
                waited += clock() - before
                waits += 1
            else:
                await pending  # completes at once: the message is in the outbox
        return clock() - start, waited, waits

    async def _pinger(self, target: str) -> list[float | None]:
        clock = time.perf_counter
        times: list[float | None] = []
        i = 0
        while self._pinging:
            start = clock()
            try:
                await ask(target, payload(SMALL, i), timeout=5.0)
                times.append(clock() - start)
            except Exception:  # noqa: BLE001 - a failed ask is a result, not a crash
                times.append(None)
            i += 1
        return times
