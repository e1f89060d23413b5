"""The private run directory of a cluster: where its local endpoints live.

    <base>/actorcluster-<uid>/            mode 0700, owned by the user
        <name>/                           mode 0700, one per running cluster; its primary holds
                                          an flock on it for life: that lock, not the pid, says
                                          the cluster is alive (the kernel drops it on kill -9,
                                          and a reused pid holds none)
            pid                           the primary's pid
            router                        ipc endpoint of the router (ZeroMQ ROUTER)
            reads                         the read counters of the process actors (wire.py)

<base> is $XDG_RUNTIME_DIR when set (an absolute path: a relative one is refused), else the system
temp directory. Nothing here is reachable by another user: the directories refuse group and
other access, and a directory that is not ours or is open to others is refused rather than used
(a ConfigError naming it and the fix).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

from .errors import ClusterExists, ConfigError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" allows "\n"
NAME_RULE = "use 1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"--name {name!r}: {NAME_RULE}")
    return name


def _private_dir(path: Path) -> Path:
    """``path``, created mode 0700 if missing; one that is not ours or is open to others is
    refused with a ConfigError naming it and the fix (a start-up error, not a crash)."""
    elsewhere = "or set XDG_RUNTIME_DIR to a directory only you can enter"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise ConfigError(f"run directory {path}: cannot create it ({exc.strerror or exc}): "
                          f"{path.parent} must be a directory you can write to, "
                          f"{elsewhere}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError(f"run directory {path} is not a directory owned by this user (uid "
                          f"{os.getuid()}); refusing to use it: remove it {elsewhere}")
    if info.st_mode & 0o077:
        raise ConfigError(f"run directory {path} is open to other users (mode "
                          f"{info.st_mode & 0o777:o}); refusing to use it: run "
                          f"`chmod 700 {path}` {elsewhere}")
    return path


def base_dir() -> Path:
    root = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    if not os.path.isabs(root):  # relative: `stop` from another directory would not find it
        raise ConfigError(f"XDG_RUNTIME_DIR={root!r} is not an absolute path (the XDG spec "
                          "calls a relative one invalid): set it to one, or unset it")
    try:
        info = os.stat(root)
    except OSError:
        info = None  # _private_dir says it cannot create the run directory
    # Whoever may rename entries of <root> could swap our checked directory for theirs after
    # the check: so <root> must be ours or root's, and others may write to it only if it is
    # sticky (as /tmp is: there only an entry's owner may rename it).
    if info is not None and (info.st_uid not in (0, os.getuid()) or (
            info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX)):
        raise ConfigError(f"run directory {root}/actorcluster-{os.getuid()}: {root} belongs to "
                          f"another user or others may write to it (mode "
                          f"{info.st_mode & 0o7777:o}); refusing to use it: set XDG_RUNTIME_DIR "
                          "to a directory only you can enter")
    return _private_dir(Path(root) / f"actorcluster-{os.getuid()}")


def cluster_dir(name: str) -> Path:
    return base_dir() / check_name(name)


_held: dict[Path, int] = {}  # directory -> the fd that holds its lock, in the primary


def _locked(directory: Path) -> bool:
    """Whether a live primary holds ``directory``'s lock (a shared probe, dropped at once)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_pid(directory: Path) -> int | None:
    try:
        return int((directory / "pid").read_text().strip())
    except (OSError, ValueError):
        return None


def claim(name: str, pid: int) -> Path:
    """Create the cluster's directory for ``pid`` and lock it until ``release``; a stale one
    (no live primary holds its lock) is cleared. Two primaries that claim one name at the same
    instant: exactly one gets it, the other gets ClusterExists."""
    directory = cluster_dir(name)
    for _attempt in range(20):
        _private_dir(directory)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            # a live primary, or for a moment a `status` probing it (_locked): look again
            time.sleep(0.01)
            continue
        try:
            same = os.fstat(fd).st_ino == directory.lstat().st_ino
        except OSError:
            same = False
        if not same:  # its primary removed it as we opened it: take the new one
            os.close(fd)
            continue
        for entry in directory.iterdir():  # a dead primary's files
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        (directory / "pid").write_text(f"{pid}\n")
        _held[directory] = fd
        return directory
    owner = read_pid(directory)
    raise ClusterExists(f"a cluster named {name!r} is already running (primary pid {owner}); "
                        "stop it or choose another --name")


def release(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    fd = _held.pop(directory, None)
    if fd is not None:  # after the removal: a new primary never takes a directory being emptied
        os.close(fd)


def running() -> dict[str, int]:
    """Names of the clusters of this user whose primary is alive, with their pids."""
    found: dict[str, int] = {}
    for entry in sorted(base_dir().iterdir()):
        pid = read_pid(entry)
        if pid is not None and _locked(entry):
            found[entry.name] = pid
    return found
