"""What a callback produces: requests go to the frontier, items through the pipelines."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from itemadapter import is_item

from .errors import CrawlerError, DropItem
from .fingerprint import fingerprint
from .frontier.base import Frontier
from .loglines import get_logger
from .pipeline import PipelineChain
from .request import Request
from .response import Response
from .spider import Spider
from .stats import Stats

__all__ = ["OffsitePolicy", "OutputRouter"]

logger = get_logger("crawler.worker")

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


class _Run:
    """One callback invocation: its parent request, pending child requests, item count."""

    __slots__ = ("items", "key_prefix", "pending", "request", "response")

    def __init__(self, request: Request, response: Response | None) -> None:
        self.request = request
        self.response = response
        self.pending: list[Request] = []
        self.items = 0
        self.key_prefix: str | None = None


class OutputRouter:
    """Runs callbacks and errbacks and routes every output as it is produced."""

    def __init__(
        self,
        spider: Spider,
        frontier: Frontier,
        pipelines: PipelineChain,
        stats: Stats,
        depth_limit: int,
    ) -> None:
        self.spider = spider
        self.frontier = frontier
        self.pipelines = pipelines
        self.stats = stats
        self.depth_limit = depth_limit
        self.offsite = OffsitePolicy(spider.allowed_domains)
        self._custom_key = type(spider).item_key is not Spider.item_key

    async def run(
        self,
        callback: Callable[[Any], Any],
        arg: Any,
        request: Request,
        response: Response | None,
        what: str,
        fingerprint_: bytes | None = None,
    ) -> None:
        """Call ``callback(arg)``; errors are logged with the URL and counted, never raised.

        Whatever the callback produced before an error is kept.
        """
        run = _Run(request, response)
        if fingerprint_ is not None:
            run.key_prefix = fingerprint_.hex()
        try:
            result = callback(arg)
            if inspect.isasyncgen(result):
                async for output in result:
                    await self._route(output, run)
            elif inspect.isgenerator(result):
                for output in result:
                    await self._route(output, run)
            else:
                if inspect.isawaitable(result):
                    result = await result
                if isinstance(result, (list, tuple)) and not is_item(result):
                    for output in result:
                        await self._route(output, run)
                else:
                    await self._route(result, run)
        except Exception as exc:
            self.stats.inc("callback_errors")
            self.stats.inc(f"callback_errors/{type(exc).__name__}")
            name = getattr(callback, "__qualname__", repr(callback))
            logger.error(
                "[%s] %s %s failed on %s", self.spider.name, what, name, request.url, exc_info=True
            )
        finally:
            if run.pending:
                await self.push(run.pending, parent=request)

    async def _route(self, output: Any, run: _Run) -> None:
        if output is None:
            return
        if isinstance(output, Request):
            pending = run.pending
            pending.append(output)
            if len(pending) >= _PUSH_BATCH:
                batch = pending[:]
                pending.clear()
                await self.push(batch, parent=run.request)
            return
        if type(output) is dict or is_item(output):
            await self._process_item(output, run)
            return
        raise CrawlerError(
            f"callback produced {type(output).__name__} {output!r:.80}: expected a Request,"
            " an item (dict, dataclass, attrs, pydantic) or None"
        )

    def _key(self, item: Any, run: _Run) -> str:
        index = run.items
        run.items += 1
        if self._custom_key and run.response is not None:
            return str(self.spider.item_key(item, run.response, index))
        if run.key_prefix is None:
            run.key_prefix = fingerprint(run.request).hex()
        return f"{run.key_prefix}:{index}"

    async def _process_item(self, item: Any, run: _Run) -> None:
        key = self._key(item, run)
        try:
            await self.pipelines.process(item, self.spider, key)
        except DropItem as exc:
            self.stats.inc("items_dropped")
            logger.debug("[%s] dropped item: %s", self.spider.name, exc)
            return
        except Exception:
            self.stats.inc("pipeline_errors")
            logger.exception("[%s] pipeline failed on item %.200r", self.spider.name, item)
            return
        self.stats.inc("items")

    async def push(self, requests: Sequence[Request], parent: Request | None) -> None:
        """Send requests to the frontier, dropping offsite and too-deep ones (counted)."""
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
