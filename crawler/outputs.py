"""What a callback produces: requests go to the frontier, items through the pipelines.

An item that one pipeline refuses (``DropItem``) or fails on (any other
exception), or that fails its own validation (crawler/validation.py: also when
the callback raises the error while building it), is dropped, counted and
logged, and the crawl goes on. Every request passes the URL filters
(crawler/urlfilter.py) before the frontier's de-duplication. An
:class:`~crawler.errors.OutputError` is not about one item: it propagates, out
of the callback's run, so the worker stops the crawl without acking the request.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import EllipsisType
from typing import Any, TypeVar

import orjson

from .checkpoint import ItemBarrier
from .errors import CrawlerError, DropItem, InvalidRequest, OutputError
from .fingerprint import fingerprint
from .frontier.base import CheckpointMarks, Frontier
from .itemcheck import is_item
from .loglines import get_logger, short_url
from .pipeline import ItemFailed, PipelineChain
from .request import Request
from .response import Response
from .spider import Spider
from .stats import Stats
from .urlfilter import UrlFilter
from .validation import InvalidItem, invalid_item

__all__ = ["OffsitePolicy", "OutputRouter", "bad_output", "for_each_output"]

logger = get_logger("crawler.worker")

_PUSH_BATCH = 512

_T = TypeVar("_T")


async def for_each_output(
    result: Any, route: Callable[[Any, _T], Awaitable[None]], context: _T
) -> None:
    """Await ``route(output, context)`` for each output of a callback's ``result``.

    ``result`` is what calling the callback returned: an async generator, a
    generator, an awaitable (awaited first), a list or tuple of outputs, or a single
    output (a Request, an item or None). A list that is itself an item (itemadapter
    says so) is one output. The engine and ``crawler.testing.run_callback`` share
    this, so a callback behaves the same in a unit test and in a crawl.
    """
    if inspect.isasyncgen(result):
        async for output in result:
            await route(output, context)
    elif inspect.isgenerator(result):
        for output in result:
            await route(output, context)
    else:
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, (list, tuple)) and not is_item(result):
            for output in result:
                await route(output, context)
        else:
            await route(result, context)


def bad_output(output: Any) -> CrawlerError:
    """The error for a callback output that is neither a Request, an item nor None."""
    return CrawlerError(
        f"callback produced {type(output).__name__} {output!r:.80}: expected a Request,"
        " an item (dict, dataclass, attrs, pydantic) or None"
    )


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


class _Run:
    """One callback invocation: its parent request, pending child requests, item count."""

    __slots__ = ("held", "items", "key_prefix", "pending", "request", "response")

    def __init__(self, request: Request, response: Response | None) -> None:
        self.request = request
        self.response = response
        self.pending: list[Request] = []
        self.items = 0
        self.key_prefix: str | None = None
        self.held = False  # holds a place in the ItemBarrier (until its ack)


class OutputRouter:
    """Runs callbacks and errbacks and routes every output as it is produced."""

    def __init__(
        self,
        spider: Spider,
        frontier: Frontier,
        pipelines: PipelineChain,
        stats: Stats,
        depth_limit: int,
        barrier: ItemBarrier | None = None,
        url_filter: UrlFilter | EllipsisType | None = ...,
    ) -> None:
        """``url_filter``: the crawl's (``UrlFilter.build(spider, settings)``, built once by
        the caller); ``...`` builds it from the spider's ``allow_urls``/``deny_urls`` only."""
        self.spider = spider
        self.frontier = frontier
        self.pipelines = pipelines
        self.stats = stats
        self.depth_limit = depth_limit
        self.barrier = barrier
        self.offsite = OffsitePolicy(spider.allowed_domains)
        self.url_filter = UrlFilter.build(spider) if url_filter is ... else url_filter
        self._custom_key = type(spider).item_key is not Spider.item_key
        self._traced: set[tuple[str, type[BaseException]]] = set()  # traceback logged once

    async def run(
        self,
        callback: Callable[[Any], Any],
        arg: Any,
        request: Request,
        response: Response | None,
        what: str,
        fingerprint_: bytes | None = None,
    ) -> bool:
        """Call ``callback(arg)``; errors are logged with the URL and counted, not raised.

        Whatever the callback produced before an error is kept. Only an OutputError
        (an output cannot write) is raised: the crawl must stop. True if the run put
        items into the pipelines with a checkpoint barrier: the caller must
        :meth:`leave` once the request's ack (or fail) went through.
        """
        run = _Run(request, response)
        if fingerprint_ is not None:
            run.key_prefix = fingerprint_.hex()
        try:
            await self._run(callback, arg, run, what)
        except BaseException:
            if run.held:
                self.leave()
            raise
        return run.held

    def leave(self) -> None:
        """The request whose run returned True was acked (or failed)."""
        assert self.barrier is not None
        self.barrier.leave()

    async def _run(self, callback: Callable[[Any], Any], arg: Any, run: _Run, what: str) -> None:
        request = run.request
        try:
            result = callback(arg)
            if inspect.isasyncgen(result):  # the usual callback: routed inline, see _outputs
                await self._outputs(result, run)
            else:
                await for_each_output(result, self._route, run)
        except OutputError:
            raise
        except Exception as exc:
            invalid = invalid_item(exc)
            if invalid is not None:  # raised while building an item: that item is dropped
                self._invalid(
                    invalid, run, " (the callback stopped there: its later outputs are lost)"
                )
                return
            self.stats.inc("callback_errors")
            self.stats.inc(f"callback_errors/{type(exc).__name__}")
            name = getattr(callback, "__qualname__", repr(callback))
            logger.error(
                "[%s] %s %s failed on %s", self.spider.name, what, name, request.url, exc_info=True
            )
        finally:
            if run.pending:
                await self.push(run.pending, parent=request)

    async def _outputs(self, result: Any, run: _Run) -> None:
        """``for_each_output`` for an async generator, minus a coroutine per request: a page's
        ~30 links are appended to its batch here, other outputs go through :meth:`_route`."""
        pending = run.pending
        route = self._route
        async for output in result:
            if type(output) is Request:
                pending.append(output)
                if len(pending) >= _PUSH_BATCH:
                    await self._push_pending(run)
            else:
                await route(output, run)

    async def _push_pending(self, run: _Run) -> None:
        batch = run.pending[:]
        run.pending.clear()
        await self.push(batch, parent=run.request)

    async def _route(self, output: Any, run: _Run) -> None:
        if output is None:
            return
        if isinstance(output, Request):
            run.pending.append(output)
            if len(run.pending) >= _PUSH_BATCH:
                await self._push_pending(run)
            return
        if type(output) is dict or is_item(output):
            await self._process_item(output, run)
            return
        raise bad_output(output)

    def _key(self, item: Any, run: _Run) -> str:
        index = run.items
        run.items += 1
        if self._custom_key and run.response is not None:
            return str(self.spider.item_key(item, run.response, index))
        if run.key_prefix is None:
            run.key_prefix = fingerprint(run.request).hex()
        return f"{run.key_prefix}:{index}"

    async def _process_item(self, item: Any, run: _Run) -> None:
        barrier = self.barrier
        if barrier is not None and not run.held:
            if not barrier.try_enter():
                await barrier.enter()  # a checkpoint is running: wait until it ends
            run.held = True
        key = self._key(item, run)
        try:
            await self.pipelines.process(item, self.spider, key)
        except InvalidItem as exc:
            self._invalid(exc, run)
            return
        except DropItem as exc:
            self.stats.inc("items_dropped")
            logger.debug(
                "[%s] dropped an item from %s: %.200s", self.spider.name, run.request.url, exc
            )
            return
        except ItemFailed as exc:
            self._item_failed(exc, run)
            return
        self.stats.inc("items")
        if logger.isEnabledFor(logging.DEBUG):  # -L DEBUG: one bounded line per item
            logger.debug("[%s] item from %s: %.300r", self.spider.name, run.request.url, item)

    def _invalid(self, exc: InvalidItem, run: _Run, note: str = "") -> None:
        """An item failed its own validation: one line naming the field(s) and value(s)."""
        self.stats.inc("items_dropped/validation")
        logger.warning(
            "[%s] invalid item from %s dropped: %.400s%s",
            self.spider.name,
            short_url(run.request.url),
            exc,
            note,
        )

    def follows(self, target: Request) -> bool:
        """Whether a redirect to ``target`` may be followed: onsite, and past the URL filters.

        The downloader asks before it sends the hop; the Redirects middleware counts a
        refused one (crawler/middlewares.py).
        """
        url_filter = self.url_filter
        return self.offsite.allows(target.host) and (
            url_filter is None or url_filter.allows(target.url)
        )

    def _item_failed(self, exc: ItemFailed, run: _Run) -> None:
        """A pipeline raised on this item: drop it, count it, log it (with a traceback once)."""
        self.stats.inc("items_dropped/error")
        self.stats.inc("pipeline_errors")
        first = (exc.pipeline, type(exc.error)) not in self._traced
        if first:
            self._traced.add((exc.pipeline, type(exc.error)))
        logger.error(
            "[%s] pipeline %s failed on an item from %s, item dropped: %.300r",
            self.spider.name,
            exc.pipeline,
            run.request.url,
            exc.error,
            exc_info=exc.error if first else None,
        )

    async def seed(self, trust_host: Callable[[str], None]) -> None:
        """Push the start requests, if this process seeds the crawl (offsite ones are dropped).

        Every start host is trusted (``trust_host``): the crawl may reach them even on
        a private network (guard.py). A frontier that keeps marks (the SQLite one)
        remembers them for a resume; elsewhere (a shared crawl another process
        seeded) the hosts of ``start_urls`` are trusted. ``start()`` never runs twice.
        """
        spider, frontier = self.spider, self.frontier
        if not await frontier.claim_seed():
            logger.info("[%s] resuming: start requests were queued before", spider.name)
            # For `crawl run`'s exit code: this process had no start requests of its own
            # to fetch; an empty run here is not a crawl that fetched nothing.
            self.stats.set_value("seeded_here", False)
            for host in await _saved_start_hosts(frontier, spider):
                trust_host(host)
            return
        batch: list[Request] = []
        hosts: dict[str, None] = {}
        try:
            async for request in spider.start():
                if not isinstance(request, Request):
                    raise TypeError(f"start() yielded {type(request).__name__}, not a Request")
                if request.host not in hosts and len(hosts) < _MAX_START_HOSTS:
                    hosts[request.host] = None
                    trust_host(request.host)
                batch.append(request)
                if len(batch) >= 1000:
                    await self.push(batch, parent=None)
                    batch = []
        except InvalidRequest as exc:  # bad input, not a bug: one line, no traceback
            self.stats.inc("start_errors")
            logger.error("[%s] start() stopped: %s; crawling what it yielded", spider.name, exc)
        except Exception:
            self.stats.inc("start_errors")
            logger.exception("[%s] start() failed; crawling what it yielded", spider.name)
        if spider.start_errors:
            self.stats.inc("start_errors", spider.start_errors)
        if batch:
            await self.push(batch, parent=None)
        if isinstance(frontier, CheckpointMarks):  # written with the seeded requests
            frontier.set_marks({_START_HOSTS: orjson.dumps(list(hosts)).decode()})
        await frontier.seed_done()

    async def push(self, requests: Sequence[Request], parent: Request | None) -> None:
        """Send requests to the frontier, dropping offsite, too-deep and filtered ones (counted)."""
        if parent is not None:  # every child of one page has the same depth and referer
            depth, referer = parent.depth + 1, parent.url
            for child in requests:
                child.depth = depth
                child.referer = referer
            if self.depth_limit and depth > self.depth_limit:
                self.stats.inc("depth_dropped", len(requests))
                return
        allows = self.offsite.allows
        keep = [child for child in requests if allows(child.host)]
        if len(keep) < len(requests):
            self.stats.inc("offsite", len(requests) - len(keep))
        url_filter = self.url_filter  # the one test per batch when no filter is set
        if url_filter is not None and keep:
            name, stats = self.spider.name, self.stats
            keep = [child for child in keep if url_filter.check(child.url, stats, name)]
        if not keep:
            return
        accepted = await self.frontier.push(keep)
        duplicates = len(accepted) - sum(accepted)
        if duplicates:
            self.stats.inc("duplicates", duplicates)
        self.stats.inc("requests", len(accepted) - duplicates)


_START_HOSTS = "start_hosts"
_MAX_START_HOSTS = 100_000  # more start hosts than this are not trusted by name on a resume


async def _saved_start_hosts(frontier: Frontier, spider: Any) -> list[str]:
    """The start hosts of the crawl being resumed (or joined)."""
    if isinstance(frontier, CheckpointMarks):
        saved = (await frontier.load_marks()).get(_START_HOSTS)
        if saved is not None:
            return list(orjson.loads(saved))
    hosts = []
    for url in spider.start_urls:
        try:
            hosts.append(Request(url).host)
        except InvalidRequest:
            continue
    return hosts
