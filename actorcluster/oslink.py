"""The few Linux process controls the runtime relies on (prctl through ctypes).

PR_SET_CHILD_SUBREAPER lets the primary adopt workers that the zygote double-forks, so the primary
is every worker's parent: it gets SIGCHLD and the exit status straight from the kernel.
PR_SET_PDEATHSIG makes the kernel kill a worker the moment its parent (the primary) dies, even by
SIGKILL, even while the worker's own loop is stuck.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _prctl(option: int, value: int) -> None:
    if _libc is None:
        raise OSError("actorcluster needs Linux (prctl) for process supervision")
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def become_subreaper() -> None:
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(expected_parent: int, sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` when our parent dies; False if it is not (or no longer)
    ``expected_parent``."""
    _prctl(PR_SET_PDEATHSIG, sig)
    return os.getppid() == expected_parent


def set_process_name(name: str) -> None:
    """Name this process for ps/top (the kernel keeps 15 bytes): "ac web/1", "ac zygote"."""
    if _libc is not None:
        _libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
