"""The router: the primary's ROUTER socket, which every process actor's DEALER connects to.

It reads only the destination and header frames and forwards payload frames untouched; it never
unpickles anything. Per message it:

1. resolves the destination: a name bound to its ready incarnation, a group (one member in turn,
   or every member for a broadcast), or an incarnation id / client id taken as it is;
2. holds messages for a name whose actor is restarting (bounded in count and time: one timer, armed
   for the earliest deadline of all that is held, turns what is still held then into dead
   letters) and delivers them to the new incarnation;
3. counts whatever cannot be delivered as a dead letter (per name, logged once per burst) and
   answers an undeliverable ask with ActorNotFound at once;
4. remembers which asks each incarnation owes, so that if it dies the askers get ActorCrashed;
   keeps what it sent each incarnation until that process has read it (a counter the process
   keeps in memory shared with the primary, see wire.py), so that what a killed process never
   read goes to its replacement instead of being lost with its socket;
5. sends without blocking; what ZeroMQ refuses (that peer's pipe is full) waits in a bounded
   per-destination outbox retried on a short timer, and the senders of that destination are told
   to pause until it drains (credit-style flow control): no head-of-line blocking, no silent drop.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import zmq

from ..errors import ActorError, ActorNotFound
from ..wire import (
    DONE_TELLS,
    FLAG_BROADCAST,
    FLAG_JSON,
    FLAG_OOB,
    FLAG_RAW,
    HEADER,
    PRIMARY,
    READ_SLOTS,
    Kind,
    decode_system,
    dumps_json,
    error_payload,
    map_read_counters,
    split_batch,
    system_frames,
)
from ..zmqio import LoopSocket, send_frames

log = logging.getLogger("actorcluster.router")

SystemHandler = Callable[[bytes, dict[str, Any]], None]
RequestHandler = Callable[[bytes, Any], Any]

OUTBOX_PAUSE = 64  # ZeroMQ messages waiting for one destination before its senders pause
OUTBOX_RESUME = 16
OUTBOX_LIMIT = 4096  # past this (senders ignoring pause) messages become dead letters
# The same bounds in payload bytes: counted in ZeroMQ messages alone, a flood of large messages
# (1 MiB each) to an actor that stopped reading grew the primary by gigabytes (900 of them:
# +1.6 GiB) and slowed every other pair. A tracked incarnation is sent no more while this many
# bytes it was sent are unread (they wait in the outbox, whose senders pause as it fills).
INFLIGHT_BYTES = 16 << 20
OUTBOX_PAUSE_BYTES = 4 << 20
OUTBOX_RESUME_BYTES = 1 << 20
OUTBOX_LIMIT_BYTES = 256 << 20  # as OUTBOX_LIMIT messages of 64 KiB
NOT_KNOWN_YET = "no such actor yet: the cluster is starting (its app is still importing)"
HOLD_BYTES = 64 << 20  # payload bytes held for one restarting name, besides --hold-messages
RETRY = 0.001
# While no outbox moves (a receiver stopped, or busy in one long receive) the retries back off,
# doubling up to this: a millisecond timer for as long as an actor is stopped is a thousand
# wake-ups of the primary a second. A retry that sends something, or a new outbox, starts
# again from RETRY.
RETRY_MAX = 0.016
# held messages whose deadline is this close expire with those due: a timer may fire a little
# early (uvloop rounds delays to the millisecond), and the next one would then be a busy wait
EXPIRY_SLACK = 0.001
PEER_HWM = 256  # ZeroMQ messages (each up to 256 coalesced actor messages) per peer pipe
KEEP_TRIM = 32  # messages kept for one incarnation before the router looks at what it read
LOST_LATE_SECONDS = 10.0  # how long a dead incarnation's late "dead" report is watched for
KINDS = frozenset(int(k) for k in Kind)
MAX_CLIENTS = 1024  # attached clients remembered before those whose process is gone are dropped
# Dead letters are counted by name for this many names; past them, under OTHER_NAMES: a sender
# that writes to ever new names (a typo in an f-string) must not grow the primary, its status
# and its log without bound.
DEAD_LETTER_NAMES = 1000
OTHER_NAMES = "(other names)"
TELL, ASK, REPLY, ERROR, SYSTEM = Kind.TELL, Kind.ASK, Kind.REPLY, Kind.ERROR, Kind.SYSTEM
_unpack = HEADER.unpack
_pack = HEADER.pack


class Router:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: str,
        on_system: SystemHandler,
        on_request: RequestHandler,
        hold_max: int = 1000,
        hold_seconds: float = 5.0,
        reads_path: str | None = None,
    ) -> None:
        self.loop = loop
        self.endpoint = endpoint
        self.on_system = on_system
        self.on_request = on_request
        self.hold_max = hold_max
        self.hold_seconds = hold_seconds
        self.context = zmq.Context(1)
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unknown peer is an error, never a drop
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, PEER_HWM)
        sock.setsockopt(zmq.RCVHWM, PEER_HWM * 4)
        sock.bind(endpoint)
        self._sock = sock
        self.channel = LoopSocket(loop, sock, self._on_frames)
        self.names: dict[bytes, bytes] = {}  # name -> identity of its ready incarnation
        self._name_of: dict[bytes, bytes] = {}  # identity -> name
        self.groups: dict[bytes, list[bytes]] = {}  # group -> member names
        self._turn: dict[bytes, int] = {}
        self.held: dict[bytes, _Held] = {}  # name (restarting) -> (deadline, frames), bounded
        # False while the zygote imports the app: no name is known yet, and an ask to one
        # says so rather than a bare "no such actor" for an actor the user's tree does have
        self.tree_known = False
        self._expiry: asyncio.TimerHandle | None = None  # for the earliest deadline held
        self._expiry_at = 0.0
        self.outboxes: dict[bytes, _Outbox] = {}  # identity -> frames not sent yet (ZeroMQ
        # refused them, or the incarnation has INFLIGHT_BYTES to read first)
        self._pausing: dict[bytes, set[tuple[bytes, bytes]]] = {}  # identity -> (sender, dest)
        self._retrying = False
        self._retry_delay = RETRY
        self._retry_timer: asyncio.TimerHandle | None = None
        self.asks: dict[bytes, dict[bytes, set[int]]] = {}  # incarnation -> asker -> corrs
        self.dead_letters: Counter[str] = Counter()
        self._burst: dict[str, int] = {}
        # clients attached (said hello, not yet bye): told when the cluster stops, which then
        # reads what they still send until each says bye (`drain_clients`)
        self.clients: set[bytes] = set()
        self._requests: set[asyncio.Future] = set()  # requests to the primary still running
        self.routed = 0
        self.malformed = 0
        # malformed messages of the burst in progress not logged yet (None: no burst), and why
        # the last one was dropped: logged as dead letters are, once per burst then once a second
        self._malformed_burst: int | None = None
        self._malformed_why = ""
        # actor messages (a coalesced batch counts its messages), for the metrics: received from
        # senders (to anything but the primary), handed to ZeroMQ for a destination (a broadcast
        # counts once per member), put on hold for a restarting name (ever)
        self.sent = 0
        self.delivered = 0
        self.held_total = 0
        # read counters (wire.py): what each tracked incarnation was sent and may not have read
        self.reads_path = reads_path
        self._reads_map, self._reads = (
            map_read_counters(reads_path, create=True) if reads_path else (None, None))
        self._tracked: dict[bytes, _Track] = {}
        # incarnations gone with tells counted as read and never finished (_lost_tells):
        # identity -> [those not yet matched by a late "dead" report, when]. Such a report,
        # sent just before the process died and read after, names tells counted already.
        self._lost_late: dict[bytes, list] = {}
        self._free_slots: list[int] = []
        self._next_slot = 0

    # -- the supervisor's side ------------------------------------------------------------------

    def bind(self, name: str, identity: bytes) -> None:
        """``identity`` is the ready incarnation of ``name``: route to it, deliver what was held."""
        key = name.encode()
        self.names[key] = identity
        self._name_of[identity] = key
        held = list(self.held.pop(key, ()))
        for group, members in self.groups.items():
            if key in members and group in self.held:
                held.extend(self.held.pop(group))
        for _deadline, frames in held:
            self._on_frames(frames, again=True)

    def track(self, identity: bytes) -> int | None:
        """Keep what is sent to ``identity`` until it has read it; its read-counter slot (None:
        no table, or every slot taken, and then the process is not tracked)."""
        if self._reads is None:
            return None
        if self._free_slots:
            slot = self._free_slots.pop()
        elif self._next_slot < READ_SLOTS:
            slot, self._next_slot = self._next_slot, self._next_slot + 1
        else:
            return None
        self._reads[slot] = 0
        self._reads[DONE_TELLS + slot] = 0
        self._tracked[identity] = _Track(slot)
        return slot

    def _lost_tells(self, identity: bytes) -> int:
        """Tells the dead incarnation ``identity`` read and never finished with (wire.py): the
        rest of the run it was handling, an async actor's mailbox, a crash's leftovers."""
        track = self._tracked.get(identity)
        if track is None:
            return 0
        assert self._reads is not None
        read = self._reads[track.slot]
        unread = sum(_count(frames[2]) for sent, frames, _size in track.kept
                     if sent > read and frames[2][0] == TELL)
        done = self._reads[DONE_TELLS + track.slot]
        return max(0, track.tells - unread - done - track.reported)

    def untrack(self, identity: bytes) -> list:
        """Stop tracking ``identity`` (its process is gone): what it was sent and never read."""
        track = self._tracked.pop(identity, None)
        if track is None:
            return []
        assert self._reads is not None
        read = self._reads[track.slot]
        self._free_slots.append(track.slot)
        return [frames for sent, frames, _size in track.kept if sent > read]

    def _keep(self, track: _Track, frames: list) -> None:
        track.sent += 1
        if frames[2][0] == TELL:
            track.tells += _count(frames[2])
        size = _payload_size(frames)
        track.unread += size
        kept = track.kept
        kept.append((track.sent, frames, size))
        if len(kept) >= KEEP_TRIM:
            self._trim(track)

    def _trim(self, track: _Track) -> None:
        assert self._reads is not None
        read = self._reads[track.slot]
        kept = track.kept
        while kept and kept[0][0] <= read:
            track.unread -= kept.popleft()[2]

    def _has_room(self, track: _Track | None) -> bool:
        """Whether ``track``'s incarnation may be sent more: fewer than INFLIGHT_BYTES unread."""
        if track is None or track.unread < INFLIGHT_BYTES:
            return True
        self._trim(track)
        return track.unread < INFLIGHT_BYTES

    def hold(self, name: str) -> None:
        """``name`` is restarting: hold its messages (bounded) until it is bound again."""
        key = name.encode()
        self.names.pop(key, None)
        self.held.setdefault(key, _Held())

    def incarnation_down(self, name: str, identity: bytes, hold: bool = False) -> None:
        """An incarnation died. The tells and asks it never read (sent into its dead socket, or
        still in our outbox for it) go to the name again: held for the replacement when
        ``hold`` (it is being restarted), else to whatever now carries the name, else a dead
        letter. The asks
        it read and did not answer fail with ActorCrashed. Answers to its own asks are dead
        letters: they answer nothing of another incarnation."""
        key = name.encode()
        bound = self.names.get(key) == identity
        if bound:
            del self.names[key]
        self._name_of.pop(identity, None)
        lost = self._lost_tells(identity)
        if lost:  # at most once: never sent again, but counted, not lost without a word
            self._lost_late[identity] = [lost, self.loop.time()]
            self._dead(name, lost, f"read by {identity.decode(errors='replace')}, which ended "
                                   "before it handled them")
        unread = self.untrack(identity)
        for frames in unread:
            self.delivered -= _count(frames[2])  # handed to ZeroMQ, but never delivered
        for frames in self.outboxes.pop(identity, ()):
            if frames[2][0] <= ASK:
                unread.append(frames)
            else:  # answers to asks of this process: its successor reuses their correlation ids
                self._undeliverable([frames[1], identity, *frames[2:]], "the asker died")
        owed = self.asks.pop(identity, {})
        for frames in unread:
            kind, _flags, count, corr = _unpack(frames[2])
            corrs = owed.get(frames[1]) if kind == ASK else None
            if corrs:
                corrs.difference_update(range(corr, corr + count))
        for asker, corrs in owed.items():
            for corr in sorted(corrs):
                self._error(asker, corr, "ActorCrashed",
                            f"actor {name!r} died while handling the ask")
        self._resume_senders(identity)
        held = self.held.get(key)
        if held is None and hold and bound:
            held = self.held[key] = _Held()
        again = [_readdressed(frames, key) for frames in unread]
        if held is not None:
            # ahead of what is held already: those came after these
            deadline = self.loop.time() + self.hold_seconds
            if held:
                deadline = min(deadline, held[0][0])
            for frames in reversed(again):
                held.appendleft((deadline, frames))
                held.size += _payload_size(frames)  # sent once already: held whatever its size
                count = _count(frames[2])
                held.messages += count
                self.held_total += count
            if again:
                self._expire_at(deadline)
        else:
            # another incarnation carries the name: a reload, scale or recycling replaced this
            # one, which died retiring. These came before all its replacement was sent; after
            # them, they would break each sender's order (rule 1): they reach it only if it
            # was sent nothing yet, else they are dead letters (at most once, counted)
            current = self.names.get(key)
            in_order = current is not None and self._sent_nothing(current)
            for frames in again:
                if in_order:
                    self._on_frames(frames, again=True)
                elif current is not None:
                    self._undeliverable(frames, f"sent to {identity.decode(errors='replace')}, "
                                                "which was replaced and ended before reading it")
                else:
                    self._undeliverable(frames, "its actor stopped before reading it")

    def _sent_nothing(self, identity: bytes) -> bool:
        """Whether no tell, ask or reply has been sent or queued for ``identity`` yet (False
        when it is not tracked: then it cannot be known)."""
        track = self._tracked.get(identity)
        return track is not None and track.sent == 0 and not self.outboxes.get(identity)

    def forget(self, name: str) -> None:
        """``name`` will not come back: what is held for it becomes dead letters."""
        key = name.encode()
        self.names.pop(key, None)
        for _deadline, frames in self.held.pop(key, ()):
            self._undeliverable(frames, "its actor is not coming back")

    def set_group(self, group: str, members: list[str]) -> None:
        self.groups[group.encode()] = [m.encode() for m in members]

    def members(self, group: str) -> list[str]:
        """The live members of ``group``; ActorNotFound if it is not a group (a typo, or an
        actor's name), so that it does not read as a group whose members are all restarting."""
        names = self.groups.get(group.encode())
        if names is None:
            raise ActorNotFound(self._not_a_group(group.encode()))
        return [m.decode() for m in names if m in self.names]

    def _not_a_group(self, name: bytes) -> str:
        groups = ", ".join(sorted(g.decode() for g in self.groups)) or "none"
        text = name.decode(errors="replace")
        if name in self.names or name in self.held or any(
                name in members for members in self.groups.values()):
            return f"{text!r} is an actor, not a group: tell or ask it (groups: {groups})"
        return f"no group named {text!r} (groups: {groups})"

    def send_system(self, identity: bytes, op: str, **fields: Any) -> bool:
        return self.channel.send([identity, PRIMARY, *system_frames(op, **fields)])

    def _control(self, identity: bytes, op: str, **fields: Any) -> None:
        """Flow control and the stop's acknowledgement: through the peer's outbox like any
        message, so a full pipe delays them instead of dropping them (a "resume" dropped there
        left its sender paused for good: a busy stage of a pipeline stalled)."""
        self._send(identity, [identity, PRIMARY, *system_frames(op, **fields)], PRIMARY,
                   identity, 1)

    def tick(self) -> None:
        """Trim what tracked incarnations have read, forget askers owed nothing and report
        dead-letter bursts (called about once a second)."""
        for track in self._tracked.values():
            if track.kept:
                self._trim(track)
        if self._lost_late:  # a late report is read within milliseconds of the exit
            old = self.loop.time() - LOST_LATE_SECONDS
            for identity in [i for i, (_n, when) in self._lost_late.items() if when < old]:
                del self._lost_late[identity]
        # Askers owed nothing any more: dropped here rather than per reply, so a steady asker
        # does not rebuild its set for every ask; without this every client (a new identity per
        # connect) and every replaced incarnation that ever asked stayed for the actor's life.
        for identity, owed in list(self.asks.items()):
            for asker in [asker for asker, corrs in owed.items() if not corrs]:
                del owed[asker]
            if not owed:
                del self.asks[identity]
        self._report_bursts()

    def _report_bursts(self) -> None:
        if self._malformed_burst:
            log.warning("dropped %d more malformed messages (the last: %s)",
                        self._malformed_burst, self._malformed_why)
            self._malformed_burst = 0
        else:
            self._malformed_burst = None
        for name, more in list(self._burst.items()):
            if more:
                log.warning("%d more dead letters to %r", more, name)
                self._burst[name] = 0
            else:
                del self._burst[name]

    def stats(self) -> dict[str, Any]:
        return {
            "routed": self.routed,
            "dead_letters": dict(self.dead_letters),
            "held": {k.decode(): q.messages for k, q in self.held.items() if q},
            "malformed": self.malformed,
        }

    async def drain_clients(self, timeout: float = 1.0) -> None:
        """The cluster is stopping and its actors are gone: tell the attached clients, which
        refuse further tells, send what they queued and say bye; read until each has (or
        ``timeout``), so what they sent is delivered or counted as a dead letter instead of
        being lost in a buffer when the primary exits."""
        self.clients = {c for c in self.clients if _client_alive(c)}
        for identity in self.clients:
            self._control(identity, "stopping")
        deadline = self.loop.time() + timeout
        while self.clients and self.loop.time() < deadline:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        # What is still held for a name that will not be bound again is a dead letter.
        for queue in self.held.values():
            while queue:
                self._undeliverable(queue.popleft()[1], "the cluster stopped")
        self.held.clear()
        # The dead letters of a burst still running are logged once a second: those of the
        # last second (a cluster stopping under a sender: thousands to the actors stopped
        # first) would otherwise never be, and after the exit no status can show them.
        self._report_bursts()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self.channel.close()
        self.context.term()
        if self._reads is not None and self._reads_map is not None:
            self._reads.release()
            self._reads_map.close()
            self._reads = None

    # -- routing --------------------------------------------------------------------------------

    def _on_frames(self, frames: list[bytes], again: bool = False) -> None:
        if len(frames) < 4 or len(frames[2]) != HEADER.size:
            self._malformed(frames, "fewer than 4 frames or a bad header")
            return
        sender, dest, header = frames[0], frames[1], frames[2]
        kind, flags, count, corr = _unpack(header)
        if kind not in KINDS or count == 0:
            self._malformed(frames, f"kind {kind}, count {count}")
            return
        if flags & (FLAG_OOB | FLAG_RAW | FLAG_JSON) or kind == SYSTEM:
            if count != 1:
                self._malformed(frames, "a single-message frame says count != 1")
                return
        elif len(frames) != (4 if count == 1 else 5):
            self._malformed(frames, f"count {count} but {len(frames) - 3} payload frames")
            return
        if dest == PRIMARY:
            self._to_primary(sender, kind, flags, corr, frames)
            return
        if not again:  # not a held or re-routed message: counted when it first came
            self.sent += count
        if flags & FLAG_BROADCAST:
            members = [self.names[m] for m in self.groups.get(dest, ()) if m in self.names]
            if not members:
                self._undeliverable(frames, "no live member" if dest in self.groups
                                    else "not a group")
            for identity in members:
                self._send(identity, [identity, sender, *frames[2:]], sender, dest, count)
            return
        identity = self.names.get(dest)
        if identity is None:
            identity = self._resolve_other(dest)
            if identity is None:
                held = self.held.get(dest)
                if held is None and dest in self.groups:
                    # every member is restarting: hold for the group
                    if any(m in self.held for m in self.groups[dest]):
                        held = self.held[dest] = _Held()
                if held is None:
                    self._undeliverable(frames, "no such actor" if self.tree_known
                                        else NOT_KNOWN_YET)
                else:
                    self._hold(held, frames, count)
                return
        if kind == ASK:
            owed = self.asks.get(identity)
            if owed is None:
                owed = self.asks[identity] = {}
            corrs = owed.get(sender)
            if corrs is None:
                corrs = owed[sender] = set()
            if count == 1:
                corrs.add(corr)
            else:
                corrs.update(range(corr, corr + count))
        elif kind == REPLY or kind == ERROR:
            owed = self.asks.get(sender)
            if owed is not None:
                corrs = owed.get(identity)
                if corrs is not None:
                    if count == 1:
                        corrs.discard(corr)
                    else:
                        corrs.difference_update(range(corr, corr + count))
        frames[0] = identity
        frames[1] = sender
        self._send(identity, frames, sender, dest, count)

    def _resolve_other(self, dest: bytes) -> bytes | None:
        members = self.groups.get(dest)
        if members:
            turn = self._turn.get(dest, -1)
            for _ in range(len(members)):
                turn = (turn + 1) % len(members)
                identity = self.names.get(members[turn])
                if identity is not None:
                    self._turn[dest] = turn
                    return identity
            return None
        if b"#" in dest:
            return dest  # an incarnation or a client: ZeroMQ says whether it is connected
        return None

    def _send(self, identity: bytes, frames: list, sender: bytes, dest: bytes, count: int
              ) -> None:
        self.routed += 1
        # A send can consume the edge of ZeroMQ's readiness fd: sent from a timer or a task
        # (not from a drain, which reads on until EAGAIN), it left what peers sent meanwhile
        # unread until the next wake-up (a client's last messages and bye waited out the
        # stop's second). One drain per loop turn, whoever sent.
        self.channel.drain_soon()
        outbox = self.outboxes.get(identity)
        if outbox is None:
            track = self._tracked.get(identity)
            try:
                if frames[2][0] <= ASK and not self._has_room(track):
                    raise zmq.Again  # it has enough to read: the rest waits here, counted
                send_frames(self._sock, frames)
                if sender != PRIMARY:  # the primary's own replies and errors were never sent
                    self.delivered += count
                if track is not None and frames[2][0] <= ASK:  # a tell or an ask
                    self._keep(track, frames)
                return
            except zmq.Again:
                outbox = self.outboxes[identity] = _Outbox()
                self._retry_soon(fresh=True)
            except zmq.ZMQError:  # EHOSTUNREACH: that peer is gone
                self._peer_gone(identity, [sender, dest, *frames[2:]])
                return
        if len(outbox) >= OUTBOX_LIMIT or (
                outbox.size >= OUTBOX_LIMIT_BYTES and sender != PRIMARY):  # never flow control
            self._undeliverable([sender, dest, *frames[2:]], "the mailbox is full")
            return
        outbox.append(frames)
        outbox.size += _payload_size(frames)
        if frames[2][0] > ASK:
            outbox.others += 1
        if (len(outbox) >= OUTBOX_PAUSE or outbox.size >= OUTBOX_PAUSE_BYTES) and (
                sender != PRIMARY):
            pausing = self._pausing.setdefault(identity, set())
            if (sender, dest) not in pausing:
                pausing.add((sender, dest))
                self._control(sender, "pause", dest=dest.decode(errors="replace"))

    def _peer_gone(self, identity: bytes, frames: list) -> None:
        """The incarnation behind a name died and the supervisor has not heard yet: hold its
        messages for the replacement (the supervisor forgets the name if none comes)."""
        kind, _flags, count, corr = _unpack(frames[2])
        if kind == ASK:  # never reached the dead incarnation: it does not owe them
            owed = self.asks.get(identity, {}).get(frames[0])
            if owed is not None:
                owed.difference_update(range(corr, corr + count))
        name = self._name_of.get(identity)  # incarnation_down forgets it
        if name is None or frames[1] != name and frames[1] not in self.groups:
            self._undeliverable(frames, "its process is gone" if name is not None
                                or self._existed(identity) else "no such actor")
            return
        if self.names.get(name) == identity:
            del self.names[name]
        self.held.setdefault(name, _Held())
        self._on_frames(frames, again=True)  # re-route: another group member, or held

    def _existed(self, identity: bytes) -> bool:
        """Whether ``name#N`` can be an incarnation that has gone (ActorCrashed for an ask)
        rather than one that never was (ActorNotFound): its name is known and N is not past the
        name's current incarnation. Clients' identities are taken to have existed."""
        name, _, number = identity.rpartition(b"#")
        if name.startswith(b"client/") or name in self.held:
            return True
        current = self.names.get(name)
        if current is None:
            return False
        # Incarnations are numbered 1, 2, 3 ... as plain digits: int() alone would also take
        # "0", "-1", "+3", "03", " 3" and "1_0", ids no incarnation ever had.
        if not (number.isdigit() and number[:1] != b"0"):
            return False
        return int(number) <= int(current.rpartition(b"#")[2])

    def _outbox_gone(self, identity: bytes, outbox: _Outbox) -> None:
        """ZeroMQ says the peer of ``outbox`` is gone and its supervisor has not heard yet: the
        tells and asks waiting there go to its name again, in order, as incarnation_down would
        send them (held for the replacement); answers to its asks are dead letters."""
        name = self._name_of.get(identity)
        while outbox:
            frames = outbox.popleft()
            if name is not None and frames[2][0] <= ASK:
                self._peer_gone(identity, _readdressed(frames, name))
            else:
                self._undeliverable([frames[1], identity, *frames[2:]], "its process is gone")

    def _hold(self, held: _Held, frames: list, count: int) -> None:
        size = _payload_size(frames)
        if held and held.size + size > HOLD_BYTES:
            self._undeliverable(frames, f"more than {HOLD_BYTES >> 20} MiB held")
            return
        room = self.hold_max - held.messages
        if count > room:
            if room <= 0:
                self._undeliverable(frames, f"more than {self.hold_max} held")
                return
            frames, rest = _split(frames, room)
            self._undeliverable(rest, f"more than {self.hold_max} held")
            count = room
        deadline = self.loop.time() + self.hold_seconds
        held.append((deadline, frames))
        held.size += _payload_size(frames)
        held.messages += count
        self.held_total += count
        if self._expiry is None:  # else it fires no later: every deadline is a now + hold_seconds
            self._expire_at(deadline)

    def _expire_at(self, deadline: float) -> None:
        """Something held is due at ``deadline``: have the timer fire by then."""
        if self._expiry is not None:
            if self._expiry_at <= deadline:
                return
            self._expiry.cancel()
        self._expiry_at = deadline
        self._expiry = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        """The timer: what was held past its deadline becomes dead letters; the timer is armed
        again for the earliest deadline left (each queue's first message is its earliest)."""
        self._expiry = None
        due = self.loop.time() + EXPIRY_SLACK
        earliest = None
        for queue in list(self.held.values()):
            while queue and queue[0][0] <= due:
                frames = queue.popleft()[1]
                queue.messages -= _count(frames[2])
                queue.size -= _payload_size(frames)
                self._undeliverable(frames, f"held {self.hold_seconds} s")
            if queue and (earliest is None or queue[0][0] < earliest):
                earliest = queue[0][0]
        if earliest is not None:
            self._expire_at(earliest)

    def _retry_soon(self, fresh: bool = False) -> None:
        """Retry the outboxes after the current delay; ``fresh`` (a new outbox): after RETRY,
        sooner than a backed-off retry already due."""
        if fresh and self._retry_delay > RETRY:
            self._retry_delay = RETRY
            if self._retry_timer is not None:
                self._retry_timer.cancel()
                self._retrying = False
        if not self._retrying:
            self._retrying = True
            self._retry_timer = self.loop.call_later(self._retry_delay, self._retry)

    def _retry(self) -> None:
        self._retrying = False
        self._retry_timer = None
        self.channel.drain_soon()  # its sends can consume the readiness edge (see _send)
        sock = self._sock
        waiting = sum(len(outbox) for outbox in self.outboxes.values())
        for identity, outbox in list(self.outboxes.items()):
            track = self._tracked.get(identity)
            while outbox:
                if not self._has_room(track):
                    if outbox.others:
                        self._send_past_bound(identity, outbox)
                    break
                try:
                    send_frames(sock, outbox[0])
                except zmq.Again:
                    break
                except zmq.ZMQError:  # EHOSTUNREACH: that peer is gone
                    self._outbox_gone(identity, outbox)
                    break
                frames = outbox.popleft()
                outbox.size -= _payload_size(frames)
                if frames[1] != PRIMARY:
                    self.delivered += _count(frames[2])
                if frames[2][0] > ASK:
                    outbox.others -= 1
                elif track is not None:
                    self._keep(track, frames)
            if len(outbox) <= OUTBOX_RESUME and outbox.size <= OUTBOX_RESUME_BYTES:
                self._resume_senders(identity)
            if not outbox:
                del self.outboxes[identity]
        if self.outboxes:
            moved = sum(len(outbox) for outbox in self.outboxes.values()) < waiting
            self._retry_delay = RETRY if moved else min(2 * self._retry_delay, RETRY_MAX)
            self._retry_soon()
        else:
            self._retry_delay = RETRY

    def _send_past_bound(self, identity: bytes, outbox: _Outbox) -> None:
        """The incarnation has INFLIGHT_BYTES unread: send what its outbox holds besides tells
        and asks (replies, errors, pause / resume, the stop's bye), unless their sender has a
        tell or ask ahead of them (the order of each pair holds). A process counts only what it
        will handle: one waiting in ask_sync, or stopping, reads on without counting, and it
        waits for exactly these; behind the bound they came at its timeout."""
        sock = self._sock
        waiting: set[bytes] = set()  # senders with a tell or ask ahead
        behind: list = []
        while outbox:
            frames = outbox.popleft()
            if frames[2][0] <= ASK or frames[1] in waiting:
                waiting.add(frames[1])
                behind.append(frames)
                continue
            try:
                send_frames(sock, frames)
            except zmq.Again:
                outbox.appendleft(frames)
                break
            except zmq.ZMQError:  # EHOSTUNREACH: that peer is gone
                outbox.appendleft(frames)
                outbox.extendleft(reversed(behind))
                self._outbox_gone(identity, outbox)
                return
            outbox.size -= _payload_size(frames)
            outbox.others -= 1
            if frames[1] != PRIMARY:
                self.delivered += _count(frames[2])
        outbox.extendleft(reversed(behind))

    def _resume_senders(self, identity: bytes) -> None:
        for sender, dest in self._pausing.pop(identity, ()):
            self._control(sender, "resume", dest=dest.decode(errors="replace"))

    # -- what cannot be delivered ---------------------------------------------------------------

    def _undeliverable(self, frames: list, why: str) -> None:
        """frames as received: [sender, dest, header, payload...]."""
        sender, dest, header = frames[0], frames[1], frames[2]
        kind, _flags, count, corr = _unpack(header)
        if kind == SYSTEM:  # flow control for a process that is gone: nobody's message
            return
        name = dest.decode(errors="replace")
        if kind == ASK:
            if why in ("no such actor", NOT_KNOWN_YET):
                error = "ActorNotFound"
            elif why.startswith("more than") or why.endswith("full"):
                error = "MailboxFull"
            else:
                error = "ActorCrashed"
            for i in range(count):
                self._error(sender, corr + i, error, f"cannot deliver to {name!r}: {why}")
        self._dead(name, count, why)

    def _dead(self, name: str, count: int, why: str) -> None:
        letters = self.dead_letters
        counted = name
        if name not in letters and len(letters) >= DEAD_LETTER_NAMES:
            counted = OTHER_NAMES
        letters[counted] += count
        if counted in self._burst:
            self._burst[counted] += count
        else:
            self._burst[counted] = 0
            log.warning("dead letter: %d message(s) to %r: %s%s", count, name, why,
                        f" (counted under {OTHER_NAMES!r}, past {DEAD_LETTER_NAMES} names)"
                        if counted is OTHER_NAMES else "")

    def _error(self, asker: bytes, corr: int, error: str, message: str) -> None:
        self._answer_asker(asker, [asker, PRIMARY, _pack(ERROR, FLAG_JSON, 1, corr),
                                   error_payload(error, message)])

    def _answer_asker(self, asker: bytes, frames: list) -> None:
        """An answer of the router's own (an ask's error, the primary's reply): through the
        asker's outbox like any message, so a full pipe (a crash fails hundreds of asks at once)
        delays it instead of dropping it; an asker that is gone makes it a dead letter."""
        self._send(asker, frames, PRIMARY, asker, 1)

    def _malformed(self, frames: list, why: str) -> None:
        """Count and drop it; log the first of a burst, then once a second how many more (as
        dead letters): a peer looping on a bad frame wrote one log line per frame, 20,000
        lines in a second."""
        self.malformed += 1
        if self._malformed_burst is None:
            self._malformed_burst = 0
            log.warning("dropping a malformed message (%s, %d frames)", why, len(frames))
        else:
            self._malformed_burst += 1
            self._malformed_why = f"{why}, {len(frames)} frames"

    # -- messages for the primary ---------------------------------------------------------------

    def _to_primary(self, sender: bytes, kind: int, flags: int, corr: int, frames: list) -> None:
        if kind == SYSTEM:
            try:
                message = decode_system(frames[3])
            except (ValueError, UnicodeDecodeError):
                self._malformed(frames, "bad system payload")
                return
            op = message["op"]
            if op == "bye":
                # everything this peer sent before has been read: it may disconnect now
                self.clients.discard(sender)
                self._control(sender, "bye")
            elif op == "hello":  # a client attached
                if len(self.clients) >= MAX_CLIENTS:  # those killed without a bye: forget them
                    self.clients = {c for c in self.clients if _client_alive(c)}
                self.clients.add(sender)
            elif op == "dead":  # tells the sender (a process without an actor) had to drop
                count = message.get("count")
                track = self._tracked.get(sender)
                if type(count) is int and count > 0 and track is not None:
                    # counted here, where it is read: never again by _lost_tells (the process
                    # counting them itself left a window, between its report and its count, in
                    # which a kill -9 lost them or counted them twice)
                    track.reported += count
                elif type(count) is int and count > 0 and sender in self._lost_late:
                    late = self._lost_late[sender]  # counted when it died: not twice
                    matched = min(count, late[0])
                    late[0] -= matched
                    count -= matched
                    if not late[0]:
                        del self._lost_late[sender]
                if type(count) is int and count > 0:
                    name = self._name_of.get(sender, sender.split(b"#", 1)[0])
                    self._dead(name.decode(errors="replace"), count,
                               str(message.get("why", "the process dropped them")))
                return
            self.on_system(sender, message)
            return
        if kind not in (TELL, ASK):
            self._malformed(frames, "the primary takes only tell and ask")
            return
        if not flags & FLAG_JSON:
            if kind == ASK:
                self._error(sender, corr, "ActorError", "the primary takes JSON messages only")
            self._malformed(frames, "a pickled message to the primary")
            return
        try:
            request = json.loads(frames[3])
        except (ValueError, UnicodeDecodeError):
            self._malformed(frames, "bad JSON to the primary")
            if kind == ASK:
                self._error(sender, corr, "ActorError", "the primary could not read the request")
            return
        try:
            result = self.on_request(sender, request)
        except Exception as exc:  # noqa: BLE001 - the sender's mistake (or ours): it must hear
            self._failed(sender, kind, corr, request, exc)
            return
        if inspect.isawaitable(result):  # a request that takes time (start_child): reply later
            task = asyncio.ensure_future(result)
            self._requests.add(task)
            task.add_done_callback(lambda t: self._answer(t, sender, kind, corr, request))
            return
        if kind == ASK:
            self._reply(sender, corr, result)

    def _answer(self, task: asyncio.Future, sender: bytes, kind: int, corr: int,
                request: Any) -> None:
        self._requests.discard(task)
        if task.cancelled():
            if kind == ASK:
                self._error(sender, corr, "ActorError", "the primary is stopping")
            return
        exc = task.exception()
        if exc is not None:
            self._failed(sender, kind, corr, request, exc)
        elif kind == ASK:
            self._reply(sender, corr, task.result())

    def _failed(self, sender: bytes, kind: int, corr: int, request: Any,
                exc: BaseException) -> None:
        """A request the primary could not carry out: an asker gets the error at once, a tell
        is a counted dead letter (never dropped silently)."""
        if isinstance(exc, ActorError):
            error, text = type(exc).__name__, str(exc)
        elif isinstance(exc, (KeyError, TypeError, ValueError)):  # a field missing or mistyped
            error = "ActorError"
            text = (f"the primary could not carry out {dumps_json(request).decode()[:200]}: "
                    f"{type(exc).__name__}: {exc}")
        else:
            log.error("request to the primary failed", exc_info=exc)
            error, text = "ActorError", f"{type(exc).__name__}: {exc}"
        if kind == ASK:
            self._error(sender, corr, error, text)
        else:
            self._dead(PRIMARY.decode(), 1, text)

    def _reply(self, sender: bytes, corr: int, result: Any) -> None:
        self._answer_asker(sender, [sender, PRIMARY, _pack(REPLY, FLAG_JSON, 1, corr),
                                    dumps_json(result)])


