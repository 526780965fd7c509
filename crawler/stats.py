"""Crawl statistics: counters, a progress line and the final summary.

Nothing is kept per host: a per-host value (``robots/delay/<host>``) is folded into
``<name>/hosts`` (how many hosts had one), ``<name>/max`` and ``<name>/max_host``, so the
stats stay the same size however many hosts a crawl touches.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Stats", "StatsSnapshot"]

# Keys named ``<prefix><host>`` by callers, folded by :meth:`Stats.host_value`.
_PER_HOST_PREFIXES = ("robots/delay/",)


class StatsSnapshot(dict[str, Any]):
    """A stats snapshot: a plain dict, except that a key never counted reads as 0."""

    def __missing__(self, key: str) -> int:
        return 0


class Stats:
    """Named counters (``pages``, ``status/200``, ``failures/timeout`` ...) and timing."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.values: dict[str, Any] = {}
        self.started = time.time()
        self._start_monotonic = time.monotonic()
        self.finished: float | None = None
        self._baseline_pages = 0

    def resume_from(self, counters: dict[str, int]) -> None:
        """Continue the counters of an earlier run (rates count this run only)."""
        self.counters.update(counters)
        self._baseline_pages = counters.get("pages", 0)

    def inc(self, key: str, count: int = 1) -> None:
        """Add ``count`` to counter ``key``."""
        counters = self.counters
        counters[key] = counters.get(key, 0) + count

    def get(self, key: str) -> int:
        """Current value of counter ``key`` (0 if never counted)."""
        return self.counters.get(key, 0)

    def set_value(self, key: str, value: Any) -> None:
        """Record a non-counter value (finish reason, settings).

        A per-host key (``robots/delay/<host>``) is folded by :meth:`host_value`.
        """
        for prefix in _PER_HOST_PREFIXES:
            if key.startswith(prefix):
                self.host_value(prefix[:-1], key[len(prefix) :], value)
                return
        self.values[key] = value

    def host_value(self, name: str, host: str, value: float) -> None:
        """Fold one host's ``value`` into ``name/hosts``, ``name/max`` and ``name/max_host``."""
        values = self.values
        values[f"{name}/hosts"] = values.get(f"{name}/hosts", 0) + 1
        if value > values.get(f"{name}/max", float("-inf")):
            values[f"{name}/max"] = value
            values[f"{name}/max_host"] = host

    @property
    def elapsed_s(self) -> float:
        """Seconds since the crawl started (until it finished)."""
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self._start_monotonic

    def finish(self, reason: str) -> None:
        """Stop the clock and record why the crawl ended."""
        self.finished = time.monotonic()
        self.values["finish_reason"] = reason

    def snapshot(self) -> StatsSnapshot:
        """An immutable-by-copy view: counters, derived rates and values (missing keys: 0)."""
        data = StatsSnapshot(sorted(self.counters.items()))
        data["elapsed_s"] = round(self.elapsed_s, 3)
        data["pages_per_s"] = round(self.rate(), 2)
        data["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        data.update(self.values)
        return data

    def rate(self) -> float:
        """Pages per second in this run."""
        elapsed = self.elapsed_s
        return (self.get("pages") - self._baseline_pages) / elapsed if elapsed > 0 else 0.0

    def failures(self) -> int:
        """Requests that finally failed, all kinds together."""
        return sum(v for k, v in self.counters.items() if k.startswith("failures/"))
