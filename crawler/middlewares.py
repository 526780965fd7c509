"""The built-in downloader middlewares and the order the crawl stacks them in.

Outermost first (each sees the request before the next one, the response after it)::

    RobotsTxt       robots.txt: disallowed pages are done, an unreachable file holds the host
    StatusFilter    a status the spider does not handle is a failure (``failures/http_<n>``)
    Redirects       a redirect to an offsite host, or to a page already seen, is done
    HttpCache       HTTPCACHE_* / --cache: answers from the cache (crawler/httpcache: why here)
    Retries         transient errors and RETRY_HTTP_CODES go back to the frontier
    (conditional)   a job's conditional requests (``crawler.jobs.ConditionalRequests``)
    AutoThrottled   the host's delay follows its latency (AUTOTHROTTLE)
    ProxyRotation   a proxy from the pool; a ban benches it and sends the request again
    …the user's middlewares (spider ``middlewares``, DOWNLOADER_MIDDLEWARES)…
    fetch

Only the enabled ones are in the chain (robots.txt with ROBOTSTXT_OBEY, the cache
with HTTPCACHE_ENABLED or ``Crawler(http_cache=...)``, the throttle with AUTOTHROTTLE,
proxies with PROXIES/PROXY_FILE).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from yarl import URL

from .bounded import RecentHosts
from .clock import Clock, MonotonicClock
from .downloader import Downloader, redact, registered_domain
from .downloader.rotation import BanRules, ProxyPool
from .errors import FetchError, HttpError, NetworkError, ProxyError
from .fingerprint import url_fingerprint
from .frontier.base import DelayRefunds, Frontier, PolitenessPolicy
from .hostboard import HostBoard
from .httpcache import HttpCache, HttpCacheMiddleware
from .loglines import get_logger
from .middleware import (
    DONE,
    Done,
    DownloaderMiddleware,
    EndRequest,
    Failed,
    Handler,
    HoldHost,
    Retry,
)
from .request import Request
from .response import Response
from .retry import RetryDecision, RetryPolicy
from .robots import RobotsCache, Verdict
from .settings import Settings
from .spider import Spider
from .stats import Stats
from .throttle import AutoThrottle
from .urlfilter import UrlFilter

__all__ = [
    "AutoThrottled",
    "ProxyRotation",
    "Redirects",
    "Retries",
    "RobotsTxt",
    "StatusFilter",
    "builtin_middlewares",
]

logger = get_logger("crawler.worker")


class RobotsTxt:
    """Obeys robots.txt: Disallow, Crawl-delay / Request-rate, and waits while it is unreachable."""

    def __init__(
        self,
        robots: RobotsCache,
        frontier: Frontier,
        stats: Stats,
        spider_name: str,
        throttle: AutoThrottle | None,
        policy: PolitenessPolicy,
        hosts: HostBoard | None = None,
    ) -> None:
        self.robots = robots
        self.hosts = hosts
        self.frontier = frontier
        self.stats = stats
        self.spider_name = spider_name
        self.throttle = throttle
        self.policy = policy
        # Hosts whose Crawl-delay is applied; bounded like the state it sets, so a host
        # forgotten there (idle and evicted) gets its delay applied again.
        self._delay_applied: RecentHosts[bool] = RecentHosts()

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Check robots.txt, then fetch an allowed request."""
        verdict = await self.robots.check(request)
        host = request.host
        if verdict.delay_s is not None and self._delay_applied.get(host) is None:
            self._delay_applied.put(host, True)
            await self._apply_delay(host, verdict.delay_s)
            # The robots.txt fetch was itself a request: the first page waits a delay too.
            await self.frontier.hold_host(host, verdict.delay_s)
        kind = verdict.verdict
        if kind is Verdict.ALLOWED:
            if verdict.waited and verdict.delay_s:
                # Leased before the Crawl-delay was known: queue it again to be spaced out.
                self.stats.inc("robots/requeued")
                raise EndRequest(Retry(0.0, "robots_delay", counted=False))
            response = await call_next(request)
            if verdict.delay_s and self.hosts is not None:  # why the host's next request waits
                self.hosts.waiting(host, f"crawl-delay {verdict.delay_s:g}s", verdict.delay_s)
            return response
        if kind is Verdict.DISALLOWED:
            self.stats.inc("robots/disallowed")
            logger.debug("[%s] robots.txt disallows %s", self.spider_name, request.url)
            raise EndRequest(Done(kept=False))
        if kind is Verdict.UNAVAILABLE:
            self.stats.inc("robots/waiting")
            raise EndRequest(HoldHost(verdict.retry_in_s, "robots_unavailable"))
        raise EndRequest(Failed("robots_unavailable"))

    async def _apply_delay(self, host: str, delay_s: float) -> None:
        self.stats.set_value(f"robots/delay/{host}", delay_s)
        throttle = self.throttle
        if throttle is not None:
            throttle.set_floor(host, max(delay_s, throttle.floor(host)))
            await self.frontier.set_host_delay(host, max(delay_s, throttle.delay(host)))
        else:
            configured = self.policy.host_delays.get(host, self.policy.delay_s)
            await self.frontier.set_host_delay(host, max(delay_s, configured))


