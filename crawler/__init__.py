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
"""

from .clock import Clock, MonotonicClock
from .downloader.uploads import compress_body
from .engine import Crawler, CrawlResult
from .errors import (
    CrawlerError,
    DropItem,
    FetchError,
    HttpError,
    InvalidRequest,
    SettingsError,
    SpiderLoadError,
)
from .frontier import Frontier, FrontierCounts, Lease, MemoryFrontier, PolitenessPolicy
from .middleware import DownloaderMiddleware
from .pipeline import ItemPipeline, item_key
from .request import Request
from .response import RedirectHop, Response
from .settings import Settings
from .spider import Spider
from .stats import Stats

__all__ = [
    "Clock",
    "CrawlResult",
    "Crawler",
    "CrawlerError",
    "DownloaderMiddleware",
    "DropItem",
    "FetchError",
    "Frontier",
    "FrontierCounts",
    "HttpError",
    "InvalidRequest",
    "ItemPipeline",
    "Lease",
    "MemoryFrontier",
    "MonotonicClock",
    "PolitenessPolicy",
    "RedirectHop",
    "Request",
    "Response",
    "Settings",
    "SettingsError",
    "Spider",
    "SpiderLoadError",
    "Stats",
    "compress_body",
    "item_key",
]

__version__ = "0.1.0"
