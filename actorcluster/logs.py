"""Log format shared by every process: a timestamp, the pid, the level, the line."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s.%(msecs)03d [%(process)d] [%(levelname)s] %(message)s"
LEVELS = ("critical", "error", "warning", "info", "debug")


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("actorcluster")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
