"""Supervision trees with real processes: strategies, restart types, escalation, shutdown,
dynamic children, file errors and the examples. Every cluster is a real `actorcluster run`;
children are killed with real signals; the fixture proves no process is left."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import ROOT

import actorcluster

pytestmark = pytest.mark.timeout(60)

ACTORS = """
[[supervisor.children]]
name = "{name}"
actor = "ac_tree:{cls}"
{extra}
"""


def tree_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tree.toml"
    path.write_text(textwrap.dedent(text))
    return f"--config={path}"


def flat(node: dict) -> dict[str, dict]:
    found = {node["name"]: node}
    for child in node.get("children", ()):
        found.update(flat(child))
    return found


def status(c) -> dict[str, dict]:
    with actorcluster.connect(c.name) as client:
        return flat(client.status()["tree"])


def pids(c, *names: str) -> dict[str, int]:
    nodes = status(c)
    return {n: nodes[n]["pid"] for n in names}


def wait_changed(c, before: dict[str, int], changed: set[str], timeout: float = 10.0) -> dict:
    """Wait until exactly ``changed`` have new, ready pids; return the new pids."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = status(c)
        now = {n: nodes[n]["pid"] for n in before}
        ready = all(nodes[n]["state"] == "ready" for n in before)
        moved = {n for n in before if now[n] != before[n]}
        if ready and moved == changed:
            return now
        assert time.monotonic() < deadline, f"changed {moved}, wanted {changed}:\n{c.log()}"
        time.sleep(0.05)


def events(log: str, after: str) -> list[tuple[str, str]]:
    """(name, "started" | "stopped") in log order, from the first line matching ``after``."""
    tail = log[log.index(after):] if after in log else ""
    return [(m[0], m[1]) for m in re.findall(r"Actor (\w+) \(pid \d+\) (started|stopped)", tail)]


def three(tmp_path: Path, strategy: str) -> str:
    return tree_file(tmp_path, f"""
        [supervisor]
        strategy = "{strategy}"
        """ + "".join(ACTORS.format(name=n, cls="Member", extra="") for n in "abc"))


@pytest.mark.parametrize(("strategy", "changed", "order"), [
    ("one_for_one", {"b"}, [("b", "started")]),
    ("one_for_all", {"a", "b", "c"},
     [("c", "stopped"), ("a", "stopped"), ("a", "started"), ("b", "started"),
      ("c", "started")]),
    ("rest_for_one", {"b", "c"}, [("c", "stopped"), ("b", "started"), ("c", "started")]),
])
def test_strategy_restarts_exactly_the_right_children_in_order(cluster, tmp_path, strategy,
                                                               changed, order):
    c = cluster(three(tmp_path, strategy))
    before = pids(c, "a", "b", "c")
    os.kill(before["b"], signal.SIGKILL)
    after = wait_changed(c, before, changed)
    assert all(after[n] != before[n] for n in changed)
    marker = f"Actor b (pid {before['b']}) died (signal SIGKILL), restarting"
    c.wait_for_log(re.escape(marker))
    assert events(c.log(), marker) == order
    assert status(c)["b"]["restarts"] == 1
    assert c.stop() == 0


def test_children_killed_together_are_restarted_once_and_stay_reachable(cluster, tmp_path):
    """kill -9 of a, b and c at once under one_for_all: the first exit restarts all three; the
    exits of a and c, already reaped, belong to incarnations that restart replaced. As OTP
    ignores an EXIT from a pid it no longer supervises, they are no failure, nothing is logged
    as "not restarting", and every name routes to its new process."""
    c = cluster(three(tmp_path, "one_for_all"))
    before = pids(c, "a", "b", "c")
    for pid in before.values():
        os.kill(pid, signal.SIGKILL)
    after = wait_changed(c, before, {"a", "b", "c"})
    with actorcluster.connect(c.name) as client:
        assert {n: client.ask(n, "pid", timeout=5) for n in after} == after, c.log()
    assert "not restarting" not in c.log(), c.log()
    assert sum(node["restarts"] for node in status(c).values()) == 3  # one restart each
    assert c.stop() == 0


