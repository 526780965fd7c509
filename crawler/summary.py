"""The final summary of a crawl, as people read it: one row per topic, every number once.

:func:`summary_rows` turns a stats snapshot into ``(topic, text)`` rows; :func:`render_plain`
prints them as aligned text (logs, cron, CI), :func:`render_rich` as a table on a terminal.
Counters that belong together (``failures/*``, ``retries/*``, ``status/*``,
``callback_errors/*``) share a row; bytes are in human units; timings are percentiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["counter_parts", "human_bytes", "render_plain", "render_rich", "summary_rows"]

# Counters whose name/detail pairs are shown together in one row, with their total.
_GROUPS = (
    ("failures", "failures"),
    ("retries", "retries"),
    ("status", "status codes"),
    ("callback_errors", "callback errors"),
    ("items_dropped", "items dropped"),
    ("links_dropped", "links dropped"),
    ("httpcache", "HTTP cache"),
    ("filtered", "filtered"),
)
# Groups whose counters are not parts of one total (hits and stores of the same page...).
_NO_TOTAL = frozenset(("status", "httpcache"))
_DROPPED = (("duplicates", "duplicates"), ("offsite", "offsite"), ("depth_dropped", "too deep"))
_PHASES = (("total", "response"), ("ttfb", "first byte"), ("connect", "connect"))


def human_bytes(count: float) -> str:
    """``40995`` -> ``40.0 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # not reached


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 10 else f"{value:,.0f} ms"


def counter_parts(counters: Mapping[str, Any], prefix: str) -> tuple[int, str]:
    """The total of the ``prefix/*`` counters and their ``name=count`` parts, biggest first
    (the summary, the progress display and the exit message share it)."""
    parts = [
        (key[len(prefix) + 1 :], value)
        for key, value in counters.items()
        if key.startswith(prefix + "/") and isinstance(value, int) and value
    ]
    parts.sort(key=lambda part: (-part[1], part[0]))
    total = sum(value for _, value in parts)
    return total, ", ".join(f"{name}={value:,}" for name, value in parts)


def summary_rows(snapshot: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(topic, text)`` rows for the end of a crawl."""
    reason = snapshot.get("finish_reason", "?")
    pages = snapshot.get("pages", 0)
    rows: list[tuple[str, str]] = []
    if reason == "already_finished":
        rows.append(("finished", "already, in an earlier run (nothing was fetched now)"))
        rate = ""
    else:
        took = _duration(snapshot.get("elapsed_s", 0.0))
        if reason == "finished":
            rows.append(("finished", f"after {took}"))
        else:
            rows.append(("stopped", f"{reason}, after {took}"))
        rate = f" ({snapshot.get('pages_per_s', 0.0):,.1f}/s)"
    rows.append(("pages", f"{pages:,}{rate}"))
    rows.append(("items", f"{snapshot.get('items', 0):,}"))
    rows.append(("bytes", human_bytes(snapshot.get("bytes", 0))))
    if snapshot.get("start_errors"):
        rows.append(("start errors", f"{snapshot['start_errors']:,}"))
    for prefix, title in _GROUPS:
        total, parts = counter_parts(snapshot, prefix)
        parts_only = prefix in _NO_TOTAL
        plain = None if parts_only else snapshot.get(prefix)
        if total:
            rows.append((title, parts if parts_only else f"{plain or total:,} ({parts})"))
        elif isinstance(plain, int) and plain:
            rows.append((title, f"{plain:,}"))
    dropped = [f"{label} {snapshot[key]:,}" for key, label in _DROPPED if snapshot.get(key)]
    if dropped:
        rows.append(("not followed", ", ".join(dropped)))
    timings = []
    for phase, label in _PHASES:
        p50 = snapshot.get(f"timings/{phase}/p50_ms")
        p95 = snapshot.get(f"timings/{phase}/p95_ms")
        if p50 is not None and p95 is not None:
            timings.append(f"{label} p50 {_ms(p50)}, p95 {_ms(p95)}")
    if timings:
        reused = snapshot.get("timings/reused_ratio")
        if reused is not None:
            timings.append(f"connections reused {reused:.0%}")
        rows.append(("timings", "; ".join(timings)))
    if snapshot.get("error"):
        rows.append(("error", str(snapshot["error"])))
    return rows


def render_plain(rows: list[tuple[str, str]]) -> str:
    """Aligned ``topic: text`` lines (no colours: logs, cron, CI)."""
    width = max((len(topic) for topic, _ in rows), default=0)
    return "\n".join(f"{topic.rjust(width)}: {text}" for topic, text in rows)


def render_rich(rows: list[tuple[str, str]]) -> Any:
    """A borderless two-column rich Table of the rows (for a terminal)."""
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan", justify="right", no_wrap=True)
    table.add_column()
    for topic, text in rows:
        table.add_row(topic, text)
    return table