def _payload_size(frames: list) -> int:
    """Bytes of a message's payload frames ([identity, sender, header, payload...])."""
    return sum(map(len, frames[3:]))


def _count(header: bytes) -> int:
    return _unpack(header)[2] if len(header) == HEADER.size else 1


def _readdressed(frames: list, name: bytes) -> list:
    """A message as sent to a dead incarnation ([identity, sender, header, payload...]) as if
    its sender had sent it to ``name`` (a broadcast's copy goes to that member only)."""
    kind, flags, count, corr = _unpack(frames[2])
    header = _pack(kind, flags & ~FLAG_BROADCAST, count, corr) if flags & FLAG_BROADCAST else (
        frames[2])
    return [frames[1], name, header, *frames[3:]]


def _split(frames: list, n: int) -> tuple[list, list]:
    """A coalesced batch [sender, dest, header, sizes, data] cut after n messages (by the sizes
    frame: nothing is unpickled)."""
    kind, flags, count, corr = _unpack(frames[2])
    first, rest = split_batch(count, frames[3:], n)
    head = [frames[0], frames[1], _pack(kind, flags, n, corr), *first]
    later = corr + n if kind in (ASK, REPLY) else corr
    tail = [frames[0], frames[1], _pack(kind, flags, count - n, later), *rest]
    return head, tail


class _Track:
    """One tracked incarnation: its read-counter slot, how many tells and asks (ZeroMQ
    messages) it was sent, and those it may not have read yet as (number, frames)."""

    __slots__ = ("slot", "sent", "tells", "reported", "kept", "unread")

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.sent = 0
        self.tells = 0  # tell messages (actor messages) in what it was sent
        self.reported = 0  # tells it reported as dead letters itself ("dead"), counted then
        self.kept: deque[tuple[int, list, int]] = deque()  # (number, frames, payload bytes)
        self.unread = 0  # payload bytes of those kept


class _Outbox(deque):
    """Messages not sent to one incarnation yet, in order, with their payload bytes and how
    many are not tells or asks (those may pass INFLIGHT_BYTES: Router._send_past_bound)."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self.others = 0


class _Held(deque):
    """Messages held for a restarting name, with their count (a batch holds several)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages = 0
        self.size = 0  # payload bytes


def _client_alive(identity: bytes) -> bool:
    """Whether the process of a client (identity b"client/<pid>-<tag>#1") still exists."""
    try:
        pid = int(identity.split(b"/", 1)[1].split(b"-", 1)[0])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # a process of another user now has the pid: not our client
        return False
    return True
