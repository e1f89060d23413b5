"""The private run directory of a cluster: where its local endpoints live.

    <base>/actorcluster-<uid>/            mode 0700, owned by the user
        <name>/                           mode 0700, one per running cluster
            pid                           the primary's pid
            router                        ipc endpoint of the router (ZeroMQ ROUTER)
            reads                         the read counters of the process actors (wire.py)

<base> is $XDG_RUNTIME_DIR when set, else the system temp directory. Nothing here is reachable
by another user: the directories refuse group and other access, and a directory that is not
ours or is open to others is refused rather than used (a ConfigError naming it and the fix).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from .errors import ClusterExists, ConfigError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ConfigError(
            f"--name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
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
    return _private_dir(Path(root) / f"actorcluster-{os.getuid()}")


def cluster_dir(name: str) -> Path:
    return base_dir() / check_name(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(directory: Path) -> int | None:
    try:
        return int((directory / "pid").read_text().strip())
    except (OSError, ValueError):
        return None


def claim(name: str, pid: int) -> Path:
    """Create the cluster's directory for ``pid``; a stale one (dead primary) is cleared."""
    directory = cluster_dir(name)
    if directory.exists():
        owner = read_pid(directory)
        if owner is not None and owner != pid and _alive(owner):
            raise ClusterExists(
                f"a cluster named {name!r} is already running (primary pid {owner}); "
                "stop it or choose another --name"
            )
        shutil.rmtree(directory, ignore_errors=True)
    _private_dir(directory)
    (directory / "pid").write_text(f"{pid}\n")
    return directory


def release(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def running() -> dict[str, int]:
    """Names of the clusters of this user whose primary is alive, with their pids."""
    found: dict[str, int] = {}
    for entry in sorted(base_dir().iterdir()):
        pid = read_pid(entry)
        if pid is not None and _alive(pid):
            found[entry.name] = pid
    return found
