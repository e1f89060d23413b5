"""The protocol: frame layout, header codec, system messages and exit codes.

Both ends import this module and never each other (primary/ and worker/ meet only here).

Frames on the router (ROUTER in the primary, one DEALER per process actor)::

    DEALER -> ROUTER   [destination, header, payload...]
    ROUTER -> DEALER   [sender,      header, payload...]

    destination  a name ("counter", "web", "web/3"), an incarnation id ("web/3#2"), or b"primary"
    sender       the incarnation id of the sending DEALER, filled in by the router from the
                 ZeroMQ routing id (so it cannot be forged)
    header       HEADER below: kind, flags, count, correlation id (12 bytes, struct, never pickle)
    payload      user data (pickle protocol 5 / cloudpickle) or, for kind SYSTEM, one JSON object:
                 the primary never unpickles anything. A coalesced batch of count > 1 plain
                 messages is two frames, [sizes, data]: the messages' lengths as native uint32
                 and their pickles end to end (one frame per message would cost a Python-level
                 frame operation per message in every hop).

The router reads only the first two frames and forwards the payload frames untouched.

Spawner channel (primary <-> zygote, an AF_UNIX SOCK_SEQPACKET socketpair): one JSON object per
datagram, file descriptors attached with SCM_RIGHTS (the worker's hand-off socket on "spawn").

Hand-off channel (primary <-> one worker, an AF_UNIX SOCK_SEQPACKET socketpair): the primary sends
datagrams of HANDOFF_TAG bytes, one per connection, with the connection fds attached; the worker
answers one byte per connection, in order: ACK for one it adopted, REFUSED for one whose fd the
kernel could not give it (its open-file limit is reached), which the primary answers with 503.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import struct
from array import array
from enum import IntEnum
from typing import Any

import cloudpickle

# -- header ---------------------------------------------------------------------------------------


class Kind(IntEnum):
    TELL = 1
    ASK = 2
    REPLY = 3
    ERROR = 4
    SYSTEM = 5


HEADER = struct.Struct("!BBHQ")  # kind, flags, count (messages in a coalesced batch), correlation
PRIMARY = b"primary"

# flags
FLAG_OOB = 1  # one message: its pickle, then its out-of-band buffers, one frame each
FLAG_JSON = 2  # payloads are JSON (messages to and from the primary), never pickle
FLAG_BROADCAST = 4  # destination is a group: the router delivers to every live member
FLAG_RAW = 8  # one message that is a large bytes-like object, sent as its own frame, unpickled


def encode_header(kind: Kind, correlation: int = 0, count: int = 1, flags: int = 0) -> bytes:
    return HEADER.pack(kind, flags, count, correlation)


def decode_header(frame: bytes) -> tuple[int, int, int, int]:
    """Return (kind, flags, count, correlation); raise ValueError for a malformed header."""
    if len(frame) != HEADER.size:
        raise ValueError(f"header must be {HEADER.size} bytes, got {len(frame)}")
    return HEADER.unpack(frame)


SYSTEM_HEADER = encode_header(Kind.SYSTEM)

# -- system messages ------------------------------------------------------------------------------
# ops sent by a worker:  ready {pid}, heartbeat {}, stopping {}
# ops sent by primary:   heartbeat {}, stop {}


def system_frames(op: str, **fields: Any) -> list[bytes]:
    """[header, payload] of a system message."""
    fields["op"] = op
    return [SYSTEM_HEADER, json.dumps(fields, separators=(",", ":")).encode()]


def decode_system(payload: bytes) -> dict[str, Any]:
    message = json.loads(payload)
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ValueError("system message must be a JSON object with an 'op'")
    return message


# -- identities -----------------------------------------------------------------------------------


def incarnation_id(name: str, incarnation: int) -> bytes:
    """The DEALER identity of one incarnation of a named actor: b"web/2#3"."""
    return f"{name}#{incarnation}".encode()


# -- read counters --------------------------------------------------------------------------------
# A ZeroMQ pipe to a process that was killed loses what the router had already sent into it and
# the process had not read, and the router cannot tell from ZeroMQ which messages those were. So
# each process actor counts, in a table of 64-bit slots shared with the primary (a file in the
# private run directory, mapped by both), the tell and ask messages it has taken from its DEALER,
# counted as they are read, before they are handled. After the process died the primary reads
# its final count: a message forwarded beyond it was never read, so it goes to the next
# incarnation; one read is not sent again, so delivery stays at most once.
#
# A second table, at READ_SLOTS + slot, counts the tell messages (actor messages, not ZeroMQ
# messages) the process has finished with: handled by receive (the one receive raised on
# included). Those it reports as dead letters itself (a "dead" system message) the router counts
# as finished as it reads the report (a count here as well left a window, between the two, for
# a kill -9 to count them twice or never). What it read and had not finished when it died (the
# rest of a run it was handling, an async actor's mailbox) is then counted as dead letters by
# the primary, not lost without a word. (An ask it read and did not answer already
# fails with ActorCrashed.)

READ_SLOTS = 1 << 16  # process actors alive at once, at most
DONE_TELLS = READ_SLOTS  # offset of the second table


def map_read_counters(path: str, create: bool = False) -> tuple[mmap.mmap, memoryview]:
    """The shared table of read counters at ``path`` (created, zeroed, by the primary)."""
    flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        if create:
            os.ftruncate(fd, 16 * READ_SLOTS)
        table = mmap.mmap(fd, 16 * READ_SLOTS)
    finally:
        os.close(fd)
    return table, memoryview(table).cast("Q")


# -- spawner and hand-off channels ----------------------------------------------------------------

SPAWNER_MAX = 1 << 16  # largest spawner datagram
HANDOFF_TAG = b"C"  # one byte per handed-off connection
HANDOFF_ACK = b"A"
HANDOFF_REFUSED = b"R"  # the worker did not get this connection's fd (EMFILE)
HANDOFF_MAX_FDS = 32  # connections per hand-off datagram


def encode_control(op: str, **fields: Any) -> bytes:
    fields["op"] = op
    return json.dumps(fields, separators=(",", ":")).encode()


def decode_control(data: bytes) -> dict[str, Any]:
    return decode_system(data)


# -- exit codes (named, as gunicorn does: the supervisor tells boot failures from crashes) ------


class ExitCode(IntEnum):
    OK = 0
    CRASHED = 1  # an uncaught exception in the worker after boot
    BOOT_ERROR = 3  # the worker could not start (bad target, cannot connect)
    APP_LOAD_ERROR = 4  # the zygote could not import the target
    PRIMARY_LOST = 5  # the worker stopped hearing from the primary


# -- payloads ---------------------------------------------------------------------------------
# Pickle protocol 5 is the fast path. cloudpickle is used only when plain pickle fails (lambdas,
# closures, local classes) or when the pickle refers to __main__ or to a module registered with
# cloudpickle.register_pickle_by_value, which the receiving process may not import (cloudpickle
# sends such definitions by value). Buffers of OOB_MIN bytes or more
# (bytes, bytearray, memoryview, numpy arrays...) travel out of band as their own frames: no copy
# into the pickle.

OOB_MIN = 64 * 1024
MAIN_MARK = _MAIN = b"__main__"
_dumps = pickle.dumps
# The names of the modules registered with cloudpickle.register_pickle_by_value (a test module, a
# notebook's helpers: what the cluster's processes cannot import). cloudpickle changes this set in
# place; while it is empty (the usual case) checking it costs one truth test per message.
BY_VALUE: set[str] = getattr(getattr(cloudpickle, "cloudpickle", None),
                             "_PICKLE_BY_VALUE_MODULES", set())


def needs_cloudpickle(data: bytes) -> bool:
    """Whether a plain pickle refers to __main__ or to a module registered to travel by value,
    which the receiving process may not import: cloudpickle must send it, by value."""
    if _MAIN in data:
        return True
    return bool(BY_VALUE) and any(name.encode() in data for name in list(BY_VALUE))


def encode(message: Any) -> tuple[int, list[Any]]:
    """(flags, frames) of one message: ``(0, [pickle])``, ``(FLAG_OOB, [pickle, buffer...])`` or
    ``(FLAG_RAW, [bytes-like])``. Raises TypeError, at the sender, when it cannot be pickled."""
    kind = type(message)
    if kind is bytes or kind is bytearray or kind is memoryview:
        if kind is memoryview and not message.contiguous:
            message = message.tobytes()  # ZeroMQ sends contiguous buffers only
        if len(message) >= OOB_MIN:
            return FLAG_RAW, [message if kind is bytes else _as_now(message)]
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = _dumps(message, 5, buffer_callback=buffers.append)
        if not needs_cloudpickle(data):
            return (FLAG_OOB, [data, *map(_as_now, buffers)]) if buffers else (0, [data])
    except Exception:  # noqa: BLE001 - a __reduce__ may raise anything; cloudpickle tries next
        pass
    buffers = []
    try:
        data = cloudpickle.dumps(message, 5, buffer_callback=buffers.append)
    except Exception as exc:  # noqa: BLE001 - cloudpickle raises many kinds
        raise TypeError(
            f"cannot send a {kind.__name__}: it cannot be pickled ({exc})"
        ) from exc
    return (FLAG_OOB, [data, *map(_as_now, buffers)]) if buffers else (0, [data])


def _as_now(buffer: Any) -> Any:
    """An out-of-band buffer as it is at the send: one that can change (a bytearray, a writable
    NumPy array's memory) is copied, read-only ones (bytes, received arrays) are not. Frames
    leave at the end of the loop turn (or later, from a client's thread): before, a buffer
    reused for the next message, or an actor's array returned by one message and updated by the
    next in the same run, arrived as it was at the flush: five tells of one bytearray, changed
    after each, arrived as five copies of the last."""
    view = buffer.raw() if type(buffer) is pickle.PickleBuffer else memoryview(buffer)
    return buffer if view.readonly else view.tobytes()  # raw(): C or Fortran order as it is


def decode(flags: int, frames: list[Any]) -> Any:
    """The message from encode's frames (bytes or zmq Frames)."""
    if flags & FLAG_RAW:
        return bytes(frames[0])
    if len(frames) == 1:
        return pickle.loads(frames[0])
    return pickle.loads(frames[0], buffers=frames[1:])


def pack_batch(payloads: list[bytes]) -> list[bytes]:
    """Payload frames of a batch: [pickle] for one message, [sizes, data] for more."""
    if len(payloads) == 1:
        return payloads
    return [array("I", map(len, payloads)).tobytes(), b"".join(payloads)]


def unpack_batch(count: int, frames: list[Any]) -> list[Any]:
    """The messages' pickles (memoryviews) of a batch; ValueError when the frames disagree."""
    if count == 1:
        if len(frames) != 1:
            raise ValueError("a single message must be one frame")
        return frames
    if len(frames) != 2:
        raise ValueError("a batch must be two frames: sizes and data")
    sizes = array("I")
    sizes.frombytes(frames[0])
    data = memoryview(frames[1])
    if len(sizes) != count or sum(sizes) != len(data):
        raise ValueError("a batch's sizes do not match its count or its data")
    out = []
    start = 0
    for size in sizes:
        end = start + size
        out.append(data[start:end])
        start = end
    return out


def split_batch(count: int, frames: list[Any], n: int) -> tuple[list[Any], list[Any]]:
    """The payload frames of the first n messages of a batch and of the rest (no unpickling)."""
    parts = [bytes(p) for p in unpack_batch(count, frames)]
    return pack_batch(parts[:n]), pack_batch(parts[n:])


def dumps_json(value: Any, strict: bool = False) -> bytes:
    """Compact JSON; what JSON cannot hold is written as its str(), or with ``strict`` (a
    request someone will act on) a TypeError."""
    return json.dumps(value, separators=(",", ":"), default=None if strict else str).encode()


def error_payload(kind: str, message: str, remote_type: str = "", traceback: str = "") -> bytes:
    """The JSON payload of an ERROR frame: which ActorError to raise and its details."""
    return dumps_json({"error": kind, "message": message, "type": remote_type,
                       "traceback": traceback})
