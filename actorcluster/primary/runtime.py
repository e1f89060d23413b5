"""The primary: the root supervisor's process, and its main loop.

    start:  claim the run directory, bind the listening socket, start the zygote (imports the app),
            bind the router, start the workers, wait until they are ready, open the gateway
    loop:   wait for a signal -> handle it; every heartbeat interval -> supervisor.tick()
    stop:   close the gateway, stop the workers (SIGTERM, graceful timeout, SIGKILL), stop the
            zygote, remove the run directory

Child exits are seen at once through a pidfd per child (reaping is what restarts workers
quickly; uvloop reserves SIGCHLD for itself); signals are queued and handled by the loop, as in
gunicorn's arbiter. SIGTERM and SIGINT also mark the cluster as stopping at once, before the loop
handles anything else: sent to the whole process group (`timeout`, systemd), they reach the
workers too, whose exits must not look like crashes to restart.

Whatever can fail at start-up is bound or opened before any worker starts (the router before
even the zygote; the listening socket and the metrics port need the tree the zygote imports);
once the cluster is stopping, for whatever reason, nothing is started or restarted, the zygote
included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import reprlib
import signal
import socket
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import zmq

from .. import logs, rundir, specs
from ..config import Bind, ClusterConfig, parse_bind
from ..config_file import check_tree, child_from_mapping, tree_from_mapping
from ..errors import ActorClusterError, ActorError, ClusterError, ConfigError, TargetImportError
from ..loops import new_loop
from ..messenger import MAX_TIMEOUT
from ..oslink import become_subreaper
from ..supervision import ExitReason
from .gateway import Gateway
from .rolling import Rolling
from .router import Router
from .spawner import Spawner
from .supervisor import SupervisionTree, SupervisorError

log = logging.getLogger("actorcluster.primary")

EXIT_OK = 0
EXIT_GAVE_UP = 1
EXIT_START_FAILED = 2
EXIT_FORCED = 130
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
OPERATIONS = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
REQUESTS = ("members", "start_child", "terminate_child", "restart_child", "delete_child",
            "which_children", "count_children", "reload", "scale", "stop")
CHILD_OPS = ("terminate_child", "restart_child", "delete_child")  # a supervisor and a child name
_REQUIRED = object()


def _number(request: dict[str, Any], key: str, default: Any, *, integer: bool,
            minimum: float, above: bool = False) -> Any:
    """A numeric field of a request to the primary, or ActorError saying which and why
    (messages.md, rule 3): never a KeyError, nor 1.5 workers read as 1 or true as 1."""
    value = request.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ActorError(f'{request["op"]} needs "{key}", e.g. {{"op": "{request["op"]}", '
                             f'"pool": "web", "{key}": 4}}')
        return default
    kind = (int,) if integer else (int, float)
    if (isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
            and (value > minimum if above else value >= minimum) and value <= MAX_TIMEOUT):
        return value
    what = "a whole number" if integer else "a number of seconds"
    raise ActorError(f'{request["op"]}: "{key}" must be {what} '
                     f'{"above" if above else "at least"} {minimum:g}, not {json.dumps(value)}')
SUPERVISOR_OPS = ("start_child", "which_children", "count_children")  # a supervisor's name


def listen(bind: Bind, backlog: int = 2048) -> socket.socket:
    """Bind the listening socket; it belongs to the primary for the cluster's whole life."""
    try:
        if bind.path is not None:
            _clear_stale_socket(Path(bind.path))
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(bind.path)
        else:
            family = socket.AF_INET6 if ":" in (bind.host or "") else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Every accepted connection inherits it (Linux): no Nagle delay on responses, and
            # the workers need not set it once per connection.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
            sock.bind((bind.host, bind.port))
        sock.listen(backlog)
    except OSError as exc:
        raise ClusterError(f"cannot listen on {bind.url}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


def _clear_stale_socket(path: Path) -> None:
    """Remove a Unix socket file that nobody listens on (a primary killed with -9 leaves it).
    One somebody answers on is taken, as a port is, and any other file is not ours to delete:
    bind then fails with "Address already in use"."""
    if not path.is_socket():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)  # a full backlog: somebody listens
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
        except OSError:
            pass


