"""Memory and CPU of the cluster's processes, sampled with psutil (status, --max-memory)."""

from __future__ import annotations

import psutil


class Usage:
    """Keeps one psutil.Process per pid, so ``cpu_percent`` measures between two samples."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def sample(self, pid: int) -> dict[str, float]:
        """``{"rss": bytes, "cpu": percent of one core since the last sample}``, or {} when the
        process is gone."""
        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = self._procs[pid] = psutil.Process(pid)
                proc.cpu_percent(None)  # the first call only starts the measure
            return {"rss": float(proc.memory_info().rss), "cpu": proc.cpu_percent(None)}
        except psutil.Error:
            self._procs.pop(pid, None)
            return {}

    def forget(self, pid: int) -> None:
        self._procs.pop(pid, None)
