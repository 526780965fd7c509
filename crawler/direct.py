"""Fetches that bypass the frontier and the middleware chain: robots.txt, and the files
pipeline's downloads. They go out the way the pages do: through the crawl's proxy pool (a
rotation pool's choice, waiting while every proxy rests; never around the pool from the
crawler's own address) and, for robots.txt, through the HTTP cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .clock import Clock, sleep
from .downloader import Downloader, registered_domain
from .downloader.rotation import ProxyPool
from .errors import ProxyError
from .httpcache import HttpCache, cached_fetcher
from .request import Request
from .response import Response
from .stats import Stats

__all__ = ["direct_fetcher"]

Fetch = Callable[[Request], Awaitable[Response]]


def direct_fetcher(
    downloader: Downloader,
    pool: ProxyPool | None,
    clock: Clock,
    http_cache: HttpCache | None = None,
    stats: Stats | None = None,
) -> Fetch:
    """A fetch for requests outside the frontier: through the pool's proxy if there is a
    pool (waiting on ``clock`` while every proxy of the domain cools down; a ProxyError once
    every proxy is retired), then through ``http_cache`` if given."""
    fetch: Fetch = downloader.fetch
    if pool is not None:

        async def fetch_via_pool(request: Request) -> Response:
            domain = registered_domain(request.host)
            while True:
                proxy, wait_s = pool.choose(domain)
                if proxy is not None:
                    return await downloader.fetch(request, proxy)
                if wait_s < 0:
                    raise ProxyError(f"every proxy is retired; cannot fetch {request.url}")
                await sleep(clock, wait_s)  # never fall back to the crawler's own address

        fetch = fetch_via_pool
    if http_cache is not None:
        fetch = cached_fetcher(http_cache, fetch, stats)
    return fetch
