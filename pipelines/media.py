"""The files pipeline: downloads the files an item lists and records where they are.

An item with a ``file_urls`` field (FILES_URLS_FIELD) gets each file fetched through
the crawl's own Downloader (same sessions and cookies, proxies, size and time caps,
private-network guard), stored under FILES_STORE (see ``mediastore.py``), and its
``files`` field (FILES_RESULT_FIELD) set to one entry per URL::

    {"url": ..., "path": "full/<sha1>.pdf", "checksum": "<md5>", "status": "downloaded"}

``status`` is ``downloaded``, ``uptodate`` (stored by an earlier item or run: not
fetched again) or ``failed: <reason>`` (``http_404``, ``too_large``, ``network``,
``timeout``, ``blocked_address``, ``invalid_url``...). The item goes on to the next
pipelines only once all its files are settled; a failed file is counted
(``files/failed/<reason>``) and never drops the item. A store that cannot be written
(disk full) is an OutputError: the crawl stops, resumable, as for any output.

Politeness: file fetches to one host respect CONCURRENCY_PER_HOST and DOWNLOAD_DELAY
(HOST_DELAYS, DOWNLOAD_DELAY_JITTER) on the crawl's clock, counted apart from the page
fetches (the frontier is not involved: an item never waits for a worker). robots.txt
is not consulted: the files are ones the crawled pages (which robots.txt allowed) point
to, as a browser fetches a page's images. Transient failures are retried as pages are
(RETRY_TIMES, RETRY_HTTP_CODES, back-off on the crawl's clock, Retry-After).
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler import ConfigError, FetchError, InvalidRequest, OutputError, Request, Response
from crawler.loglines import get_logger, short_url

from .mediastore import (
    FileIndex,
    StoredFile,
    extension_for,
    file_path,
    looks_like_image,
    write_file,
)

__all__ = ["FilesPipeline", "HostGate"]

logger = get_logger("crawler.pipelines.media")

MAXSIZE_META = "download_maxsize"  # the Downloader's per-request body cap
_MAX_HOSTS = 1024  # idle hosts past this many are forgotten (their delay has passed)
_MAX_FAILURES = 10_000  # failed URLs remembered for the run (not fetched again)


class _Host:
    __slots__ = ("next_at", "slots", "users")

    def __init__(self, per_host: int) -> None:
        self.slots = asyncio.Semaphore(per_host)
        self.next_at = 0.0
        self.users = 0


Sleep = Callable[[float], Awaitable[None]]


class HostGate:
    """Per-host politeness for fetches made outside the frontier.

    At most ``per_host`` fetches to a host at once, and ``delay_s`` (``host_delays``
    per host, randomised by ``jitter``) between two starts, in the time of ``now()``
    and ``sleep(seconds)`` (the crawl's clock: ``DownloaderAccess.clock.now`` and
    ``DownloaderAccess.sleep``).
    """

    def __init__(
        self,
        now: Callable[[], float],
        sleep: Sleep,
        per_host: int,
        delay_s: float = 0.0,
        jitter: float = 0.0,
        host_delays: Mapping[str, float] | None = None,
    ) -> None:
        self.now = now
        self.sleep = sleep
        self.per_host = per_host
        self.delay_s = delay_s
        self.jitter = jitter
        self.host_delays = {host.lower(): delay for host, delay in (host_delays or {}).items()}
        self._hosts: dict[str, _Host] = {}

    def _entry(self, host: str) -> _Host:
        entry = self._hosts.get(host)
        if entry is None:
            if len(self._hosts) >= _MAX_HOSTS:
                now = self.now()
                for name, old in list(self._hosts.items()):
                    if not old.users and old.next_at <= now:
                        del self._hosts[name]
            entry = self._hosts[host] = _Host(self.per_host)
        return entry

    def _delay(self, host: str) -> float:
        delay = self.host_delays.get(host, self.delay_s)
        if delay and self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return delay

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Wait for a free slot on ``host`` and its delay; hold the slot inside the block."""
        entry = self._entry(host)
        entry.users += 1
        try:
            async with entry.slots:
                while (wait_s := entry.next_at - self.now()) > 0:
                    await self.sleep(wait_s)
                # No await between the check and this: two waiters never start together.
                entry.next_at = self.now() + self._delay(host)
                yield
        finally:
            entry.users -= 1

    def hold(self, host: str, delay_s: float) -> None:
        """Start nothing on ``host`` for ``delay_s`` seconds (Retry-After, 429/503)."""
        entry = self._entry(host)
        entry.next_at = max(entry.next_at, self.now() + delay_s)


