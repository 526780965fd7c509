"""One request's life after the frontier: fetch, callback, route outputs, ack or fail."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from itemadapter import is_item
from yarl import URL

from .downloader import Downloader
from .errors import CrawlerError, DropItem, FetchError, HttpError
from .fingerprint import url_fingerprint
from .frontier.base import Frontier, Lease
from .pipeline import PipelineChain
from .request import Request
from .response import Response
from .spider import Spider
from .stats import Stats

__all__ = ["OffsitePolicy", "RequestProcessor"]

logger = logging.getLogger("crawler.worker")

_PUSH_BATCH = 512


class OffsitePolicy:
    """Decides whether a host belongs to the spider's ``allowed_domains``."""

    def __init__(self, allowed_domains: Sequence[str]) -> None:
        self._domains = tuple(d.lower().strip().lstrip(".") for d in allowed_domains if d.strip())
        self._suffixes = tuple("." + d for d in self._domains)
        self._cache: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        """True if ``host`` is an allowed domain or a subdomain of one (or no list is set)."""
        if not self._domains:
            return True
        allowed = self._cache.get(host)
        if allowed is None:
            allowed = host in self._domains or host.endswith(self._suffixes)
            if len(self._cache) < 100_000:
                self._cache[host] = allowed
        return allowed


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
    ) -> None:
        self.spider = spider
        self.frontier = frontier
        self.downloader = downloader
        self.pipelines = pipelines
        self.stats = stats
        self.depth_limit = depth_limit
        self.offsite = OffsitePolicy(spider.allowed_domains)
        self._allowed_status = frozenset(spider.handle_httpstatus_list)

    async def seed(self, requests: Sequence[Request]) -> None:
        """Push start requests (offsite ones are dropped and counted)."""
        await self._push(requests, parent=None)

    async def handle(self, lease: Lease) -> None:
        """Fetch a leased request, run its callback and give the lease back."""
        request = lease.request
        stats = self.stats
        try:
            response = await self.downloader.fetch(request)
        except FetchError as exc:
            stats.inc(f"failures/{exc.kind}")
            logger.warning("[%s] %s", self.spider.name, exc)
            await self._run_errback(request, exc)
            await self.frontier.fail(lease, exc.kind)
            return
        stats.inc("pages")
        stats.inc(f"status/{response.status}")
        stats.inc("bytes", len(response.body))
        if response.history and not await self._first_visit(response):
            stats.inc("duplicates/redirect")
            await self.frontier.ack(lease)
            return
        if not self._status_allowed(response):
            error = HttpError(
                f"ignoring HTTP {response.status} from {response.url}", response.url, response
            )
            stats.inc(f"failures/{error.kind}")
            logger.info("[%s] %s", self.spider.name, error)
            await self._run_errback(request, error)
            await self.frontier.fail(lease, error.kind)
            return
        callback = request.callback or self.spider.parse
        await self._run_callback(callback, response, request, "callback")
        await self.frontier.ack(lease)

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

    async def _run_errback(self, request: Request, exc: FetchError) -> None:
        if request.errback is None:
            return
        exc.request = request  # type: ignore[attr-defined]
        await self._run_callback(request.errback, exc, request, "errback")

    async def _run_callback(
        self, callback: Callable[[Any], Any], arg: Any, request: Request, what: str
    ) -> None:
        """Run a callback or errback, routing each output as it is produced."""
        pending: list[Request] = []
        try:
            result = callback(arg)
            if inspect.isasyncgen(result):
                async for output in result:
                    await self._route(output, request, pending)
            elif inspect.isgenerator(result):
                for output in result:
                    await self._route(output, request, pending)
            else:
                if inspect.isawaitable(result):
                    result = await result
                await self._route_result(result, request, pending)
        except Exception as exc:
            self.stats.inc("callback_errors")
            self.stats.inc(f"callback_errors/{type(exc).__name__}")
            name = getattr(callback, "__qualname__", repr(callback))
            logger.error(
                "[%s] %s %s failed on %s", self.spider.name, what, name, request.url, exc_info=True
            )
        finally:
            if pending:
                await self._push(pending, parent=request)

    async def _route_result(self, result: Any, request: Request, pending: list[Request]) -> None:
        if result is None or isinstance(result, Request) or is_item(result):
            await self._route(result, request, pending)
        elif isinstance(result, (list, tuple)):
            for output in result:
                await self._route(output, request, pending)
        else:
            await self._route(result, request, pending)

    async def _route(self, output: Any, request: Request, pending: list[Request]) -> None:
        if output is None:
            return
        if isinstance(output, Request):
            pending.append(output)
            if len(pending) >= _PUSH_BATCH:
                batch = pending[:]
                pending.clear()
                await self._push(batch, parent=request)
            return
        if is_item(output):
            await self._process_item(output)
            return
        raise CrawlerError(
            f"callback produced {type(output).__name__} {output!r:.80}: expected a Request,"
            " an item (dict, dataclass, attrs, pydantic) or None"
        )

    async def _process_item(self, item: Any) -> None:
        try:
            await self.pipelines.process(item, self.spider)
        except DropItem as exc:
            self.stats.inc("items_dropped")
            logger.debug("[%s] dropped item: %s", self.spider.name, exc)
            return
        except Exception:
            self.stats.inc("pipeline_errors")
            logger.exception("[%s] pipeline failed on item %.200r", self.spider.name, item)
            return
        self.stats.inc("items")

    async def _push(self, requests: Sequence[Request], parent: Request | None) -> None:
        depth = parent.depth + 1 if parent is not None else 0
        limit = self.depth_limit
        keep = []
        offsite = self.offsite
        for child in requests:
            if parent is not None:
                child.depth = depth
                if limit and depth > limit:
                    self.stats.inc("depth_dropped")
                    continue
            if not offsite.allows(child.host):
                self.stats.inc("offsite")
                continue
            keep.append(child)
        if not keep:
            return
        accepted = await self.frontier.push(keep)
        duplicates = len(accepted) - sum(accepted)
        if duplicates:
            self.stats.inc("duplicates", duplicates)
        self.stats.inc("requests", len(accepted) - duplicates)
