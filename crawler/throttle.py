"""AutoThrottle: adapt each host's delay to its latency and to 429/503 answers.

Like Scrapy's: the target delay is ``latency / target_concurrency``; the new
delay moves half-way to it, never below the host's floor (DOWNLOAD_DELAY or
robots.txt Crawl-delay) nor above ``max_delay_s``; error answers never lower
it, and 429/503 double it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AutoThrottle"]


@dataclass
class AutoThrottle:
    """Per-host adaptive delay."""

    start_delay_s: float = 1.0
    max_delay_s: float = 60.0
    target_concurrency: float = 1.0
    default_floor_s: float = 0.0
    _delays: dict[str, float] = field(default_factory=dict)
    _floors: dict[str, float] = field(default_factory=dict)

    def set_floor(self, host: str, floor_s: float) -> None:
        """The lowest delay allowed for ``host`` (e.g. its robots.txt Crawl-delay)."""
        self._floors[host] = floor_s

    def floor(self, host: str) -> float:
        """The delay floor of ``host``."""
        return self._floors.get(host, self.default_floor_s)

    def delay(self, host: str) -> float:
        """The current adapted delay of ``host``."""
        return self._delays.get(host, max(self.start_delay_s, self.floor(host)))

    def observe(self, host: str, latency_s: float, status: int) -> float:
        """Record one response; return the host's new delay."""
        old = self.delay(host)
        floor = self.floor(host)
        if status in (429, 503):
            new = max(old * 2, floor, 0.1)
        else:
            target = latency_s / self.target_concurrency
            new = (old + target) / 2.0
            if status >= 400 and new < old:
                new = old  # an error answer is no reason to speed up
        new = min(max(new, floor), self.max_delay_s)
        self._delays[host] = new
        return new