class Primary:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.pid = os.getpid()
        self._signals: asyncio.Queue[int] = asyncio.Queue()
        self._exit_code: int | None = None
        self._exit_message = ""
        self._stopped: asyncio.Event | None = None
        self._zygote_died_at = float("-inf")
        self._stopping = False  # from now on nothing is started or restarted
        self._stop_asked = False  # by `actorcluster stop` (no signal): for the log line
        self._zygote_restart: asyncio.Task[None] | None = None
        self._socket_file: Path | None = None  # the Unix socket file we bound, removed at exit
        self._listen_url = config.listen.url  # with the port the kernel chose for port 0

    def run(self) -> int:
        """Run the cluster until it is stopped; return the process exit code."""
        logs.setup(self.config.log_level)
        # A SIGCHLD the parent left ignored (inherited through exec) makes the kernel reap our
        # children itself: waitpid would fail and no exit status would ever be seen.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        become_subreaper()
        try:
            directory = rundir.claim(self.config.name, self.pid)
        except ActorClusterError as exc:
            log.error("%s", exc)
            return EXIT_START_FAILED
        loop = new_loop(self.config.loop)
        self.loop = loop
        # Plain handlers, not the loop's: they run before the loop handles anything else.
        previous = {sig: signal.signal(sig, self._on_stop_signal) for sig in STOP_SIGNALS}
        try:
            return loop.run_until_complete(self._main(loop, directory))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            loop.close()
            rundir.release(directory)
            if self._socket_file is not None:
                self._socket_file.unlink(missing_ok=True)

    async def _main(self, loop: asyncio.AbstractEventLoop, directory: Path) -> int:
        self._stopped = asyncio.Event()
        for sig in (signal.SIGQUIT, *OPERATIONS):
            loop.add_signal_handler(sig, self._signals.put_nowait, sig)
        log.info("Primary %d is running", self.pid)  # and takes every signal it handles
        self.spawner = Spawner(loop, self._on_spawned, self._on_spawn_error)
        code = EXIT_START_FAILED
        try:
            endpoint = f"ipc://{directory}/router"
            try:
                self.router = Router(loop, endpoint, self._on_system, self._on_request,
                                     self.config.hold_messages, self.config.hold_seconds,
                                     reads_path=str(directory / "reads"))
            except zmq.ZMQError as exc:
                raise ClusterError(f"cannot bind the router at {endpoint}: {exc}") from None
            tree = await self._load_tree()
            self._watch(self.spawner.pid)
            has_pool = any(isinstance(node, specs.Pool) for _path, node in tree.walk())
            listener = listen(self.config.listen) if has_pool else None
            if listener is not None and self.config.listen.path is not None:
                self._socket_file = Path(self.config.listen.path)
            elif listener is not None and self.config.listen.port == 0:
                # `--bind HOST:0`: the log and `status` say the port clients can reach, as
                # gunicorn and uvicorn do, not ":0"
                port = listener.getsockname()[1]
                self._listen_url = replace(self.config.listen, port=port).url
            self.gateway = Gateway(loop, listener)
            self.supervisor = SupervisionTree(
                loop, self.config, tree, self.spawner, self.router, self.gateway, self.halt
            )
            if self._stopping:  # SIGTERM while the zygote was importing: start nothing
                self._begin_stop()
            self.rolling = Rolling(self.supervisor, self._new_zygote)
            if self.config.metrics_bind is not None:  # before any worker: a taken port stops us
                from .metrics import Metrics  # prometheus_client: only for who asked for it

                where = parse_bind(self.config.metrics_bind)
                self.metrics = Metrics(self.supervisor, self.router, self.config.name)
                self.metrics.serve(str(where.host), int(where.port or 0))
            code = await self._serve(loop)
        except ActorClusterError as exc:
            log.error("%s", exc)
        except OSError as exc:
            log.error("cannot start: %s", exc)
        finally:
            await self._shutdown(loop)
        if self._exit_code is not None:
            code = self._exit_code
        log.info("Primary %d stopped", self.pid)
        return code

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> int:
        starting = loop.create_task(self.supervisor.start_all())
        signals = loop.create_task(self._signals.get())
        try:
            signals = await self._start_up(loop, starting, signals)
            while self._exit_code is None:
                sig = await signals
                signals = loop.create_task(self._signals.get())
                if sig in STOP_SIGNALS:
                    signals = await self._graceful(loop, sig, signals)
                elif sig == signal.SIGQUIT:
                    self.halt(EXIT_FORCED, f"Primary {self.pid} got SIGQUIT: stopping at once")
                elif sig in OPERATIONS:
                    self._operate(sig)
            return self._exit_code
        finally:
            starting.cancel()
            signals.cancel()

    async def _start_up(self, loop: asyncio.AbstractEventLoop, starting: asyncio.Task[None],
                        signals: asyncio.Task[int]) -> asyncio.Task[int]:
        """Every child up, unless a stop, a give-up or the deadline comes first; then the
        gateway opens. Returns the task that waits for the next signal."""
        deadline = loop.time() + self.config.timeout
        self._tick(loop)
        try:
            while not starting.done():
                await asyncio.wait({starting, signals},
                                   timeout=max(0.0, deadline - loop.time()),
                                   return_when=asyncio.FIRST_COMPLETED)
                if signals.done() and signals.result() in OPERATIONS:
                    self._operate(signals.result())  # refused while starting, with the reason
                    signals = loop.create_task(self._signals.get())
                elif (self._exit_code is not None or self._stopping or signals.done()
                      or loop.time() >= deadline):
                    starting.cancel()
                    break
        except BaseException:
            signals.cancel()
            raise
        if starting.done() and not starting.cancelled():
            starting.result()  # start_all's own failure is the start's
        # Up only if nothing stopped the start: a child that failed to boot ends start_all too.
        if self._exit_code is None and not self._stopping and not signals.done():
            if not self.supervisor.started:
                signals.cancel()
                raise ClusterError(f"workers not ready within --timeout {self.config.timeout} s")
            self.gateway.start()
            pool = self.supervisor.pool
            if pool is not None:
                log.info("Listening at %s (%d worker%s)", self._listen_url,
                         len(pool.members), "" if len(pool.members) == 1 else "s")
            else:
                log.info("Cluster %s is up (no HTTP pool: nothing listens)", self.config.name)
        return signals

    async def _graceful(self, loop: asyncio.AbstractEventLoop, sig: int,
                        signals: asyncio.Task[int]) -> asyncio.Task[int]:
        """SIGTERM, SIGINT or `actorcluster stop`: the graceful stop; a second SIGINT (or a
        SIGQUIT) meanwhile hurries it. Returns the task that waits for the next signal."""
        # only a second SIGINT (or a SIGQUIT) hurries the stop: a second SIGTERM does not
        hint = " (Ctrl-C again to stop at once)" if sig == signal.SIGINT else ""
        if sig == signal.SIGTERM and self._stop_asked:
            log.info("Primary %d was asked to stop (actorcluster stop): stopping gracefully",
                     self.pid)
        else:
            log.info("Primary %d got %s: stopping gracefully%s", self.pid,
                     signal.Signals(sig).name, hint)
        self._begin_stop()  # `actorcluster stop` comes this way, not through a signal handler
        self._exit_code = EXIT_OK
        graceful = loop.create_task(self._graceful_stop())
        while not graceful.done():
            done, _ = await asyncio.wait({graceful, signals}, return_when=asyncio.FIRST_COMPLETED)
            if signals not in done:
                break
            again = signals.result()
            signals = loop.create_task(self._signals.get())
            # Only a second Ctrl-C (or SIGQUIT) hurries: a repeated SIGTERM, as `timeout`
            # or a process manager may send, lets the graceful stop finish.
            if again in (signal.SIGINT, signal.SIGQUIT):
                log.warning("Primary %d stopping at once", self.pid)
                self._exit_code = EXIT_FORCED
                self.supervisor.kill_all()
                await graceful
        return signals

    def _operate(self, sig: int) -> None:
        """SIGHUP: reload every child; SIGTTIN / SIGTTOU: one more / one fewer HTTP worker (as
        gunicorn). Runs in the background; the outcome goes to the log."""
        name = signal.Signals(sig).name
        if not self.supervisor.started:
            log.warning("got %s while the cluster is starting; ignored", name)
            return
        if sig == signal.SIGHUP:
            log.info("Primary %d got SIGHUP: reloading every child", self.pid)
            work = self.rolling.reload(None, 1, self.config.timeout)
        else:
            pool = self.supervisor.pool
            if pool is None:
                log.warning("got %s, but there is no HTTP pool to scale", name)
                return
            has = self.rolling.wanted or len(pool.members)
            workers = has + (1 if sig == signal.SIGTTIN else -1)
            if not 1 <= workers <= specs.MAX_WORKERS:  # what scale would refuse: one line
                log.warning("got %s, but pool %s keeps from 1 to %d workers and has %d; "
                            "ignored", name, pool.name, specs.MAX_WORKERS, has)
                return
            try:
                work = self.rolling.scale(pool.name, workers, self.config.timeout)
            except SupervisorError as exc:  # the cluster began to stop
                log.warning("got %s, but %s; ignored", name, exc)
                return
            log.info("Primary %d got %s: scaling %s to %d worker%s", self.pid, name, pool.name,
                     workers, "" if workers == 1 else "s")
        task = self.loop.create_task(work)
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None or log.error(
            "%s failed: %s", name, t.exception()))

    async def _new_zygote(self) -> None:
        """A reload's zygote, next to the current one (see Spawner.prepare)."""
        await self.spawner.prepare(self._targets(), self.config.log_level, self.config.timeout)
        self._watch(self.spawner.fresh_pid)
        log.info("zygote %s started with the code on disk; it replaces zygote %s if the "
                 "reload succeeds", self.spawner.fresh_pid, self.spawner.pid)

    def _on_stop_signal(self, sig: int, _frame: FrameType | None) -> None:
        """SIGTERM or SIGINT. A plain signal handler runs before the loop runs any callback, so
        the cluster is stopping before the primary sees a child exit that the same signal caused
        (sent to the whole process group, it reaches every worker): such an exit is not a crash
        to restart. The stop itself is the loop's to run."""
        self._begin_stop()
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._signals.put_nowait, sig)

    def _begin_stop(self) -> None:
        """From now on nothing is started or restarted: neither a child nor the zygote."""
        self._stopping = True
        supervisor = getattr(self, "supervisor", None)
        if supervisor is not None:
            supervisor.stopping = True

    def halt(self, code: int, message: str) -> None:
        """Stop the cluster and exit with ``code``: the supervisor gave up, or a boot failed."""
        if self._exit_code is None:
            log.error("%s", message)
            self._begin_stop()
            self._exit_code = code
            self._signals.put_nowait(0)  # wake the loop
            self.supervisor.kill_all()

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._exit_code is None:
            self._reap()  # a safety net; pidfds report exits at once
            self.supervisor.tick()
            self.router.tick()
            loop.call_later(self.supervisor.heartbeat, self._tick, loop)

    async def _graceful_stop(self) -> None:
        self.gateway.close()
        await self.supervisor.stop_all(self.config.graceful_timeout)

    async def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        self._begin_stop()  # whatever stops the cluster (a start that failed too)
        restart = self._zygote_restart
        if restart is not None and not restart.done():
            restart.cancel()  # the new zygote, if it is there, is stopped below
            await asyncio.wait({restart})
        gateway = getattr(self, "gateway", None)
        if gateway is not None and gateway.open:
            gateway.close()
        supervisor = getattr(self, "supervisor", None)
        if supervisor is not None and supervisor.live():
            await supervisor.stop_all(0 if self._exit_code else self.config.graceful_timeout)
        self.spawner.stop()
        for _ in range(100):  # wait (bounded) for the zygote to be reaped
            self._reap()  # its pidfd may not be watched yet (it failed while importing)
            if self.spawner.pid is None:
                break
            await asyncio.sleep(0.02)
        metrics = getattr(self, "metrics", None)
        if metrics is not None:
            metrics.close()
        router = getattr(self, "router", None)
        if router is not None:
            await router.drain_clients()
            router.close()

    # -- events from the kernel, the zygote and the router -------------------------------------

    def _watch(self, pid: int | None) -> None:
        """Wake the loop when ``pid`` exits (a pidfd: SIGCHLD handlers do not mix with uvloop)."""
        if pid is None:
            return
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.loop.call_soon(self._reap)
            return
        self.loop.add_reader(fd, self._on_pidfd, fd)

    def _on_pidfd(self, fd: int) -> None:
        self.loop.remove_reader(fd)
        os.close(fd)
        self._reap()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.spawner.retired:
                self.spawner.retired.discard(pid)  # a zygote a reload replaced or discarded
            elif pid == self.spawner.fresh_pid:
                log.warning("the reload's new zygote (pid %d) died (%s)", pid,
                            ExitReason.from_wait_status(status).describe())
                self.spawner.fresh_reaped()
            elif pid == self.spawner.pid:
                self.spawner.reaped()
                if not self._stopping and getattr(self, "supervisor", None) is not None:
                    self._zygote_died(pid, status)
            elif getattr(self, "supervisor", None) is not None:
                self.supervisor.on_exit(pid, status)

    def _zygote_died(self, pid: int, status: int) -> None:
        """Let it crash, for the zygote too: start a new one (it imports the app again); the
        workers keep serving meanwhile. Twice within --within seconds and the cluster stops."""
        now = self.loop.time()
        reason = ExitReason.from_wait_status(status).describe()
        if now - self._zygote_died_at < self.config.within:
            self.halt(EXIT_GAVE_UP, f"the zygote (pid {pid}) died ({reason}) twice within "
                      f"{self.config.within:g} s; stopping")
            return
        self._zygote_died_at = now
        log.warning("the zygote (pid %d) died (%s); starting a new one", pid, reason)
        self._zygote_restart = self.loop.create_task(self._restart_zygote())

    async def _restart_zygote(self) -> None:
        try:
            await self.spawner.restart(self._targets(), self.config.log_level,
                                       self.config.timeout)
        except ActorClusterError as exc:
            self.halt(EXIT_GAVE_UP, f"a new zygote could not start: {exc}")
            return
        self._watch(self.spawner.pid)
        log.info("zygote %s started", self.spawner.pid)

    async def _load_tree(self) -> specs.Supervisor:
        """Start the zygote (it imports every target) and return the supervision tree: from
        the file, from TARGET when it is a tree built in Python, or the one the options
        describe; --actor children come last under the root. Every mistake is reported here,
        before any worker starts, naming where it is."""
        c = self.config
        actors = [(target, "actor") for _name, target in c.actors]
        tree: specs.Supervisor | None = c.tree
        targets = actors + ([(t, k) for _p, t, k in tree.targets()] if tree else [])
        try:
            described = await self.spawner.start(targets, c.log_level, c.timeout,
                                                 entry=c.target)
        except TargetImportError as exc:
            where = [path for path, t, _k in tree.targets() if t == getattr(exc, "target", "")
                     ] if tree else []
            if where:
                raise ConfigError(f"{c.source}: {where[0]}: {exc}") from None
            raise
        if tree is None and described is not None:
            data = {k: v for k, v in described.items()
                    if k not in ("name", "restart", "shutdown")}
            tree = tree_from_mapping(data, source=str(c.target), path="tree")
        if tree is None:
            assert c.target is not None
            return specs.default_tree(c.target, c.workers, c.actors, c.max_restarts, c.within)
        if c.root_intensity:  # --max-restarts / --within given: they win over the tree's root
            tree = replace(tree, **dict(c.root_intensity))
        if c.workers_given:
            tree = tree.with_workers(c.workers)
        if c.actors:
            extra = tuple(specs.ActorSpec(name, target) for name, target in c.actors)
            tree = check_tree(replace(tree, children=(*tree.children, *extra)),
                              source=c.source or str(c.target))
        return tree

    def _targets(self) -> list[tuple[str, str]]:
        """What a new zygote imports: the target of every process child now in the tree."""
        seen: dict[str, str] = {}
        for leaf in self.supervisor._all():
            seen.setdefault(leaf.target, leaf.kind)
        return list(seen.items())

    def _on_spawned(self, identity: str, pid: int) -> None:
        self._watch(pid)
        self.supervisor.on_spawned(identity, pid)

    def _on_spawn_error(self, identity: str, error: str) -> None:
        self.supervisor.on_spawn_error(identity, error)

    def _on_system(self, identity: bytes, message: dict) -> None:
        supervisor = getattr(self, "supervisor", None)
        if supervisor is not None:  # before it exists only clients talk (their "bye")
            supervisor.on_system(identity, message)

    def _on_request(self, sender: bytes, request: Any) -> Any:
        """A JSON tell/ask to "primary": ``"status"``, ``{"op": "members", "group": ...}`` and
        the dynamic-children requests (``{"op": "start_child", "supervisor": ..., "spec":
        {...}}``, ...); those that take time return awaitables, answered when done."""
        op = request if isinstance(request, str) else (
            request.get("op") if isinstance(request, dict) else None)
        if op == "status":
            return self.status()
        if op == "stop" and isinstance(request, dict):  # as SIGTERM: at any time, even starting
            return self._stop_request(_number(request, "timeout", None, integer=False,
                                              minimum=0))
        if getattr(self, "supervisor", None) is None:
            raise ActorError("the cluster is starting: the zygote is importing the app")
        if op in REQUESTS and not isinstance(request, dict):
            raise ActorError(f"{op!r} takes its fields in a JSON object, e.g. "
                             f'{{"op": "{op}", ...}} (only "status" may be a bare string)')
        if op is None:  # not the name of an op at all: say what a request looks like
            raise ActorError('a request to the primary is "status" or a JSON object with "op" '
                             '(e.g. {"op": "members", "group": "web"}), not '
                             f"{reprlib.repr(request)}; ops: status, " + ", ".join(REQUESTS))
        if not isinstance(request, dict) or op not in REQUESTS:
            raise ActorError(f"the primary does not know {op!r}; it answers: status, "
                             + ", ".join(REQUESTS))
        if op == "members":
            group = request.get("group")
            if not isinstance(group, str) or not group:  # a typo must not read as "no members"
                raise ActorError('members needs "group", a group\'s name, e.g. '
                                 '{"op": "members", "group": "web"}')
            return self.router.members(group)
        tree = self.supervisor
        supervisor = str(request.get("supervisor", ""))
        name = str(request.get("name", ""))
        needs = ("supervisor", "name") if op in CHILD_OPS else ("supervisor",) if (
            op in SUPERVISOR_OPS) else ()
        missing = [field for field in needs if not request.get(field)]
        if missing:  # named as missing, not looked up as a child or supervisor called ''
            raise ActorError(f"{op} needs " + " and ".join(f'"{f}"' for f in missing)
                             + f', e.g. {{"op": "{op}", "supervisor": "root"'
                             + (', "name": "worker"' if "name" in needs else "") + "}")
        if op == "start_child":
            spec = request.get("spec")
            if not isinstance(spec, dict):
                raise SupervisorError('start_child needs a spec: {"name": ..., "actor": ...}')
            try:
                child = child_from_mapping(spec, source="start_child", path="spec")
            except ConfigError as exc:
                raise SupervisorError(str(exc)) from None
            return tree.start_child(supervisor, child)
        if op == "terminate_child":
            return tree.terminate_child(supervisor, name)
        if op == "restart_child":
            return tree.restart_child(supervisor, name)
        if op == "delete_child":
            return tree.delete_child(supervisor, name)
        if op == "which_children":
            return tree.which_children(supervisor)
        if op == "count_children":
            return tree.count_children(supervisor)
        if op == "reload":
            child = request.get("child")
            ready = _number(request, "ready_timeout", self.config.timeout, integer=False,
                            minimum=0, above=True)
            return self.rolling.reload(None if child is None else str(child),
                                       _number(request, "batch", 1, integer=True, minimum=1),
                                       float(ready))
        if op == "scale":
            ready = _number(request, "ready_timeout", self.config.timeout, integer=False,
                            minimum=0, above=True)
            return self.rolling.scale(str(request.get("pool", "")),
                                      _number(request, "workers", _REQUIRED, integer=True,
                                              minimum=1), float(ready))
        return self._stop_request(request.get("timeout"))

    def _stop_request(self, timeout: Any) -> dict[str, Any]:
        """`actorcluster stop`: the graceful stop of SIGTERM, with its own timeout."""
        if timeout is not None:
            self.config = replace(self.config, graceful_timeout=float(timeout))
            if getattr(self, "supervisor", None) is not None:
                self.supervisor.config = self.config
        self._stop_asked = True  # the log says who asked: no signal was sent
        self._begin_stop()  # as the signal handler does: nothing starts from now on
        self._signals.put_nowait(signal.SIGTERM)
        return {"pid": self.pid}

    def status(self) -> dict[str, Any]:
        if getattr(self, "supervisor", None) is None:
            # the router answers before the app is imported: an empty tree, "starting"
            return {
                "cluster": self.config.name, "primary": {"pid": self.pid}, "listen": None,
                "tree": {"name": "root", "type": "supervisor", "state": "starting",
                         "children": [], "standby": None, "retiring": []},
                "messages": self.router.stats(), "gateway": {"handed_off": 0, "rejected": 0},
            }
        return {
            "cluster": self.config.name,
            "primary": {"pid": self.pid},
            "listen": self._listen_url if self.gateway.listener is not None else None,
            "tree": self.supervisor.status(),
            "messages": self.router.stats(),
            "gateway": {"handed_off": self.gateway.handed_off, "rejected": self.gateway.rejected},
        }


def run(config: ClusterConfig) -> int:
    return Primary(config).run()
