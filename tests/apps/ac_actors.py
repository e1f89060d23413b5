"""Actors and handlers used by the messaging tests."""

import asyncio
import functools
import os
import time

from actorcluster import Actor, ActorError, MailboxFull, ask, ask_all, broadcast, tell


class Unreadable:
    """Pickles fine, cannot be unpickled (int("not-an-int") when loaded)."""

    def __reduce__(self):
        return (int, ("not-an-int",))


class ExitsOnLoad:
    """Pickles fine; unpickling it calls sys.exit(3) (SystemExit, not an Exception)."""

    def __reduce__(self):
        import sys

        return (sys.exit, (3,))


class RefusesPickle:
    """Its __reduce__ raises ValueError (not the TypeError of an unpicklable type)."""

    def __reduce__(self):
        raise ValueError("this one refuses to be pickled")


class Recorder(Actor):
    """Keeps what it is told; "get" returns it."""

    def on_start(self):
        self.seen = []

    def receive(self, message):
        if message == "get":
            return self.seen
        if message == "count":
            return len(self.seen)
        if message == "sizes":
            return sorted({len(m) for m in self.seen if isinstance(m, bytes)})
        if message == "heads":  # the number each large bytes message starts with
            return [int.from_bytes(m[:4], "big") for m in self.seen if isinstance(m, bytes)]
        if message == "pid":
            return os.getpid()
        self.seen.append(message)


class Heads(Recorder):
    """Keeps only the number each bytes message starts with: a flood of large messages costs
    it no memory."""

    def receive(self, message):
        if isinstance(message, bytes):
            self.seen.append(int.from_bytes(message[:4], "big"))
            return None
        return super().receive(message)


class SlowStart(Recorder):
    """A recorder whose start takes a while, so it stays 'restarting' long enough to observe."""

    def on_start(self):
        time.sleep(float(os.environ.get("AC_SLOW_START", "0.8")))
        super().on_start()


class SlowAsyncStart(Recorder):
    """A recorder whose async on_start waits $AC_SLOW_START seconds (its loop runs meanwhile)."""

    async def on_start(self):
        await asyncio.sleep(float(os.environ.get("AC_SLOW_START", "0.8")))
        super().on_start()

    def on_stop(self):
        print(f"on_stop of {self.ref.name}", flush=True)


class SlowHeads(Heads):
    """Heads whose start takes AC_SLOW_START seconds (as SlowStart's)."""

    def on_start(self):
        time.sleep(float(os.environ.get("AC_SLOW_START", "0.8")))
        super().on_start()


