"""Entry point of a worker process, called in the child the zygote forked."""

from __future__ import annotations

import faulthandler
import os
import signal
import time
from typing import Any

from .. import logs
from ..loops import new_loop
from ..oslink import die_with_parent, set_process_name
from ..wire import ExitCode
from .actor_worker import ActorWorker
from .http_serving import HttpWorker
from .process import ProcessActor

ADOPTION_WAIT = 2.0


def _wait_for_adoption(primary_pid: int, intermediate: int | None = None) -> bool:
    """The zygote's intermediate child exits right after forking us; wait until the kernel has
    re-parented us to the primary, then ask to die with it. Re-parented to anyone else (init),
    the primary is gone: give up at once rather than outlive a `kill -9` of it by
    ADOPTION_WAIT (a worker forked as the primary was killed lingered 2 s)."""
    deadline = time.monotonic() + ADOPTION_WAIT
    while (parent := os.getppid()) != primary_pid:
        if intermediate is not None and parent != intermediate:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0001)
    return die_with_parent(primary_pid)


def run_worker(spec: dict[str, Any], handoff_fd: int, handler: Any,
               intermediate: int | None = None) -> int:
    set_process_name(f"ac {spec['name']}")
    logs.setup(spec["log_level"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGUSR1 dumps every thread's Python stack to stderr, even while the loop is stuck: the
    # primary sends it before killing a worker that stopped sending heartbeats.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    loop = new_loop(spec["loop"])
    try:
        # Set up (and start connecting to the router) while the kernel re-parents us; a respawn
        # is on the critical path of a crash.
        if spec["kind"] == "actor":
            os.close(handoff_fd)
            worker: ProcessActor = ActorWorker(loop, spec, handler)
        else:
            worker = HttpWorker(loop, spec, handoff_fd, handler)
        if not _wait_for_adoption(spec["primary_pid"], intermediate):
            return ExitCode.PRIMARY_LOST
        return loop.run_until_complete(worker.run())
    finally:
        loop.close()