def test_a_child_dying_as_its_supervisor_is_stopped_is_no_failure(cluster, tmp_path):
    """rest_for_one: a's death stops inner (y, which ignores SIGTERM, holds that stop 0.5 s);
    x dies meanwhile. inner's stop consumes x's exit, as OTP's shutdown does: no "x died, not
    restarting" line, and x comes back with inner, reachable by name."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        strategy = "rest_for_one"
        """ + ACTORS.format(name="a", cls="Member", extra="") + """
        [[supervisor.children]]
        name = "inner"
        children = [ { name = "x", actor = "ac_tree:Member" },
                     { name = "y", actor = "ac_tree:Stubborn", shutdown = 0.5 } ]
        """))
    before = pids(c, "a", "x", "y")
    os.kill(before["a"], signal.SIGKILL)
    c.wait_for_log(r"stopping supervisor inner")
    os.kill(before["x"], signal.SIGKILL)
    after = wait_changed(c, before, {"a", "x", "y"})
    with actorcluster.connect(c.name) as client:
        assert client.ask("x", "pid", timeout=5) == after["x"]
    assert "not restarting" not in c.log(), c.log()
    assert c.stop() == 0


def test_a_childs_backoff_delays_no_sibling_and_no_request(cluster, tmp_path):
    """The backoff is per child: while a waits 5 s before its second restart, b's crash is
    restarted at once (one_for_one), and terminate_child a answers at once and a is then not
    started."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        backoff = { initial = 5, max = 5 }
        """ + ACTORS.format(name="a", cls="Member", extra="")
        + ACTORS.format(name="b", cls="Member", extra="")))
    before = pids(c, "a", "b")
    os.kill(before["a"], signal.SIGKILL)  # the first restart: at once
    a2 = wait_changed(c, {"a": before["a"]}, {"a"})["a"]
    os.kill(a2, signal.SIGKILL)  # the second, soon after: 5 s of backoff
    c.wait_for_log(rf"Actor a \(pid {a2}\) died")
    start = time.monotonic()
    os.kill(before["b"], signal.SIGKILL)
    b2 = wait_changed(c, {"b": before["b"]}, {"b"}, timeout=3)["b"]
    with actorcluster.connect(c.name) as client:
        assert client.ask("b", "pid", timeout=3) == b2
    assert cli(c, "terminate-child", "root", "a").returncode == 0
    assert time.monotonic() - start < 3, c.log()
    time.sleep(0.2)
    assert (status(c)["a"]["state"], status(c)["a"]["pid"]) == ("down", None)
    assert cli(c, "restart-child", "root", "a").returncode == 0  # nothing waits for an exit
    a3 = status(c)["a"]["pid"]
    os.kill(a3, signal.SIGKILL)
    c.wait_for_log(rf"Actor a \(pid {a3}\) died \(signal SIGKILL\), restarting")
    assert c.stop() == 0


@pytest.mark.parametrize(("supervisor", "terminated"), [("inner", "a"), ("root", "inner")])
def test_terminating_a_child_waiting_for_its_backoff_forgets_its_name(cluster, tmp_path,
                                                                      supervisor, terminated):
    """a waits 5 s before its restart (its name held for it) when a (or its supervisor) is
    terminated: nothing is coming back under that name, so a message to it fails at once, as
    for any terminated child, instead of being held until it expires as a dead letter."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]

        [[supervisor.children]]
        name = "inner"
        backoff = { initial = 5, max = 5 }
        children = [ { name = "a", actor = "ac_tree:Member" } ]
        """))
    a1 = pids(c, "a")["a"]
    os.kill(a1, signal.SIGKILL)  # the first restart: at once
    a2 = wait_changed(c, {"a": a1}, {"a"})["a"]
    os.kill(a2, signal.SIGKILL)  # the second, soon after: 5 s of backoff
    c.wait_for_log(rf"Actor a \(pid {a2}\) died")
    assert cli(c, "terminate-child", supervisor, terminated).returncode == 0
    with actorcluster.connect(c.name) as client:
        start = time.monotonic()
        with pytest.raises(actorcluster.ActorNotFound):
            client.ask("a", "pid", timeout=3)
        assert time.monotonic() - start < 1, c.log()
    assert c.stop() == 0


def test_reloading_an_actor_is_no_restart_toward_the_intensity(cluster, tmp_path):
    """A reload stops the actor and starts it with the new code: the stop's exit, reported
    once the new process runs, was taken for a failure (one restart counted, unseen), so with
    max_restarts = 1 the first crash after a reload stopped the cluster."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        max_restarts = 1
        """ + ACTORS.format(name="a", cls="Member", extra="")))
    assert cli(c, "reload", "a").returncode == 0
    before = pids(c, "a")
    os.kill(before["a"], signal.SIGKILL)
    wait_changed(c, before, {"a"})
    assert c.proc.poll() is None and "gave up" not in c.log(), c.log()
    assert c.stop() == 0


