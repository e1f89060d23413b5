"""Starting and stopping as the operating system does it: signals sent to the whole process group
(`timeout`, systemd's KillMode=control-group, Ctrl-C), start-ups that fail, and races between a
failure and the children that are still starting. Each is repeated: the defects were 1 in 4 to 1
in 15 events."""

from __future__ import annotations

import time

import pytest
from conftest import tagged_processes

pytestmark = pytest.mark.timeout(180)

def assert_all_gone(tag: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"


BAD_READY = '''
import os

# Pages the zygote has touched make each fork's intermediate child slow to exit: the window in
# which a worker that dies is not the primary's child yet, so the primary cannot reap it.
BALLAST = os.urandom(1) * (600 * 2**20)


def on_ready():
    raise RuntimeError("on_ready fails on purpose")


async def handler(request):
    return "never"
'''


def test_on_ready_raising_stops_the_cluster_at_once(
        cluster, tmp_path, no_process_left_behind):
    (tmp_path / "ac_bad_ready.py").write_text(BAD_READY)
    for workers in ["2"] * 8:
        t0 = time.monotonic()
        c = cluster("ac_bad_ready:handler", "--workers", workers,
                    env={"PYTHONPATH": str(tmp_path)}, ready=False)
        assert c.wait(30) == 1  # a child failed to start (docs/getting-started.md)
        took = time.monotonic() - t0
        log = c.log()
        assert "on_ready fails on purpose" in log and "failed to boot" in log, log
        assert took < 3.0, f"{workers} workers: stopped after {took:.1f} s\n{log}"
        assert_all_gone(no_process_left_behind)