class Echo(Actor):
    async def receive(self, message):
        match message:
            case ("sleep", seconds, value):
                await asyncio.sleep(seconds)
                return value
            case ("raise", text):
                raise ValueError(text)
            case ("exit",):
                os._exit(13)
            case ("sender",):
                return self.sender
            case ("call", fn, arg):
                return fn(arg)
            case ("broadcast", group, value):
                broadcast(group, value)
                return "sent"
            case ("ask_all", group, value):
                return await ask_all(group, value, timeout=2.0)
            case ("tell_mixed", target):
                # one loop turn: one coalesced run, an unreadable message in its middle
                for i in range(10):
                    tell(target, i)
                tell(target, Unreadable())
                for i in range(10, 20):
                    tell(target, i)
                return "sent"
            case (("ask_unreadable" | "ask_exits_on_load") as how, target):
                bad = Unreadable() if how == "ask_unreadable" else ExitsOnLoad()
                answers = await asyncio.gather(ask(target, "count"), ask(target, bad),
                                               ask(target, "count"), return_exceptions=True)
                return [a if isinstance(a, int) else f"{type(a).__name__}: {a}"
                        for a in answers]
            case ("unreadable_reply",):
                return Unreadable()
            case ("exits_on_load_reply",):
                return ExitsOnLoad()
            case ("exit", code):
                raise SystemExit(code)
            case ("ask_caught", target, value):  # an ask's error, caught and sent on as a value
                try:
                    return await ask(target, value, timeout=2.0)
                except ActorError as exc:
                    return exc
            case ("flood", target):  # tell 0, 1, 2 ... until refused: how many were taken
                told = 0
                try:
                    while True:
                        tell(target, told)
                        told += 1
                        if told % 1000 == 0:
                            await asyncio.sleep(0)  # the loop turns: the router's pause arrives
                except MailboxFull:
                    return told
            case ("cancelled_waiter", target):  # target stopped: a cancelled wait for room
                big = bytes(65536)                # must not cancel the next one's
                try:
                    for _ in range(4000):
                        await asyncio.wait_for(tell(target, big), 0.2)
                except TimeoutError:
                    pass  # paused: that wait was cancelled
                try:
                    await asyncio.wait_for(tell(target, b"next"), 0.2)
                except TimeoutError:
                    return "waited"
                except asyncio.CancelledError:
                    return "cancelled"
                return "sent"
            case ("flood_large", target, n, size):  # await tell n messages of size bytes
                start = time.monotonic()
                for i in range(n):
                    await tell(target, i.to_bytes(4, "big") + bytes(size - 4))
                return time.monotonic() - start
            case ("reuse_buffer", target):  # one buffer, changed after each tell, in one turn
                buf = bytearray(64 * 1024)
                for i in range(5):
                    buf[:4] = i.to_bytes(4, "big")
                    tell(target, buf if i % 2 else memoryview(buf))
                return "sent"
            case ("not_json",):  # a reply `actorcluster ask` must still print as JSON
                import array

                return {(1, 2): float("nan"), "set": {3}, "inf": [float("-inf")], "b": b"x",
                        "a": array.array("d", [1.5]), 7: ("t",)}
            case ("circular",):
                loop = []
                loop.append(loop)
                return loop
            case ("lock",):
                import threading

                return threading.Lock()  # a reply that cannot be pickled
            case ("refusing_reply",):
                return RefusesPickle()  # nor this one, which raises ValueError when pickled
            case ("unpicklable",):
                try:
                    tell("recorder", lambda: None)  # picklable by cloudpickle: fine
                    import threading

                    tell("recorder", threading.Lock())
                except TypeError as exc:
                    return f"TypeError: {exc}"
                return "sent?"
        return message


class Relay(Actor):
    """A plain def receive that asks other actors with ask_sync (its process waits in place);
    anything else it is told, it keeps."""

    def on_start(self):
        self.seen = []

    def receive(self, message):
        from actorcluster import ask_sync

        match message:
            case ("via", target, value, timeout):
                try:
                    return ask_sync(target, value, timeout=timeout)
                except ActorError as exc:
                    return f"{type(exc).__name__}: {exc}"
            case ("pid",):
                return os.getpid()
            case "get":
                return self.seen
        self.seen.append(message)


class WebActor(Actor):
    """An HTTP handler that is also an actor: handle() serves HTTP, receive() takes messages."""

    def on_start(self):
        self.pings = 0

    def receive(self, message):
        if message == "ping":
            self.pings += 1
        elif message == "pings":
            return self.pings
        elif message == "pid":
            return os.getpid()
        elif message == "ask_sync":  # refused in an HTTP worker: it would hold the connections
            from actorcluster import ask_sync

            try:
                return ask_sync("recorder", "count")
            except RuntimeError as exc:
                return f"RuntimeError: {exc}"

    async def handle(self, request):
        if request.path == "/peer":
            me = self.ref.base_name
            peer = "web/2" if me == "web/1" else "web/1"
            return {"me": os.getpid(), "peer": await ask(peer, "pid", timeout=2.0)}
        if request.path == "/record":
            tell("recorder", request.query.get("v", ""))
            return {"recorded": await ask("recorder", "get", timeout=2.0)}
        return str(os.getpid())


def sync_handler(request):
    """A plain def handler (it runs in the worker's thread pool) asking an actor with ask_sync."""
    from actorcluster import ask_sync

    tell("recorder", "from a thread")
    return {"count": ask_sync("recorder", "count", timeout=2.0)}


async def loop_handler(request):
    """ask_sync on the event loop's own thread is refused, not a stall."""
    from actorcluster import ask_sync

    try:
        ask_sync("recorder", "count")
    except RuntimeError as exc:
        return {"refused": str(exc)}
    return {"refused": None}


