"""Starting a zygote process, and starting the first one early.

A zygote takes 100-150 ms to be ready (an interpreter, then the worker runtime and the app);
the primary itself takes about as long to import and set up. ``launch_early`` (called by
``actorcluster run`` as soon as its options are checked) starts the first zygote then, so the
two start-ups overlap on the machine's cores instead of following each other; the Spawner
takes it over (``take_early``) when it would have started one. Only the standard library is
imported here: this module runs before the primary's own imports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from ..errors import ClusterError

_early: tuple[subprocess.Popen, socket.socket, str] | None = None


def workdir() -> str:
    """The directory `run` started in, by the path the shell gave it ($PWD, when it names the
    same directory): a deploy that switches a symlink (current -> releases/N) and reloads gets
    the new release, as with gunicorn and PM2. os.getcwd() names the directory the symlink
    pointed to at start-up: every reload would import the old release again."""
    here = os.getcwd()
    pwd = os.environ.get("PWD", "")
    try:
        if os.path.isabs(pwd) and os.path.samefile(pwd, here):
            return pwd
    except OSError:
        pass
    return here


def launch(directory: str) -> tuple[subprocess.Popen, socket.socket]:
    """A zygote process started in ``directory`` and our end of its control channel."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = dict(os.environ)
    # `actorcluster run` imports the app from the current directory, like `python -m` does.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [directory, env.get("PYTHONPATH")]))
    # The zygote leaves SIGTERM and SIGINT to the primary (it stops when its channel closes);
    # started with them blocked (a signal mask survives exec), it cannot die of one sent to
    # the whole process group while its interpreter starts. Here they wait, not get lost.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "actorcluster.worker.zygote", str(theirs.fileno()),
             str(os.getpid())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=directory,  # its workers' current directory too
        )
    except OSError as exc:  # the directory is gone (a deploy removed what it named)
        ours.close()
        raise ClusterError(f"cannot start a zygote in {directory}: "
                           f"{exc.strerror or exc}") from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        theirs.close()
    return proc, ours


def launch_early() -> None:
    """Start the first zygote now (a failure is left for the primary to meet and report)."""
    global _early
    directory = workdir()
    try:
        proc, sock = launch(directory)
    except ClusterError:
        return
    _early = (proc, sock, directory)


def take_early(directory: str) -> tuple[subprocess.Popen, socket.socket] | None:
    """The zygote ``launch_early`` started in ``directory``, now the caller's to manage."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    proc, sock, where = early
    if where != directory or proc.poll() is not None:
        _discard(proc, sock)
        return None
    return proc, sock


def discard_early() -> None:
    """Stop the early zygote if nobody took it (the primary failed before it needed one)."""
    global _early
    early, _early = _early, None
    if early is not None:
        _discard(early[0], early[1])


def _discard(proc: subprocess.Popen, sock: socket.socket) -> None:
    sock.close()  # it stops when its channel closes, before or after its imports
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
