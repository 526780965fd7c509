"""How one crawl's request handling is put together: the middleware chain around the fetch.

The engine owns every part (settings, frontier, downloader, stats...); :func:`build_processor`
only wires them, in the order crawler/middlewares.py documents: the built-ins the settings
enable, then ``DOWNLOADER_MIDDLEWARES``, the spider's ``middlewares``, and the crawler's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .checkpoint import ItemBarrier
from .clock import Clock
from .downloader import Downloader
from .downloader.rotation import ProxyPool
from .frontier.base import DelayRefunds, Frontier, PolitenessPolicy
from .hostboard import HostBoard
from .httpcache import HttpCache
from .middleware import DownloaderMiddleware, load_middlewares
from .middlewares import builtin_middlewares
from .pipeline import PipelineChain
from .render import Renderer, RenderOptions
from .robots import RobotsCache
from .settings import Settings
from .spider import Spider
from .stats import Stats
from .urlfilter import UrlFilter
from .worker import RequestProcessor

__all__ = ["CrawlParts", "build_processor"]


@dataclass(frozen=True, slots=True)
class CrawlParts:
    """The parts of one crawl a request passes through (all owned by the engine)."""

    settings: Settings
    spider: Spider
    frontier: Frontier
    stats: Stats
    downloader: Downloader
    pipelines: PipelineChain
    policy: PolitenessPolicy
    clock: Clock
    hosts: HostBoard
    robots: RobotsCache | None = None
    proxies: ProxyPool | None = None
    http_cache: HttpCache | None = None
    refunds: DelayRefunds | None = None
    conditional: DownloaderMiddleware | None = None
    barrier: ItemBarrier | None = None
    url_filter: UrlFilter | None = None  # built once per crawl (Crawler.__init__)


def build_processor(
    parts: CrawlParts, extra: Sequence[DownloaderMiddleware] = ()
) -> RequestProcessor:
    """The crawl's RequestProcessor: built-ins, configured middlewares, then ``extra``."""
    settings, spider = parts.settings, parts.spider
    middlewares = builtin_middlewares(
        settings,
        spider,
        parts.frontier,
        parts.stats,
        parts.downloader,
        policy=parts.policy,
        robots=parts.robots,
        proxies=parts.proxies,
        conditional=parts.conditional,
        clock=parts.clock,
        http_cache=parts.http_cache,
        refunds=parts.refunds,
        hosts=parts.hosts,
        url_filter=parts.url_filter,
    )
    middlewares += load_middlewares(settings.DOWNLOADER_MIDDLEWARES, "DOWNLOADER_MIDDLEWARES")
    middlewares += load_middlewares(spider.middlewares, "spider middlewares")
    processor = RequestProcessor(
        spider,
        parts.frontier,
        parts.downloader,
        parts.pipelines,
        parts.stats,
        settings.DEPTH_LIMIT,
        [*middlewares, *extra],
        max_links=settings.MAX_LINKS_PER_RESPONSE,
        barrier=parts.barrier,
        hosts=parts.hosts,
        follow_binary_links=settings.FOLLOW_BINARY_LINKS,
        clock=parts.clock,
        url_filter=parts.url_filter,
    )
    # Rendering (crawler/render): cheap until a page asks for it, and RENDER="always"
    # without a browser fails here, before the crawl.
    options = RenderOptions.from_settings(settings)
    processor.renderer = Renderer(
        options, parts.downloader, parts.stats, spider, dict(settings.RESOLVE)
    )
    return processor