def test_a_child_dying_as_a_siblings_restart_stops_it_is_no_failure(cluster, tmp_path):
    """rest_for_one [a, c, s]: a's second crash (0.3 s of backoff) stops s (which ignores
    SIGTERM: 0.3 s) then c; c dies meanwhile. That stop consumes c's exit, also while the
    backoff is waited: no "c died, not restarting", and c comes back with a."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        strategy = "rest_for_one"
        backoff = { initial = 0.3, max = 0.3 }
        """ + ACTORS.format(name="a", cls="Member", extra="")
        + ACTORS.format(name="c", cls="Member", extra="")
        + ACTORS.format(name="s", cls="Stubborn", extra="shutdown = 0.3")))
    before = pids(c, "a", "c", "s")
    os.kill(before["a"], signal.SIGKILL)
    before = wait_changed(c, before, {"a", "c", "s"})
    os.kill(before["a"], signal.SIGKILL)
    c.wait_for_log(rf"Actor a \(pid {before['a']}\) died")
    os.kill(before["c"], signal.SIGKILL)
    after = wait_changed(c, before, {"a", "c", "s"})
    with actorcluster.connect(c.name) as client:
        assert client.ask("c", "pid", timeout=5) == after["c"]
    assert "not restarting" not in c.log(), c.log()
    assert c.stop() == 0


def test_a_siblings_restart_during_a_childs_backoff_starts_it_in_order(cluster, tmp_path):
    """rest_for_one [inner, b]: b waits 1 s before its restart when inner fails (gives up),
    which restarts inner then b after inner's own 1 s. That later decision starts b, after
    inner: b's own wait, over first, started b while inner was down, and b was never started
    again after inner (rest_for_one's promise: b runs only on top of a running inner)."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        strategy = "rest_for_one"
        max_restarts = 10
        backoff = { initial = 1, max = 1 }

        [[supervisor.children]]
        name = "inner"
        max_restarts = 0
        children = [ { name = "x", actor = "ac_tree:Member" } ]
        """ + ACTORS.format(name="b", cls="Member", extra="")))
    before = pids(c, "x", "b")
    os.kill(before["x"], signal.SIGKILL)  # inner gives up: inner and b restarted at once
    before = wait_changed(c, before, {"x", "b"})
    os.kill(before["b"], signal.SIGKILL)  # b's first restart: at once
    b = wait_changed(c, {"b": before["b"]}, {"b"})["b"]
    os.kill(b, signal.SIGKILL)  # b's second, soon after: 1 s of backoff
    c.wait_for_log(rf"Actor b \(pid {b}\) died")
    os.kill(before["x"], signal.SIGKILL)  # inner's second failure: 1 s of backoff too
    marker = f"Actor x (pid {before['x']}) died"
    c.wait_for_log(re.escape(marker))
    wait_changed(c, {"x": before["x"], "b": b}, {"x", "b"})
    time.sleep(0.3)
    assert events(c.log(), marker) == [("x", "started"), ("b", "started")], c.log()
    assert c.stop() == 0


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_a_restart_stops_at_a_child_that_fails_to_start(cluster, tmp_path, strategy):
    """OTP starts the children after a failed one only once it started: "b" (after "a",
    which fails in on_start) is not started while "a" fails, then comes back with it."""
    flag = tmp_path / "flag"
    c = cluster(tree_file(tmp_path, f"""
        [supervisor]
        strategy = "{strategy}"
        max_restarts = 10
        backoff = {{ initial = 0.2, max = 0.2 }}
        """ + ACTORS.format(name="a", cls="Flaky", extra="")
        + ACTORS.format(name="b", cls="Member", extra="")), env={"AC_TREE_FLAG": str(flag)})
    before = pids(c, "a", "b")
    flag.touch()
    with actorcluster.connect(c.name) as client, ThreadPoolExecutor(1) as pool:
        os.kill(before["a"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        asked = None
        while (failed := c.log().count("Actor a failed in on_start")) < 2:
            if failed == 1 and asked is None:  # "a" waits 0.2 s before its next start
                # an ask to "b" then is held, as in any restart, and is answered once "b"
                # is back: the next failed start of "a" does not drop it
                asked = pool.submit(client.ask, "b", "pid", timeout=10)
            assert time.monotonic() < deadline, c.log()
            time.sleep(0.01)
        assert status(c)["b"]["state"] == "down"
        flag.unlink()
        after = wait_changed(c, before, {"a", "b"})
        assert asked is not None and asked.result() == after["b"]
    started = events(c.log(), "died (signal SIGKILL), restarting")
    assert started.count(("b", "started")) == 1, started  # once, after "a" started
    assert started[-2:] == [("a", "started"), ("b", "started")], started
    assert c.stop() == 0


def test_a_nested_supervisor_that_gives_up_escalates_to_its_parent(cluster, tmp_path):
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        strategy = "one_for_one"

        [[supervisor.children]]
        name = "a"
        actor = "ac_tree:Member"

        [[supervisor.children]]
        name = "inner"
        strategy = "one_for_one"
        max_restarts = 1
        within = 30
        backoff = false
        children = [ { name = "x", actor = "ac_tree:Member" } ]
        """))
    a = pids(c, "a")["a"]
    x1 = pids(c, "x")["x"]
    os.kill(x1, signal.SIGKILL)
    x2 = wait_changed(c, {"x": x1}, {"x"})["x"]  # inner restarts x: 1 restart, allowed
    assert status(c)["inner"]["restarts"] == 0
    os.kill(x2, signal.SIGKILL)  # the 2nd within 30 s: inner gives up, root restarts inner
    x3 = wait_changed(c, {"x": x2}, {"x"})["x"]
    log = c.wait_for_log(r"Supervisor inner died \(supervisor 'inner' gave up[^\n]*restarting")[0]
    assert "after 1 restart within 30 s: child 'x' died again (signal SIGKILL)" in log
    nodes = status(c)
    assert nodes["inner"]["restarts"] == 1 and nodes["inner"]["state"] == "ready"
    assert nodes["x"]["pid"] == x3 and nodes["a"]["pid"] == a  # the sibling never stopped
    assert c.stop() == 0


def test_the_root_giving_up_stops_the_cluster_with_the_chain_of_failures(cluster, tmp_path):
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        max_restarts = 0

        [[supervisor.children]]
        name = "inner"
        max_restarts = 0
        children = [ { name = "x", actor = "ac_tree:Member" } ]
        """))
    os.kill(pids(c, "x")["x"], signal.SIGKILL)
    assert c.wait(15) == 1
    lines = [line for line in c.log().splitlines() if "supervisor 'root' gave up" in line]
    assert len(lines) == 1, c.log()
    assert lines[0].endswith(
        "supervisor 'root' gave up (max_restarts is 0): child 'inner' died (supervisor 'inner' "
        "gave up (max_restarts is 0): child 'x' died (signal SIGKILL))"), c.log()


