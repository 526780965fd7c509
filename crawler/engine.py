"""The Crawler: the one composition root. It owns settings, stats, frontier,
downloader and pipelines, runs the workers and shuts everything down."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from .assembly import CrawlParts, build_processor
from .checkpoint import AckGate, CrawlState, checkpoint, open_outputs
from .clock import Clock, MonotonicClock, TimerHandle
from .direct import direct_fetcher
from .downloader import UNLIMITED_WORKERS, Downloader, DownloaderOptions
from .downloader.rotation import ProxyPool
from .downloader.sessions import SessionHook
from .errors import ConfigError, OutputError
from .frontier.base import DelayRefunds, Frontier, PolitenessPolicy, Resettable, StatsPublisher
from .frontier.factory import make_frontier
from .hostboard import HostBoard
from .httpcache import HttpCache
from .loglines import get_logger
from .middleware import DownloaderMiddleware
from .pipeline import PipelineChain
from .porting import log_porting_hints
from .progress import LogProgress, Progress, ProgressView
from .result import CrawlResult, ItemCollector
from .robots import RobotsCache
from .settings import Settings
from .spider import Spider
from .stats import Stats
from .supervisor import CHECKPOINT_FAILED, OUTPUT_FAILED, Failure, Supervisor
from .urlfilter import UrlFilter
from .worker import PageBudget, RequestProcessor, StopConditions

__all__ = ["CrawlResult", "Crawler"]

logger = get_logger("crawler.engine")


class Crawler:
    """Runs one spider to completion.

    ``settings`` defaults to the spider's own ``settings`` over the defaults.
    ``pipelines`` are added after the ones named in ``PIPELINES``; ``middlewares``
    after the built-ins, ``DOWNLOADER_MIDDLEWARES`` and the spider's ``middlewares``
    (``conditional`` takes the conditional-requests place among the built-ins, see
    crawler/middlewares.py). ``frontier`` defaults to an in-memory one. ``session_hooks``
    see the session pool once it is open and again before it closes (e.g. a job's cookies).
    ``collect_items=True`` keeps every item that passed the pipelines in ``CrawlResult.items``.
    ``http_cache`` (an :class:`~crawler.httpcache.HttpCache`) overrides the HTTPCACHE_*
    settings; the crawl opens and closes it.
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
        middlewares: Sequence[DownloaderMiddleware] = (),
        conditional: DownloaderMiddleware | None = None,
        session_hooks: Sequence[SessionHook] = (),
        collect_items: bool = False,
        http_cache: HttpCache | None = None,
        progress: ProgressView | None = None,
    ) -> None:
        self.spider = spider
        self.settings = settings or Settings.build(("spider settings", spider.settings))
        self.clock = clock or MonotonicClock()
        self.stats = Stats()
        self.hosts = HostBoard(self.clock)
        self.progress: ProgressView = progress or LogProgress(self.settings.PROGRESS_INTERVAL)
        self.policy = PolitenessPolicy.from_settings(self.settings)
        self.frontier: Frontier = frontier or make_frontier(
            self.settings, spider, self.policy, self.clock
        )
        self._supervisor = Supervisor(
            spider.name,
            self._on_failure,
            self.settings.CHECKPOINT_INTERVAL,
            self.progress.interval_s,
            self.clock,
        )
        self._supervisor.watch_frontier(self.frontier, self.settings.REDIS_UNAVAILABLE_TIMEOUT)
        # Cache hits give their host's delay back; no ack passes there, so not via the gate.
        self._refunds = self.frontier if isinstance(self.frontier, DelayRefunds) else None
        if http_cache is None and self.settings.HTTPCACHE_ENABLED:
            # Entries outlive the process: calendar time, unless a test injects its clock.
            http_cache = HttpCache.from_settings(self.settings, spider.name, clock=clock)
        self.http_cache = http_cache
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
        self._collected: ItemCollector | None = ItemCollector() if collect_items else None
        collector = [self._collected] if self._collected is not None else []
        self.pipelines = PipelineChain([*self.settings.PIPELINES, *pipelines, *collector])
        self.middlewares = tuple(middlewares)
        self.conditional = conditional
        self.session_hooks = tuple(session_hooks)
        self._workers: list[asyncio.Task[None]] = []
        self._budget: PageBudget | None = None
        self._limits = StopConditions()
        self._finish_reason: str | None = None
        self._force_timer: TimerHandle | None = None
        self.downloader: Downloader | None = None
        self.robots: RobotsCache | None = None
        self.proxies = ProxyPool.from_settings(self.settings, self.clock)
        self.url_filter = UrlFilter.build(spider, self.settings)  # a bad regex fails here

    def request_stop(self, reason: str = "interrupted", force: bool = False) -> None:
        """Stop taking new requests; in-flight ones get ``SHUTDOWN_TIMEOUT`` seconds.

        A second call (or ``force=True``) cancels in-flight requests at once.
        """
        first = self._finish_reason is None
        if first:
            logger.warning("[%s] stopping (%s): no new requests", self.spider.name, reason)
            self._stop(reason)
        if force or not first:
            self._cancel_workers()

    def _stop(self, reason: str) -> None:
        """Lease no more; requests in flight get ``SHUTDOWN_TIMEOUT`` seconds to finish."""
        first = self._finish_reason is None
        self._finish_reason = reason
        self.frontier.stop()
        if first and self._workers:
            when = self.clock.now() + self.settings.SHUTDOWN_TIMEOUT
            self._force_timer = self.clock.call_at(when, self._cancel_workers)

    def _on_failure(self, failure: Failure) -> None:
        """An output or the crawl state failed: seal the ack gate first, then stop."""
        if self._gate is not None:
            self._gate.seal()
        self.stats.set_value("error", failure.line)
        self._stop(failure.reason)

    @property
    def _reason(self) -> str:
        failure = self._supervisor.failure
        return failure.reason if failure is not None else self._finish_reason or "finished"

    def _cancel_workers(self) -> None:
        for task in self._workers:
            task.cancel()

    async def run(self) -> CrawlResult:
        """Crawl until the frontier is exhausted, MAX_PAGES is reached or a stop is requested.

        At the end (whatever ended it) the items are flushed, then the requests that
        produced them are marked done (the last checkpoint), then the outputs are closed.
        """
        settings = self.settings
        spider = self.spider
        supervisor = self._supervisor
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
                    return self._result("already_finished")
                self.stats.resume_from(state.previous_counters)
            await self.frontier.open()
            stack.push_async_callback(self.frontier.close)
            if state is not None and state.restart and isinstance(self.frontier, Resettable):
                await self.frontier.reset()
            if self.http_cache is not None:
                await stack.enter_async_context(self.http_cache)
            downloader = await stack.enter_async_context(Downloader(options, self.clock))
            self.downloader = downloader
            direct = direct_fetcher(downloader, self.proxies, self.clock)  # files pipeline
            self.pipelines.use_downloader(direct, settings, self.clock, self.stats)
            spider.use_cookie_lookup(downloader.sessions.cookies_for)
            if state is not None:
                restored = await state.restore_cookies(downloader.sessions)
                if restored:
                    logger.info("[%s] restored %d cookies", spider.name, restored)
            for hook in self.session_hooks:  # closed after _finish, before the sessions
                await hook.sessions_opened(downloader.sessions)
                stack.push_async_callback(hook.sessions_closing, downloader.sessions)
            stack.push_async_callback(self._finish)  # last checkpoint, then close the outputs
            try:
                await open_outputs(self._gate, state, self.pipelines, spider)
            except OutputError as exc:
                supervisor.fail(OUTPUT_FAILED, exc)
            except ConfigError:
                raise
            except Exception as exc:  # the frontier could not save the outputs' positions
                logger.error("[%s] could not save the crawl state", spider.name, exc_info=True)
                supervisor.fail(CHECKPOINT_FAILED, exc)
            if supervisor.failure is None:
                log_porting_hints(spider)  # once: Scrapy-only names and what to write
                await spider.open()
                processor = self._processor(downloader)
                stack.push_async_callback(processor.close)  # the browser, if one was started
                logger.info("[%s] crawl started", spider.name)
                try:
                    await processor.seed()
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
        return self._result(self.stats.values["finish_reason"])

    def _result(self, reason: str) -> CrawlResult:
        failure = self._supervisor.failure
        error = failure.error if failure is not None else None
        items = self._collected.items if self._collected is not None else []
        return CrawlResult(reason, self.stats.snapshot(), error, items)

    def _processor(self, downloader: Downloader) -> RequestProcessor:
        settings = self.settings
        if settings.ROBOTSTXT_OBEY:
            self.robots = RobotsCache.from_settings(
                settings,
                direct_fetcher(downloader, self.proxies, self.clock, self.http_cache, self.stats),
                self.clock,
                self.hosts,
            )
        parts = CrawlParts(
            settings,
            self.spider,
            self.frontier,
            self.stats,
            downloader,
            self.pipelines,
            self.policy,
            self.clock,
            self.hosts,
            robots=self.robots,
            proxies=self.proxies,
            http_cache=self.http_cache,
            refunds=self._refunds,
            conditional=self.conditional,
            barrier=self._gate.items if self._gate is not None else None,
            url_filter=self.url_filter,
        )
        return build_processor(parts, self.middlewares)

    async def _finish(self) -> None:
        """The end of every run: the last checkpoint (items, then acks), then close the outputs.

        A crawl that finished is recorded as such only once its outputs closed.
        """
        spider = self.spider
        supervisor = self._supervisor
        try:
            if self._gate is not None and supervisor.failure is None:
                status = "running" if self._reason == "finished" else "interrupted"
                await supervisor.final_checkpoint(self._checkpoint, status)
            try:
                await self.pipelines.close(spider)
            except OutputError as exc:
                supervisor.fail(OUTPUT_FAILED, exc)
            if self.state is not None:
                try:
                    await self.state.record_end(self._reason)
                except Exception as exc:
                    logger.error("[%s] could not record the crawl as finished", spider.name)
                    supervisor.fail(CHECKPOINT_FAILED, exc)
        finally:
            reason = self._reason
            try:
                await spider.close(reason)
            except Exception:
                logger.exception("[%s] spider.close() failed", spider.name)
            if self.proxies is not None:
                self.stats.set_value("proxies", self.proxies.snapshot())
            if self.downloader is not None:
                for key, value in self.downloader.timings.summary().items():
                    self.stats.set_value(key, value)
            self.stats.finish(reason)
            if reason == "finished":
                logger.info("[%s] crawl finished", spider.name)
            else:
                logger.info("[%s] crawl stopped: %s", spider.name, reason)

    async def _checkpoint(self, status: str = "running") -> None:
        gate = self._gate
        if gate is None or self._supervisor.failure is not None or self.downloader is None:
            return
        jars = self.downloader.sessions.jars()
        counters = self.stats.counters
        await checkpoint(gate, self.state, self.pipelines, self.spider, counters, jars, status)

    async def _run_workers(self, processor: RequestProcessor) -> None:
        """The workers and every background loop, in one TaskGroup (see supervisor.py)."""
        settings = self.settings
        self._budget = PageBudget(settings.MAX_PAGES) if settings.MAX_PAGES else None
        self._limits = StopConditions.from_settings(settings, self.stats)
        deadline = None
        if settings.MAX_DURATION:
            deadline = self.clock.call_at(
                self.clock.now() + settings.MAX_DURATION, lambda: self._stop_at("max_duration")
            )
        frontier = self.frontier  # a shared frontier publishes its stats for `crawl status`
        publish = frontier.publish_stats if isinstance(frontier, StatsPublisher) else None

        async def publish_stats() -> None:
            assert publish is not None
            await publish(self.stats.counters)

        try:
            async with asyncio.TaskGroup() as group:
                self._workers = [
                    group.create_task(self._work(processor), name=f"worker-{n}")
                    for n in range(settings.CONCURRENCY or UNLIMITED_WORKERS)
                ]
                self._supervisor.start(
                    group,
                    self._workers,
                    checkpoint=self._checkpoint if self._gate is not None else None,
                    report_progress=self._report_progress,
                    publish_stats=publish_stats if publish is not None else None,
                )
        finally:
            self.progress.close()
            if deadline is not None:
                deadline.cancel()
            self._workers = []
            if publish is not None:
                try:
                    await publish_stats()
                except Exception:
                    logger.exception("[%s] could not publish the final stats", self.spider.name)

    async def _work(self, processor: RequestProcessor) -> None:
        frontier = self.frontier
        budget = self._budget
        limits = self._limits
        while True:
            if budget is not None and not await budget.reserve():
                return
            lease = await frontier.lease()
            if lease is None:
                if budget is not None:
                    budget.close()  # exhausted or stopped: wake the workers waiting for a page
                return
            kept = False
            try:
                kept = await processor.handle(lease)
            except OutputError as exc:
                self._supervisor.fail(OUTPUT_FAILED, exc)  # the lease stays: fetched again
            except Exception:
                # A bug in our own code must not stop the crawl or lose the lease.
                self.stats.inc("internal_errors")
                logger.exception("[%s] internal error on %s", self.spider.name, lease.request.url)
                if lease.settled is None:
                    await frontier.fail(lease, "internal_error")
            if budget is not None and budget.settle(kept) and self._finish_reason is None:
                self._finish_reason = "max_pages"
                frontier.stop()
            if limits.active and self._finish_reason is None:
                reached = limits.reached(self.stats)
                if reached is not None:
                    self._stop_at(reached)

    def _stop_at(self, reason: str) -> None:
        """A stop condition was met: stop gracefully (requests in flight finish)."""
        if self._finish_reason is None:
            logger.info("[%s] stopping: %s reached", self.spider.name, reason)
            self._stop(reason)

    async def _report_progress(self) -> None:
        counts = await self.frontier.counts()
        notes = self._supervisor.notes()  # e.g. "waiting for Redis (since 12:03:04)"
        snapshot = Progress.of(self.spider.name, self.stats, counts, self.clock, self.hosts, notes)
        self.progress.show(snapshot)
