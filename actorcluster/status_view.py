"""``actorcluster status`` for people: the live supervision tree as an aligned table."""

from __future__ import annotations

from typing import Any

COLUMNS = ("NAME", "TYPE", "PID", "STATE", "UPTIME", "RESTARTS", "REQUESTS", "MESSAGES",
           "RSS", "CPU")


def _uptime(seconds: float | None) -> str:
    if not seconds:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "?")
    if kind == "supervisor":
        return f"supervisor {node.get('strategy', '')}".strip()
    if kind == "pool":
        n = node.get("workers", len(node.get("children", ())))
        return f"pool ({n} worker{'' if n == 1 else 's'})"
    return kind


def _rows(node: dict[str, Any], prefix: str, last: bool, top: bool) -> list[tuple[str, ...]]:
    branch = "" if top else ("└── " if last else "├── ")
    row = (
        prefix + branch + str(node.get("name", "?")),
        _type(node),
        str(node["pid"]) if node.get("pid") else "-",
        str(node.get("state", "?")),
        _uptime(node.get("uptime")),
        str(node.get("restarts", 0)),
        _count(node.get("requests")),
        _count(node.get("messages")) if node.get("pid") else "-",
        f"{node['rss'] / 2**20:.1f}M" if node.get("rss") else "-",
        f"{node['cpu']:.0f}%" if node.get("cpu") is not None else "-",
    )
    rows = [row]
    children = node.get("children") or []
    inner = prefix + ("" if top else ("    " if last else "│   "))
    for i, child in enumerate(children):
        rows += _rows(child, inner, i == len(children) - 1, False)
    return rows


def render_status(status: dict[str, Any]) -> str:
    """The reply of ``ask("primary", "status")`` as text."""
    rows = [COLUMNS, *_rows(status["tree"], "", True, True)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        f"cluster {status.get('cluster')}  primary {status.get('primary', {}).get('pid')}"
        + (f"  listening {status['listen']}" if status.get("listen") else ""),
        "",
    ]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    standby = status["tree"].get("standby")
    if standby:
        lines.append(f"standby worker: pid {standby.get('pid') or '-'} ({standby.get('state')})")
    retiring = status["tree"].get("retiring")
    if retiring:
        lines.append("retiring (finishing their connections): " + ", ".join(
            f"{node.get('name')} pid {node.get('pid') or '-'}" for node in retiring))
    lines.append("dead letters: " + _dead_letters(status.get("messages", {}).get("dead_letters")
                                                  or {}))
    return "\n".join(lines)


SHOWN_NAMES = 10  # dead-letter names on the status line (--json has every counted name)


def _dead_letters(dead: dict[str, int]) -> str:
    """The names with the most dead letters first; up to 1,001 names are counted, which on one
    line would bury the rest of the status."""
    if not dead:
        return "none"
    ranked = sorted(dead.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{name} {count:,}" for name, count in ranked[:SHOWN_NAMES])
    rest = ranked[SHOWN_NAMES:]
    if rest:
        shown += (f", and {sum(count for _, count in rest):,} to {len(rest):,} other names "
                  "(status --json lists them)")
    return shown
