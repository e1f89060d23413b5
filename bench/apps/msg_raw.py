"""The raw pyzmq baseline of bench/messaging.py: DEALER -> ROUTER broker -> DEALER, three processes.

    python bench/apps/msg_raw.py broker   ipc:///tmp/x/broker
    python bench/apps/msg_raw.py receiver ipc:///tmp/x/broker
    python bench/apps/msg_raw.py sender   ipc:///tmp/x/broker N_TELLS N_ASK1 WAVES WIDTH PAYLOAD

The broker is a plain Python ROUTER loop that swaps the first two frames (source, destination),
as actorcluster's router does; the receiver unpickles and counts every message and answers asks
with its count. The sender runs every measurement once and prints one JSON object:
tells one message per send, tells 64 messages packed (one pickled list) per send, asks one
outstanding (each round trip), asks in waves of WIDTH outstanding. Messages are pickle protocol 5,
built before the clock starts and pickled inside the timed loop (as actorcluster's tell does).
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
import time
from typing import Any

import zmq

HEADER = struct.Struct("!BQ")  # kind, correlation id
TELL, PACKED, ASK, REPLY, COUNT, RESET = range(1, 7)
PACK = 64
RECEIVER = b"receiver"
SENDER = b"sender"
LARGE_SIZE = 64 * 1024


def message(kind: str, i: int) -> Any:
    return {"i": i, "kind": "tick"} if kind == "small" else bytes(LARGE_SIZE)


def broker(endpoint: str) -> None:
    context = zmq.Context(1)
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # never drop silently: a full peer blocks the send
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    recv, send = sock.recv_multipart, sock.send_multipart
    while True:
        frames = recv()
        frames[0], frames[1] = frames[1], frames[0]
        try:
            send(frames)
        except zmq.ZMQError as exc:  # that peer has not connected yet: the sender's probe retries
            if exc.errno != zmq.EHOSTUNREACH:
                raise


def receiver(endpoint: str) -> None:
    context = zmq.Context(1)
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, RECEIVER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    recv, send = sock.recv_multipart, sock.send_multipart
    loads, dumps, unpack, pack = pickle.loads, pickle.dumps, HEADER.unpack, HEADER.pack
    n = 0
    while True:
        source, header, *payloads = recv()
        kind, corr = unpack(header)
        if kind == TELL:
            for data in payloads:
                loads(data)
                n += 1
        elif kind == PACKED:
            n += len(loads(payloads[0]))
        elif kind == ASK:
            loads(payloads[0])
            n += 1
            send([source, pack(REPLY, corr), dumps(n, 5)])
        elif kind == COUNT:
            send([source, pack(REPLY, corr), dumps(n, 5)])
        elif kind == RESET:
            n = 0
            send([source, pack(REPLY, corr), dumps(n, 5)])


class Sender:
    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context(1)
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, SENDER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.corr = 0

    def call(self, kind: int, value: Any = None) -> Any:
        """One request to the receiver and its reply (COUNT, RESET or ASK)."""
        self.corr += 1
        self.sock.send_multipart([RECEIVER, HEADER.pack(kind, self.corr), pickle.dumps(value, 5)])
        while True:
            _source, header, data = self.sock.recv_multipart()
            _kind, corr = HEADER.unpack(header)
            if corr == self.corr:
                return pickle.loads(data)
            if corr > self.corr:
                raise RuntimeError(f"reply {corr} to ask {self.corr}")
            # an older reply (a start-up probe): skip it

    def tells(self, n: int, packed: bool) -> float:
        """Seconds to send n tells and have the receiver count them all."""
        self.call(RESET)
        messages = [message("small", i) for i in range(n)]
        send, dumps = self.sock.send_multipart, pickle.dumps
        start = time.perf_counter()
        if packed:
            header = HEADER.pack(PACKED, 0)
            for at in range(0, n, PACK):
                send([RECEIVER, header, dumps(messages[at : at + PACK], 5)])
        else:
            header = HEADER.pack(TELL, 0)
            for m in messages:
                send([RECEIVER, header, dumps(m, 5)])
        counted = self.call(COUNT)  # the receiver reads in order: all tells came before this
        elapsed = time.perf_counter() - start
        if counted != n:
            raise RuntimeError(f"the receiver counted {counted} of {n} tells")
        return elapsed

    def ask1(self, n: int, kind: str) -> list[float]:
        clock = time.perf_counter
        times = []
        for i in range(n):
            m = message(kind, i)
            start = clock()
            self.call(ASK, m)
            times.append(clock() - start)
        return times

    def asks(self, waves: int, width: int, kind: str) -> float:
        send, recv, dumps = self.sock.send_multipart, self.sock.recv_multipart, pickle.dumps
        pack = HEADER.pack
        start = time.perf_counter()
        for w in range(waves):
            for i in range(width):
                self.corr += 1
                send([RECEIVER, pack(ASK, self.corr), dumps(message(kind, w * width + i), 5)])
            for _ in range(width):
                recv()
        return time.perf_counter() - start

    def window(self, total: int, width: int, kind: str) -> float:
        """Seconds for ``total`` asks, ``width`` always outstanding: each reply sends the next."""
        send, recv, dumps = self.sock.send_multipart, self.sock.recv_multipart, pickle.dumps
        pack = HEADER.pack
        start = time.perf_counter()
        sent = 0
        for sent in range(min(width, total)):
            self.corr += 1
            send([RECEIVER, pack(ASK, self.corr), dumps(message(kind, sent), 5)])
        sent = min(width, total)
        for _ in range(total):
            recv()
            if sent < total:
                self.corr += 1
                send([RECEIVER, pack(ASK, self.corr), dumps(message(kind, sent), 5)])
                sent += 1
        return time.perf_counter() - start


def sender(endpoint: str, n_tells: int, n_ask1: int, waves: int, width: int, kind: str) -> None:
    s = Sender(endpoint)
    deadline = time.monotonic() + 10
    while True:  # the broker and the receiver may still be starting: poll until they answer
        s.sock.send_multipart([RECEIVER, HEADER.pack(COUNT, 0), pickle.dumps(None, 5)])
        if s.sock.poll(100, zmq.POLLIN):
            s.sock.recv_multipart()
            break
        if time.monotonic() > deadline:
            raise SystemExit("the raw receiver does not answer")
    s.ask1(200, kind)  # warm-up
    result: dict[str, Any] = {}
    if kind == "small":
        result["tell"] = n_tells / s.tells(n_tells, packed=False)
        result["tell_packed"] = n_tells / s.tells(n_tells, packed=True)
    result["ask1"] = s.ask1(n_ask1, kind)
    result["asks"] = waves * width / s.asks(waves, width, kind)
    result["window"] = waves * width / s.window(waves * width, width, kind)
    print(json.dumps(result), flush=True)


def main(argv: list[str]) -> None:
    role, endpoint, *rest = argv
    if role == "broker":
        broker(endpoint)
    elif role == "receiver":
        receiver(endpoint)
    elif role == "sender":
        n_tells, n_ask1, waves, width = (int(a) for a in rest[:4])
        sender(endpoint, n_tells, n_ask1, waves, width, rest[4])
    else:
        raise SystemExit(f"unknown role {role!r}: broker, receiver or sender")


if __name__ == "__main__":
    main(sys.argv[1:])
