"""Pure restart logic for supervisors: strategies, restart types, intensity and backoff.

No process, socket or clock here: time comes in as a float (the caller's ``time.monotonic()``)
and every answer is a value the runtime acts on. The rules are OTP's ``supervisor.erl`` plus a
per-child exponential backoff. The supervisor actor drives a :class:`SupervisorLogic` so:

1. Report *every* exit of a child's current run, including exits it caused:
   ``child_exited(name, reason, now)``. Starting a child again (``child_started``) ends the
   wait for an exit of its previous run; such an exit, if it comes later, is not reported.
2. On a :class:`Decision`: stop each child of ``stop`` in that order (the stop ladder), forget
   those of ``remove``, wait ``delay`` seconds, start each child of ``start`` in that order.
   A later Decision naming in ``start`` a child that an earlier one still waits to start takes
   it over: the earlier one skips it (the later one starts it in its order, after its wait).
   On a :class:`GiveUp`: stop each child of ``stop`` in that order, then exit with ``reason``;
   the parent supervisor sees that exit as a failure of its child.
3. Exits the supervisor asked for (a child named in a ``stop`` tuple, returned by ``shutdown()``
   or flagged with ``stop_requested()``) get an empty Decision: no failure, no count toward
   intensity. A kill for a missed heartbeat *is* a failure: do not flag it.

Choices where the brief is silent (OTP's unless marked):

- The window includes its edge: a restart at ``t`` counts while ``t >= now - within``.
- Exits of unknown children (removed, dropped temporaries) or of children not running are
  ignored, as OTP ignores an ``EXIT`` from a pid it does not supervise.
- one_for_all / rest_for_one stop and drop (``remove``) the affected temporary siblings, and
  start every affected permanent or transient child, even a transient one that had exited
  normally before (OTP's ``terminate_children`` then ``start_children``).
- A transient child's normal exit keeps it among the children, not running; a temporary
  child whose requested stop is reported is dropped, as OTP's ``terminate_child`` does.
- Not OTP: the backoff counts the restarts caused by the failing child's own exits inside the
  window; siblings restarted along with it do not add to their own count.
- Not OTP: any ``detail`` makes an :class:`ExitReason` abnormal (heartbeat timeout, boot error).
- After a GiveUp or ``shutdown()`` every exit is consumed and ``add_child`` raises RuntimeError.
"""

from __future__ import annotations

import os
import signal as _signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Backoff",
    "Decision",
    "ExitReason",
    "GiveUp",
    "Intensity",
    "Restart",
    "Strategy",
    "SupervisorLogic",
]


class Strategy(StrEnum):
    """Which children one failure restarts."""

    ONE_FOR_ONE = "one_for_one"  # the failed child only
    ONE_FOR_ALL = "one_for_all"  # every child
    REST_FOR_ONE = "rest_for_one"  # the failed child and the children started after it


