"""crawler: an asyncio web-crawling and scraping framework built on aiohttp.

The data flow::

    Spider.start() ──► Frontier ── lease ──► worker ──► Downloader ──► per-domain aiohttp session
     (requests)      (dedup, priority,         │           (shared TCPConnector)          │
                      per-host readiness)      │◄────────────── Response ◄──────────────────┘
                           ▲                   ▼
                           └── new Requests ◄── callback ──► items ──► PipelineChain ──► exporters

The worker sends each request through the downloader middlewares (``DownloaderMiddleware``:
robots.txt, retries, proxies…, then the user's) to the downloader. ``Crawler`` is the one
composition root; everything it needs is passed in.

Only what a user writes or catches is exported here. Advanced seams stay in their
modules: a custom frontier implements ``crawler.frontier.Frontier`` (``MemoryFrontier``,
``Lease``, ``FrontierCounts``, ``PolitenessPolicy`` live there too); a test clock is
``crawler.testing.ManualClock`` (the ``Clock`` Protocol is ``crawler.clock.Clock``);
``crawler.stats.Stats`` is the engine's counter store (read the ``CrawlResult.stats`` dict).
The full exception tree is drawn in ``crawler.errors``.
"""

from .downloader.uploads import compress_body
from .engine import Crawler, CrawlResult
from .errors import (
    BadResponse,
    BlockedAddress,
    ConfigError,
    CrawlerError,
    DropItem,
    FetchError,
    HttpError,
    InvalidRequest,
    NetworkError,
    OutputError,
    ProxyError,
    RequestTimeout,
    ResponseTooLarge,
    SettingsError,
    SpiderLoadError,
    TlsError,
    TooManyRedirects,
)
from .linkextractor import Link, LinkExtractor
from .middleware import DownloaderMiddleware
from .pipeline import ItemPipeline, item_key
from .request import Request
from .response import RedirectHop, Response
from .settings import Settings
from .spider import Spider

__all__ = [
    "BadResponse",
    "BlockedAddress",
    "ConfigError",
    "CrawlResult",
    "Crawler",
    "CrawlerError",
    "DownloaderMiddleware",
    "DropItem",
    "FetchError",
    "HttpError",
    "InvalidRequest",
    "ItemPipeline",
    "Link",
    "LinkExtractor",
    "NetworkError",
    "OutputError",
    "ProxyError",
    "RedirectHop",
    "Request",
    "RequestTimeout",
    "Response",
    "ResponseTooLarge",
    "Settings",
    "SettingsError",
    "Spider",
    "SpiderLoadError",
    "TlsError",
    "TooManyRedirects",
    "compress_body",
    "item_key",
]

__version__ = "0.1.0"