class StatusFilter:
    """A status the spider does not handle fails the request (logged at INFO, errback called)."""

    def __init__(self, handle_httpstatus_list: Sequence[int]) -> None:
        self.allowed = frozenset(handle_httpstatus_list)

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Fetch, then refuse a status neither the spider nor the request asked for."""
        response = await call_next(request)
        if not self._allowed(response):
            error = HttpError(
                f"ignoring HTTP {response.status} from {response.url}", response.url, response
            )
            raise EndRequest(Failed(error.kind, error, kept=True, level=logging.INFO))
        return response

    def _allowed(self, response: Response) -> bool:
        status = response.status
        if 200 <= status < 300 or status in self.allowed:
            return True
        meta = response.request.meta
        if meta.get("handle_httpstatus_all") or status in meta.get("handle_httpstatus_list", ()):
            return True
        return 300 <= status < 400 and not response.request.allow_redirects


class Redirects:
    """A redirect the downloader refused to follow (offsite, or refused by the URL patterns,
    ``filtered/url_pattern``), or to a page seen before, is done."""

    def __init__(
        self,
        frontier: Frontier,
        stats: Stats,
        url_filter: UrlFilter | None = None,
        spider_name: str = "",
    ) -> None:
        self.frontier = frontier
        self.stats = stats
        self.url_filter = url_filter
        self.spider_name = spider_name

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Fetch, then end offsite, filtered and duplicate redirects."""
        response = await call_next(request)
        status = response.status
        url_filter = self.url_filter
        if url_filter is not None and request.allow_redirects:
            refused = url_filter.refused_redirect(response)
            if refused is not None:
                url_filter.refuse(refused, self.stats, self.spider_name, "redirect to ")
                raise EndRequest(DONE)
        if 300 <= status < 400 and status != 304 and request.allow_redirects:
            # The downloader refused to follow: the target is offsite (or unusable).
            self.stats.inc("offsite")
            self.stats.inc("offsite/redirect")
            raise EndRequest(DONE)
        if response.history and not await self._first_visit(response):
            self.stats.inc("duplicates/redirect")
            raise EndRequest(DONE)
        return response

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
        return await self.frontier.add_seen(url_fingerprint(URL(response.url)))


class Retries:
    """Transient errors and RETRY_HTTP_CODES are sent again after a back-off (RETRY_* settings)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Fetch; a retryable error or status ends the attempt with a retry."""
        try:
            response = await call_next(request)
        except FetchError as exc:
            decision = self.policy.for_error(request, exc)
            if decision is None:
                raise
            raise EndRequest(_retry(decision)) from exc
        if response.status >= 400:
            decision = self.policy.for_status(
                request, response.status, response.headers.get("Retry-After")
            )
            if decision is not None:
                raise EndRequest(_retry(decision))
        return response


def _retry(decision: RetryDecision) -> Retry | HoldHost:
    if decision.hold_host:
        return HoldHost(decision.delay_s, decision.reason, counted=True)
    return Retry(decision.delay_s, decision.reason)


class AutoThrottled:
    """Each response's latency sets its host's delay (AUTOTHROTTLE)."""

    def __init__(self, throttle: AutoThrottle, frontier: Frontier) -> None:
        self.throttle = throttle
        self.frontier = frontier

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Fetch, then adapt the host's delay."""
        response = await call_next(request)
        host = request.host
        latency = response.timings.get("ttfb") or response.timings.get("total") or 0.0
        # written to the frontier only when the delay moved enough (a shared frontier is Redis)
        await self.throttle.adapt(self.frontier, host, latency, response.status)
        return response


