"""This process's Redis leases and the request ids they stand for, safe from reissued ids.

Redis may come back from an outage with an older state than the one the workers saw:
restored from an RDB snapshot after a crash, an AOF with ``appendfsync everysec`` after
a power loss, a replica promoted before it had every write. The job's epoch is the same
(its state is consistent, only older), so the crawl goes on: what was done since is done
again. But the request ids issued since are issued again, to other requests, and a
worker may lease such an id while it still holds the older lease of the same id. That
older lease is void from then on: giving it back would settle the other request.
"""

from __future__ import annotations

from ...loglines import get_logger
from ..base import Lease
from ..leases import LeaseBook

__all__ = ["HeldLeases"]

logger = get_logger("crawler.frontier")


class HeldLeases:
    """Leases held by this process's workers and their request ids (one live lease per id)."""

    __slots__ = ("_book", "_count", "_live")

    def __init__(self, job: str) -> None:
        self._book: LeaseBook[tuple[bytes, int]] = LeaseBook(job)
        self._count = 0  # leases handed out so far: each one's number
        self._live: dict[bytes, int] = {}  # request id -> number of the lease that holds it

    def __len__(self) -> int:
        return len(self._live)

    def add(self, lease: Lease, rid: bytes) -> None:
        """Record that ``lease`` stands for request ``rid`` (voiding an older lease of it)."""
        self._count += 1
        self._live[rid] = self._count
        self._book.add(lease, (rid, self._count))

    def give_back(self, lease: Lease, how: str) -> bytes | None:
        """Settle ``lease`` (``how``: ack, fail, retry) and return its request id; None if
        it was not leased here, or is void (its id was issued again since)."""
        held = self._book.give_back(lease, how)
        if held is None:
            return None
        rid, number = held
        if self._live.get(rid) != number:
            logger.warning(
                "frontier %s: %s came back from Redis with an older state (its id was issued"
                " again): its result does not count, it is fetched again",
                self._book.where,
                lease.request.url,
            )
            return None
        del self._live[rid]
        return rid

    def keys(self) -> list[bytes]:
        """The request ids of every live lease."""
        return list(self._live)

    def clear(self) -> None:
        """Forget every lease (the stored state was deleted or given back)."""
        self._book.clear()
        self._live.clear()
