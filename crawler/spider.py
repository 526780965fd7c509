"""The Spider base class users subclass."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar

from .errors import CrawlerError, InvalidRequest
from .loglines import get_logger
from .porting import (
    all_statuses,
    call_closed,
    spider_settings,
    start_requests,
    user_method,
)
from .request import Request
from .response import Response
from .urlfilter import split_patterns

__all__ = ["Spider"]


class Spider:
    """A crawl's behaviour: where to start and what to do with each response.

    Class attributes: ``name``, ``start_urls``, ``allowed_domains`` (links to
    other domains are dropped and counted), ``allow_urls`` / ``deny_urls``
    (regexes searched in every URL, redirects included: only matching / never
    matching URLs are crawled; ``filtered/url_pattern``), ``settings`` (per-spider settings),
    ``headers`` and ``cookies`` (sent to the start requests' domains),
    ``middlewares`` (downloader middlewares after the built-ins),
    ``handle_unchanged`` (a scheduled job's callbacks also get its 304 Not Modified
    responses, see crawler/jobs/incremental.py). Keyword arguments
    (``-a key=value`` on the command line) become instance attributes.

    Override ``parse(response)`` (or give requests their own ``callback``);
    callbacks may be async generators, generators, coroutines or plain
    functions, producing ``Request`` objects, items, or nothing. Override
    ``async def start()`` to yield the first requests yourself, and
    ``async def open()`` / ``async def close(reason)`` to run code before the
    first request and after the last.

    Scrapy's names work where they mean the same (``start_requests()``,
    ``custom_settings``, ``download_delay``, ``closed(reason)``...; see
    crawler/porting.py): a class is adapted once, when it is defined, and the
    crawl logs a hint for each at start-up.
    """

    name: ClassVar[str] = ""
    start_urls: Sequence[str] = ()
    allowed_domains: Sequence[str] = ()
    allow_urls: Sequence[str] = ()  # regexes: only matching URLs are crawled (crawler/urlfilter.py)
    deny_urls: Sequence[str] = ()  # regexes: matching URLs are never crawled
    settings: ClassVar[Mapping[str, Any]] = {}
    headers: Mapping[str, str] = {}
    cookies: Mapping[str, str] = {}
    handle_httpstatus_list: Sequence[int] = ()
    trace_configs: Sequence[Any] = ()
    middlewares: Sequence[Any] = ()  # DownloaderMiddleware objects, classes or 'module:Name'
    handle_unchanged: bool = False
    start_errors: int = 0  # start_urls the default start() skipped as invalid (counted in stats)
    _cookie_lookup: Callable[[str], dict[str, str]] | None = None
    # The `settings` a class (or its nearest ancestor) wrote itself, before Scrapy's
    # custom_settings and attributes were folded into `settings`.
    _written_settings: ClassVar[Mapping[str, Any]] = {}
    _uses_start_requests: ClassVar[bool] = False  # Scrapy's start_requests() seeds the crawl
    _uses_closed: ClassVar[bool] = False  # Scrapy's closed(reason) runs at the end

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Read a Scrapy spider's names as ours, once per class (see crawler/porting.py)."""
        super().__init_subclass__(**kwargs)
        if "settings" in cls.__dict__:
            cls._written_settings = cls.__dict__["settings"]
        settings = spider_settings(cls, cls._written_settings)
        if settings is not None:
            cls.settings = settings
        statuses = all_statuses(cls)
        if statuses is not None:  # as in Scrapy, it overrides handle_httpstatus_list
            cls.handle_httpstatus_list = statuses
        cls._uses_start_requests = user_method(cls, "start_requests") and cls.start is Spider.start
        cls._uses_closed = user_method(cls, "closed") and cls.close is Spider.close

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if key in ("start_urls", "allowed_domains") and isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            elif key in ("allow_urls", "deny_urls") and isinstance(value, str):
                value = split_patterns(value)  # a comma inside {1,3} stays in its regex
            setattr(self, key, value)
        self.logger = get_logger(f"crawler.spider.{self.name or type(self).__name__}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    async def start(self) -> AsyncIterator[Request]:
        """The first requests: by default a GET of each of ``start_urls``, handled by ``parse``."""
        if self._uses_start_requests:
            async for request in start_requests(self):
                yield request
            return
        for url in self.start_urls:
            try:
                request = Request(url, callback=self.parse)
            except InvalidRequest as exc:
                # One bad start URL never drops the others: say which, count it, go on.
                self.start_errors += 1
                self.logger.error("start URL skipped: %s", exc)
                continue
            yield request

    def parse(self, response: Response) -> Any:
        """Handle a response whose request has no callback of its own."""
        raise CrawlerError(
            f"{type(self).__name__}.parse() is not defined: define parse(self, response)"
            f" or give the request for {response.url} a callback"
        )

    def use_cookie_lookup(self, lookup: Callable[[str], dict[str, str]] | None) -> None:
        """Answer :meth:`cookies_for` with ``lookup(url)`` (None: not being crawled).

        The crawler calls this with its session pool's ``cookies_for`` once the
        sessions are open; a test may pass its own function.
        """
        self._cookie_lookup = lookup

    def cookies_for(self, url: str) -> dict[str, str]:
        """The cookies the crawl's jar would send with a request to ``url`` (during a crawl)."""
        if self._cookie_lookup is None:
            raise CrawlerError("cookies_for() works only while the spider is being crawled")
        return self._cookie_lookup(url)

    def item_key(self, item: Any, response: Response, index: int) -> str:
        """A stable key for an item, used by pipelines that upsert (see ``crawler.item_key``).

        Override to key items by their content (e.g. a product id). The default,
        ``<request fingerprint>:<index>``, is computed by the engine without calling this.
        """
        from .fingerprint import fingerprint

        return f"{fingerprint(response.request).hex()}:{index}"

    async def open(self) -> None:
        """Runs once before the first request."""

    async def close(self, reason: str) -> None:
        """Runs once after the crawl ends; ``reason`` is the finish reason."""
        if self._uses_closed:
            await call_closed(self, reason)
