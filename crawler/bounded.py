"""RecentHosts: per-host state kept for the recently active hosts only.

A crawl may touch millions of hosts, but only a few thousand are active at any
moment. Whatever is kept per host (robots.txt parsers, AutoThrottle delays,
readiness overrides) lives in a :class:`RecentHosts` mapping: least recently used
first, at most ``capacity`` entries. When an insert goes over capacity the oldest
entries are evicted, except those the owner's ``evictable`` rule protects (a host
with requests in flight, a hold still in the future, a robots.txt fetch under
way): those are moved to the recent end and kept. Each insert looks at no more
than a few entries, so it stays O(1); a mapping whose oldest entries are all
protected may stay above capacity until they become evictable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAX_HOSTS", "RecentHosts"]

V = TypeVar("V")

DEFAULT_MAX_HOSTS = 10_000
"""Hosts whose state is kept. Far above the hosts a crawl has active at once (CONCURRENCY is
typically 16-512, and a host is "active" for its delay at most), so eviction only ever drops
hosts idle for a long while; at a few hundred bytes to a few KB per host (a parsed robots.txt
is the largest) it caps this state at tens of MB."""

_SCAN = 8  # entries an insert looks at, at most, to find evictable ones


def _always(_value: object) -> bool:
    return True


class RecentHosts(Generic[V]):
    """An LRU mapping ``host -> state`` of at most ``capacity`` evictable entries."""

    __slots__ = ("_entries", "capacity", "evictable", "evicted")

    def __init__(
        self, capacity: int | None = None, evictable: Callable[[V], bool] = _always
    ) -> None:
        if capacity is None:
            capacity = DEFAULT_MAX_HOSTS  # read now, so a test can lower it for a whole crawl
        if capacity < 1:
            raise ValueError(f"RecentHosts capacity must be at least 1, got {capacity}")
        self._entries: OrderedDict[str, V] = OrderedDict()
        self.capacity = capacity
        self.evictable = evictable
        self.evicted = 0  # entries dropped so far

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, host: object) -> bool:
        return host in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def get(self, host: str) -> V | None:
        """The state of ``host`` (marking it recently used), or None."""
        entries = self._entries
        value = entries.get(host)
        if value is not None:
            entries.move_to_end(host)
        return value

    def peek(self, host: str) -> V | None:
        """The state of ``host`` without marking it used, or None."""
        return self._entries.get(host)

    def put(self, host: str, value: V) -> V:
        """Store ``value`` as the most recent entry (evicting old ones if over capacity)."""
        entries = self._entries
        entries[host] = value
        entries.move_to_end(host)
        if len(entries) > self.capacity:
            self._evict()
        return value

    def pop(self, host: str) -> V | None:
        """Forget ``host`` now; its state, or None."""
        return self._entries.pop(host, None)

    def _evict(self) -> None:
        entries = self._entries
        evictable = self.evictable
        for _ in range(min(_SCAN, len(entries) - 1)):
            if len(entries) <= self.capacity:
                return
            host, value = next(iter(entries.items()))
            if evictable(value):
                del entries[host]
                self.evicted += 1
            else:
                entries.move_to_end(host)  # protected: look at it again later
