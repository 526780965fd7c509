"""Fetch a few requests exactly as a crawl would: for ``crawl fetch``, ``shell`` and ``parse``.

Rather than re-implement robots.txt, retries, redirects, proxies, the address
guard, cookies and the cache for one URL, :class:`OneShot` runs a real
:class:`~crawler.Crawler` with a small internal spider whose requests have a
capturing callback and errback. Every request is sent with
``handle_httpstatus_all`` so a 404 is shown too; whether the user's spider would
have handled that status is :func:`status_handled`'s question.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
from multidict import CIMultiDict

from ..cookie_store import dump_jar, load_jar
from ..downloader.sessions import SessionPool
from ..engine import Crawler
from ..errors import FetchError
from ..httpcache import HttpCache
from ..middleware import Handler
from ..request import Request
from ..response import Response
from ..settings import Settings
from ..spider import Spider

__all__ = ["Fetched", "OneShot", "SentRequest", "status_handled"]

_TOKEN = "_oneshot_token"  # meta key: which of our requests a response answers


@dataclass(frozen=True, slots=True)
class SentRequest:
    """The headers one HTTP request really went out with (session defaults and cookies too)."""

    method: str
    url: str
    headers: CIMultiDict[str]


@dataclass(slots=True)
class Fetched:
    """What became of one request: a response, a fetch error, or ``not_fetched`` (why)."""

    request: Request
    response: Response | None = None
    error: FetchError | None = None
    not_fetched: str = ""
    sent: list[SentRequest] = field(default_factory=list)

    def sent_for(self, url: str) -> SentRequest | None:
        """The last request sent to ``url`` (a retry sends it again), if any."""
        for sent in reversed(self.sent):
            if sent.url == url:
                return sent
        return None


OnFetched = Callable[[Fetched], Awaitable[Sequence[Request]]]


def status_handled(status: int, request: Request, spider: Spider | None) -> bool:
    """Would a crawl of ``spider`` hand a ``status`` answer to ``request``'s callback?

    ``request`` is the one the user made (:attr:`Fetched.request`), not the copy we
    sent, which handles every status.
    """
    if 200 <= status < 300:
        return True
    if spider is not None and status in spider.handle_httpstatus_list:
        return True
    meta = request.meta
    if meta.get("handle_httpstatus_all") or status in meta.get("handle_httpstatus_list", ()):
        return True
    return 300 <= status < 400 and not request.allow_redirects


class OneShot:
    """Runs short crawls of given requests with the settings and identity of a spider.

    ``spider`` (optional) lends its headers, cookies, middlewares and trace configs;
    with ``open_spider`` its ``open()``/``close()`` run around each crawl and its
    ``cookies_for()`` works meanwhile. ``http_cache`` is passed to the Crawler.
    """

    def __init__(
        self,
        settings: Settings,
        spider: Spider | None = None,
        *,
        open_spider: bool = False,
        http_cache: HttpCache | None = None,
    ) -> None:
        self.settings = settings
        self.spider = spider
        self.open_spider = open_spider
        self.http_cache = http_cache
        self.last_stats: dict[str, Any] = {}
        self._cookies = _CookieCarry()  # one crawl's cookies go on to the next (the shell)

    async def fetch(self, request: Request) -> Fetched:
        """Fetch one request; the result says what became of it."""
        results: list[Fetched] = []

        async def keep(fetched: Fetched) -> Sequence[Request]:
            results.append(fetched)
            return ()

        await self.crawl([request], keep)
        return results[0]

    async def crawl(self, requests: Sequence[Request], on_fetched: OnFetched) -> None:
        """Fetch ``requests``; ``on_fetched`` gets each outcome and returns more to fetch.

        Every request gets exactly one ``on_fetched`` call, even one robots.txt
        refused (``not_fetched`` says why).
        """
        capture = _Capture(on_fetched, self.spider, self.open_spider)
        internal = _CaptureSpider(capture, [capture.wrap(r) for r in requests])
        crawler = Crawler(
            internal,
            self.settings,
            middlewares=[_Reached(capture)],
            http_cache=self.http_cache,
            session_hooks=[self._cookies],
        )
        result = await crawler.run()
        self.last_stats = dict(result.stats)
        await capture.report_unanswered(self._why_not_fetched(result.stats))

    def _why_not_fetched(self, stats: dict[str, Any]) -> Callable[[bool], str]:
        """Why a request got neither a response nor an error, from the crawl's stats."""

        def why(reached: bool) -> str:
            if not reached:
                if stats.get("robots/disallowed"):
                    return "robots.txt disallows it (add --no-robots to fetch it anyway)"
                if stats.get("failures/robots_unavailable"):
                    return (
                        "its robots.txt could not be fetched"
                        " (-L WARNING shows why; --no-robots skips it)"
                    )
                if stats.get("duplicates") or stats.get("depth_dropped"):
                    return "not sent: a duplicate of a request already made, or over DEPTH_LIMIT"
                return f"the crawl did not send it ({stats.get('finish_reason', 'stopped')})"
            return "its redirect was not followed (offsite, or to a page already fetched)"

        return why