def test_transient_and_temporary_children(cluster, tmp_path):
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        """ + ACTORS.format(name="trans", cls="Member", extra='restart = "transient"')
        + ACTORS.format(name="temp", cls="Member", extra='restart = "temporary"')
        + ACTORS.format(name="trans2", cls="Member", extra='restart = "transient"')))
    before = pids(c, "trans", "temp", "trans2")
    with actorcluster.connect(c.name) as client:
        assert client.ask("trans", "exit") is None  # sys.exit(0): a normal exit
    # a normal exit is what a transient child may do: INFO, no warning
    c.wait_for_log(r"\[INFO\] Actor trans \(pid \d+\) exited normally, not restarting "
                   r"\(transient\)")
    assert "Actor trans (" not in "".join(
        line for line in c.log().splitlines() if "[WARNING]" in line), c.log()
    os.kill(before["trans2"], signal.SIGKILL)  # abnormal: a transient child is restarted
    wait_changed(c, {"trans2": before["trans2"]}, {"trans2"})
    os.kill(before["temp"], signal.SIGKILL)  # a temporary child never is, and is dropped
    c.wait_for_log(r"\[WARNING\] Actor temp \(pid \d+\) died \(signal SIGKILL\), not "
                   r"restarting \(temporary\)")
    nodes = status(c)
    assert nodes["trans"]["state"] == "down" and nodes["trans"]["pid"] is None
    assert "temp" not in nodes
    assert c.stop() == 0


def test_shutdown_is_in_reverse_order_and_kills_a_child_that_ignores_sigterm(cluster, tmp_path):
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        """ + ACTORS.format(name="first", cls="Member", extra="")
        + ACTORS.format(name="stubborn", cls="Stubborn", extra="shutdown = 0.5")
        + ACTORS.format(name="brutal", cls="Member", extra='shutdown = "brutal_kill"')
        + ACTORS.format(name="last", cls="Member", extra="")))
    c.signal(signal.SIGTERM)
    start = time.monotonic()
    assert c.wait(15) == 0
    assert time.monotonic() - start >= 0.5
    log = c.log()
    assert events(log, "got SIGTERM") == [("last", "stopped"), ("brutal", "stopped"),
                                          ("stubborn", "stopped"), ("first", "stopped")]
    assert re.search(r"Actor stubborn \(pid \d+\) did not stop within 0.5 s; killing it", log)
    assert re.search(r"Actor stubborn \(pid \d+\) stopped \(signal SIGKILL\)", log), log
    assert re.search(r"Actor brutal \(pid \d+\) stopped \(signal SIGKILL\)", log), log
    assert re.search(r"Actor last \(pid \d+\) stopped \(exit code 0\)", log), log


