"""One request's life after the frontier: middlewares and fetch, callback, one outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from time import perf_counter
from typing import TYPE_CHECKING

from .checkpoint import ItemBarrier
from .clock import Clock, MonotonicClock
from .downloader import Downloader
from .errors import FetchError
from .frontier.base import Frontier, Lease
from .hostboard import HostBoard
from .loglines import get_logger, short_url
from .middleware import (
    DONE,
    Done,
    DownloaderMiddleware,
    EndRequest,
    Failed,
    HoldHost,
    Outcome,
    Retry,
    build_chain,
    lease_started,
)
from .outputs import OutputRouter
from .pipeline import PipelineChain
from .request import Request
from .response import Response, ResponseLimits
from .settings import Settings
from .spider import Spider
from .stats import Stats
from .urlfilter import UrlFilter

if TYPE_CHECKING:
    from .render import Renderer

__all__ = ["PageBudget", "RequestProcessor", "StopConditions"]

logger = get_logger("crawler.worker")

# An HTML body this big is decoded and parsed in a thread before its callback runs (Lexbor
# parses without the GIL): on the loop that takes ~7 ms at 128 KiB and 0.1-0.5 s at 10 MiB.
# Smaller pages keep the lazy parse on the loop: no thread, no extra object.
THREAD_PARSE_BYTES = 128 * 1024
_DEFAULT_MAX_LINKS: int = Settings.__dataclass_fields__["MAX_LINKS_PER_RESPONSE"].default  # type: ignore[assignment]
# A page with this many tags may nest deep enough to need the nesting guard's scan, which is
# pure Python (~1 µs a tag): it runs in the same thread call, off the event loop.
SCAN_TAGS = 4096


class PageBudget:
    """MAX_PAGES: how many responses a crawl keeps before it stops.

    A response counts when it is kept: handed to a callback, or a final failure,
    skip or redirect; not a response sent back to be retried (a 503, a ban), nor
    a request that got no response (a network error, a robots.txt re-queue, a
    proxy wait). A worker reserves a page before it leases a request and settles
    it once the request was handled, so no more requests are in flight than pages
    are left: the crawl stops exactly at the limit, with nothing in flight whose
    response it would have to throw away.
    """

    __slots__ = ("_changed", "_closed", "kept", "limit", "reserved")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = 0
        self.reserved = 0
        self._closed = False
        self._changed = asyncio.Event()

    async def reserve(self) -> bool:
        """Wait for a page to be free and reserve it; False once the crawl must stop."""
        while not self._closed and self.kept + self.reserved >= self.limit:
            if self.kept >= self.limit:
                return False
            self._changed.clear()
            await self._changed.wait()
        if self._closed:
            return False
        self.reserved += 1
        return True

    def settle(self, kept: bool) -> bool:
        """End a reservation (``kept``: a response was kept); True if that was the last page."""
        self.reserved -= 1
        if kept:
            self.kept += 1
        self._changed.set()
        return kept and self.kept >= self.limit

    def close(self) -> None:
        """The frontier is exhausted or stopped: every waiting and later reserve() is False."""
        self._closed = True
        self._changed.set()


class StopConditions:
    """MAX_ITEMS and MAX_ERRORS, counted from this run's start (a resumed crawl's earlier
    items and errors do not count). Errors are callback errors plus requests that finally
    failed. MAX_DURATION is a timer on the crawl's clock (see the engine)."""

    __slots__ = ("active", "errors_from", "items_from", "max_errors", "max_items")

    def __init__(self, max_items: int = 0, max_errors: int = 0, stats: Stats | None = None) -> None:
        self.max_items = max_items
        self.max_errors = max_errors
        self.active = bool(max_items or max_errors)
        self.items_from = stats.get("items") if stats is not None else 0
        self.errors_from = _errors(stats) if stats is not None else 0

    @classmethod
    def from_settings(cls, settings: Settings, stats: Stats) -> StopConditions:
        """The conditions the settings ask for, counted from ``stats`` as they are now."""
        return cls(settings.MAX_ITEMS, settings.MAX_ERRORS, stats)

    def reached(self, stats: Stats) -> str | None:
        """The finish reason of the first condition met (``max_items``, ``max_errors``)."""
        if self.max_items and stats.get("items") - self.items_from >= self.max_items:
            return "max_items"
        if self.max_errors and _errors(stats) - self.errors_from >= self.max_errors:
            return "max_errors"
        return None


def _errors(stats: Stats) -> int:
    return stats.get("callback_errors") + stats.failures()