class Restart(StrEnum):
    """When a child that exited is restarted."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after an abnormal exit
    TEMPORARY = "temporary"  # never; it is dropped from the supervisor


def _signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return str(number)


@dataclass(frozen=True)
class ExitReason:
    """How a child ended: an exit code, or the signal that killed it, plus an optional detail.

    ``detail`` is what the supervisor observed beyond the status ("no heartbeat for 30.0 s",
    "boot error: ModuleNotFoundError ..."); a detail marks the exit abnormal.
    """

    code: int | None = None
    signal: int | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.code is not None and self.signal is not None:
            raise ValueError("an exit has an exit code or a signal, not both")

    @property
    def abnormal(self) -> bool:
        """False only for exit code 0, no signal and no detail; an unknown exit is abnormal."""
        return self.code != 0 or self.signal is not None or bool(self.detail)

    def describe(self) -> str:
        """One phrase for logs: ``"exit code 1"``, ``"signal SIGKILL: no heartbeat for 30.0 s"``."""
        if self.signal is not None:
            base = f"signal {_signal_name(self.signal)}"
        elif self.code is not None:
            base = f"exit code {self.code}"
        else:
            return self.detail or "unknown exit"
        return f"{base}: {self.detail}" if self.detail else base

    @classmethod
    def from_wait_status(cls, status: int, detail: str = "") -> ExitReason:
        """Build from a status of ``os.waitpid``; a stopped (not ended) status is a ValueError."""
        try:
            code = os.waitstatus_to_exitcode(status)
        except ValueError:
            raise ValueError(
                f"wait status {status:#x} is neither an exit nor a kill (stopped child?)"
            ) from None
        if code < 0:
            return cls(signal=-code, detail=detail)
        return cls(code=code, detail=detail)


@dataclass(frozen=True)
class Backoff:
    """Delay between consecutive restarts of one child: 0, initial, 2*initial, ... up to max.

    A child that ran at least ``reset_after`` seconds before it died was stable: its count starts
    over and it is restarted at once (as PM2's ``min_uptime``); intensity still counts it.
    """

    initial: float = 0.05
    max: float = 5.0
    reset_after: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.initial <= self.max:
            raise ValueError(f"backoff needs 0 <= initial <= max, got {self.initial}, {self.max}")

    def delay(self, previous: int) -> float:
        """Seconds to wait before a restart preceded by ``previous`` restarts in the window."""
        if previous <= 0:
            return 0.0
        return min(self.max, self.initial * 2.0 ** min(previous - 1, 64))


@dataclass(frozen=True)
class Intensity:
    """At most ``max_restarts`` restarts within any ``within`` seconds; one more gives up."""

    max_restarts: int = 5
    within: float = 10.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or not self.within > 0:
            raise ValueError(
                f"intensity needs max_restarts >= 0 and within > 0, "
                f"got {self.max_restarts}, {self.within}"
            )


@dataclass(frozen=True)
class Decision:
    """What to do after an exit; all empty when nothing is to be done."""

    stop: tuple[str, ...]  # children to stop, in this order (reverse start order)
    start: tuple[str, ...]  # children to (re)start, in this order (start order)
    delay: float  # seconds to wait before starting them (backoff)
    remove: tuple[str, ...] = ()  # temporary children dropped from the supervisor


@dataclass(frozen=True)
class GiveUp:
    """Intensity exceeded: stop ``stop`` in this order, then exit the supervisor with ``reason``."""

    stop: tuple[str, ...]  # every running child, reverse start order
    reason: str  # one line naming the supervisor, the child and its exit
    child: str  # the child whose exit overflowed the window
    exit: ExitReason  # that child's exit


_NOTHING = Decision((), (), 0.0)


class _Child:
    """Bookkeeping for one child: its spec (restart type) and what the logic believes of it."""

    __slots__ = ("restart", "running", "stopping")

    def __init__(self, restart: Restart) -> None:
        self.restart = restart
        self.running = True  # an incarnation is live or about to be started
        self.stopping = False  # the supervisor asked it to stop; its next exit is expected


class SupervisorLogic:
    """Mutable bookkeeping for one supervisor; every method is a pure function of its inputs
    plus this state.

    ``children`` are ``(name, restart)`` pairs in start order; all are taken to be running.
    """

    def __init__(
        self,
        name: str,
        strategy: Strategy | str,
        children: Sequence[tuple[str, Restart | str]],
        intensity: Intensity = Intensity(),
        backoff: Backoff = Backoff(),
    ) -> None:
        self.name = name
        self.strategy = Strategy(strategy)
        self.intensity = intensity
        self.backoff = backoff
        self._order: list[str] = []
        self._state: dict[str, _Child] = {}
        self._restarts: list[float] = []  # every restart event in the window, oldest first
        self._history: dict[str, list[float]] = {}  # restart events caused by each child
        self._stopped = False
        for child, restart in children:
            self._add(child, restart)

    # -- queries -------------------------------------------------------------------------------

    @property
    def children(self) -> tuple[str, ...]:
        """Every child, in start order (including transient children that exited normally)."""
        return tuple(self._order)

    @property
    def running(self) -> tuple[str, ...]:
        """Children with a live incarnation (or one about to be started), in start order."""
        return tuple(n for n in self._order if self._state[n].running)

    @property
    def stopped(self) -> bool:
        """True once the supervisor gave up or :meth:`shutdown` was called."""
        return self._stopped

    def expecting(self, name: str) -> bool:
        """True when the supervisor stopped ``name`` and waits for its exit (no failure)."""
        state = self._state.get(name)
        return state is not None and (state.stopping or self._stopped)

    def shutdown_order(self) -> tuple[str, ...]:
        """Every child in reverse start order (a query: see :meth:`shutdown` to act on it)."""
        return tuple(reversed(self._order))

    # -- the decision --------------------------------------------------------------------------

    def child_exited(
        self, child: str, reason: ExitReason, now: float, uptime: float | None = None
    ) -> Decision | GiveUp:
        """Decide what follows the exit of ``child`` (``now`` from a monotonic clock; ``uptime``,
        when known, how long this incarnation ran: see :class:`Backoff`)."""
        state = self._state.get(child)
        if state is None:
            return _NOTHING
        if state.stopping or self._stopped:
            # The supervisor asked for this exit (OTP's shutdown consumes the EXIT): no failure.
            state.stopping = False
            if self._stopped:
                state.running = False
            elif not state.running and state.restart is Restart.TEMPORARY:
                self._drop(child)
                return Decision((), (), 0.0, (child,))
            return _NOTHING
        if not state.running:
            return _NOTHING
        state.running = False
        if state.restart is Restart.TEMPORARY:
            self._drop(child)
            return Decision((), (), 0.0, (child,))
        if state.restart is Restart.TRANSIENT and not reason.abnormal:
            return _NOTHING

        counted = self._count_restart(child, reason, now, uptime)
        if isinstance(counted, GiveUp):
            return counted

        affected = self._affected(child)
        siblings = [n for n in affected if n != child]
        stop = tuple(n for n in reversed(siblings) if self._state[n].running)
        remove = tuple(n for n in siblings if self._state[n].restart is Restart.TEMPORARY)
        start = tuple(n for n in affected if self._state[n].restart is not Restart.TEMPORARY)
        for n in stop:
            self._state[n].stopping = True
        for n in remove:
            self._drop(n)
        for n in start:
            self._state[n].running = True
        return Decision(stop, start, counted, remove)

    def _count_restart(self, name: str, reason: ExitReason, now: float,
                       uptime: float | None) -> float | GiveUp:
        """Count one restart caused by ``name``: a GiveUp past the intensity, else the backoff
        delay before it (the restarts ``name`` caused within the window, unless it was stable)."""
        self._restarts = [*self._in_window(self._restarts, now), now]
        if len(self._restarts) > self.intensity.max_restarts:
            return self._give_up(name, reason, now)
        stable = uptime is not None and uptime >= self.backoff.reset_after
        earlier = [] if stable else self._in_window(self._history.get(name, ()), now)
        self._history[name] = [*earlier, now]
        return self.backoff.delay(len(earlier))

    def member_exited(
        self, pool: str, member: str, reason: ExitReason, now: float, uptime: float | None = None
    ) -> Decision | GiveUp:
        """Decide what follows the exit of ``member``, one of the interchangeable workers of the
        child ``pool`` (not OTP: a pool is one child whose members are restarted alone).

        The pool's restart type applies to the member, the restart counts toward this
        supervisor's intensity, and backoff is per member; the strategy does not apply (the pool
        itself did not fail). ``Decision.start`` is ``(member,)`` or empty; a GiveUp stops every
        child as for any other failure. A member the runtime stops on purpose reports nothing."""
        state = self._state.get(pool)
        if state is None or self._stopped or state.stopping or not state.running:
            return _NOTHING
        if state.restart is Restart.TEMPORARY:
            return _NOTHING
        if state.restart is Restart.TRANSIENT and not reason.abnormal:
            return _NOTHING
        counted = self._count_restart(member, reason, now, uptime)
        if isinstance(counted, GiveUp):
            return counted
        return Decision((), (member,), counted)

    # -- changes from the runtime --------------------------------------------------------------

    def add_child(self, name: str, restart: Restart | str) -> None:
        """Add a dynamic child, last in start order, taken to be running."""
        if self._stopped:
            raise RuntimeError(f"supervisor {self.name!r} is stopping; cannot add {name!r}")
        self._add(name, restart)

    def remove_child(self, name: str) -> None:
        """Forget ``name``; a later report of its exit is ignored. KeyError if unknown."""
        self._get(name)
        self._drop(name)

    def stop_requested(self, name: str) -> None:
        """Note that the runtime is stopping ``name`` on its own: its next exit is no failure."""
        state = self._get(name)
        # only a running child has an exit to come: expecting one from a child already down
        # (terminated twice, a transient one that ended normally) would swallow the exit of a
        # later incarnation that a sibling's restart starts (one_for_all, rest_for_one)
        state.stopping = state.running
        state.running = False

    def child_started(self, name: str) -> None:
        """Note that ``name`` has a new live incarnation (one started outside a Decision, or one
        whose stop exit was never reported): clears the expectation of a stop exit."""
        state = self._get(name)
        state.running = True
        state.stopping = False

    def not_started(self, name: str) -> None:
        """Note that ``name``, which the last Decision said to start, was not: a child before it
        failed to start, and OTP stops a restart there. Nothing runs and no exit is expected;
        the decision on the failed child's exit starts it again with the rest."""
        state = self._get(name)
        state.running = False
        state.stopping = False

    def shutdown(self) -> tuple[str, ...]:
        """Stop the supervisor: from now on no exit is a failure. Returns the running
        children in reverse start order, the order to stop them in."""
        return self._stop_all()

    # -- internals -----------------------------------------------------------------------------

    def _add(self, name: str, restart: Restart | str) -> None:
        if name in self._state:
            raise ValueError(f"supervisor {self.name!r} already has a child named {name!r}")
        self._order.append(name)
        self._state[name] = _Child(Restart(restart))

    def _get(self, name: str) -> _Child:
        try:
            return self._state[name]
        except KeyError:
            raise KeyError(f"supervisor {self.name!r} has no child named {name!r}") from None

    def _drop(self, name: str) -> None:
        self._order.remove(name)
        del self._state[name]
        self._history.pop(name, None)

    def _in_window(self, times: Iterable[float], now: float) -> list[float]:
        threshold = now - self.intensity.within
        return [t for t in times if t >= threshold]

    def _affected(self, child: str) -> list[str]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [child]
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self._order)
        return self._order[self._order.index(child) :]

    def _stop_all(self) -> tuple[str, ...]:
        self._stopped = True
        stop = tuple(n for n in reversed(self._order) if self._state[n].running)
        for n in stop:
            self._state[n].stopping = True
        return stop

    def _give_up(self, child: str, reason: ExitReason, now: float) -> GiveUp:
        # The restart this exit asks for is refused (the last in the window): the others were
        # carried out. "again" only when this child caused one of them.
        done = len(self._restarts) - 1
        if done == 0:
            head = f"supervisor {self.name!r} gave up (max_restarts is 0)"
            died = "died"
        else:
            head = (f"supervisor {self.name!r} gave up after {done} restart"
                    f"{'s' if done != 1 else ''} within {self.intensity.within:g} s")
            again = self._in_window(self._history.get(child, ()), now)
            died = "died again" if again else "died as well"
        line = f"{head}: child {child!r} {died} ({reason.describe()})"
        return GiveUp(self._stop_all(), line, child, reason)
