"""Acks, failures and retries of one process on their way to Redis, and acks not yet final.

``ack()`` does not wait for Redis: the release is queued and rides along with the
process's next ``LEASE`` call (a worker acks and leases again at once, so that is
one round trip for both), or goes alone in a ``RELEASE`` call right after if no
lease comes. A release is idempotent, so a batch whose answer was lost is simply
sent again. Acks and failures then stay leased (state D/F) until ``finalize()``,
which the frontier's ``flush()`` calls once the items are written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ...errors import CrawlerError
from ...loglines import get_logger
from ..base import FrontierFailed
from .link import RedisLink

__all__ = ["Release", "Releases"]

logger = get_logger("crawler.frontier")

Release = tuple[bytes, bytes, float, bytes, str]
"""A lease given back: request id, outcome (D done, F failed, R retry), retry delay, data, URL."""


class Releases:
    """The releases of worker ``worker`` not sent yet, in transit, or not yet final."""

    def __init__(
        self,
        link: RedisLink,
        worker: str,
        header: Callable[[], list[Any]],
        final: bool,
        on_ready: Callable[[], None],
    ) -> None:
        self.link = link
        self.worker = worker
        self.header = header  # the RELEASE script's first arguments: now, worker, limit, final
        self.final = final  # acks are final at once (no flush needed)
        self.on_ready = on_ready  # something may be ready for an idle worker
        self.unflushed: list[bytes] = []  # acked / failed, final at the next finalize()
        self._queued: list[Release] = []
        self._in_transit = 0  # batches sent and not answered yet
        self._landed = asyncio.Event()  # set while no batch is in transit
        self._landed.set()
        self._kicked = False
        self._sender: asyncio.Task[None] | None = None

    def ids(self) -> list[bytes]:
        """Request ids still leased in Redis by these releases (for the heartbeat)."""
        return [release[0] for release in self._queued] + self.unflushed

    def queue(self, release: Release) -> None:
        """Queue a release; the next lease takes it along, else a sender right after."""
        self._queued.append(release)
        if not self._kicked:
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._kick)

    def take(self, args: list[Any]) -> list[Release]:
        """Move the queued releases into a script's ``args``; ``settle()`` the batch after."""
        batch, self._queued = self._queued, []
        if batch:
            self._in_transit += 1
            self._landed.clear()
            for rid, outcome, delay_s, data, _ in batch:
                args += (rid, outcome, delay_s, data)
        return batch

    def settle(self, batch: list[Release], codes: list[int] | None) -> None:
        """Account for a batch Redis answered (``codes``) or that failed (None: sent again)."""
        if not batch:
            return
        self._in_transit -= 1
        if not self._in_transit:
            self._landed.set()
        if codes is None:
            self._queued[:0] = batch
            return
        for (rid, outcome, _, _, url), code in zip(batch, codes, strict=False):
            if not code:
                logger.warning(
                    "frontier %s: the lease of %s expired and was re-delivered; its result"
                    " counts when the other worker is done (is the event loop blocked for"
                    " longer than LEASE_TIMEOUT?)",
                    self.link.job,
                    url,
                )
            elif outcome != b"R" and not self.final:
                self.unflushed.append(rid)
        if codes[-1]:
            self.on_ready()

    async def send(self, wait: bool = True, give_up_s: float | None = None) -> None:
        """Send the queued releases; with ``wait``, also until every batch in transit landed."""
        args = self.header()
        batch = self.take(args)
        if batch:
            reply = None
            try:
                reply = await self.link.script("RELEASE", args, give_up_s)
            finally:
                self.settle(batch, reply)
        if wait:
            await self._landed.wait()

    async def finalize(self, give_up_s: float | None = None) -> None:
        """Make the acks and failures sent so far final (their items are written); raises
        the link's failure once it failed (nothing can be made final any more)."""
        if self.link.failure is not None:
            raise self.link.failure.with_traceback(None)
        if not self.unflushed:
            return
        ids, self.unflushed = self.unflushed, []
        try:
            exhausted = await self.link.script("FINALIZE", [self.worker, *ids], give_up_s)
        except BaseException:
            self.unflushed[:0] = ids
            raise
        if exhausted:
            self.on_ready()

    async def close(self, give_up_s: float) -> None:
        """Send everything; what no ``finalize()`` made final stays leased.

        The engine's last checkpoint finalizes after the items are written; if it
        could not (an output failed), those requests must be fetched again: their
        leases expire and another worker (or the next run) takes them.
        """
        await self.send(give_up_s=give_up_s)
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)

    async def sign_off(self, held: list[bytes], give_up_s: float) -> None:
        """:meth:`close`, give the leases still ``held`` back, leave the job's workers."""
        await self.close(give_up_s)
        link = self.link
        if held:
            await link.script("ABANDON", [*self.header()[:3], *held], give_up_s)
        client = link.client
        await link.do(lambda: client.zrem(link.key("workers"), self.worker), 1.0)

    def clear(self) -> None:
        """Forget everything (the job's keys were deleted)."""
        self._queued.clear()
        self.unflushed.clear()

    def _kick(self) -> None:
        self._kicked = False
        if self._queued and (self._sender is None or self._sender.done()):
            self._sender = asyncio.create_task(self._send_soon(), name=f"release {self.link.job}")

    async def _send_soon(self) -> None:
        try:
            await self.send(wait=False)
        except FrontierFailed:
            pass  # the crawl stops; said once, by the frontier
        except CrawlerError as exc:
            logger.error("frontier %s: giving back leases failed: %s", self.link.job, exc)
