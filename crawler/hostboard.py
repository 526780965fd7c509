"""What each host is doing, for the progress display: requests in flight, pages, latency,
and why a host is waiting (robots.txt unavailable, Retry-After, crawl-delay, proxies resting).

Bounded: the board keeps the most recently active ``max_hosts`` hosts (a crawl of a
million hosts keeps a few hundred entries). Updating it costs two dict operations per
request; reading it (once a second at most) sorts the entries.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .clock import Clock, MonotonicClock

__all__ = ["HostBoard", "HostLine", "HostWait"]

MAX_HOSTS = 512


class _Host:
    __slots__ = ("in_flight", "pages", "seconds", "wait", "wait_until")

    def __init__(self) -> None:
        self.in_flight = 0
        self.pages = 0
        self.seconds = 0.0
        self.wait = ""
        self.wait_until: float | None = None


@dataclass(frozen=True, slots=True)
class HostLine:
    """One host's activity: in flight now, pages so far, mean response time (ms)."""

    host: str
    in_flight: int
    pages: int
    mean_ms: float


@dataclass(frozen=True, slots=True)
class HostWait:
    """A host that is waiting, why, and until when (clock time; None: no known end)."""

    host: str
    reason: str
    until: float | None


class HostBoard:
    """Per-host activity and waits, bounded to the ``max_hosts`` most recently active."""

    def __init__(self, clock: Clock | None = None, max_hosts: int = MAX_HOSTS) -> None:
        self.clock = clock or MonotonicClock()
        self._hosts: OrderedDict[str, _Host] = OrderedDict()
        self._max = max_hosts

    def _get(self, host: str) -> _Host:
        hosts = self._hosts
        entry = hosts.get(host)
        if entry is None:
            entry = hosts[host] = _Host()
            if len(hosts) > self._max:
                for name, old in hosts.items():  # the least recently active idle host
                    if not old.in_flight:
                        del hosts[name]
                        break
        else:
            hosts.move_to_end(host)
        return entry

    def started(self, host: str) -> None:
        """A request to ``host`` went out."""
        entry = self._get(host)
        entry.in_flight += 1
        entry.wait = ""  # it is not waiting any more
        entry.wait_until = None

    def finished(self, host: str, seconds: float | None) -> None:
        """A request to ``host`` ended; ``seconds`` is its response time (None: no response)."""
        entry = self._hosts.get(host)
        if entry is None:
            return
        entry.in_flight = max(0, entry.in_flight - 1)
        if seconds is not None:
            entry.pages += 1
            entry.seconds += seconds

    def waiting(self, host: str, reason: str, for_s: float | None = None) -> None:
        """``host`` waits: ``reason`` in a few words, for ``for_s`` seconds if known."""
        entry = self._get(host)
        entry.wait = reason
        entry.wait_until = self.clock.now() + for_s if for_s is not None else None

    def busiest(self, count: int = 3) -> list[HostLine]:
        """The hosts with the most requests in flight (then the most pages)."""
        lines = [self._line(host, e) for host, e in self._hosts.items() if e.in_flight]
        lines.sort(key=lambda line: (-line.in_flight, -line.pages, line.host))
        return lines[:count]

    def slowest(self, count: int = 3) -> list[HostLine]:
        """The hosts with the highest mean response time."""
        lines = [self._line(host, e) for host, e in self._hosts.items() if e.pages]
        lines.sort(key=lambda line: (-line.mean_ms, line.host))
        return lines[:count]

    def waits(self, count: int = 5) -> list[HostWait]:
        """Hosts waiting now (a wait whose end has passed is over), longest wait first."""
        now = self.clock.now()
        found = []
        for host, entry in self._hosts.items():
            if not entry.wait:
                continue
            if entry.wait_until is not None and entry.wait_until <= now:
                entry.wait, entry.wait_until = "", None
                continue
            found.append(HostWait(host, entry.wait, entry.wait_until))
        found.sort(key=lambda w: (-(w.until or float("inf")), w.host))
        return found[:count]

    @staticmethod
    def _line(host: str, entry: _Host) -> HostLine:
        mean = entry.seconds / entry.pages * 1000 if entry.pages else 0.0
        return HostLine(host, entry.in_flight, entry.pages, mean)