def cli(c, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actorcluster", *args, "--name", c.name],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_dynamic_children_from_the_command_line(cluster, tmp_path):
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        """ + ACTORS.format(name="a", cls="Member", extra="")
        + """
        [[supervisor.children]]
        name = "inner"
        children = []
        """))
    spec = json.dumps({"name": "d", "actor": "ac_tree:Member", "restart": "transient"})
    started = cli(c, "start-child", "inner", spec)
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    with actorcluster.connect(c.name) as client:
        assert client.ask("d", "pid") == pid  # the new child is addressable by name
    listed = cli(c, "which-children", "inner", "--json")
    assert [(ch["name"], ch["pid"], ch["restart"]) for ch in json.loads(listed.stdout)] == [
        ("d", pid, "transient")]
    assert json.loads(cli(c, "count-children", "inner").stdout) == {
        "specs": 1, "active": 1, "supervisors": 0, "workers": 1}
    assert cli(c, "terminate-child", "inner", "d").returncode == 0
    assert status(c)["d"]["state"] == "down"
    restarted = cli(c, "restart_child", "inner", "d")  # OTP's spelling works too
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["pid"] not in (None, pid)
    busy = cli(c, "delete-child", "inner", "d")
    assert busy.returncode != 0 and "is running; terminate_child it first" in busy.stderr
    assert cli(c, "terminate-child", "inner", "d").returncode == 0
    assert cli(c, "delete-child", "inner", "d").returncode == 0
    assert "d" not in status(c)
    dup = cli(c, "start-child", "root", json.dumps({"name": "a", "actor": "ac_tree:Member"}))
    assert dup.returncode != 0 and "'a' is already used" in dup.stderr
    missing = cli(c, "start-child", "nosuch", spec)
    assert missing.returncode != 0 and "no supervisor named 'nosuch'" in missing.stderr
    leaf = cli(c, "which-children", "a")
    assert leaf.returncode != 0 and "'a' is an actor, not a supervisor" in leaf.stderr
    bad = cli(c, "start-child", "root", json.dumps({"name": "e", "actor": "nosuch_mod:X"}))
    assert bad.returncode != 0 and "failed to start" in bad.stderr
    assert "no module named 'nosuch_mod'" in bad.stderr
    assert "e" not in status(c)
    assert "Actor e failed to boot: " in c.log()  # named once ("Actor e e" before)
    half = cli(c, "start-child", "root", json.dumps({"name": "s", "children": [
        {"name": "ok", "actor": "ac_tree:Member"}, {"name": "e", "actor": "ac_tree:Nope"}]}))
    assert half.returncode != 0 and "(e: exit code 3: boot error" in half.stderr, half.stderr
    assert "ok:" not in half.stderr  # stopped because its sibling failed: not a reason
    assert "s" not in status(c) and "ok" not in status(c)
    not_json = cli(c, "start-child", "root", "{name: e}")
    assert not_json.returncode == 2 and "Invalid value for SPEC: not JSON" in not_json.stderr
    assert c.stop() == 0


def test_a_supervisor_out_of_shutdown_time_leaves_its_whole_subtree_down(cluster, tmp_path):
    """x (shutdown 1 s) over y over a child ignoring SIGTERM: after the kill, y is down too,
    not left "stopping"; restarting x brings the whole subtree back."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        [[supervisor.children]]
        name = "x"
        shutdown = 1
        children = [ { name = "y", children = [
          { name = "s", actor = "ac_tree:Stubborn", shutdown = 5 } ] } ]
        """))
    start = time.monotonic()
    assert cli(c, "terminate-child", "root", "x").returncode == 0
    assert time.monotonic() - start < 4
    nodes = status(c)
    assert [nodes[n]["state"] for n in ("x", "y", "s")] == ["down"] * 3, nodes
    assert re.search(r"Actor s \(pid \d+\) stopped \(signal SIGKILL\)", c.log())
    assert cli(c, "restart-child", "root", "x").returncode == 0
    assert [status(c)[n]["state"] for n in ("x", "y", "s")] == ["ready"] * 3
    assert c.stop() == 0


def test_terminating_a_stopped_child_does_not_swallow_a_later_crash(cluster, tmp_path):
    """t (transient) ended normally, then terminate_child t: a sibling's crash restarts both
    (one_for_all), and a later kill -9 of t is a failure that restarts them again."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        strategy = "one_for_all"
        """ + ACTORS.format(name="a", cls="Member", extra="")
        + ACTORS.format(name="t", cls="Member", extra='restart = "transient"')))
    with actorcluster.connect(c.name) as client:
        client.tell("t", "exit")
    c.wait_for_log(r"Actor t \(pid \d+\) exited normally, not restarting \(transient\)")
    assert cli(c, "terminate-child", "root", "t").returncode == 0
    before = pids(c, "a", "t")
    os.kill(before["a"], signal.SIGKILL)
    before = wait_changed(c, before, {"a", "t"})
    os.kill(before["t"], signal.SIGKILL)
    wait_changed(c, before, {"a", "t"})
    assert "not restarting (transient)" not in c.log().split("died (signal SIGKILL)", 1)[1]
    assert c.stop() == 0


def test_a_failed_restart_child_leaves_the_child_down_and_the_cluster_up(cluster, tmp_path):
    """OTP: restart_child that fails returns the error; the child stays terminated and its
    supervisor neither restarts it nor counts it (max_restarts 0 here: a count would stop
    the cluster)."""
    flag = tmp_path / "flag"
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        max_restarts = 0
        """ + ACTORS.format(name="a", cls="Flaky", extra="")
        + ACTORS.format(name="b", cls="Member", extra="")), env={"AC_TREE_FLAG": str(flag)})
    assert cli(c, "terminate-child", "root", "a").returncode == 0
    flag.touch()
    failed = cli(c, "restart-child", "root", "a")
    assert failed.returncode != 0
    assert ("child 'a' failed to start (a: exit code 3: boot error: on_start raised "
            "RuntimeError: flagged)") in failed.stderr, failed.stderr
    # the class cannot be made: the starter hears why, not just an exit code
    bad = cli(c, "start-child", "root", json.dumps({"name": "n", "actor": "ac_tree:NeedsArgument"}))
    assert bad.returncode != 0
    assert ("child 'n' failed to start (n: exit code 3: boot error: TypeError: "
            "NeedsArgument.__init__() missing 1 required positional argument: 'size')"
            ) in bad.stderr, bad.stderr
    time.sleep(1)
    assert c.proc.poll() is None, c.log()
    nodes = status(c)
    assert (nodes["a"]["state"], nodes["b"]["state"]) == ("down", "ready")
    assert c.log().count("Actor a failed in on_start") == 1
    flag.unlink()
    assert cli(c, "restart-child", "root", "a").returncode == 0
    assert status(c)["a"]["state"] == "ready"
    assert c.stop() == 0