class _Capture:
    """The bookkeeping of one OneShot crawl: our requests by token, and their outcomes."""

    def __init__(self, on_fetched: OnFetched, spider: Spider | None, open_spider: bool) -> None:
        self.on_fetched = on_fetched
        self.spider = spider
        self.open_spider = open_spider
        self.originals: dict[int, Request] = {}
        self.answered: set[int] = set()
        self.reached: set[int] = set()
        self.sent: list[SentRequest] = []  # every request of the crawl, filled by tracing
        self._tokens = itertools.count()

    def wrap(self, request: Request) -> Request:
        """A copy of ``request`` whose answer comes back to us (the original is kept)."""
        token = next(self._tokens)
        self.originals[token] = request
        meta = {**request.meta, _TOKEN: token, "handle_httpstatus_all": True}
        return request.replace(callback=self.on_response, errback=self.on_error, meta=meta)

    async def on_response(self, response: Response) -> list[Request]:
        """The capturing callback: report the response, wrap what comes next."""
        token = response.meta[_TOKEN]
        self.answered.add(token)
        fetched = Fetched(self.originals[token], response=response, sent=self._all_sent())
        return [self.wrap(r) for r in await self.on_fetched(fetched)]

    async def on_error(self, error: FetchError) -> list[Request]:
        """The capturing errback: report the error (a fetch failed for good)."""
        request: Request = error.request  # type: ignore[attr-defined]
        token = request.meta[_TOKEN]
        self.answered.add(token)
        fetched = Fetched(self.originals[token], error=error, sent=self._all_sent())
        return [self.wrap(r) for r in await self.on_fetched(fetched)]

    async def report_unanswered(self, why: Callable[[bool], str]) -> None:
        """Tell ``on_fetched`` about the requests the crawl ended without an answer for."""
        for token, request in self.originals.items():
            if token not in self.answered:
                self.answered.add(token)
                reason = why(token in self.reached)
                await self.on_fetched(Fetched(request, not_fetched=reason, sent=self._all_sent()))

    def _all_sent(self) -> list[SentRequest]:
        """The crawl's sent requests so far: the list itself, shared (append-only), not a copy
        per response (that made ``--depth`` quadratic)."""
        return self.sent

    def trace_config(self) -> aiohttp.TraceConfig:
        """Records the headers every request went out with (aiohttp's own, after cookies)."""

        async def on_headers_sent(session: Any, ctx: SimpleNamespace, params: Any) -> None:
            headers = CIMultiDict(params.headers)
            self.sent.append(SentRequest(params.method, str(params.url), headers))

        config = aiohttp.TraceConfig()
        config.on_request_headers_sent.append(on_headers_sent)
        return config


class _CookieCarry:
    """A session hook: the cookie jars a crawl ends with are loaded into the next one's."""

    def __init__(self) -> None:
        self.saved: dict[str, list[dict[str, Any]]] = {}

    async def sessions_opened(self, pool: SessionPool) -> None:
        """Load the previous crawl's cookies."""
        for key, records in self.saved.items():
            load_jar(pool.jar_for_key(key), records)

    async def sessions_closing(self, pool: SessionPool) -> None:
        """Keep this crawl's cookies."""
        self.saved = {key: dump_jar(jar) for key, jar in pool.jars().items()}


class _Reached:
    """An innermost middleware: notes which requests got past robots.txt to the fetch."""

    def __init__(self, capture: _Capture) -> None:
        self.capture = capture

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Note the request, then fetch it."""
        token = request.meta.get(_TOKEN)
        if token is not None:
            self.capture.reached.add(token)
        return await call_next(request)


class _CaptureSpider(Spider):
    """The crawl's spider: starts with our wrapped requests, lends the user spider's identity."""

    def __init__(self, capture: _Capture, start: list[Request]) -> None:
        user = capture.spider
        super().__init__()
        self.name = user.name if user is not None and user.name else "fetch"  # type: ignore[misc]
        self._capture = capture
        self._start = start
        self.headers = dict(user.headers) if user is not None else {}
        self.cookies = dict(user.cookies) if user is not None else {}
        self.middlewares = tuple(user.middlewares) if user is not None else ()
        traces = tuple(user.trace_configs) if user is not None else ()
        self.trace_configs = (*traces, capture.trace_config())

    async def start(self) -> AsyncIterator[Request]:
        """Our wrapped requests."""
        for request in self._start:
            yield request

    def use_cookie_lookup(self, lookup: Callable[[str], dict[str, str]] | None) -> None:
        """Lend the crawl's cookie jar to the user's spider as well."""
        super().use_cookie_lookup(lookup)
        if self._capture.spider is not None:
            self._capture.spider.use_cookie_lookup(lookup)

    async def open(self) -> None:
        """Open the user's spider, if asked to."""
        if self._capture.open_spider and self._capture.spider is not None:
            await self._capture.spider.open()

    async def close(self, reason: str) -> None:
        """Close the user's spider, if it was opened."""
        if self._capture.open_spider and self._capture.spider is not None:
            await self._capture.spider.close(reason)
