"""Starting and stopping as the operating system does it: signals sent to the whole process group
(`timeout`, systemd's KillMode=control-group, Ctrl-C), start-ups that fail, and races between a
failure and the children that are still starting. Each is repeated: the defects were 1 in 4 to 1
in 15 events."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from conftest import tagged_processes

pytestmark = pytest.mark.timeout(180)

# What a clean stop never logs: a restart (the zygote's or a worker's), a crash, a traceback, a
# task the loop dropped.
NOISE = ("starting a new one", "restarting", "died", "Traceback", "Task was destroyed", "ERROR",
         "WARNING")


def noise(log: str) -> list[str]:
    return [n for n in NOISE if n in log]


def assert_all_gone(tag: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


SLOW_INIT = '''
import os
import time

from actorcluster import Actor


class Handler(Actor):
    def __init__(self):
        # a worker builds its handler before it takes SIGTERM as a graceful stop: one that gets
        # it meanwhile (the standby, started once the cluster is up) dies of it
        time.sleep(0.2)

    async def handle(self, request):
        return str(os.getpid())
'''


def test_a_sigterm_to_the_whole_group_stops_as_cleanly_as_one_to_the_primary(
        cluster, tmp_path, no_process_left_behind):
    (tmp_path / "ac_slow_init.py").write_text(SLOW_INIT)
    for i in range(4):  # each of the four moments (twice cost 3 s of the suite's 5 min)
        c = cluster("ac_slow_init:Handler", "--workers", "2", new_session=True,
                    env={"PYTHONPATH": str(tmp_path)})
        # while the standby worker starts (the first 0.2 s), or once every worker is up
        time.sleep((0.0, 0.05, 0.1, 0.4)[i % 4])
        os.killpg(c.proc.pid, signal.SIGTERM)
        assert c.wait(15) == 0, c.log()
        log = c.log()
        assert not noise(log), log
        assert f"Primary {c.proc.pid} stopped" in log
        assert_all_gone(no_process_left_behind)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_to_the_whole_group_while_starting_is_a_clean_stop(
        cluster, tmp_path, no_process_left_behind, sig):
    (tmp_path / "ac_slow_init.py").write_text(SLOW_INIT)
    # From "is running" on the primary takes its signals; then the zygote's interpreter starts
    # and imports the app, then the workers build their handlers (0.2 s): a SIGTERM kills them.
    for delay in (0.0, 0.03, 0.06, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4):
        c = cluster("ac_slow_init:Handler", "--workers", "6", "--no-standby", new_session=True,
                    env={"PYTHONPATH": str(tmp_path)}, ready=False)
        c.wait_for_log(rf"Primary {c.proc.pid} is running")
        time.sleep(delay)
        os.killpg(c.proc.pid, sig)
        assert c.wait(15) == 0, c.log()
        log = c.log()
        assert not noise(log), log
        assert_all_gone(no_process_left_behind)


def dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # dead, not reaped yet
    except psutil.NoSuchProcess:
        return True


def children_named(pid: int, *names: str) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [p for p in psutil.Process(pid).children() if p.name() in names]
        if len(found) == len(names):
            return found
        time.sleep(0.01)
    raise AssertionError(f"no {names} under {pid}")


@pytest.mark.parametrize("when", ["starting", "up"])
def test_children_that_die_of_the_groups_sigterm_are_not_taken_for_crashes(
        cluster, tmp_path, no_process_left_behind, when):
    """The primary sees the exits of children killed by the same SIGTERM before its loop gets to
    the signal: it was stopped meanwhile (as a busy or descheduled primary would be)."""
    (tmp_path / "ac_slow_init.py").write_text(SLOW_INIT.replace("0.2", "2.0"))
    c = cluster("ac_slow_init:Handler", "--workers", "2", new_session=True,
                env={"PYTHONPATH": str(tmp_path)}, ready=False)
    if when == "up":
        c.wait_ready()
    # still building their handlers, so SIGTERM kills them: two workers, or the standby
    dying = children_named(c.proc.pid, *(["ac web/1", "ac web/2"] if when == "starting"
                                         else ["ac web/standby"]))
    os.kill(c.proc.pid, signal.SIGSTOP)
    try:
        os.killpg(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not all(dead(p) for p in dying) and time.monotonic() < deadline:
            time.sleep(0.005)
        # else the primary never saw these exits before the signal: nothing would be tested
        assert all(dead(p) for p in dying), c.log()
    finally:
        os.kill(c.proc.pid, signal.SIGCONT)
    assert c.wait(15) == 0, c.log()
    log = c.log()
    assert not noise(log), log
    assert_all_gone(no_process_left_behind)


def test_a_stop_while_a_new_zygote_starts_is_quiet(cluster):
    c = cluster("ac_testapp:pid", "--workers", "1", "--no-standby")
    zygote = next(p for p in psutil.Process(c.proc.pid).children() if p.name() == "ac zygote")
    zygote.kill()
    c.wait_for_log(rf"the zygote \(pid {zygote.pid}\) died \(signal SIGKILL\); starting a new one")
    c.signal(signal.SIGTERM)  # the new one is still importing the app
    assert c.wait(15) == 0
    log = c.log()
    assert "Traceback" not in log and "Task was destroyed" not in log, log


DIES_SOON = '''
import asyncio
import os


async def on_ready():
    asyncio.get_running_loop().call_later(0.1, os._exit, 1)  # up, then gone: restarts back off


async def handler(request):
    return "short-lived"
'''


def test_a_stop_while_a_restart_backs_off_is_quiet(cluster, tmp_path):
    (tmp_path / "ac_dies_soon.py").write_text(DIES_SOON)
    for deaths in (6, 7):  # the back-off is then 0.8 s, 1.6 s: far longer than the rest
        c = cluster("ac_dies_soon:handler", "--workers", "1", "--no-standby",
                    "--max-restarts", "1000", env={"PYTHONPATH": str(tmp_path)})
        c.wait_for_log(r"died \(exit code 1\), restarting", timeout=20, count=deaths)
        c.signal(signal.SIGTERM)
        assert c.wait(15) == 0
        log = c.log()
        assert "Traceback" not in log and "Task was destroyed" not in log, log


def test_a_taken_metrics_port_fails_as_fast_and_as_quietly_as_a_taken_bind_port(cluster):
    took = {}
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for option in ("--bind", "--metrics-bind"):
            t0 = time.monotonic()
            c = cluster("ac_testapp:pid", "--workers", "1", option, f"127.0.0.1:{port}",
                        ready=False)
            assert c.wait(15) == 2
            took[option] = time.monotonic() - t0
            log = c.log()
            assert "cannot listen" in log and "Address already in use" in log, log
            # the zygote (started to learn the tree) is stopped, not restarted
            assert "zygote" not in log and "Worker" not in log and "Traceback" not in log, log
    assert took["--metrics-bind"] < took["--bind"] + 1.0, took


def test_a_router_that_cannot_bind_is_a_clear_error(cluster, tmp_path):
    runtime = tmp_path / ("x" * 100)  # an ipc:// path longer than a Unix socket address allows
    runtime.mkdir(mode=0o700)
    c = cluster("ac_testapp:pid", "--workers", "1", env={"XDG_RUNTIME_DIR": str(runtime)},
                ready=False)
    assert c.wait(15) == 2
    log = c.log()
    assert "cannot bind the router at ipc://" in log, log
    assert "Traceback" not in log and "zygote" not in log, log


def test_a_zygote_that_dies_before_it_reads_its_load_is_a_clear_error(cluster):
    # `run` starts the zygote early; it reads the primary's `load` once it has imported the
    # worker runtime. Killed before (the OOM killer, say), it left that message unread: the
    # primary said "cannot start: [Errno 104] Connection reset by peer".
    c = cluster("ac_testapp:pid", "--workers", "1", ready=False)
    deadline = time.monotonic() + 5
    zygote = None
    while zygote is None and time.monotonic() < deadline:
        for child in psutil.Process(c.proc.pid).children():
            try:
                if "actorcluster.worker.zygote" in child.cmdline():
                    zygote = child
                    break
            except psutil.Error:
                pass
    assert zygote is not None, c.log()
    zygote.suspend()  # long before the primary sends `load`: it is still starting Python
    c.wait_for_log(rf"Primary {c.proc.pid} is running")
    time.sleep(0.2)  # the primary took it over and sent `load`, which it never reads
    zygote.kill()
    assert c.wait(15) == 2
    log = c.log()
    assert "the zygote exited while importing ac_testapp:pid" in log, log
    assert "Traceback" not in log and "Errno" not in log, log


BAD_READY = '''
import os

# Pages the zygote has touched make each fork's intermediate child slow to exit: the window in
# which a worker that dies is not the primary's child yet, so the primary cannot reap it.
BALLAST = os.urandom(1) * (600 * 2**20)


def on_ready():
    raise RuntimeError("on_ready fails on purpose")


async def handler(request):
    return "never"
'''


def test_on_ready_raising_stops_the_cluster_at_once_and_it_never_listens(
        cluster, tmp_path, no_process_left_behind):
    (tmp_path / "ac_bad_ready.py").write_text(BAD_READY)
    for workers in ["1"] + ["2"] * 4:  # a race: each CI run tries it four times
        t0 = time.monotonic()
        c = cluster("ac_bad_ready:handler", "--workers", workers,
                    env={"PYTHONPATH": str(tmp_path)}, ready=False)
        assert c.wait(30) == 1  # a child failed to start (docs/getting-started.md)
        took = time.monotonic() - t0
        log = c.log()
        assert "on_ready fails on purpose" in log and "failed to boot" in log, log
        assert "Listening at" not in log, log
        assert took < 3.0, f"{workers} workers: stopped after {took:.1f} s\n{log}"
        assert_all_gone(no_process_left_behind)


SLOW_READY = '''
import time


def on_ready():
    print("warming up", flush=True)
    time.sleep(1.0)


async def handler(request):
    return "ready"
'''


def test_sighup_while_starting_is_refused_and_the_start_goes_on(cluster, tmp_path):
    (tmp_path / "ac_slow_ready.py").write_text(SLOW_READY)
    c = cluster("ac_slow_ready:handler", "--workers", "1", env={"PYTHONPATH": str(tmp_path)},
                ready=False)
    c.wait_for_log("warming up")
    c.signal(signal.SIGHUP)
    c.wait_for_log("got SIGHUP while the cluster is starting; ignored")
    c.wait_ready()
    assert httpx.get(c.url).text == "ready"
    assert c.stop() == 0


SLOW_IMPORT = '''
import time

time.sleep(1.5)  # the zygote imports this while the router already answers


def handler(request):
    return "ok"
'''


def slow_importing(cluster, tmp_path):
    """A cluster whose app takes 1.5 s to import, not waited for."""
    (tmp_path / "ac_slow_import.py").write_text(SLOW_IMPORT)
    c = cluster("ac_slow_import:handler", "--workers", "1", ready=False,
                env={"PYTHONPATH": str(tmp_path)})
    c.wait_for_log("Primary \\d+ is running")
    return c


def cli_while_importing(c, *args: str) -> subprocess.CompletedProcess:
    """`actorcluster ARGS --name c.name` as soon as it succeeds (the run directory is there a
    moment before the router binds): the completed process, asserted successful."""
    deadline = time.monotonic() + 10
    while True:
        out = subprocess.run([sys.executable, "-m", "actorcluster", *args, "--name", c.name],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert out.returncode == 0, out.stderr
    return out


def test_status_while_the_app_is_still_importing_says_starting(cluster, tmp_path):
    c = slow_importing(cluster, tmp_path)
    out = cli_while_importing(c, "status", "--json")
    status = json.loads(out.stdout)
    assert status["tree"]["state"] == "starting" and status["tree"]["children"] == []
    table = subprocess.run([sys.executable, "-m", "actorcluster", "status", "--name", c.name],
                           capture_output=True, text=True, timeout=30)
    assert table.returncode == 0 and "starting" in table.stdout, (table.stdout, table.stderr)
    # no name is known yet: the error says why, not a bare "no such actor" for web/1
    ask = subprocess.run([sys.executable, "-m", "actorcluster", "ask", "web/1", "1", "--name",
                          c.name], capture_output=True, text=True, timeout=30)
    assert ask.returncode == 1 and ask.stderr.startswith("Error: ActorNotFound: "), ask.stderr
    assert "the cluster is starting (its app is still importing)" in ask.stderr, ask.stderr
    c.wait_ready()
    assert httpx.get(c.url).text == "ok"
    assert c.stop() == 0
    assert "ERROR" not in c.log(), c.log()  # the clients' goodbyes reached no supervisor


def test_stop_while_the_app_is_still_importing_stops_like_sigterm(cluster, tmp_path):
    c = slow_importing(cluster, tmp_path)
    cli_while_importing(c, "stop")
    assert c.wait(15) == 0
    log = c.log()
    assert "Listening at" not in log and "Worker" not in log and "ERROR" not in log, log


def test_a_stop_during_an_async_on_start_does_not_wait_for_it(cluster):
    # the process took SIGTERM for a graceful stop but went on awaiting on_start (30 s here):
    # the stop waited the actor's shutdown time (5 s), then SIGKILL; and on_stop ran for an
    # actor whose on_start had not returned
    c = cluster("ac_actors:WebActor", "--workers", "1", "--actor",
                "slow=ac_actors:SlowAsyncStart", env={"AC_SLOW_START": "30"}, ready=False)
    c.wait_for_log(r"Primary \d+ is running")
    time.sleep(0.5)  # the actor's process is in its on_start (the pool starts after it)
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    assert c.wait(15) == 0
    assert time.monotonic() - t0 < 2.5, c.log()
    assert "SIGKILL" not in c.log() and "on_stop of" not in c.log(), c.log()


@pytest.mark.timeout(30)
def test_hundreds_of_spawns_asked_at_once_do_not_lock_the_primary_and_the_zygote():
    """A pool asks the zygote for every worker before the primary's loop reads a reply (and a
    scale up too). The zygote answers each spawn at once, waiting while its answers are not
    read: with the spawn channel full both ways, the primary waited for ever in its send (with
    the default buffers, past a few hundred workers: SIGTERM did not stop it). The zygote here
    is a thread that answers as the real one does, over a real socketpair with small buffers,
    so a few dozen spawns fill it."""
    import asyncio
    import threading

    from actorcluster.primary.spawner import Spawner
    from actorcluster.wire import SPAWNER_MAX, decode_control, encode_control

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (ours, theirs):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    def zygote() -> None:
        try:
            while True:
                data, fds, _flags, _addr = socket.recv_fds(theirs, SPAWNER_MAX, 4)
                if not data:
                    return
                for fd in fds:
                    os.close(fd)
                spec = decode_control(data)["spec"]
                theirs.send(encode_control("spawned", id=spec["id"], pid=1000 + spec["n"]))
        except OSError:
            return

    thread = threading.Thread(target=zygote, daemon=True)
    thread.start()
    loop = asyncio.new_event_loop()
    spawned: list[tuple[str, int]] = []
    spawner = Spawner(loop, lambda id_, pid: spawned.append((id_, pid)),
                      lambda id_, error: pytest.fail(error))
    ours.setblocking(False)
    spawner._sock = ours
    loop.add_reader(ours.fileno(), spawner._on_readable, ours)
    count = 300

    async def ask_all_at_once() -> None:
        with open(os.devnull) as handoff:
            for n in range(count):
                spawner.spawn({"id": f"web/{n + 1}#1", "n": n}, handoff.fileno())
        while len(spawned) < count:
            await asyncio.sleep(0.01)

    try:
        loop.run_until_complete(asyncio.wait_for(ask_all_at_once(), 10))
    finally:
        loop.remove_reader(ours.fileno())
        loop.close()
        ours.close()
        thread.join(5)
        theirs.close()
    # every answer, once, in the order the spawns were asked
    assert spawned == [(f"web/{n + 1}#1", 1000 + n) for n in range(count)]


def _claim_in_a_child(name: str, go: tuple[int, int], done: tuple[int, int],
                      tried: tuple[int, int]) -> int:
    """Fork a process that claims ``name`` once the pipe ``go`` is closed, writes a byte to
    ``tried`` once its claim returned or failed, and holds the name until ``done`` is closed;
    it exits 0 if it got the name, 1 on ClusterExists, 2 on anything else."""
    from actorcluster import rundir
    from actorcluster.errors import ClusterExists

    pid = os.fork()
    if pid:
        return pid
    code = 2
    try:
        os.close(go[1]), os.close(done[1])  # only the test's copies: their close is the signal
        rundir.release(rundir.claim(f"{name}-{os.getpid()}", os.getpid()))  # warm: no page
        os.read(go[0], 1)  # faults after the fork to keep one child behind the other
        try:
            rundir.claim(name, os.getpid())
            code = 0
        except ClusterExists:
            code = 1
        finally:
            os.write(tried[1], b".")
        os.read(done[0], 1)
    finally:
        os._exit(code)


def test_primaries_claiming_one_name_at_the_same_instant_get_it_once(tmp_path, monkeypatch):
    # Each used to see no live primary, write its pid and bind the router (ZeroMQ's ipc bind
    # replaces the file): several live clusters under one name, 27 times in 30 for two.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    tmp_path.chmod(0o700)
    go, done, tried = os.pipe(), os.pipe(), os.pipe()
    names = [f"race{n}" for n in range(4)]
    pids = {_claim_in_a_child(name, go, done, tried): name for name in names for _ in range(4)}
    os.close(go[1])  # all start at once
    # every claim has returned (the losers' after their retries) before the winners let go: a
    # fixed wait let a child that had not tried yet on a loaded machine win a released name
    reported, deadline = 0, time.monotonic() + 10
    while reported < len(pids):
        wait = max(0.0, deadline - time.monotonic())
        assert select.select([tried[0]], [], [], wait)[0], f"{reported} claims of 16 returned"
        reported += len(os.read(tried[0], 64))
    os.close(done[1])
    won = {name: 0 for name in names}
    for pid, name in pids.items():
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        assert code in (0, 1), f"a claim of {name} failed otherwise (exit code {code})"
        won[name] += code == 0
    os.close(go[0]), os.close(done[0]), os.close(tried[0]), os.close(tried[1])
    assert won == {name: 1 for name in names}, f"primaries that got each name: {won}"


def test_a_dead_primarys_pid_taken_by_another_process_does_not_keep_the_name(
        tmp_path, monkeypatch):
    # kill -9 leaves the run directory; the pid in it may be reused by any process by the next
    # start, which used to be refused ("already running") and `status` to hang on it
    from actorcluster import rundir

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    tmp_path.chmod(0o700)
    stale = rundir.cluster_dir("reused")
    stale.mkdir(mode=0o700)
    (stale / "pid").write_text(f"{os.getppid()}\n")  # alive, and not a primary
    (stale / "router").write_text("")
    assert rundir.running() == {}
    directory = rundir.claim("reused", os.getpid())
    try:
        assert sorted(p.name for p in directory.iterdir()) == ["pid"]
        assert rundir.running() == {"reused": os.getpid()}
    finally:
        rundir.release(directory)
    assert rundir.running() == {} and not directory.exists()