def test_a_supervisor_whose_child_fails_to_start_fails_to_start(cluster, tmp_path):
    """OTP: restart_child of a supervisor whose first child fails in on_start fails; the
    supervisor stops what it started (b is not started at all) and stays down: it does not
    restart its child in a loop and escalate. Restarted by its parent, it fails the same way:
    one more failure for the parent."""
    flag = tmp_path / "flag"
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        max_restarts = 1
        [[supervisor.children]]
        name = "inner"
        max_restarts = 0
        children = [ { name = "a", actor = "ac_tree:Flaky" },
                     { name = "b", actor = "ac_tree:Member" } ]
        """), env={"AC_TREE_FLAG": str(flag)})
    assert cli(c, "terminate-child", "root", "inner").returncode == 0
    flag.touch()
    failed = cli(c, "restart-child", "root", "inner")
    assert failed.returncode != 0
    assert "child 'inner' failed to start (a: exit code 3" in failed.stderr, failed.stderr
    assert "b:" not in failed.stderr
    time.sleep(1)
    assert c.proc.poll() is None, c.log()
    nodes = status(c)
    assert [nodes[n]["state"] for n in ("inner", "a", "b")] == ["down"] * 3
    assert len(re.findall(r"Actor b \(pid \d+\) started", c.log())) == 1  # at start-up only
    flag.unlink()
    assert cli(c, "restart-child", "root", "inner").returncode == 0
    assert [status(c)[n]["state"] for n in ("inner", "a", "b")] == ["ready"] * 3
    flag.touch()
    os.kill(status(c)["a"]["pid"], signal.SIGKILL)  # inner gives up; root restarts it: fails
    assert c.wait(15) == 1
    assert ("supervisor 'root' gave up after 1 restart within 10 s: child 'inner' died again "
            "(supervisor 'inner' failed to start (a: exit code 3") in c.log()


def test_a_restarted_supervisor_gets_its_spec_child_back_over_a_namesake(cluster, tmp_path):
    """b of the spec deleted, a dynamic b (another class, transient) started in its place: the
    restarted supervisor comes back with the spec's b, as OTP's init would."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        [[supervisor.children]]
        name = "inner"
        children = [ { name = "b", actor = "ac_tree:Member" } ]
        """))
    assert cli(c, "terminate-child", "inner", "b").returncode == 0
    assert cli(c, "delete-child", "inner", "b").returncode == 0
    spec = json.dumps({"name": "b", "actor": "ac_tree:Manager", "restart": "transient"})
    assert cli(c, "start-child", "inner", spec).returncode == 0
    assert cli(c, "terminate-child", "root", "inner").returncode == 0
    assert cli(c, "restart-child", "root", "inner").returncode == 0
    with actorcluster.connect(c.name) as client:
        b = flat(client.status()["tree"])["b"]
    assert (b["target"], b["restart"], b["state"]) == ("ac_tree:Member", "permanent", "ready")
    assert c.stop() == 0


def test_no_child_starts_under_a_terminated_supervisor(cluster, tmp_path):
    """OTP answers noproc: a refused start_child leaves nothing behind, and restart_child does
    not start a child whose supervisor is down (no one would restart it)."""
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        [[supervisor.children]]
        name = "inner"
        children = [ { name = "a", actor = "ac_tree:Member" } ]
        """))
    assert cli(c, "terminate-child", "root", "inner").returncode == 0
    spec = json.dumps({"name": "d", "actor": "ac_tree:Member"})
    refused = cli(c, "start-child", "inner", spec)
    assert refused.returncode != 0
    assert "supervisor 'inner' is not running" in refused.stderr, refused.stderr
    assert "d" not in status(c)  # not half-added: the name is free
    again = cli(c, "restart-child", "inner", "a")
    assert again.returncode != 0 and "supervisor 'inner' is not running" in again.stderr
    assert status(c)["a"]["state"] == "down" and status(c)["a"]["pid"] is None
    assert cli(c, "restart-child", "root", "inner").returncode == 0
    assert status(c)["a"]["state"] == "ready"
    started = cli(c, "start-child", "root", spec)  # the name was never taken
    assert started.returncode == 0, started.stderr
    assert "Traceback" not in c.log()
    assert c.stop() == 0


