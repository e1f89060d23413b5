"""Clients attached with connect(): several at once, to one cluster or to two, from threads and
from a foreign event loop, and after close()."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time

import pytest
import test_messages

import actorcluster
from actorcluster import ActorError

pytestmark = pytest.mark.timeout(60)

attach = test_messages.attach  # the fixture: clients closed after the test
ACTORS = test_messages.ACTORS

APP = ("ac_actors:WebActor", "--workers", "1", *ACTORS)


def cluster_name(status):
    return status["cluster"]


def test_a_client_keeps_its_own_cluster_whatever_other_clients_open_or_close(cluster, attach):
    one, two = cluster(*APP), cluster(*APP)
    web_one, web_two = sorted(one.wait_workers(1)), sorted(two.wait_workers(1))
    a = attach(one)
    with actorcluster.connect(one.name) as inner:  # a second client of the same cluster
        assert inner.ask_all("web", "pid") == web_one
    assert a.ask_all("web", "pid") == web_one
    b = attach(two)
    assert a.ask_all("web", "pid") == web_one
    assert b.ask_all("web", "pid") == web_two
    assert cluster_name(a.status()) == one.name and cluster_name(b.status()) == two.name
    # the module-level functions use the most recent client still open
    assert cluster_name(actorcluster.ask_sync("primary", "status")) == two.name
    b.close()
    assert a.ask_all("web", "pid") == web_one
    assert cluster_name(actorcluster.ask_sync("primary", "status")) == one.name
    actorcluster.tell("recorder", "module tell")
    actorcluster.broadcast("web", "ping")
    assert a.ask("recorder", "get") == ["module tell"]
    assert a.ask_all("web", "pings") == [1]


def test_client_and_module_functions_from_threads_and_a_foreign_event_loop(cluster, attach):
    one, two = cluster(*APP), cluster(*APP)
    web_one = sorted(one.wait_workers(1))
    a = attach(one)
    results: list = []

    def from_a_thread() -> None:
        results.append(a.ask_all("web", "pid"))

    threads = [threading.Thread(target=from_a_thread) for _ in range(4)]
    for t in threads:
        t.start()
    b = attach(two)  # opened while the threads ask through a
    for t in threads:
        t.join(10)
    assert results == [web_one] * 4
    b.close()

    async def main():
        return (await actorcluster.ask("primary", "status"),
                await actorcluster.ask_all("web", "pid"),
                await actorcluster.lookup("web").ask("pid"))

    status, members, pid = asyncio.run(main())
    assert (cluster_name(status), members, [pid]) == (one.name, web_one, web_one)


def ask_slowly(client, seconds: float, timeout: float) -> tuple[threading.Thread, list]:
    """An ask that takes ``seconds`` to answer, waiting in a thread (started 0.3 s ago): the
    thread and the list that gets its reply, or (the ActorError, seconds it waited)."""
    waiting: list = []

    def ask() -> None:
        started = time.monotonic()
        try:
            waiting.append(client.ask("echo", ("sleep", seconds, "late"), timeout=timeout))
        except ActorError as exc:
            waiting.append((exc, time.monotonic() - started))

    asker = threading.Thread(target=ask)
    asker.start()
    time.sleep(0.3)
    return asker, waiting


def receive_forever(client) -> tuple[threading.Thread, list]:
    """``client.receive(timeout=None)`` waiting in a (daemon) thread: the thread and the list
    that gets what it returned or raised, and the seconds it waited."""
    got: list = []

    def receive() -> None:
        started = time.monotonic()
        try:
            got.append(client.receive(timeout=None))
        except Exception as exc:  # noqa: BLE001 - the test looks at what it was
            got.append((exc, time.monotonic() - started))

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    return receiver, got


def test_a_closed_client_refuses_at_once(cluster):
    c = cluster(*APP)
    client = actorcluster.connect(c.name)
    receiver, got = receive_forever(client)
    asker, waiting = ask_slowly(client, 3, timeout=10)
    client.close()
    asker.join(5)
    [(exc, waited)] = waiting
    assert "closed" in str(exc) and waited < 2  # not the end of the 3 s sleep, nor the timeout
    receiver.join(2)  # a receive() with no timeout hears the close too, not never
    [(exc, _)] = got
    assert type(exc) is ActorError and "this client is closed" in str(exc), exc
    for call in (lambda: client.tell("recorder", 1), lambda: client.broadcast("web", "ping"),
                 lambda: client.ask("recorder", "get", timeout=2),
                 lambda: client.ask_all("web", "pid", timeout=2)):
        started = time.monotonic()
        with pytest.raises(ActorError, match="this client is closed"):
            call()
        assert time.monotonic() - started < 0.5
    client.close()  # a second close does nothing
    with pytest.raises(ActorError, match="no cluster here"):
        actorcluster.tell("recorder", 1)


def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_a_value_error(cluster):
    c = cluster(*APP)
    with actorcluster.connect(c.name) as client:
        for bad in (-1, 0, float("nan"), float("inf")):
            started = time.monotonic()
            with pytest.raises(ValueError, match="ask timeout: a number of seconds above 0"):
                client.ask("echo", "x", timeout=bad)
            with pytest.raises(ValueError, match="ask timeout"):
                client.ask_all("web", "x", timeout=bad)
            assert time.monotonic() - started < 1  # at once
        for bad in (None, "5", True):  # not a number: a TypeError that says what is wanted
            with pytest.raises(TypeError, match="ask timeout: a number of seconds above 0"):
                client.ask("echo", "x", timeout=bad)
            with pytest.raises(TypeError, match="ask timeout"):
                client.ask_all("web", "x", timeout=bad)
        assert client.ask("echo", "fine", timeout=2) == "fine"


def test_a_client_of_a_cluster_that_stopped_fails_at_once(cluster):
    c = cluster(*APP)
    with actorcluster.connect(c.name) as client:
        asker, waiting = ask_slowly(client, 30, timeout=20)
        receiver, got = receive_forever(client)
        c.signal(signal.SIGKILL)  # the primary; its workers follow it (parent-death signal)
        asker.join(10)
        [(exc, waited)] = waiting
        assert "the cluster stopped" in str(exc) and waited < 3, (exc, waited)
        receiver.join(3)  # a receive() with no timeout learns it as the ask did, not never
        [(exc, _)] = got
        assert type(exc) is ActorError and "the cluster stopped" in str(exc), exc
        for call in (lambda: client.tell("recorder", 1),
                     lambda: client.ask("recorder", "get", timeout=2),
                     lambda: client.receive(timeout=2)):
            started = time.monotonic()
            with pytest.raises(ActorError, match="the cluster stopped"):
                call()
            assert time.monotonic() - started < 1
        started = time.monotonic()  # closing it waits for no router either
        client.close()
        assert time.monotonic() - started < 1


def test_what_a_client_tells_while_the_cluster_stops_is_handled_or_counted(cluster, tmp_path):
    """A client telling in a loop when the primary gets SIGTERM: every tell it was not refused
    is handled by the actor or logged as a dead letter. About 2,300 of 19,500 were lost
    without a trace (in ZeroMQ's buffers when the primary exited); now the primary tells its
    clients it stops and reads on until each has sent what it queued and said bye."""
    journal = tmp_path / "journal"
    c = cluster("ac_actors:WebActor", "--workers", "1", "--actor", "journal=ac_actors:Journal",
                env={"AC_JOURNAL": str(journal)})
    told = 0
    with actorcluster.connect(c.name) as client:
        client.ask("journal", "pid")
        stop = threading.Timer(0.3, c.signal, args=(signal.SIGTERM,))
        stop.start()
        with pytest.raises(ActorError, match="the cluster (is stopping|stopped)"):
            while True:
                client.tell("journal", told)
                told += 1
                if told % 100 == 0:
                    time.sleep(0.001)
        stop.join()
        assert c.wait() == 0
    handled = {int(line.split()[1]) for line in journal.read_text().splitlines()}
    log = c.log()
    dead = (sum(int(n) for n in re.findall(r"dead letter: (\d+) message\(s\) to 'journal'", log))
            + sum(int(n) for n in re.findall(r"(\d+) more dead letters to 'journal'", log)))
    assert handled == set(range(len(handled))), "handled out of order or with gaps"
    assert told > 1000 and len(handled) + dead == told, (told, len(handled), dead)


def test_an_ask_to_a_client_fails_at_once_and_its_tells_wait_in_receive(cluster, attach):
    """A client takes tells (client.receive()); an actor asking it hears at once that it cannot
    answer, instead of waiting for its timeout."""
    c = cluster(*APP)
    client = attach(c)
    t0 = time.monotonic()
    error = client.ask("echo", ("ask_caught", client.ref, "are you there?"), timeout=5)
    assert type(error) is ActorError and "cannot answer an ask" in str(error), error
    assert time.monotonic() - t0 < 1.5
    tell_back = lambda ref: actorcluster.tell(ref, "told") and "sent"  # noqa: E731 - by value
    assert client.ask("echo", ("call", tell_back, client.ref)) == "sent"
    sender, message = client.receive(timeout=5)
    assert (sender.base_name, message) == ("echo", "told")


def test_asks_and_tells_from_the_callers_own_loop_keep_their_order(cluster, attach):
    # From a script's own asyncio.run, an ask made before a tell once left a loop turn after it
    # (its future was made in a task's first step, the tell was queued at once): the recorder
    # counted tells that were sent after the ask.
    client = attach(cluster(*APP))

    async def main():
        asks = []
        for i in range(200):
            asks.append(actorcluster.ask("recorder", "count", timeout=10))
            actorcluster.tell("recorder", i)
        return await asyncio.gather(*asks)

    assert asyncio.run(main()) == list(range(200))
    assert client.ask("recorder", "get") == list(range(200))


def test_close_sends_what_waits_for_a_paused_destination(cluster, attach):
    # 64 KiB messages (one per ZeroMQ message) to a napping recorder: the client is paused and
    # keeps the last few hundred itself. close() once waited 2 s for the pause to end, then
    # dropped them without a word; now they go to the router, which delivers them later.
    c = cluster("ac_actors:WebActor", "--workers", "1", "--actor",
                "recorder=ac_actors:NappingRecorder")
    client = attach(c)
    client.tell("recorder", ("nap", 5))  # longer than close() once waited
    sender = actorcluster.connect(c.name)
    for i in range(2500):
        sender.tell("recorder", i.to_bytes(4, "big") + bytes(65532))
    sender.close()
    deadline = time.monotonic() + 20
    while (count := client.ask("recorder", "count", timeout=10)) < 2500:
        assert time.monotonic() < deadline, f"{count} of 2500"
        time.sleep(0.2)
    assert client.ask("recorder", "heads", timeout=10) == list(range(2500))
    assert client.ask("primary", "status")["messages"]["dead_letters"] == {}


def test_await_tell_from_a_script_waits_while_paused_and_fails_when_the_cluster_stops(cluster):
    # From a script's own asyncio.run, `await tell(...)` never waited: a flood to a stopped
    # actor piled up in the client (100,000 messages of any size before MailboxFull). It now
    # waits as inside the cluster; and a wait the cluster's end cuts short raises at once.
    c = cluster(*APP)
    with actorcluster.connect(c.name) as client:
        receiver = client.ask("recorder", "pid")
        os.kill(receiver, signal.SIGSTOP)

        async def paused() -> bool:  # read on the client's own loop, which owns the messenger
            return b"recorder" in client.messenger._paused

        def is_paused() -> bool:
            return asyncio.run_coroutine_threadsafe(paused(), client._loop).result(5)

        sent = 0
        while not is_paused():  # 64 KiB each: the router pauses the client after ~20 MiB
            assert sent < 4000, "the router never paused the client"
            for _ in range(50):
                client.tell("recorder", bytes(65536))
            sent += 50
            time.sleep(0.01)

        async def main() -> None:
            with pytest.raises(asyncio.TimeoutError):  # waits while the recorder is paused
                await asyncio.wait_for(actorcluster.tell("recorder", b"small"), 0.3)
            waiting = asyncio.ensure_future(actorcluster.tell("recorder", b"small"))
            await asyncio.sleep(0.05)
            c.signal(signal.SIGKILL)  # the primary; its workers follow it (parent-death signal)
            with pytest.raises(ActorError, match="the cluster stopped"):
                await asyncio.wait_for(waiting, 5)

        asyncio.run(main())
