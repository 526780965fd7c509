"""Progress while a crawl runs: a live panel on a terminal, plain log lines elsewhere.

The engine builds a :class:`Progress` snapshot every ``interval_s`` seconds and hands it
to a :class:`ProgressView`. :class:`LogProgress` writes one INFO line (cron, CI, ``-o -``:
every ``PROGRESS_INTERVAL`` seconds); :class:`LiveProgress` redraws a small rich panel on
stderr about once a second, from the first second. Both always write to stderr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .clock import Clock
from .hostboard import HostBoard, HostLine, HostWait
from .loglines import get_logger
from .summary import counter_parts

if TYPE_CHECKING:
    from .frontier.base import FrontierCounts
    from .stats import Stats

__all__ = ["LiveProgress", "LogProgress", "Progress", "ProgressView", "progress_line"]

logger = get_logger("crawler.engine")


@dataclass(frozen=True, slots=True)
class Progress:
    """A crawl's state at one moment, for display."""

    spider: str
    counters: Mapping[str, int]
    queued: int
    in_flight: int
    elapsed_s: float
    pages_per_s: float
    now: float = 0.0  # the crawl clock's time, to show how long a wait still lasts
    busiest: list[HostLine] = field(default_factory=list)
    slowest: list[HostLine] = field(default_factory=list)
    waits: list[HostWait] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "waiting for Redis since 12:03:04"

    @classmethod
    def of(
        cls,
        spider: str,
        stats: Stats,
        counts: FrontierCounts,
        clock: Clock,
        hosts: HostBoard,
        notes: list[str] | None = None,
    ) -> Progress:
        """The snapshot of a running crawl: its stats, frontier counts, host board and notes."""
        return cls(
            spider,
            stats.counters,
            counts.queued,
            counts.in_flight,
            stats.elapsed_s,
            stats.rate(),
            clock.now(),
            hosts.busiest(),
            hosts.slowest(),
            hosts.waits(),
            notes or [],
        )

    def count(self, key: str) -> int:
        """A counter's value (0 if never counted)."""
        return self.counters.get(key, 0)

    def grouped(self, prefix: str) -> str:
        """``reason=count`` parts of the ``prefix/*`` counters, biggest first."""
        return counter_parts(self.counters, prefix)[1]


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _wait_text(wait: HostWait, now: float) -> str:
    if wait.until is None:
        return f"{wait.host}: {wait.reason}"
    return f"{wait.host}: {wait.reason} ({max(0.0, wait.until - now):.0f}s left)"


def progress_line(p: Progress) -> str:
    """The one-line form: pages, rate, items, queue, failures, retries, waits."""
    failures = sum(v for k, v in p.counters.items() if k.startswith("failures/"))
    line = (
        f"{p.count('pages'):,} pages ({p.pages_per_s:.1f}/s), {p.count('items'):,} items,"
        f" {p.queued:,} queued, {p.in_flight:,} in flight, {failures:,} failed"
    )
    if failures:
        line += f" ({p.grouped('failures')})"
    if p.count("retries"):
        line += f", {p.count('retries'):,} retries"
    line += f", {_elapsed(p.elapsed_s)}"
    if p.waits:
        line += "; waiting: " + "; ".join(_wait_text(w, p.now) for w in p.waits[:3])
    for note in p.notes:
        line += f"; {note}"
    return line


class ProgressView(Protocol):
    """Shows progress snapshots; ``interval_s`` is how often it wants one."""

    interval_s: float

    def show(self, progress: Progress) -> None:
        """Display one snapshot."""

    def close(self) -> None:
        """The crawl ended: stop displaying (leave the terminal clean)."""


class LogProgress:
    """One INFO log line per snapshot (off a terminal)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s

    def show(self, progress: Progress) -> None:
        """Log the one-line form."""
        logger.info("[%s] %s", progress.spider, progress_line(progress))

    def close(self) -> None:
        """Nothing to clean up."""


class LiveProgress:
    """A rich panel on stderr, redrawn at every snapshot (about once a second)."""

    def __init__(self, interval_s: float = 1.0, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.interval_s = interval_s
        self.console = console or Console(stderr=True)
        # auto_refresh off: the engine's snapshots drive the redraws, no extra thread.
        # transient: the summary table replaces the last panel; no redirection: a callback's
        # print() must reach stdout (e.g. `-o -` piped), not the panel.
        self._live = Live(
            console=self.console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._started = False

    def show(self, progress: Progress) -> None:
        """Redraw the panel."""
        if not self._started:
            self._live.start()
            self._started = True
        self._live.update(self.render(progress), refresh=True)

    @staticmethod
    def render(p: Progress) -> Any:
        """The panel: totals, failures and retries by reason, hosts, waits."""
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", justify="right", no_wrap=True)
        table.add_column()
        table.add_row(
            "pages",
            f"{p.count('pages'):,} ({p.pages_per_s:.1f}/s)   items {p.count('items'):,}"
            f"   queued {p.queued:,}   in flight {p.in_flight:,}   {_elapsed(p.elapsed_s)}",
        )
        failures = p.grouped("failures")
        if failures:
            table.add_row("failures", failures)
        retries = p.grouped("retries")
        if retries:
            table.add_row("retries", retries)
        if p.busiest:
            table.add_row(
                "busiest",
                ", ".join(f"{h.host} ({h.in_flight} in flight)" for h in p.busiest),
            )
        if p.slowest:
            table.add_row(
                "slowest", ", ".join(f"{h.host} ({h.mean_ms:,.0f} ms)" for h in p.slowest)
            )
        for wait in p.waits:
            table.add_row("waiting", _wait_text(wait, p.now))
        for note in p.notes:
            table.add_row("note", note)
        return table

    def close(self) -> None:
        """Leave the last panel on screen and give the terminal back."""
        if self._started:
            self._live.stop()
            self._started = False
