"""The supervision decision table, intensity, backoff and exit reasons, without a supervisor."""

from __future__ import annotations

import os
import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorcluster.supervision import (
    Backoff,
    Decision,
    ExitReason,
    GiveUp,
    Intensity,
    Restart,
    Strategy,
    SupervisorLogic,
)

P, T, X = Restart.PERMANENT, Restart.TRANSIENT, Restart.TEMPORARY
O4O, O4A, R4O = Strategy.ONE_FOR_ONE, Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE

EXITS = {
    "normal": ExitReason(code=0),
    "code": ExitReason(code=1),
    "signal": ExitReason(signal=signal.SIGKILL),
    # a hung child that exits 0 once told to stop is still a failure: the detail says why
    "timeout": ExitReason(code=0, detail="no heartbeat for 30.0 s"),
}
STOPPED = ExitReason(signal=signal.SIGTERM)  # how a child stopped by the supervisor ends
NOTHING = Decision((), (), 0.0)
DEFAULT_INTENSITY, DEFAULT_BACKOFF = Intensity(), Backoff()


def logic(
    strategy: Strategy,
    *children: tuple[str, Restart],
    intensity: Intensity = DEFAULT_INTENSITY,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> SupervisorLogic:
    return SupervisorLogic("root", strategy, children, intensity, backoff)


# -- the decision table --------------------------------------------------------------------------

# Children a (permanent), b (the failing one), c (temporary), d (transient); b fails.
# Outcomes as (stop, start, remove):
NONE = ((), (), ())
DROP = ((), (), ("b",))
ONE = ((), ("b",), ())
ALL = (("d", "c", "a"), ("a", "b", "d"), ("c",))
REST = (("d", "c"), ("b", "d"), ("c",))

TABLE = [
    (O4O, P, "normal", ONE),
    (O4O, P, "code", ONE),
    (O4O, P, "signal", ONE),
    (O4O, P, "timeout", ONE),
    (O4O, T, "normal", NONE),
    (O4O, T, "code", ONE),
    (O4O, T, "signal", ONE),
    (O4O, T, "timeout", ONE),
    (O4O, X, "normal", DROP),
    (O4O, X, "code", DROP),
    (O4O, X, "signal", DROP),
    (O4O, X, "timeout", DROP),
    (O4A, P, "normal", ALL),
    (O4A, P, "code", ALL),
    (O4A, P, "signal", ALL),
    (O4A, P, "timeout", ALL),
    (O4A, T, "normal", NONE),
    (O4A, T, "code", ALL),
    (O4A, T, "signal", ALL),
    (O4A, T, "timeout", ALL),
    (O4A, X, "normal", DROP),
    (O4A, X, "code", DROP),
    (O4A, X, "signal", DROP),
    (O4A, X, "timeout", DROP),
    (R4O, P, "normal", REST),
    (R4O, P, "code", REST),
    (R4O, P, "signal", REST),
    (R4O, P, "timeout", REST),
    (R4O, T, "normal", NONE),
    (R4O, T, "code", REST),
    (R4O, T, "signal", REST),
    (R4O, T, "timeout", REST),
    (R4O, X, "normal", DROP),
    (R4O, X, "code", DROP),
    (R4O, X, "signal", DROP),
    (R4O, X, "timeout", DROP),
]


@pytest.mark.parametrize(("strategy", "restart", "kind", "outcome"), TABLE)
def test_decision_table(strategy, restart, kind, outcome) -> None:
    sup = logic(strategy, ("a", P), ("b", restart), ("c", X), ("d", T))
    decision = sup.child_exited("b", EXITS[kind], now=100.0)
    stop, start, remove = outcome
    assert decision == Decision(stop, start, 0.0, remove)
    assert sup.children == tuple(n for n in "abcd" if n not in remove)
    # the children the supervisor stopped report their exits: none of them is a failure
    for child in stop:
        assert sup.child_exited(child, STOPPED, now=100.0) == NOTHING


def test_table_covers_every_combination() -> None:
    combos = {(s, r, k) for s, r, k, _ in TABLE}
    assert len(combos) == len(TABLE) == len(Strategy) * len(Restart) * len(EXITS)


def test_restart_accepts_plain_strings() -> None:
    sup = SupervisorLogic("root", "rest_for_one", [("a", "permanent"), ("b", "transient")])
    assert sup.strategy is Strategy.REST_FOR_ONE
    assert sup.child_exited("a", EXITS["code"], 0.0) == Decision(("b",), ("a", "b"), 0.0)


def test_one_for_all_restarts_a_transient_child_that_had_exited_normally() -> None:
    sup = logic(O4A, ("a", P), ("b", T), ("c", P))
    assert sup.child_exited("b", EXITS["normal"], 0.0) == NOTHING
    assert sup.running == ("a", "c")
    # b is not running, so it is not stopped, but OTP's start_children starts it again
    assert sup.child_exited("c", EXITS["code"], 1.0) == Decision(("a",), ("a", "b", "c"), 0.0)
    assert sup.running == ("a", "b", "c")


def test_exits_of_unknown_and_stopped_children_are_ignored() -> None:
    sup = logic(O4O, ("a", P), ("b", T))
    assert sup.child_exited("ghost", EXITS["signal"], 0.0) == NOTHING
    sup.child_exited("b", EXITS["normal"], 0.0)
    assert sup.child_exited("b", EXITS["signal"], 0.0) == NOTHING  # no live incarnation


def test_requested_stop_is_not_a_failure() -> None:
    sup = logic(O4A, ("a", P), ("b", P), ("tmp", X))
    sup.stop_requested("a")
    assert sup.child_exited("a", EXITS["signal"], 0.0) == NOTHING
    assert sup.running == ("b", "tmp")
    sup.child_started("a")
    assert sup.child_exited("a", EXITS["signal"], 1.0) == Decision(
        ("tmp", "b"), ("a", "b"), 0.0, ("tmp",)
    )
    sup.add_child("tmp2", X)
    sup.stop_requested("tmp2")
    assert sup.child_exited("tmp2", STOPPED, 2.0) == Decision((), (), 0.0, ("tmp2",))
    assert sup.children == ("a", "b")


def test_child_started_clears_a_stop_that_was_never_reported() -> None:
    sup = logic(O4A, ("a", P), ("b", P))
    assert sup.child_exited("a", EXITS["code"], 0.0).stop == ("b",)
    sup.child_started("b")  # the runtime restarted b without reporting the old incarnation
    assert sup.child_exited("b", EXITS["code"], 1.0).start == ("a", "b")


def test_a_child_not_started_is_started_by_the_next_decision() -> None:
    sup = logic(O4A, ("a", P), ("b", P))
    assert sup.child_exited("a", EXITS["code"], 0.0).start == ("a", "b")
    sup.not_started("b")  # "a" failed to start: the restart stopped before "b"
    assert sup.running == ("a",)
    decision = sup.child_exited("a", EXITS["code"], 1.0)
    assert (decision.stop, decision.start) == ((), ("a", "b"))


def test_a_stop_requested_of_a_child_already_down_expects_no_exit() -> None:
    sup = logic(O4A, ("a", P), ("t", T))
    sup.child_exited("t", EXITS["normal"], 0.0)  # ended normally: not restarted
    sup.stop_requested("t")  # terminate_child of the stopped child: no exit will come
    assert sup.child_exited("a", EXITS["signal"], 1.0).start == ("a", "t")
    assert sup.child_exited("t", EXITS["signal"], 2.0).start == ("a", "t")  # a failure


def test_shutdown_consumes_every_later_exit() -> None:
    sup = logic(O4O, ("a", P), ("b", T), ("c", P))
    sup.child_exited("b", EXITS["normal"], 0.0)
    assert sup.shutdown_order() == ("c", "b", "a")
    assert not sup.stopped
    assert sup.shutdown() == ("c", "a")
    assert sup.stopped
    for child in ("c", "a"):
        assert sup.child_exited(child, EXITS["signal"], 1.0) == NOTHING
    with pytest.raises(RuntimeError, match="stopping"):
        sup.add_child("late", P)


def test_dynamic_children() -> None:
    sup = logic(R4O, ("a", P))
    sup.add_child("b", T)
    sup.add_child("c", P)
    assert sup.children == ("a", "b", "c")
    assert sup.shutdown_order() == ("c", "b", "a")
    sup.remove_child("b")
    assert sup.child_exited("b", EXITS["signal"], 0.0) == NOTHING
    assert sup.child_exited("a", EXITS["signal"], 0.0) == Decision(("c",), ("a", "c"), 0.0)
    with pytest.raises(ValueError, match="already has a child named 'a'"):
        sup.add_child("a", P)
    with pytest.raises(KeyError, match="no child named 'zz'"):
        sup.remove_child("zz")
    with pytest.raises(ValueError, match="already has"):
        logic(O4O, ("a", P), ("a", T))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        Intensity(-1, 10.0)
    with pytest.raises(ValueError, match="within"):
        Intensity(5, 0.0)
    with pytest.raises(ValueError, match="initial <= max"):
        Backoff(1.0, 0.5)
    with pytest.raises(ValueError):
        logic("one_for_none", ("a", P))


# -- intensity -----------------------------------------------------------------------------------


def test_default_intensity_allows_five_restarts_and_gives_up_on_the_sixth() -> None:
    sup = logic(O4O, ("web/1", P), ("web/2", P), ("web/3", T))
    for i in range(5):
        assert isinstance(sup.child_exited("web/2", EXITS["code"], 0.5 * i), Decision)
    out = sup.child_exited("web/2", EXITS["signal"], 2.5)
    assert out == GiveUp(
        stop=("web/3", "web/1"),
        reason="supervisor 'root' gave up after 5 restarts within 10 s: "
        "child 'web/2' died again (signal SIGKILL)",
        child="web/2",
        exit=EXITS["signal"],
    )
    assert sup.stopped
    assert sup.child_exited("web/3", STOPPED, 3.0) == NOTHING


@pytest.mark.parametrize("max_restarts", [0, 1, 3])
def test_exactly_max_restarts_are_allowed(max_restarts: int) -> None:
    sup = logic(O4O, ("a", P), ("b", P), intensity=Intensity(max_restarts, 10.0))
    for i in range(max_restarts):
        # alternate children: intensity counts the supervisor's restarts, not one child's
        assert sup.child_exited("ab"[i % 2], EXITS["code"], float(i)).start
    out = sup.child_exited("a", EXITS["code"], 9.0)
    assert isinstance(out, GiveUp)
    # the line counts the restarts carried out, not the one refused
    assert out.reason == {
        0: "supervisor 'root' gave up (max_restarts is 0): child 'a' died (exit code 1)",
        1: "supervisor 'root' gave up after 1 restart within 10 s: "
           "child 'a' died again (exit code 1)",
        3: "supervisor 'root' gave up after 3 restarts within 10 s: "
           "child 'a' died again (exit code 1)",
    }[max_restarts]


def test_restarts_spread_beyond_the_window_never_give_up() -> None:
    sup = logic(O4O, ("a", P), intensity=Intensity(3, 10.0))
    for i in range(100):
        assert sup.child_exited("a", EXITS["code"], 3.5 * i).start == ("a",)


def test_window_edge_counts_as_in_otp() -> None:
    sup = logic(O4O, ("a", P), intensity=Intensity(1, 10.0))
    sup.child_exited("a", EXITS["code"], 0.0)
    assert isinstance(sup.child_exited("a", EXITS["code"], 10.0), GiveUp)  # t >= now - within
    sup = logic(O4O, ("a", P), intensity=Intensity(1, 10.0))
    sup.child_exited("a", EXITS["code"], 0.0)
    assert isinstance(sup.child_exited("a", EXITS["code"], 10.5), Decision)


def test_exits_that_are_not_restarted_do_not_count() -> None:
    sup = logic(O4O, ("t", T), intensity=Intensity(1, 10.0))
    for i in range(50):
        sup.child_started("t")
        assert sup.child_exited("t", EXITS["normal"], i * 0.01) == NOTHING
        sup.add_child(f"tmp{i}", X)
        assert sup.child_exited(f"tmp{i}", EXITS["signal"], i * 0.01).remove == (f"tmp{i}",)


def test_one_for_all_counts_one_restart_per_failure() -> None:
    sup = logic(O4A, ("a", P), ("b", P), ("c", P), intensity=Intensity(2, 10.0))
    for t in (0.0, 1.0):
        decision = sup.child_exited("a", EXITS["code"], t)
        for child in decision.stop:  # sibling stops are not failures
            assert sup.child_exited(child, STOPPED, t) == NOTHING
    assert isinstance(sup.child_exited("c", EXITS["code"], 2.0), GiveUp)


def test_give_up_reason_names_detail_and_a_nested_supervisor() -> None:
    sup = SupervisorLogic("web", O4O, [("web/2", P)], Intensity(0, 5.0))
    reason = ExitReason(signal=signal.SIGKILL, detail="no heartbeat for 30.0 s")
    out = sup.child_exited("web/2", reason, 0.0)
    assert isinstance(out, GiveUp) and out.stop == ()
    assert out.reason == (
        "supervisor 'web' gave up (max_restarts is 0): "
        "child 'web/2' died (signal SIGKILL: no heartbeat for 30.0 s)"
    )
    # the parent sees the child supervisor's exit as a failure of its child "web"
    parent = logic(O4O, ("router", P), ("web", P))
    escalated = ExitReason(code=1, detail=out.reason)
    assert parent.child_exited("web", escalated, 0.0) == Decision((), ("web",), 0.0)


# -- backoff -------------------------------------------------------------------------------------


def test_backoff_sequence_and_cap() -> None:
    sup = logic(O4O, ("a", P), intensity=Intensity(100, 60.0), backoff=Backoff(0.05, 0.3))
    delays = [sup.child_exited("a", EXITS["code"], float(i)).delay for i in range(8)]
    assert delays == [0.0, 0.05, 0.1, 0.2, 0.3, 0.3, 0.3, 0.3]


def test_default_backoff() -> None:
    sup = logic(O4O, ("a", P))
    delays = [sup.child_exited("a", EXITS["code"], i * 0.1).delay for i in range(5)]
    assert delays == [0.0, 0.05, 0.1, 0.2, 0.4]
    assert Backoff().delay(10) == 5.0
    assert Backoff().delay(10_000) == 5.0  # no overflow


def test_backoff_is_per_child_and_forgets_outside_the_window() -> None:
    sup = logic(O4A, ("a", P), ("b", P), intensity=Intensity(10, 10.0))
    assert sup.child_exited("a", EXITS["code"], 0.0).delay == 0.0
    assert sup.child_exited("b", EXITS["code"], 1.0).delay == 0.0  # b's own first restart
    assert sup.child_exited("a", EXITS["code"], 2.0).delay == 0.05
    assert sup.child_exited("a", EXITS["code"], 3.0).delay == 0.1
    assert sup.child_exited("a", EXITS["code"], 14.0).delay == 0.0  # all of a's restarts left


# -- a property over any sequence of exits -------------------------------------------------------

KINDS = list(EXITS)


def _is_in_order(names: tuple[str, ...], order: tuple[str, ...]) -> bool:
    indexes = [order.index(n) for n in names]
    return indexes == sorted(set(indexes))


@settings(max_examples=300, deadline=None)
@given(
    strategy=st.sampled_from(Strategy),
    types=st.lists(st.sampled_from(Restart), min_size=1, max_size=5),
    max_restarts=st.integers(0, 4),
    within=st.sampled_from([1.0, 2.5, 10.0]),
    events=st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from(KINDS), st.floats(0.0, 4.0)), max_size=40
    ),
)
def test_decisions_obey_the_rules(strategy, types, max_restarts, within, events) -> None:
    names = [f"c{i}" for i in range(len(types))]
    restart_of = dict(zip(names, types, strict=True))
    sup = SupervisorLogic("p", strategy, list(restart_of.items()), Intensity(max_restarts, within))
    restarts: list[float] = []
    now = 0.0
    for index, kind, dt in events:
        if not sup.children:
            break
        now += dt
        order = sup.children
        child = order[index % len(order)]
        reason = EXITS[kind]
        must_restart = child in sup.running and (
            restart_of[child] is P or (restart_of[child] is T and reason.abnormal)
        )
        out = sup.child_exited(child, reason, now)
        recent = [t for t in restarts if t >= now - within]
        if isinstance(out, GiveUp):
            assert must_restart and len(recent) == max_restarts  # exactly when it overflows
            assert out.child == child and out.exit == reason and "'p' gave up" in out.reason
            assert child not in out.stop and _is_in_order(out.stop[::-1], order)
            assert all(sup.child_exited(n, STOPPED, now) == NOTHING for n in out.stop)
            return
        assert _is_in_order(out.stop[::-1], order)  # stop: reverse start order
        assert _is_in_order(out.start, order)  # start: start order
        assert _is_in_order(out.remove, order)
        assert bool(out.start) == must_restart
        if must_restart:
            assert child in out.start
            assert len(recent) + 1 <= max_restarts
            restarts.append(now)
        if strategy is O4O:
            assert out.stop == () and set(out.start) | set(out.remove) <= {child}
        for stopped in out.stop:
            assert sup.child_exited(stopped, STOPPED, now) == NOTHING
        assert sup.children == tuple(n for n in order if n not in out.remove)