class ProxyRotation:
    """Sends each request through a proxy of the pool; a ban benches that proxy for the domain.

    A request with its own ``proxy`` passes untouched. A banned request is sent
    again through another proxy, up to ``max(3, 2 * len(pool))`` times.
    """

    def __init__(
        self,
        pool: ProxyPool,
        bans: BanRules,
        downloader: Downloader,
        stats: Stats,
        spider_name: str,
        hosts: HostBoard | None = None,
    ) -> None:
        self.pool = pool
        self.hosts = hosts
        self.bans = bans
        self.downloader = downloader
        self.stats = stats
        self.spider_name = spider_name
        self.max_ban_retries = max(3, 2 * len(pool))

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Fetch through a proxy of the pool; end the attempt on a ban or a proxy wait."""
        if request.proxy is not None:
            return await call_next(request)
        domain = registered_domain(request.host)
        proxy, wait_s = self.pool.choose(domain)
        if proxy is None:
            if wait_s < 0:
                error = ProxyError(f"every proxy is retired; cannot fetch {request.url}")
                raise EndRequest(Failed(error.kind, error))
            self.stats.inc("proxies/waits")  # every proxy is cooling down here: wait
            if self.hosts is not None:
                self.hosts.waiting(request.host, "every proxy cooling down (bans)", wait_s)
            raise EndRequest(Retry(wait_s, "proxy_wait", counted=False))
        request.proxy = proxy  # for this attempt only
        try:
            response = await call_next(request)
        except NetworkError as exc:
            if not self.bans.network_errors:
                raise
            raise EndRequest(self._banned(request, proxy, domain, exc.kind)) from exc
        finally:
            request.proxy = None
        if self.bans.is_ban(response.status, response.body):
            status = response.status
            reason = f"http_{status}" if status in self.bans.statuses else "body_pattern"
            raise EndRequest(self._banned(request, proxy, domain, reason))
        self.pool.success(proxy, domain)
        return response

    def _banned(self, request: Request, proxy: str, domain: str, reason: str) -> Retry | Failed:
        """Bench the proxy for this domain; try the request through another, or give up."""
        self.stats.inc("proxies/bans")
        self.stats.inc(f"proxies/bans/{reason}")
        logger.info(
            "[%s] proxy %s banned for %s (%s)", self.spider_name, redact(proxy), domain, reason
        )
        if self.pool.ban(proxy, domain):
            self.downloader.sessions.clear_cookies(request.host)  # sticky: a new identity
        tries = request.meta["ban_retries"] = request.meta.get("ban_retries", 0) + 1
        if tries > self.max_ban_retries:
            error = ProxyError(f"{request.url} was refused through {tries} proxies ({reason})")
            return Failed(error.kind, error)
        return Retry(0.0, "ban", counted=False)


def builtin_middlewares(
    settings: Settings,
    spider: Spider,
    frontier: Frontier,
    stats: Stats,
    downloader: Downloader,
    *,
    policy: PolitenessPolicy,
    robots: RobotsCache | None = None,
    proxies: ProxyPool | None = None,
    conditional: DownloaderMiddleware | None = None,
    clock: Clock | None = None,
    http_cache: HttpCache | None = None,
    refunds: DelayRefunds | None = None,
    hosts: HostBoard | None = None,
    url_filter: UrlFilter | None = None,
) -> list[DownloaderMiddleware]:
    """The built-ins the settings enable, outermost first (see the module docstring).

    ``refunds``: the frontier a cache hit gives its host's delay back to. ``hosts``: the
    progress display's host board, told why a host waits (crawl-delay, proxies resting).
    """
    clock = clock or MonotonicClock()
    throttle = None
    if settings.AUTOTHROTTLE:
        throttle = AutoThrottle(
            start_delay_s=settings.AUTOTHROTTLE_START_DELAY,
            max_delay_s=settings.AUTOTHROTTLE_MAX_DELAY,
            target_concurrency=settings.AUTOTHROTTLE_TARGET_CONCURRENCY,
            default_floor_s=settings.DOWNLOAD_DELAY,
            clock=clock,
        )
    chain: list[DownloaderMiddleware] = []
    if robots is not None:
        chain.append(RobotsTxt(robots, frontier, stats, spider.name, throttle, policy, hosts))
    chain += [
        StatusFilter(spider.handle_httpstatus_list),
        Redirects(frontier, stats, url_filter, spider.name),
    ]
    if http_cache is not None:
        chain.append(HttpCacheMiddleware(http_cache, stats, clock, refunds))
    chain.append(Retries(RetryPolicy.from_settings(settings)))
    if conditional is not None:
        chain.append(conditional)
    if throttle is not None:
        chain.append(AutoThrottled(throttle, frontier))
    if proxies:
        bans = BanRules.build(
            settings.BAN_STATUS_CODES, settings.BAN_BODY_PATTERNS, settings.BAN_ON_NETWORK_ERROR
        )
        chain.append(ProxyRotation(proxies, bans, downloader, stats, spider.name, hosts))
    return chain
