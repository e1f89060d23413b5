"""Choosing the event loop: uvloop when installed (the `fast` extra), else asyncio's."""

from __future__ import annotations

import asyncio

from .errors import ConfigError

try:  # imported here, not on first use, so the zygote's workers are forked with it loaded
    import uvloop
except ImportError:  # pragma: no cover - depends on the extras installed
    uvloop = None


def new_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    if kind in ("auto", "uvloop") and uvloop is not None:
        return uvloop.new_event_loop()
    if kind == "uvloop":
        raise ConfigError(
            "--loop uvloop: uvloop is not installed (pip install 'actorcluster[fast]')"
        )
    return asyncio.new_event_loop()
