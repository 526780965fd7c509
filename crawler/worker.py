"""One request's life after the frontier: fetch, callback, route outputs, ack or fail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from yarl import URL

from .checkpoint import ItemBarrier
from .downloader import Downloader, redact, registered_domain
from .downloader.rotation import BanRules, ProxyPool
from .errors import FetchError, HttpError, NetworkError, ProxyError
from .fingerprint import url_fingerprint
from .frontier.base import Frontier, Lease, PolitenessPolicy
from .hooks import RequestHooks
from .loglines import get_logger
from .outputs import OutputRouter
from .pipeline import PipelineChain
from .request import Request
from .response import Response, ResponseLimits
from .retry import RetryDecision, RetryPolicy
from .robots import RobotsCache, Verdict
from .settings import Settings
from .spider import Spider
from .stats import Stats
from .throttle import AutoThrottle

__all__ = ["PageBudget", "RequestProcessor"]

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


class RequestProcessor:
    """Handles leased requests for one crawl; all workers share it (no per-request state)."""

    def __init__(
        self,
        spider: Spider,
        frontier: Frontier,
        downloader: Downloader,
        pipelines: PipelineChain,
        stats: Stats,
        depth_limit: int,
        retry: RetryPolicy | None = None,
        robots: RobotsCache | None = None,
        throttle: AutoThrottle | None = None,
        policy: PolitenessPolicy | None = None,
        proxies: ProxyPool | None = None,
        bans: BanRules | None = None,
        hooks: Sequence[RequestHooks] = (),
        max_links: int = _DEFAULT_MAX_LINKS,
        barrier: ItemBarrier | None = None,
    ) -> None:
        self.spider = spider
        self.frontier = frontier
        self.downloader = downloader
        self.pipelines = pipelines
        self.stats = stats
        self.outputs = OutputRouter(spider, frontier, pipelines, stats, depth_limit, barrier)
        self.retry = retry or RetryPolicy(times=0)
        self.robots = robots
        self.throttle = throttle
        self._allowed_status = frozenset(spider.handle_httpstatus_list)
        self._robots_delay_applied: set[str] = set()
        self.policy = policy or PolitenessPolicy()
        self.proxies = proxies if proxies else None
        self.bans = bans or BanRules()
        self.max_ban_retries = max(3, 2 * len(proxies)) if proxies else 0
        self.hooks = tuple(hooks)
        self.limits = ResponseLimits(max_links, stats, spider.name)  # one for every response

    async def seed(self) -> None:
        """Queue the spider's start requests (see :meth:`OutputRouter.seed`)."""
        await self.outputs.seed(self.downloader.trust_start_host)

    async def handle(self, lease: Lease) -> bool:
        """Fetch a leased request, run its callback and give the lease back.

        True if a response was received and kept (not sent back to be retried): it
        counts toward MAX_PAGES. An OutputError from the pipelines propagates and
        the lease is not given back (the crawl stops; its request is fetched again).
        """
        request = lease.request
        stats = self.stats
        if self.robots is not None and not await self._robots_allow(lease):
            return False
        proxy = None
        if self.proxies is not None and request.proxy is None:
            proxy = await self._choose_proxy(lease)
            if proxy is None:
                return False
        for hook in self.hooks:
            await hook.before_fetch(request)
        try:
            response = await self.downloader.fetch(
                request, proxy, follow=self.outputs.offsite.allows
            )
        except FetchError as exc:
            if proxy is not None and self.bans.network_errors and isinstance(exc, NetworkError):
                await self._banned(lease, proxy, exc.kind)
                return False
            decision = self.retry.for_error(request, exc)
            if decision is not None:
                await self._retry(lease, decision)
                return False
            await self._give_up(lease, exc)
            return False
        stats.inc("pages")
        stats.inc(f"status/{response.status}")
        stats.inc("bytes", len(response.body))
        if proxy is not None:
            assert self.proxies is not None
            if self.bans.is_ban(response.status, response.body):
                status = response.status
                reason = f"http_{status}" if status in self.bans.statuses else "body_pattern"
                await self._banned(lease, proxy, reason)
                return False
            self.proxies.success(proxy, registered_domain(lease.host))
        if self.throttle is not None:
            await self._adapt_delay(lease.host, response)
        if self.hooks and not await self._hooks_allow(request, response):
            stats.inc("hooks/skipped")
            await self.frontier.ack(lease)
            return True
        if response.status >= 400:
            decision = self.retry.for_status(
                request, response.status, response.headers.get("Retry-After")
            )
            if decision is not None:
                await self._retry(lease, decision)
                return False
        if 300 <= response.status < 400 and response.status != 304 and request.allow_redirects:
            # The downloader refused to follow: the target is offsite (or unusable).
            self.stats.inc("offsite")
            self.stats.inc("offsite/redirect")
            await self.frontier.ack(lease)
            return True
        if response.history and not await self._first_visit(response):
            stats.inc("duplicates/redirect")
            await self.frontier.ack(lease)
            return True
        if not self._status_allowed(response):
            error = HttpError(
                f"ignoring HTTP {response.status} from {response.url}", response.url, response
            )
            await self._give_up(lease, error, level=logging.INFO)
            return True
        response.limits = self.limits
        if _parse_off_loop(response.body) and _is_html(response):
            await response.prepare_html()
        callback = request.callback or self.spider.parse
        outputs = self.outputs
        held = await outputs.run(
            callback, response, request, response, "callback", lease.fingerprint
        )
        try:
            await self.frontier.ack(lease)
        finally:
            if held:
                outputs.leave()  # its items and its ack go into the same checkpoint
        return True

    async def _hooks_allow(self, request: Request, response: Response) -> bool:
        """Every hook sees the response; False from any one skips the callback."""
        allow = True
        for hook in self.hooks:
            if not await hook.after_fetch(request, response):
                allow = False
        return allow

    async def _give_up(self, lease: Lease, error: FetchError, level: int = logging.WARNING) -> None:
        """The request finally failed: count it by kind, run its errback, record the failure."""
        self.stats.inc(f"failures/{error.kind}")
        retries = lease.request.meta.get("retry_times", 0)
        suffix = f" (after {retries} retries)" if retries else ""
        logger.log(level, "[%s] %s%s", self.spider.name, error, suffix)
        held = await self._run_errback(lease.request, error)
        try:
            await self.frontier.fail(lease, error.kind)
        finally:
            if held:
                self.outputs.leave()

    async def _retry(self, lease: Lease, decision: RetryDecision) -> None:
        """Send the request back to the frontier to be tried again after the decided delay."""
        request = lease.request
        request.meta["retry_times"] = request.meta.get("retry_times", 0) + 1
        self.stats.inc("retries")
        self.stats.inc(f"retries/{decision.reason}")
        logger.debug(
            "[%s] retrying %s in %.2fs (%s, try %d)",
            self.spider.name,
            request.url,
            decision.delay_s,
            decision.reason,
            request.meta["retry_times"],
        )
        if decision.hold_host:
            await self.frontier.hold_host(lease.host, decision.delay_s)
        await self.frontier.retry(lease, decision.delay_s)

    async def _choose_proxy(self, lease: Lease) -> str | None:
        """A proxy for this request; None means the lease went back to wait for one."""
        assert self.proxies is not None
        proxy, wait_s = self.proxies.choose(registered_domain(lease.host))
        if proxy is not None:
            return proxy
        if wait_s < 0:
            error = ProxyError(f"every proxy is retired; cannot fetch {lease.request.url}")
            await self._give_up(lease, error)
            return None
        self.stats.inc("proxies/waits")
        await self.frontier.retry(lease, wait_s)  # every proxy is cooling down here: wait
        return None

    async def _banned(self, lease: Lease, proxy: str, reason: str) -> None:
        """The proxy is banned for this domain: bench it and try the request through another."""
        assert self.proxies is not None
        request = lease.request
        domain = registered_domain(lease.host)
        self.stats.inc("proxies/bans")
        self.stats.inc(f"proxies/bans/{reason}")
        logger.info(
            "[%s] proxy %s banned for %s (%s)", self.spider.name, redact(proxy), domain, reason
        )
        if self.proxies.ban(proxy, domain):
            self.downloader.sessions.clear_cookies(lease.host)  # sticky: a new identity
        tries = request.meta["ban_retries"] = request.meta.get("ban_retries", 0) + 1
        if tries > self.max_ban_retries:
            error = ProxyError(f"{request.url} was refused through {tries} proxies ({reason})")
            await self._give_up(lease, error)
            return
        await self.frontier.retry(lease, 0.0)

    async def _robots_allow(self, lease: Lease) -> bool:
        """Check robots.txt; a False answer means the lease has already been given back."""
        assert self.robots is not None
        request = lease.request
        verdict = await self.robots.check(request)
        host = lease.host
        if verdict.delay_s is not None and host not in self._robots_delay_applied:
            self._robots_delay_applied.add(host)
            await self._apply_robots_delay(host, verdict.delay_s)
            # The robots.txt fetch was itself a request: the first page waits a delay too.
            await self.frontier.hold_host(host, verdict.delay_s)
        kind = verdict.verdict
        if kind is Verdict.ALLOWED:
            if verdict.waited and verdict.delay_s:
                # Leased before the Crawl-delay was known: queue it again to be spaced out.
                self.stats.inc("robots/requeued")
                await self.frontier.retry(lease, 0.0)
                return False
            return True
        if kind is Verdict.DISALLOWED:
            self.stats.inc("robots/disallowed")
            logger.debug("[%s] robots.txt disallows %s", self.spider.name, request.url)
            await self.frontier.ack(lease)
        elif kind is Verdict.UNAVAILABLE:
            self.stats.inc("robots/waiting")
            await self.frontier.hold_host(host, verdict.retry_in_s)
            await self.frontier.retry(lease, verdict.retry_in_s)
        else:
            self.stats.inc("failures/robots_unavailable")
            await self.frontier.fail(lease, "robots_unavailable")
        return False

    async def _apply_robots_delay(self, host: str, delay_s: float) -> None:
        self.stats.set_value(f"robots/delay/{host}", delay_s)
        if self.throttle is not None:
            self.throttle.set_floor(host, max(delay_s, self.throttle.floor(host)))
            await self.frontier.set_host_delay(host, max(delay_s, self.throttle.delay(host)))
        else:
            await self.frontier.set_host_delay(host, max(delay_s, self.frontier_delay(host)))

    def frontier_delay(self, host: str) -> float:
        """The configured (non-robots) delay of ``host``."""
        return self.policy.host_delays.get(host, self.policy.delay_s)

    async def _adapt_delay(self, host: str, response: Response) -> None:
        assert self.throttle is not None
        latency = response.timings.get("ttfb") or response.timings.get("total") or 0.0
        await self.frontier.set_host_delay(
            host, self.throttle.observe(host, latency, response.status)
        )

    def _status_allowed(self, response: Response) -> bool:
        status = response.status
        if 200 <= status < 300 or status in self._allowed_status:
            return True
        meta = response.request.meta
        if meta.get("handle_httpstatus_all") or status in meta.get("handle_httpstatus_list", ()):
            return True
        return 300 <= status < 400 and not response.request.allow_redirects

    async def _first_visit(self, response: Response) -> bool:
        for hop in response.history:
            self.stats.inc(f"redirects/{hop.status}")
        if response.request.dont_filter:
            return True
        # Every hop after the first and the final URL are pages in their own right:
        # remember them, and skip this response if its final page was seen before.
        for hop in response.history[1:]:
            await self.frontier.add_seen(url_fingerprint(URL(hop.url)))
        if response.url == response.request.url:
            return True
        return await self.frontier.add_seen(url_fingerprint(response._url))

    async def _run_errback(self, request: Request, exc: FetchError) -> bool:
        if request.errback is None:
            return False
        exc.request = request  # type: ignore[attr-defined]
        return await self.outputs.run(request.errback, exc, request, None, "errback")


def _parse_off_loop(body: bytes) -> bool:
    """Big pages, and pages with tags enough to need the nesting scan, parse in a thread."""
    size = len(body)
    return size >= THREAD_PARSE_BYTES or (size > 3 * SCAN_TAGS and body.count(b"<") > SCAN_TAGS)


def _is_html(response: Response) -> bool:
    """True if the callback will likely parse this body as HTML (no Content-Type counts)."""
    return "html" in response.headers.get("Content-Type", "html").lower()
