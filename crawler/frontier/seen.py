"""A bounded cache of fingerprints known to be stored in a persistent frontier's seen set.

The set in the file or in Redis only grows, so a fingerprint found there once is
a duplicate for good: most links of a page are such repeats of recent links, and
the cache refuses them without a query. It keeps the newest ``max_size`` (when
full it drops the older half), so memory stays bounded however long the crawl.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["SeenCache"]


class SeenCache:
    """The most recently seen fingerprints, at most ``max_size`` of them."""

    __slots__ = ("_fps", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._fps: dict[bytes, None] = {}

    def __contains__(self, fp: object) -> bool:
        return fp in self._fps

    def __len__(self) -> int:
        return len(self._fps)

    def add(self, fps: Iterable[bytes]) -> None:
        """Remember ``fps`` as stored; over ``max_size``, keep the newest half."""
        known = self._fps
        known.update(dict.fromkeys(fps))
        if len(known) > self.max_size:  # repeated links are mostly recent ones
            self._fps = dict.fromkeys(list(known)[-(self.max_size // 2) :])

    def clear(self) -> None:
        """Forget everything (the stored set was deleted)."""
        self._fps.clear()
