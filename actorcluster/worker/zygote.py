"""The zygote: imports the app once, then forks workers on request.

It holds no ZeroMQ context and no threads, so fork is safe, and a respawn costs a fork instead of
an interpreter start plus imports. Each worker is double-forked: the intermediate child exits at
once, so the worker is adopted by the primary (a child subreaper) and the primary, not the zygote,
is its parent: it gets SIGCHLD and the exit status straight from the kernel. The zygote reports
the worker's pid only once it has reaped the intermediate: from then on the worker is the
primary's child, so the primary can reap it whenever it dies (a worker that died while still the
intermediate's child would wake the primary's pidfd before the primary could reap it, and its
exit would go unnoticed).

The zygote blocks SIGTERM (and ignores SIGINT): it stops when the primary closes its channel, so a
SIGTERM sent to the whole process group (`timeout`, systemd's KillMode=control-group) leaves the
stop to the primary. If the primary dies, the kernel sends SIGKILL (PR_SET_PDEATHSIG), which
cannot be blocked. A worker unblocks SIGTERM first thing: one sent to it meanwhile was kept
pending, not lost.

    primary --(spawner channel: "load", then "spawn" + hand-off fd)--> zygote
    zygote  --("loaded" | "load_error", then "spawned" {id, pid} | "spawn_error")--> primary
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import traceback
from typing import Any

from .. import logs, specs
from ..errors import ConfigError, TargetImportError
from ..importer import import_actor, import_handler, import_target
from ..oslink import die_with_parent, set_process_name
from ..wire import SPAWNER_MAX, ExitCode, decode_control, encode_control


def _import(target: str, kind: str) -> Any:
    return import_actor(target) if kind == "actor" else import_handler(target)


def _key(target: str, kind: str) -> tuple[str, bool]:
    """Imports are kept per target *and* use: one target may be an actor and a pool's handler
    (an Actor subclass), and each use has its own check (an actor: an Actor subclass; a
    handler: callable, with handle() if an Actor), which a cached import must not skip."""
    return target, kind == "actor"


def _load(control: socket.socket, targets: list[list[str]], entry: str | None) -> dict[str, Any]:
    """Import every target; ``entry`` (``actorcluster run TARGET``) is a handler or a supervision
    tree built in Python, whose targets are imported too and whose description goes back to the
    primary (which never imports user code)."""
    # Import the worker runtime here, once, so a forked worker starts with it loaded (importing
    # zmq and uvloop creates no context and no thread).
    from . import main  # noqa: F401

    apps: dict[tuple[str, bool], Any] = {}
    tree = None
    todo = [tuple(t) for t in targets]
    current = entry
    try:
        if entry is not None:
            obj = import_target(entry)
            if isinstance(obj, specs.Supervisor):
                from ..config_file import check_tree

                checked = check_tree(obj, source=entry)
                tree = checked.to_dict()
                todo += [(target, kind) for _path, target, kind in checked.targets()]
            else:
                todo.append((entry, "http"))
        for current, kind in todo:
            if _key(current, kind) not in apps:
                apps[_key(current, kind)] = _import(current, kind)
    except (TargetImportError, ConfigError) as exc:
        control.send(encode_control("load_error", target=current, error=str(exc)))
        os._exit(ExitCode.APP_LOAD_ERROR)
    control.send(encode_control("loaded", pid=os.getpid(), tree=tree))
    return apps


def _spawn(control: socket.socket, spec: dict[str, Any], fds: list[int], apps: dict) -> None:
    key = _key(spec["target"], spec["kind"])
    if key not in apps:  # a child started at run time: import it here, once
        try:
            apps[key] = _import(spec["target"], spec["kind"])
        except TargetImportError as exc:
            for fd in fds:
                os.close(fd)
            control.send(encode_control("spawn_error", id=spec["id"], error=str(exc)))
            return
    pid_r, pid_w = os.pipe()  # the intermediate tells us the worker's pid through it
    intermediate = os.fork()
    if intermediate:
        os.close(pid_w)
        for fd in fds:
            os.close(fd)
        os.waitpid(intermediate, 0)  # the worker is the primary's child once this returns
        # one read, not up to EOF: the worker may not have closed its copy of the write end yet
        pid = os.read(pid_r, 32)
        os.close(pid_r)
        if pid:
            control.send(encode_control("spawned", id=spec["id"], pid=int(pid)))
        else:
            control.send(encode_control("spawn_error", id=spec["id"],
                                        error="the zygote could not fork the worker"))
        return
    try:
        os.close(pid_r)
        me = os.getpid()  # the worker's parent until the kernel hands it to the primary
        worker = os.fork()
        if worker == 0:
            os.close(pid_w)
            _become_worker(control, spec, fds, apps, me)
        os.write(pid_w, str(worker).encode())
    finally:
        os._exit(0)


def _become_worker(control: socket.socket, spec: dict[str, Any], fds: list[int], apps: dict,
                   intermediate: int):
    code: int = ExitCode.CRASHED
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        control.close()
        from .main import run_worker

        code = run_worker(spec, fds[0], apps[_key(spec["target"], spec["kind"])], intermediate)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - let it crash, but say why
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str]) -> None:
    control_fd, primary_pid = int(argv[1]), int(argv[2])
    # Ctrl-C and SIGTERM are the primary's to handle: it closes our channel when it is done.
    # The primary started us with both blocked; an ignored SIGINT may be unblocked (a pending
    # one is dropped), SIGTERM stays blocked for the workers to take up (see the docstring).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # `run` starts the first zygote before the primary sets its handlers, so it inherits what
    # the shell ignored (nohup: SIGHUP; a script's `... &`: SIGQUIT), which a zygote a reload
    # starts does not (a handled signal is reset by exec): every zygote, and every worker it
    # forks, takes the primary's signals alike, by default.
    # SIGCHLD too: ignored, it makes the kernel reap our children itself, and waitpid fails.
    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if not die_with_parent(primary_pid):
        os._exit(ExitCode.PRIMARY_LOST)
    set_process_name("ac zygote")
    control = socket.socket(fileno=control_fd)
    try:
        _serve(control)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the primary closed the channel while we were importing or forking: it stopped
    os._exit(0)


def _serve(control: socket.socket) -> None:
    # The worker runtime loads while the primary sets up (it started us early); a failure here
    # is met again, and reported, by _load's own import.
    try:
        from . import main  # noqa: F401
    except Exception:  # noqa: BLE001, S110
        pass
    data = control.recv(SPAWNER_MAX)
    if not data:
        return  # the primary stopped before asking for anything
    first = decode_control(data)
    logs.setup(first.get("log_level", "info"))
    apps = _load(control, first["targets"], first.get("entry"))
    # Move every object imported so far out of the collector's reach: a collection in a worker
    # would otherwise write to their headers and copy the zygote's pages (copy-on-write).
    gc.collect()
    gc.freeze()
    while True:
        data, fds, _flags, _addr = socket.recv_fds(control, SPAWNER_MAX, 4)
        if not data:
            return  # the primary closed the channel: we are done
        message = decode_control(data)
        if message["op"] == "spawn":
            _spawn(control, message["spec"], fds, apps)
        else:
            for fd in fds:
                os.close(fd)


if __name__ == "__main__":
    main(sys.argv)