class FixedSender(Actor):
    """An async actor whose class makes ``self.sender`` read-only once "arm" was handled: the
    runtime's setting it, outside receive, then fails for every message."""

    sender = property(lambda self: None, lambda self, value: self._refuse(value))

    def _refuse(self, value):
        if getattr(self, "armed", False):
            raise AttributeError("sender is read-only here")

    async def receive(self, message):
        if message == "pid":
            return os.getpid()
        if message == "arm":
            self.armed = True
        return message


def plain_decorator(fn):
    """A decorator written for plain functions: it returns what fn returns (a coroutine here)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


class Decorated(Actor):
    """An ``async def receive`` under a plain-def decorator: still an async receive."""

    def on_start(self):
        self.seen = []

    @plain_decorator
    async def receive(self, message):
        await asyncio.sleep(0)
        if message == "seen":
            return self.seen
        self.seen.append(message)


class Journal(Actor):
    """Writes each number it is told to the file $AC_JOURNAL as it handles it ("pid number", a
    line at once), so what every incarnation handled outlives a kill -9."""

    def on_start(self):
        self.fd = os.open(os.environ["AC_JOURNAL"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def receive(self, message):
        if message == "pid":
            return os.getpid()
        os.write(self.fd, b"%d %d\n" % (os.getpid(), message))


class SlowJournal(Journal):
    """An async Journal that takes $AC_SLOW seconds over each number before writing it, so a
    graceful stop finds one in hand and more waiting."""

    async def receive(self, message):
        if message == "pid":
            return os.getpid()
        if message == "cancelled":  # awaits a task someone cancelled: CancelledError escapes
            task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
            task.cancel()
            await task
        await asyncio.sleep(float(os.environ.get("AC_SLOW", "0")))
        os.write(self.fd, b"%d %d\n" % (os.getpid(), message))


class Stale(Actor):
    """On "burst": 2000 asks to a name that does not exist, then its loop stops (a minute): the
    router's ActorNotFound answers fill its pipe and the rest waits in the router for it. Each
    incarnation after the first asks the echo 3000 times from its start, in the background;
    "outcomes" says how many of those answers were right and what else came."""

    def on_start(self):
        self.outcomes = None
        if not self.ref.name.endswith("#1"):
            asyncio.get_running_loop().create_task(self._ask_echo())

    async def _ask_echo(self):
        answers = await asyncio.gather(*(ask("echo", ("sleep", 0.001, i), timeout=30)
                                         for i in range(3000)), return_exceptions=True)
        outcomes = {}
        for i, answer in enumerate(answers):
            key = "right" if answer == i else repr(answer)[:80]
            outcomes[key] = outcomes.get(key, 0) + 1
        self.outcomes = outcomes

    async def receive(self, message):
        if message == "pid":
            return os.getpid()
        if message == "outcomes":
            return self.outcomes
        if message == "burst":
            for i in range(2000):
                ask("nobody", i, timeout=60).add_done_callback(lambda f: f.exception())
            asyncio.get_running_loop().call_soon(time.sleep, 60)  # once the asks have left
            return "sent"



class PlainSlowJournal(Journal):
    """A Journal whose plain receive takes $AC_SLOW seconds over each number: a backlog of quick
    runs keeps its process reading and handling inline."""

    def receive(self, message):
        if message != "pid":
            time.sleep(float(os.environ.get("AC_SLOW", "0")))
        return super().receive(message)


def nap(message):
    """("nap", seconds): the process sleeps, its loop stopped (it reads nothing meanwhile)."""
    if isinstance(message, tuple) and message[:1] == ("nap",):
        time.sleep(message[1])
        return True
    return False


class Forwarder(Actor):
    """Passes each message on to "recorder" (but naps when told to)."""

    def receive(self, message):
        if not nap(message):
            tell("recorder", message)


class NappingRecorder(Recorder):
    """A Recorder that naps when told to."""

    def receive(self, message):
        if not nap(message):
            return super().receive(message)


class Plodder(Recorder):
    """A Recorder whose plain receive takes 0.5 ms over each message: busy, never hung."""

    def receive(self, message):
        if message not in ("count", "pid"):
            time.sleep(0.0005)
        return super().receive(message)
