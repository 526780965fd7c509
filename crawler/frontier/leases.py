"""The lease book: which leases this process handed out, and what each one stands for.

A persistent frontier (SQLite, Redis) hands out a :class:`~crawler.frontier.base.Lease`
and must find, when it comes back, the stored request it stands for (a row id, a
Redis request id). The book keys them by the lease object itself (``id(lease)``,
checked with ``is``), so a copy or a forged lease is refused, and gives each lease
back once: :meth:`LeaseBook.give_back` settles it (a second ack, fail or retry
raises :class:`~crawler.errors.LeaseError`) before anything is counted.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ..loglines import get_logger
from .base import Lease

__all__ = ["LeaseBook"]

logger = get_logger("crawler.frontier")

K = TypeVar("K")


class LeaseBook(Generic[K]):
    """Leases held by this process's workers: ``id(lease) -> (lease, stored id)``."""

    __slots__ = ("_held", "where")

    def __init__(self, where: str) -> None:
        self.where = where  # names the frontier in warnings (its path, or its job)
        self._held: dict[int, tuple[Lease, K]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def add(self, lease: Lease, key: K) -> None:
        """Record that ``lease`` stands for the stored request ``key``."""
        self._held[id(lease)] = (lease, key)

    def give_back(self, lease: Lease, how: str) -> K | None:
        """Settle ``lease`` (``how``: ack, fail, retry) and return its stored id.

        LeaseError if it was given back before; None (with a warning) if this
        process did not hand it out, so nothing is counted for it.
        """
        lease.settle(how)  # a second ack/fail/retry raises LeaseError
        held = self._held.pop(id(lease), None)
        if held is None or held[0] is not lease:
            logger.warning("frontier %s: %s was not leased here", self.where, lease.request)
            return None
        return held[1]

    def keys(self) -> list[K]:
        """The stored ids of every lease held now."""
        return [key for _, key in self._held.values()]

    def clear(self) -> None:
        """Forget every lease (the stored state was deleted or given back)."""
        self._held.clear()