def test_dynamic_children_from_an_actor(cluster, tmp_path):
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        """ + ACTORS.format(name="manager", cls="Manager", extra="")))
    with actorcluster.connect(c.name) as client:
        spec = {"name": "w", "actor": "ac_tree:Member"}
        child = client.ask("manager", ("start_child", "root", spec), timeout=30)
        assert child["name"] == "w" and child["state"] == "ready"
        assert client.ask("w", "pid") == child["pid"]
        assert client.ask("manager", ("count_children", "root")) == {
            "specs": 2, "active": 2, "supervisors": 0, "workers": 2}
        os.kill(child["pid"], signal.SIGKILL)  # a dynamic child is supervised like the rest
        wait_changed(c, {"w": child["pid"]}, {"w"})
        client.ask("manager", ("terminate_child", "root", "w"), timeout=30)
        client.ask("manager", ("delete_child", "root", "w"))
        names = [ch["name"] for ch in client.ask("manager", ("which_children", "root"))]
        assert names == ["manager"]
    assert c.stop() == 0


@pytest.mark.parametrize(("text", "expected"), [
    ('[supervisor]\nstratgy = "one_for_one"\n',
     r'tree.toml:2: supervisor.stratgy: unknown key "stratgy".*did you mean "strategy"'),
    ('[supervisor]\n[[supervisor.children]]\nname = "a"\nactor = "ac_tree:Member"\n'
     'restart = "sometimes"\n',
     r'tree.toml:5: supervisor.children\[0\].restart: "sometimes" is not a restart type; '
     r"allowed: permanent, transient, temporary"),
    ('[supervisor]\nmax_restarts = -1\n', r"supervisor.max_restarts: .*-1"),
])
def test_a_bad_file_is_refused_before_anything_starts(cluster, tmp_path, text, expected):
    c = cluster(tree_file(tmp_path, text), ready=False)
    assert c.wait(15) == 2
    assert re.search(expected, c.log()), c.log()
    assert "Primary" not in c.log()  # nothing started


def test_a_target_that_does_not_import_is_named_by_its_path(cluster, tmp_path):
    c = cluster(tree_file(tmp_path, """
        [supervisor]
        [[supervisor.children]]
        name = "ok"
        actor = "ac_tree:Member"
        [[supervisor.children]]
        name = "inner"
        children = [ { name = "bad", actor = "ac_tree:handler" } ]
        """), ready=False)
    assert c.wait(15) != 0
    log = c.log()
    assert "tree.toml: supervisor.children[1].children[0].actor" in log, log
    assert "is not an Actor subclass" in log
    assert "Actor ok" not in log  # no child started


def test_tree_command_checks_and_prints_a_file(tmp_path):
    good = subprocess.run([sys.executable, "-m", "actorcluster", "tree", "--config",
                           "examples/actorcluster.toml", "--workers", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert good.returncode == 0, good.stderr
    assert "└── pipeline  supervisor rest_for_one" in good.stdout
    assert "├── web  http examples.counter:handler, 2 workers (auto)" in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[supervisor]\n[[supervisor.children]]\nname = "x"\n'
                   'actor = "examples.counter:handler"\n')
    out = subprocess.run([sys.executable, "-m", "actorcluster", "tree", "--config", str(bad)],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"{bad}: supervisor.children[0].actor" in out.stderr
    assert "is not an Actor subclass" in out.stderr


@pytest.mark.parametrize("how", ["file", "python"])
def test_the_examples_run_as_documented(cluster, how):
    target = ("--config=examples/actorcluster.toml" if how == "file"
              else "examples.tree:tree")
    c = cluster(target, "--workers", "2")
    assert httpx.get(c.url + "/").json() == {"hits": 1}
    with actorcluster.connect(c.name) as client:
        assert client.ask("source", ("emit", 3)) == 3
        deadline = time.monotonic() + 5
        while client.ask("sink", "count") != 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        tree = client.status()["tree"]
    assert [ch["name"] for ch in tree["children"]] == ["counter", "web", "pipeline"]
    assert tree["children"][2]["strategy"] == "rest_for_one"
    assert len(tree["children"][1]["children"]) == 2
    assert c.stop() == 0


@pytest.mark.parametrize("how", ["file", "python"])
def test_max_restarts_and_within_given_win_over_the_trees_root(cluster, how):
    """Options given on the command line (or in the environment) win over the file's settings:
    --max-restarts and --within set the intensity of a file's or a Python tree's root."""
    target = ("--config=examples/actorcluster.toml" if how == "file"
              else "examples.tree:tree")
    c = cluster(target, "--workers", "1", "--max-restarts", "7",
                env={"ACTORCLUSTER_WITHIN": "30"})
    with actorcluster.connect(c.name) as client:
        tree = client.status()["tree"]
    assert (tree["max_restarts"], tree["within"]) == (7, 30.0)
    assert tree["children"][2]["max_restarts"] != 7  # a nested supervisor keeps its own
    assert c.stop() == 0


def test_workers_given_win_over_a_pools_number_in_the_file(cluster, tmp_path):
    """--workers (or ACTORCLUSTER_WORKERS) given sets the pool's size over the file's
    `workers = N`, as every option wins over the file; it was ignored without a word."""
    file = tmp_path / "sized.toml"
    file.write_text('[supervisor]\n[[supervisor.children]]\nname = "web"\n'
                    'http = "examples.hello:handler"\nworkers = 2\n')
    c = cluster(f"--config={file}", "--workers", "1", "--no-standby")
    with actorcluster.connect(c.name) as client:
        pool = client.status()["tree"]["children"][0]
    assert (pool["workers"], len(pool["children"])) == (1, 1)
    assert c.stop() == 0
    shown = subprocess.run([sys.executable, "-m", "actorcluster", "tree", "--config", str(file),
                            "--workers", "3"], cwd=ROOT, capture_output=True, text=True,
                           timeout=30)
    assert "└── web  http examples.hello:handler, 3 workers," in shown.stdout, shown.stdout


def test_dynamic_children_from_a_plain_def_handler(cluster):
    c = cluster("ac_tree:sync_handler", "--workers", "1",
                "--actor", "a=ac_tree:Member")
    children = httpx.get(c.url).json()
    assert [(ch["name"], ch["type"]) for ch in children] == [("a", "actor"), ("web", "pool")]
    assert c.stop() == 0
