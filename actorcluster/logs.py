"""Log format shared by every process: a timestamp, the pid, the level, the line.

The timestamp is ISO 8601 local time with milliseconds and the UTC offset
(``2026-11-28T01:40:00.112+00:00``), so lines from hosts or containers in other time zones compare
and sort without guessing.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime

FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
LEVELS = ("critical", "error", "warning", "info", "debug")


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # time.strftime has no milliseconds and %z has no colon; datetime gives both.
        return datetime.fromtimestamp(record.created).astimezone().isoformat(
            timespec="milliseconds")


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(FORMAT))
    root = logging.getLogger("actorcluster")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