class RequestProcessor:
    """Handles leased requests for one crawl; all workers share it (no per-request state).

    ``middlewares`` (outermost first) wrap the fetch; the chain is built once, here.
    """

    def __init__(
        self,
        spider: Spider,
        frontier: Frontier,
        downloader: Downloader,
        pipelines: PipelineChain,
        stats: Stats,
        depth_limit: int,
        middlewares: Sequence[DownloaderMiddleware] = (),
        max_links: int = _DEFAULT_MAX_LINKS,
        barrier: ItemBarrier | None = None,
        hosts: HostBoard | None = None,
        follow_binary_links: bool = False,
        clock: Clock | None = None,
        url_filter: UrlFilter | None = None,
    ) -> None:
        self.spider = spider
        self.frontier = frontier
        self.downloader = downloader
        self.pipelines = pipelines
        self.stats = stats
        self.outputs = OutputRouter(
            spider, frontier, pipelines, stats, depth_limit, barrier, url_filter
        )
        self.middlewares = tuple(middlewares)
        self.hosts = hosts or HostBoard()
        self.clock = clock or MonotonicClock()
        self.limits = ResponseLimits(max_links, stats, spider.name, not follow_binary_links)
        self._follow = self.outputs.follows  # redirect targets: offsite, URL patterns
        self._send = build_chain(self.middlewares, self._fetch)
        self.renderer: Renderer | None = None  # set by assembly.py; closed by close()

    async def seed(self) -> None:
        """Queue the spider's start requests (see :meth:`OutputRouter.seed`)."""
        await self.outputs.seed(self.downloader.trust_start_host)

    async def handle(self, lease: Lease) -> bool:
        """Send a leased request through the middlewares, run its callback, give the lease back.

        True if a response was received and kept (not sent back to be retried): it
        counts toward MAX_PAGES. An OutputError from the pipelines propagates and
        the lease is not given back (the crawl stops; its request is fetched again).
        """
        request = lease.request
        lease_started.set(self.clock.now())  # no await since the lease: its start time
        try:
            response = await self._send(request)
        except EndRequest as end:
            return await self._give_back(lease, end.outcome)
        except FetchError as exc:
            return await self._give_back(lease, Failed(exc.kind, exc))
        response.limits = self.limits
        if _parse_off_loop(response) and _is_html(response):
            await response.prepare_html()
        callback = request.callback or self.spider.parse
        held = await self.outputs.run(
            callback, response, request, response, "callback", lease.fingerprint
        )
        return await self._give_back(lease, DONE, held)

    async def _fetch(self, request: Request) -> Response:
        """The innermost handler: the downloader."""
        hosts, host = self.hosts, request.host
        hosts.started(host)
        started = perf_counter()
        seconds = None
        try:
            renderer = self.renderer
            if renderer is not None and (request.render or renderer.always):
                response = await renderer.fetch(request)  # Chromium (crawler/render)
            else:
                response = await self.downloader.fetch(request, follow=self._follow)
            seconds = perf_counter() - started
        finally:
            hosts.finished(host, seconds)
        if _debug():
            _log_response(self.spider.name, request, response, seconds)
        stats = self.stats
        stats.inc("pages")
        stats.inc(f"status/{response.status}")
        stats.inc("bytes", len(response.body))
        return response

    async def close(self) -> None:
        """Close what the processor owns (the browser, if a page was rendered)."""
        if self.renderer is not None:
            await self.renderer.close()

    async def _give_back(self, lease: Lease, outcome: Outcome, held: bool = False) -> bool:
        """The one place a lease is given back: ack, retry, hold the host, or fail.

        ``held``: the callback's items wait in the checkpoint barrier for this ack.
        Returns whether the outcome keeps a response (it counts toward MAX_PAGES).
        """
        frontier = self.frontier
        try:
            if type(outcome) is Done:
                await frontier.ack(lease)
            elif isinstance(outcome, Retry | HoldHost):
                if outcome.counted:
                    self._count_retry(lease.request, outcome.delay_s, outcome.reason)
                if type(outcome) is HoldHost:
                    if outcome.counted:  # a server's Retry-After or back-off (robots says its own)
                        why = f"server asked to wait ({outcome.reason})"
                        self.hosts.waiting(lease.host, why, outcome.delay_s)
                    await frontier.hold_host(lease.host, outcome.delay_s)
                await frontier.retry(lease, outcome.delay_s)
            else:
                assert isinstance(outcome, Failed)
                self.stats.inc(f"failures/{outcome.reason}")
                if outcome.error is not None:
                    held = await self._report_failure(lease.request, outcome.error, outcome.level)
                await frontier.fail(lease, outcome.reason)
        finally:
            if held:
                self.outputs.leave()  # its items and its ack go into the same checkpoint
        return outcome.kept

    def _count_retry(self, request: Request, delay_s: float, reason: str) -> None:
        request.meta["retry_times"] = request.meta.get("retry_times", 0) + 1
        self.stats.inc("retries")
        self.stats.inc(f"retries/{reason}")
        logger.debug(
            "[%s] retrying %s in %.2fs (%s, try %d)",
            self.spider.name,
            request.url,
            delay_s,
            reason,
            request.meta["retry_times"],
        )

    async def _report_failure(self, request: Request, error: FetchError, level: int) -> bool:
        """Log the final failure and run the request's errback (True: its items are held)."""
        retries = request.meta.get("retry_times", 0)
        suffix = f" (after {retries} retries)" if retries else ""
        logger.log(level, "[%s] %s%s", self.spider.name, error, suffix)
        if request.errback is None:
            return False
        error.request = request  # type: ignore[attr-defined]
        return await self.outputs.run(request.errback, error, request, None, "errback")


def _debug() -> bool:
    return logger.isEnabledFor(logging.DEBUG)


def _log_response(spider: str, request: Request, response: Response, seconds: float | None) -> None:
    """``-L DEBUG``: one line per response (status, method, URL, referring page, size, time)."""
    referer = f" (from {short_url(request.referer, 100)})" if request.referer else ""
    took = f" in {seconds * 1000:.0f} ms" if seconds is not None else ""
    logger.debug(
        "[%s] fetched %d %s %s%s, %d bytes%s",
        spider,
        response.status,
        request.method,
        short_url(response.url),
        referer,
        len(response.body),
        took,
    )


def _parse_off_loop(response: Response) -> bool:
    """Big pages, and pages with tags enough to need the nesting scan, parse in a thread.

    The count of ``<`` is kept on the response: the nesting guard does not count again."""
    body = response.body
    size = len(body)
    if size >= THREAD_PARSE_BYTES:
        return True
    if size <= 3 * SCAN_TAGS:
        return False
    tags = body.count(b"<")
    response._tags = (body, tags)
    return tags > SCAN_TAGS


def _is_html(response: Response) -> bool:
    """True if the callback will likely parse this body as HTML (no Content-Type counts)."""
    return "html" in response.headers.get("Content-Type", "html").lower()
