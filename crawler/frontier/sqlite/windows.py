"""The part of the SQLite frontier's queue held in memory: one *window* per host.

Each host keeps a window of at most ``size`` of its best pending requests, a
prefix of its queue (whatever stays in the database ranks after it). When a
window is half empty its host is marked for a refill (``needs_refill``), which
``refill()`` loads for many hosts per indexed query; ``HostReadiness`` picks the
host, by the best request of its window. Over ``max_loaded`` requests in memory, the windows of
the least recently used hosts are dropped: such a host stays scheduled by its
best key and is reloaded when picked. So memory is O(max_loaded + hosts), never
O(queue). Keep ``size`` at or above the per-host concurrency, or a host cannot
reach it.

Nothing here writes the file (but ``decode``, the frontier's, which marks an
undecodable row FAILED); the counts of pending requests are the frontier's too.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...fingerprint import fingerprint
from ...loglines import get_logger
from ...request import Request
from ..domains import HeadKey, HostReadiness
from .file import StateFile
from .schema import refill_query, row_rank

__all__ = ["Entry", "HostWindows", "Window"]

logger = get_logger("crawler.frontier")

Decode = Callable[[int, str, bytes], Request | None]
"""(row id, host, data) -> the stored request, or None to drop the row."""

Entry = tuple[int, int, int, Request, bytes]
"""(negated priority, seq, row id, request, fingerprint): a request held in memory."""


@dataclass(slots=True)
class Window:
    """The best pending requests of one host; ``outside`` more wait in the database."""

    items: list[Entry] = field(default_factory=list)  # best first
    outside: int = 0
    head: HeadKey | None = None  # the host's best key while items is empty and outside > 0


@dataclass(frozen=True, slots=True)
class _Refill:
    """Load ``want`` requests into ``host``'s window: up to ``limit`` rows ranked after ``after``
    (None: from the best), as rows changed since the last flush may still be among them."""

    host: str
    window: Window
    want: int
    limit: int
    after: HeadKey | None


class HostWindows:
    """Every host's window, the hosts due for a refill, and how many requests are loaded."""

    def __init__(self, readiness: HostReadiness, size: int, max_loaded: int) -> None:
        self.readiness = readiness
        self.size = size
        self.low = size // 2
        self.max_loaded = max_loaded
        self.by_host: dict[str, Window] = {}
        self.warm: dict[str, None] = {}  # hosts with requests in memory, least recently used first
        self.needs_refill: set[str] = set()
        self.loaded = 0

    def add_cold(self, host: str, count: int, head: HeadKey) -> None:
        """A host with ``count`` pending requests in the file, none in memory yet."""
        self.by_host[host] = Window([], count, head)  # cold: loaded when first picked
        self.readiness.set_head(host, head)

    def place(self, host: str, entry: Entry) -> None:
        """Add a new pending request to its host: into the window, or left in the database."""
        window = self.by_host.get(host)
        if window is None:
            window = self.by_host[host] = Window()
        items = window.items
        key = (entry[0], entry[1])
        if items:
            worst = items[-1]
            fits = key < (worst[0], worst[1]) or (not window.outside and len(items) < self.size)
        else:
            fits = not window.outside or (window.head is not None and key < window.head)
        if not fits:
            window.outside += 1
            return
        insort(items, entry)
        self.loaded += 1
        window.head = None
        if len(items) > self.size:
            items.pop()
            self.loaded -= 1
            window.outside += 1
        if items[0] is entry:
            self.readiness.set_head(host, key)
        self.warm.pop(host, None)
        self.warm[host] = None

    def take(self, host: str, window: Window) -> Entry:
        """Remove and return the best request of ``host``'s (non-empty) window."""
        entry = window.items.pop(0)
        self.loaded -= 1
        items = window.items
        if items:
            self.readiness.set_head(host, (items[0][0], items[0][1]))
            if window.outside and len(items) <= self.low:
                self.needs_refill.add(host)
        else:
            self.readiness.set_head(host, None)
            self.warm.pop(host, None)
            if window.outside:
                self.needs_refill.add(host)  # unknown head until refilled
            else:
                del self.by_host[host]
        return entry

    async def refill(
        self, hosts: Sequence[str], state: StateFile, decode: Decode
    ) -> tuple[int, int]:
        """Load each host's next best pending requests after its window, in one query.

        Call with ``state``'s lock held, right after a flush, so every pending row
        is readable. Returns how many requests were loaded, and how many pending
        requests turned out not to exist (dropped by ``decode``, or miscounted).
        """
        plans = self._plan_refill(hosts, state.dirty_hosts)
        if not plans:
            return 0, 0
        sql, params = refill_query([(plan.host, plan.limit, plan.after) for plan in plans])
        rows_of: dict[str, list[Any]] = {plan.host: [] for plan in plans}
        for row in await state.query(sql, params):
            rows_of[row[5]].append(row)
        loaded = lost = 0
        for plan in plans:
            if self.by_host.get(plan.host) is not plan.window:
                continue
            rows = sorted(rows_of[plan.host], key=row_rank)
            placed, dropped, miscount = self._merge(plan, rows, state.dirty, decode)
            if miscount:
                logger.warning(
                    "frontier %s: host %s queue count off by %d", state.path, plan.host, miscount
                )
            loaded += placed
            lost += dropped + miscount
        return loaded, lost

    def _plan_refill(self, hosts: Iterable[str], dirty_hosts: Mapping[str, int]) -> list[_Refill]:
        """What to load for each of ``hosts`` whose window has room and rows outside it.

        ``dirty_hosts``: per host, rows changed away from PENDING but not written yet.
        """
        plans: list[_Refill] = []
        for host in hosts:
            window = self.by_host.get(host)
            if window is None or not window.outside:
                continue
            want = self.size - len(window.items)
            if want <= 0:
                continue
            # Rows leased/acked since the flush still read as PENDING: ask for extra, skip them.
            limit = want + dirty_hosts.get(host, 0)
            after = (window.items[-1][0], window.items[-1][1]) if window.items else None
            plans.append(_Refill(host, window, want, limit, after))
        return plans

    def _merge(
        self, plan: _Refill, rows: list[Any], dirty: Container[int], decode: Decode
    ) -> tuple[int, int, int]:
        """Append refilled rows (all ranked after the window, best first) to the window.

        Rows whose id is in ``dirty`` (no longer PENDING) are skipped; ``decode``
        rebuilds a row's request, or returns None to drop the row. Returns
        ``(placed, dropped, miscount)``: requests now in memory, rows dropped, and
        how many more rows the window counted outside than the database has
        (already corrected; negative if it has more).
        """
        host, window, want, limit = plan.host, plan.window, plan.want, plan.limit
        placed = consumed = kept = dropped = miscount = 0
        for row_id, key, priority, seq, data, _ in rows:
            if row_id in dirty:
                continue
            kept += 1
            if placed >= want:
                continue
            consumed += 1
            request = decode(row_id, host, data)
            if request is None:
                dropped += 1
                continue
            fp = fingerprint(request) if request.dont_filter else key
            window.items.append((-priority, seq, row_id, request, fp))
            placed += 1
        window.outside -= consumed
        self.loaded += placed
        if len(rows) < limit and window.outside != kept - consumed:
            # The database has fewer (or more) rows than counted: trust the database.
            miscount = window.outside - (kept - consumed)
            window.outside -= miscount
        if window.items:
            window.head = None
            self.readiness.set_head(host, (window.items[0][0], window.items[0][1]))
            self.warm.pop(host, None)
            self.warm[host] = None
        elif not window.outside:
            del self.by_host[host]
            self.readiness.set_head(host, None)
        return placed, dropped, miscount

    def evict(self, keep: str | None = None) -> None:
        """Over ``max_loaded``: drop the windows of the least recently used hosts."""
        if self.loaded <= self.max_loaded:
            return
        target = self.max_loaded * 3 // 4
        victims = []
        excess = self.loaded - target
        for host in self.warm:
            if excess <= 0:
                break
            if host != keep:
                victims.append(host)
                excess -= len(self.by_host[host].items)
        for host in victims:
            window = self.by_host[host]
            items = window.items
            window.head = (items[0][0], items[0][1])
            window.outside += len(items)
            self.loaded -= len(items)
            items.clear()
            del self.warm[host]
            self.needs_refill.discard(host)
