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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# The exports load on first use (PEP 562): ``import crawler`` stays cheap (``crawl --help``,
# ``crawl list``), ``from crawler import Spider`` loads only what Spider needs.
_EXPORTS: dict[str, str] = {
    "compress_body": ".downloader.uploads",
    "Crawler": ".engine",
    "CrawlResult": ".engine",
    **{
        name: ".errors"
        for name in (
            "BadResponse",
            "BlockedAddress",
            "ConfigError",
            "CrawlerError",
            "DropItem",
            "FetchError",
            "HttpError",
            "InvalidRequest",
            "NetworkError",
            "OutputError",
            "ProxyError",
            "RequestTimeout",
            "ResponseTooLarge",
            "SettingsError",
            "SpiderLoadError",
            "TlsError",
            "TooManyRedirects",
        )
    },
    "Link": ".linkextractor",
    "LinkExtractor": ".linkextractor",
    "DownloaderMiddleware": ".middleware",
    "ItemPipeline": ".pipeline",
    "item_key": ".pipeline",
    "Request": ".request",
    "RedirectHop": ".response",
    "Response": ".response",
    "Settings": ".settings",
    "Spider": ".spider",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