# -- exit reasons --------------------------------------------------------------------------------


def _wait_status(action: str) -> int:
    """Fork a tiny child that ends as told, reap it, and return its real wait status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            if action.startswith("exit"):
                os._exit(int(action[4:]))
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), getattr(signal, action))
        finally:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize(
    ("action", "expected", "text", "abnormal"),
    [
        ("exit0", ExitReason(code=0), "exit code 0", False),
        ("exit3", ExitReason(code=3), "exit code 3", True),
        ("SIGKILL", ExitReason(signal=signal.SIGKILL), "signal SIGKILL", True),
        ("SIGTERM", ExitReason(signal=signal.SIGTERM), "signal SIGTERM", True),
    ],
)
def test_from_real_wait_status(action, expected, text, abnormal) -> None:
    reason = ExitReason.from_wait_status(_wait_status(action))
    assert reason == expected
    assert reason.describe() == text
    assert reason.abnormal is abnormal
    assert f"Worker 123 died ({reason.describe()}), restarting".startswith("Worker 123 died (")


def test_from_wait_status_keeps_the_detail() -> None:
    reason = ExitReason.from_wait_status(_wait_status("exit0"), "no heartbeat for 30.0 s")
    assert reason.abnormal
    assert reason.describe() == "exit code 0: no heartbeat for 30.0 s"


def test_from_a_stopped_status_is_refused() -> None:
    pid = os.fork()
    if pid == 0:
        try:
            os.kill(os.getpid(), signal.SIGSTOP)
        finally:
            os._exit(0)
    try:
        _, status = os.waitpid(pid, os.WUNTRACED)
        with pytest.raises(ValueError, match="neither an exit nor a kill"):
            ExitReason.from_wait_status(status)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_describe() -> None:
    assert ExitReason(code=1).describe() == "exit code 1"
    assert ExitReason(signal=signal.SIGKILL).describe() == "signal SIGKILL"
    assert ExitReason(signal=200).describe() == "signal 200"
    assert ExitReason(detail="boot error: ModuleNotFoundError: app").describe() == (
        "boot error: ModuleNotFoundError: app"
    )
    assert ExitReason().describe() == "unknown exit"
    assert ExitReason().abnormal
    assert not ExitReason(code=0).abnormal
    with pytest.raises(ValueError, match="not both"):
        ExitReason(code=0, signal=9)


def test_backoff_starts_over_for_a_child_that_ran_long_enough():
    logic = SupervisorLogic("root", Strategy.ONE_FOR_ONE, [("a", Restart.PERMANENT)],
                            Intensity(10, 10.0), Backoff(0.05, 5.0, reset_after=1.0))
    crash = ExitReason(code=1)
    assert logic.child_exited("a", crash, 0.0, uptime=0.1).delay == 0.0
    assert logic.child_exited("a", crash, 0.2, uptime=0.1).delay == 0.05
    assert logic.child_exited("a", crash, 0.4, uptime=0.1).delay == 0.1
    # it then ran 2 s: stable, restarted at once; the next quick crash backs off from the start
    assert logic.child_exited("a", crash, 2.5, uptime=2.0).delay == 0.0
    assert logic.child_exited("a", crash, 2.6, uptime=0.05).delay == 0.05


# -- pool members: interchangeable workers, restarted alone ---------------------------------------

NORMAL, KILLED = EXITS["normal"], EXITS["signal"]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_a_pool_member_is_restarted_alone_whatever_the_strategy(strategy) -> None:
    logic = SupervisorLogic("root", strategy, [("a", "permanent"), ("web", "permanent"),
                                               ("b", "permanent")])
    decision = logic.member_exited("web", "web/2", KILLED, 0.0)
    assert decision == Decision((), ("web/2",), 0.0)
    assert logic.running == ("a", "web", "b")


@pytest.mark.parametrize(("restart", "reason", "restarted"), [
    ("permanent", NORMAL, True), ("permanent", KILLED, True),
    ("transient", NORMAL, False), ("transient", KILLED, True),
    ("temporary", NORMAL, False), ("temporary", KILLED, False),
])
def test_the_pool_restart_type_applies_to_its_members(restart, reason, restarted) -> None:
    logic = SupervisorLogic("root", "one_for_one", [("web", restart)])
    decision = logic.member_exited("web", "web/1", reason, 0.0)
    assert decision.start == (("web/1",) if restarted else ())


def test_member_restarts_count_toward_the_supervisor_intensity() -> None:
    logic = SupervisorLogic("root", "one_for_one", [("a", "permanent"), ("web", "permanent")],
                            Intensity(3, 10))
    assert logic.child_exited("a", KILLED, 0.0).start == ("a",)
    assert logic.member_exited("web", "web/1", KILLED, 1.0).start == ("web/1",)
    assert logic.member_exited("web", "web/2", KILLED, 2.0).start == ("web/2",)
    gave_up = logic.member_exited("web", "web/1", KILLED, 3.0)
    assert isinstance(gave_up, GiveUp)
    assert gave_up.stop == ("web", "a") and gave_up.child == "web/1"
    assert gave_up.reason == ("supervisor 'root' gave up after 3 restarts within 10 s: "
                              "child 'web/1' died again (signal SIGKILL)")
    # the restarts in the window were another member's: not "again"
    logic = SupervisorLogic("root", "one_for_one", [("web", "permanent")], Intensity(1, 10))
    assert logic.member_exited("web", "web/1", KILLED, 0.0).start == ("web/1",)
    gave_up = logic.member_exited("web", "web/2", KILLED, 1.0)
    assert gave_up.reason == ("supervisor 'root' gave up after 1 restart within 10 s: "
                              "child 'web/2' died as well (signal SIGKILL)")


def test_member_backoff_is_per_member() -> None:
    logic = SupervisorLogic("root", "one_for_one", [("web", "permanent")], Intensity(10, 10),
                            Backoff(0.1, 1.0))
    assert logic.member_exited("web", "web/1", KILLED, 0.0).delay == 0.0
    assert logic.member_exited("web", "web/1", KILLED, 0.1).delay == 0.1
    assert logic.member_exited("web", "web/2", KILLED, 0.2).delay == 0.0
    assert logic.member_exited("web", "web/1", KILLED, 0.3).delay == 0.2


def test_members_of_a_stopping_pool_or_supervisor_are_not_restarted() -> None:
    logic = SupervisorLogic("root", "one_for_one", [("web", "permanent")])
    logic.stop_requested("web")
    assert logic.member_exited("web", "web/1", KILLED, 0.0) == Decision((), (), 0.0)
    other = SupervisorLogic("root", "one_for_one", [("web", "permanent")])
    other.shutdown()
    assert other.member_exited("web", "web/1", KILLED, 0.0) == Decision((), (), 0.0)
    assert other.member_exited("nosuch", "x/1", KILLED, 0.0) == Decision((), (), 0.0)


@settings(max_examples=300, deadline=None)
@given(
    strategy=st.sampled_from(Strategy),
    types=st.lists(st.sampled_from(Restart), min_size=1, max_size=4),
    max_restarts=st.integers(0, 4),
    within=st.sampled_from([1.0, 2.5, 10.0]),
    events=st.lists(
        st.tuples(st.integers(0, 9), st.booleans(), st.sampled_from(KINDS), st.floats(0.0, 4.0)),
        max_size=40,
    ),
)
def test_member_and_child_exits_share_one_intensity(strategy, types, max_restarts, within,
                                                    events) -> None:
    """Any mix of exits of children and of pool members (each child also taken as a pool):
    members are restarted alone, by their pool's restart type, and every restart of either
    kind counts toward the one intensity."""
    names = [f"c{i}" for i in range(len(types))]
    restart_of = dict(zip(names, types, strict=True))
    sup = SupervisorLogic("p", strategy, list(restart_of.items()), Intensity(max_restarts, within))
    restarts: list[float] = []
    now = 0.0
    for index, member, kind, dt in events:
        if not sup.children:
            break
        now += dt
        order = sup.children
        child = order[index % len(order)]
        reason = EXITS[kind]
        must_restart = child in sup.running and (
            restart_of[child] is P or (restart_of[child] is T and reason.abnormal)
        )
        if member:
            out = sup.member_exited(child, f"{child}/1", reason, now)
        else:
            out = sup.child_exited(child, reason, now)
        recent = [t for t in restarts if t >= now - within]
        if isinstance(out, GiveUp):
            assert must_restart and len(recent) == max_restarts
            return
        assert bool(out.start) == must_restart
        if must_restart:
            restarts.append(now)
        if member:
            assert out.stop == () and out.remove == ()
            assert out.start == ((f"{child}/1",) if must_restart else ())
            assert child in sup.children  # a member's exit never drops its pool
        for stopped in out.stop:
            assert sup.child_exited(stopped, STOPPED, now) == NOTHING