class _Failed(Exception):
    """A file that could not be fetched, for ``reason`` (a stats-friendly name)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _KeyLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


@dataclass(frozen=True, slots=True)
class _Outcome:
    stored: StoredFile | None
    status: str


class FilesPipeline:
    """Downloads the files listed in each item's FILES_URLS_FIELD into FILES_STORE.

    Enable it with ``PIPELINES = ["crawler.pipelines.FilesPipeline"]`` and FILES_STORE
    (or pass ``store``); put it before the exporters so they write the ``files`` field.
    See the module docstring for what it records and how it fetches.
    """

    def __init__(self, store: str | Path | None = None) -> None:
        self._store_arg = store
        self._access: Any = None  # a crawler.pipeline.DownloaderAccess (not public API)
        self._index: FileIndex | None = None
        self._locks: dict[str, _KeyLock] = {}
        self._failures: OrderedDict[str, str] = OrderedDict()
        self._warned_field = False

    def use_downloader(self, access: Any) -> None:
        """Called by the engine once its Downloader is open (crawler.pipeline.NeedsDownloader)."""
        self._access = access
        self._fetch: Callable[[Request], Awaitable[Response]] = access.fetch
        self._sleep: Sleep = access.sleep
        self._stats = access.stats  # the crawl's counters (inc(key))
        settings = access.settings
        self.urls_field = settings.FILES_URLS_FIELD
        self.result_field = settings.FILES_RESULT_FIELD
        self.max_bytes = settings.FILES_MAX_SIZE or settings.MAX_RESPONSE_SIZE
        self.retry = access.retry  # the crawl's RETRY_* rules
        self.gate = HostGate(
            access.clock.now,
            access.sleep,
            settings.CONCURRENCY_PER_HOST,
            settings.DOWNLOAD_DELAY,
            settings.DOWNLOAD_DELAY_JITTER,
            settings.HOST_DELAYS,
        )

    async def open(self, spider: Any) -> None:
        """Check the settings and open the store's index."""
        access = self._access
        if access is None:
            raise ConfigError(
                "FilesPipeline needs the crawl's downloader: run it as one of a Crawler's pipelines"
            )
        store = self._store_arg or access.settings.FILES_STORE
        if not store:
            raise ConfigError(
                "FILES_STORE is not set: the files pipeline needs a folder"
                " (e.g. -s FILES_STORE=files)"
            )
        self.root = Path(store)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"FILES_STORE {str(store)!r} is a file, not a folder")
        index = FileIndex(self.root)
        await index.open(access.open_database)
        self._index = index

    async def close(self, spider: Any) -> None:
        """Close the index."""
        if self._index is not None:
            index, self._index = self._index, None
            await index.close()

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Settle every file of ``item`` (download, find stored, or fail), then pass it on."""
        from itemadapter import ItemAdapter  # imported with the first item, not at start-up

        adapter = ItemAdapter(item)
        urls = adapter.get(self.urls_field)
        if not urls:
            return item
        if isinstance(urls, str):
            urls = [urls]  # one URL, not a list of characters
        unique = list(dict.fromkeys(str(url) for url in urls))
        name = getattr(spider, "name", "")
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._settle(url, name)) for url in unique]
        except BaseExceptionGroup as errors:  # an OutputError: the chain must see it as is
            raise errors.exceptions[0] from None
        results = [self._entry(url, task.result()) for url, task in zip(unique, tasks, strict=True)]
        try:
            adapter[self.result_field] = results
        except KeyError:  # an item class without that field: it cannot hold the results
            if not self._warned_field:
                self._warned_field = True
                logger.warning(
                    "[%s] %s items have no %r field: file results are not recorded",
                    name,
                    type(item).__name__,
                    self.result_field,
                )
        return item

    @staticmethod
    def _entry(url: str, outcome: _Outcome) -> dict[str, Any]:
        stored = outcome.stored
        entry: dict[str, Any] = {
            "url": url,
            "path": stored.path if stored else None,
            "checksum": stored.checksum if stored else None,
            "status": outcome.status,
        }
        if stored is not None and stored.width is not None:
            entry["width"], entry["height"] = stored.width, stored.height
        return entry

    async def _settle(self, url: str, spider: str) -> _Outcome:
        """One file's outcome, counted. One fetch per URL at a time, then the index knows it."""
        assert self._index is not None, "open() first"
        stats = self._stats
        try:
            request = Request(url, meta={MAXSIZE_META: self.max_bytes})
        except InvalidRequest:
            return self._failed(url, "invalid_url", spider)
        key = request.url
        async with self._one_at_a_time(key):
            reason = self._failures.get(key)
            if reason is not None:
                return self._failed(url, reason, spider, remember=False)
            stored = await self._index.lookup(key)
            if stored is not None:
                stats.inc("files/uptodate")
                return _Outcome(stored, "uptodate")
            try:
                stored = await self._download(request)
            except _Failed as failure:
                return self._failed(key, failure.reason, spider)
            await self._index.record(key, stored)
            stats.inc("files/downloaded")
            return _Outcome(stored, "downloaded")

    @asynccontextmanager
    async def _one_at_a_time(self, key: str) -> AsyncIterator[None]:
        """One task per URL at a time: the next one finds the file stored (or failed)."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[key]

    def _failed(self, url: str, reason: str, spider: str, remember: bool = True) -> _Outcome:
        self._stats.inc(f"files/failed/{reason}")
        if remember:
            logger.warning("[%s] file %s failed: %s", spider, short_url(url), reason)
            self._failures[url] = reason
            if len(self._failures) > _MAX_FAILURES:
                self._failures.popitem(last=False)
        return _Outcome(None, f"failed: {reason}")

    async def _download(self, request: Request) -> StoredFile:
        """Fetch politely with the crawl's retry rules, then store; _Failed if it cannot."""
        host = request.host
        while True:
            async with self.gate.slot(host):
                try:
                    response = await self._fetch(request)
                except FetchError as exc:
                    decision = self.retry.for_error(request, exc)
                    if decision is None:
                        raise _Failed(exc.kind) from None
                else:
                    status = response.status
                    if 200 <= status < 300:
                        break
                    retry_after = response.headers.get("Retry-After")
                    decision = self.retry.for_status(request, status, retry_after)
                    if decision is None:
                        raise _Failed(f"http_{status}")
            if decision.hold_host:
                self.gate.hold(host, decision.delay_s)
            request.meta["retry_times"] = int(request.meta.get("retry_times", 0)) + 1
            self._stats.inc(f"files/retries/{decision.reason}")
            await self._sleep(decision.delay_s)
        content_type = response.headers.get("Content-Type")
        path = file_path(request.url, extension_for(str(response.url), content_type))
        measure = looks_like_image(path, content_type)
        try:
            return await asyncio.to_thread(write_file, self.root, path, response.body, measure)
        except OSError as exc:
            name = f"files:{self.root}"
            raise OutputError(
                f"cannot write {path} under FILES_STORE {self.root}: {exc.strerror or exc}",
                output=name,
            ) from exc
