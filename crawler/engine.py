"""The Crawler: the one composition root. It owns settings, stats, frontier,
downloader and pipelines, runs the workers and shuts everything down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import AckGate, CrawlState
from .clock import Clock, MonotonicClock
from .downloader import UNLIMITED_WORKERS, Downloader, DownloaderOptions, registered_domain
from .downloader.rotation import BanRules, ProxyPool, load_proxy_list
from .frontier.base import Frontier, PolitenessPolicy
from .frontier.factory import make_frontier
from .hooks import RequestHooks
from .loglines import get_logger
from .pipeline import PipelineChain
from .request import Request
from .response import Response
from .retry import RetryPolicy
from .robots import RobotsCache
from .settings import Settings
from .spider import Spider
from .stats import Stats
from .throttle import AutoThrottle
from .worker import RequestProcessor

__all__ = ["CrawlResult", "Crawler"]

logger = get_logger("crawler.engine")


@dataclass(frozen=True, slots=True)
class CrawlResult:
    """How a crawl ended: ``finish_reason`` and a stats snapshot."""

    finish_reason: str
    stats: dict[str, Any]

    @property
    def interrupted(self) -> bool:
        """True if the crawl was stopped before it finished."""
        return self.finish_reason in ("interrupted", "cancelled")


class Crawler:
    """Runs one spider to completion.

    ``settings`` defaults to the spider's own ``settings`` over the defaults.
    ``pipelines`` are added after the ones named in ``PIPELINES``. ``frontier``
    defaults to an in-memory one.
    """

    def __init__(
        self,
        spider: Spider,
        settings: Settings | None = None,
        *,
        pipelines: Sequence[Any] = (),
        frontier: Frontier | None = None,
        clock: Clock | None = None,
        restart: bool = False,
        hooks: Sequence[RequestHooks] = (),
    ) -> None:
        self.spider = spider
        self.settings = settings or Settings.build(("spider settings", spider.settings))
        self.clock = clock or MonotonicClock()
        self.stats = Stats()
        self.policy = PolitenessPolicy(
            per_host=self.settings.CONCURRENCY_PER_HOST,
            delay_s=self.settings.DOWNLOAD_DELAY,
            jitter=self.settings.DOWNLOAD_DELAY_JITTER,
            host_delays={h.lower(): d for h, d in self.settings.HOST_DELAYS.items()},
        )
        self.frontier: Frontier = frontier or make_frontier(
            self.settings, spider, self.policy, self.clock
        )
        self.state: CrawlState | None = None
        self._gate: AckGate | None = None
        if self.settings.STATE_DIR:
            self.state = CrawlState(
                Path(self.settings.STATE_DIR), self.settings.CHECKPOINT_INTERVAL, restart
            )
        if self.settings.STATE_DIR or self.settings.FRONTIER_URL:
            # A persistent or shared frontier: acks become final at checkpoints, after items.
            self._gate = AckGate(self.frontier)
            self.frontier = self._gate
        self.pipelines = PipelineChain([*self.settings.PIPELINES, *pipelines])
        self.hooks = tuple(hooks)
        self._workers: list[asyncio.Task[None]] = []
        self._leased = 0
        self._finish_reason: str | None = None
        self._force_timer: asyncio.TimerHandle | None = None
        self.downloader: Downloader | None = None
        self._sessions: Any = None
        self.robots: RobotsCache | None = None
        proxy_urls = load_proxy_list(self.settings.PROXIES, self.settings.PROXY_FILE)
        self.proxies = (
            ProxyPool(
                proxy_urls,
                self.clock,
                strategy=self.settings.PROXY_ROTATION,
                cooldown_s=self.settings.PROXY_BAN_COOLDOWN,
                max_bans=self.settings.PROXY_MAX_BANS,
            )
            if proxy_urls
            else None
        )

    def request_stop(self, reason: str = "interrupted", force: bool = False) -> None:
        """Stop taking new requests; in-flight ones get ``SHUTDOWN_TIMEOUT`` seconds.

        A second call (or ``force=True``) cancels in-flight requests at once.
        """
        first = self._finish_reason is None
        if first:
            self._finish_reason = reason
            logger.warning("[%s] stopping (%s): no new requests", self.spider.name, reason)
            self.frontier.stop()
        if force or not first:
            self._cancel_workers()
        elif self._workers:
            loop = asyncio.get_running_loop()
            self._force_timer = loop.call_later(
                self.settings.SHUTDOWN_TIMEOUT, self._cancel_workers
            )

    def _cancel_workers(self) -> None:
        for task in self._workers:
            task.cancel()

    async def run(self) -> CrawlResult:
        """Crawl until the frontier is exhausted, MAX_PAGES is reached or a stop is requested."""
        settings = self.settings
        spider = self.spider
        options = DownloaderOptions.from_settings(
            settings, spider.headers, spider.cookies, spider.trace_configs
        )
        cancelled = False
        async with AsyncExitStack() as stack:
            state = self.state
            if state is not None:
                await state.open()
                stack.push_async_callback(state.close)
                if state.finished:
                    logger.warning(
                        "[%s] the crawl in %s is already finished; use --restart to crawl again",
                        spider.name,
                        settings.STATE_DIR,
                    )
                    self.stats.counters.update(state.previous_counters)
                    self.stats.finish("already_finished")
                    return CrawlResult("already_finished", self.stats.snapshot())
                self.stats.resume_from(state.previous_counters)
            await self.frontier.open()
            stack.push_async_callback(self.frontier.close)
            if state is not None and state.restart:
                await self.frontier.reset()  # type: ignore[attr-defined]
            stack.push_async_callback(self._final_checkpoint)
            downloader = await stack.enter_async_context(Downloader(options))
            self.downloader = downloader
            self._sessions = downloader.sessions
            spider._cookies_for = downloader.sessions.cookies_for
            if state is not None:
                restored = await state.restore_cookies(downloader.sessions)
                if restored:
                    logger.info("[%s] restored %d cookies", spider.name, restored)
            stack.push_async_callback(self._close_spider)  # closes whatever pipelines opened
            await self.pipelines.open(spider)
            await spider.open()
            processor = RequestProcessor(
                spider,
                self.frontier,
                downloader,
                self.pipelines,
                self.stats,
                settings.DEPTH_LIMIT,
                retry=RetryPolicy.from_settings(settings),
                robots=self._robots(downloader),
                throttle=self._throttle(),
                policy=self.policy,
                proxies=self.proxies,
                hooks=self.hooks,
                bans=BanRules.build(
                    settings.BAN_STATUS_CODES,
                    settings.BAN_BODY_PATTERNS,
                    settings.BAN_ON_NETWORK_ERROR,
                ),
                max_links=settings.MAX_LINKS_PER_RESPONSE,
            )
            logger.info("[%s] crawl started", spider.name)
            try:
                await self._seed(processor)
                await self._run_workers(processor)
            except asyncio.CancelledError:
                cancelled = True
                self._finish_reason = self._finish_reason or "cancelled"
                raise
            finally:
                if self._force_timer is not None:
                    self._force_timer.cancel()
                if cancelled:
                    self.stats.finish(self._finish_reason or "cancelled")
        return CrawlResult(self.stats.values["finish_reason"], self.stats.snapshot())

    def _robots(self, downloader: Downloader) -> RobotsCache | None:
        settings = self.settings
        if not settings.ROBOTSTXT_OBEY:
            return None
        self.robots = RobotsCache(
            self._robots_fetcher(downloader),
            settings.USER_AGENT,
            self.clock,
            retry_s=settings.ROBOTSTXT_RETRY_S,
            max_failures=settings.ROBOTSTXT_MAX_FAILURES,
            max_delay_s=settings.ROBOTSTXT_MAX_DELAY,
        )
        return self.robots

    def _robots_fetcher(self, downloader: Downloader) -> Callable[[Request], Awaitable[Response]]:
        """robots.txt goes out the way the pages will: through the proxy pool if there is one."""
        pool = self.proxies
        if pool is None:
            return downloader.fetch

        async def fetch_via_pool(request: Request) -> Response:
            proxy, _ = pool.choose(registered_domain(request.host))
            return await downloader.fetch(request, proxy)

        return fetch_via_pool

    def _throttle(self) -> AutoThrottle | None:
        settings = self.settings
        if not settings.AUTOTHROTTLE:
            return None
        return AutoThrottle(
            start_delay_s=settings.AUTOTHROTTLE_START_DELAY,
            max_delay_s=settings.AUTOTHROTTLE_MAX_DELAY,
            target_concurrency=settings.AUTOTHROTTLE_TARGET_CONCURRENCY,
            default_floor_s=settings.DOWNLOAD_DELAY,
        )

    async def _close_spider(self) -> None:
        reason = self._finish_reason or "finished"
        try:
            await self.pipelines.close(self.spider)
        finally:
            try:
                await self.spider.close(reason)
            except Exception:
                logger.exception("[%s] spider.close() failed", self.spider.name)
            if self.proxies is not None:
                self.stats.set_value("proxies", self.proxies.snapshot())
            if self.downloader is not None:
                for key, value in self.downloader.timings.summary().items():
                    self.stats.set_value(key, value)
            self.stats.finish(reason)
            logger.info("[%s] crawl %s", self.spider.name, reason)

    async def _checkpoint(self, status: str = "running") -> None:
        gate = self._gate
        if gate is not None and self.state is None:
            # A shared frontier (no state folder): items first, then acks, as CrawlState does.
            gate.close_gate()
            try:
                await self.pipelines.flush(self.spider)
                await gate.inner.flush()
            finally:
                gate.open_gate()
            return
        if self.state is None or self._gate is None or self._sessions is None:
            return
        await self.state.checkpoint(
            self._gate,
            self.pipelines,
            self.spider,
            self.stats.counters,
            self._sessions.jars(),
            status,
        )

    async def _final_checkpoint(self) -> None:
        if self._gate is None:
            return
        reason = self._finish_reason or self.stats.values.get("finish_reason") or "finished"
        status = "finished" if reason == "finished" else "interrupted"
        try:
            await self._checkpoint(status)
        except Exception:
            logger.exception("[%s] could not save the crawl state", self.spider.name)
            raise

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.CHECKPOINT_INTERVAL)
            await self._checkpoint()

    async def _publish_loop(self, publish: Callable[[dict[str, int]], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(self.settings.CHECKPOINT_INTERVAL)
            try:
                await publish(self.stats.counters)
            except Exception:
                logger.warning("[%s] could not publish stats", self.spider.name, exc_info=True)

    async def _seed(self, processor: RequestProcessor) -> None:
        downloader = self.downloader
        assert downloader is not None
        if not await self.frontier.claim_seed():
            logger.info("[%s] resuming: start requests were queued before", self.spider.name)
            await self._trust_start_hosts(downloader)
            return
        batch: list[Request] = []
        try:
            async for request in self.spider.start():
                if not isinstance(request, Request):
                    raise TypeError(f"start() yielded {type(request).__name__}, not a Request")
                # the crawl may reach its start hosts even on a private network (guard.py)
                await downloader.trust_start_host(request.host)
                batch.append(request)
                if len(batch) >= 1000:
                    await processor.seed(batch)
                    batch = []
        except Exception:
            self.stats.inc("start_errors")
            logger.exception("[%s] start() failed; crawling what it yielded", self.spider.name)
        if batch:
            await processor.seed(batch)
        await self.frontier.seed_done()

    async def _trust_start_hosts(self, downloader: Downloader) -> None:
        """On a resume (or a shared crawl another process seeded) start() runs again only
        to learn which hosts the crawl started on (see guard.py); its requests are dropped.
        """
        try:
            async for request in self.spider.start():
                if isinstance(request, Request):
                    await downloader.trust_start_host(request.host)
        except Exception:
            logger.warning(
                "[%s] start() failed while listing the start hosts on resume; private"
                " addresses it would have allowed need ALLOWED_NETWORKS",
                self.spider.name,
                exc_info=True,
            )

    async def _run_workers(self, processor: RequestProcessor) -> None:
        background = []
        if self.settings.PROGRESS_INTERVAL:
            background.append(asyncio.create_task(self._report_progress()))
        if self._gate is not None:
            background.append(asyncio.create_task(self._checkpoint_loop()))
        publish = getattr(self.frontier, "publish_stats", None)  # a shared frontier's stats
        if publish is not None:
            background.append(asyncio.create_task(self._publish_loop(publish)))
        try:
            async with asyncio.TaskGroup() as group:
                self._workers = [
                    group.create_task(self._work(processor), name=f"worker-{n}")
                    for n in range(self.settings.CONCURRENCY or UNLIMITED_WORKERS)
                ]
        finally:
            self._workers = []
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if publish is not None:
                try:
                    await publish(self.stats.counters)
                except Exception:
                    logger.exception("[%s] could not publish the final stats", self.spider.name)

    async def _work(self, processor: RequestProcessor) -> None:
        frontier = self.frontier
        max_pages = self.settings.MAX_PAGES
        while True:
            lease = await frontier.lease()
            if lease is None:
                return
            if max_pages:
                self._leased += 1
                if self._leased >= max_pages and self._finish_reason is None:
                    self._finish_reason = "max_pages"
                    frontier.stop()
            try:
                await processor.handle(lease)
            except Exception:
                # A bug in our own code must not stop the crawl or lose the lease.
                self.stats.inc("internal_errors")
                logger.exception("[%s] internal error on %s", self.spider.name, lease.request.url)
                await frontier.fail(lease, "internal_error")

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(self.settings.PROGRESS_INTERVAL)
            counts = await self.frontier.counts()
            logger.info(
                "[%s] %s",
                self.spider.name,
                self.stats.progress_line(counts.queued, counts.in_flight),
            )
