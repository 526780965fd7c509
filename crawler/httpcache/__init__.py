"""An HTTP cache for development, and record/replay for tests: responses kept in SQLite,
keyed by request fingerprint.

``crawl run --cache [DIR]`` (``HTTPCACHE_ENABLED``) keeps every response in
``<HTTPCACHE_DIR>/<spider name>.sqlite``: rerunning an edited spider costs no network.
``HTTPCACHE_POLICY`` chooses ``always`` (serve what is stored) or ``http`` (honour
Cache-Control and revalidate); :class:`HttpCache` adds ``record`` and ``replay`` (offline)
for tests (``crawler.testing.replay``). ``Crawler(..., http_cache=HttpCache(...))``
overrides the settings.

Where it sits in the downloader middleware chain (crawler/middlewares.py)::

    RobotsTxt  StatusFilter  Redirects  [HttpCache]  Retries  conditional  AutoThrottled
    ProxyRotation  ...yours...  fetch

- Inside robots.txt, the status filter and the redirect checks: those run on every
  response, cached or not, so a spider that starts handling a status, or a redirect
  target already seen, behaves the same whether the page came from the cache.
- Outside the retries: a 503 or a network error that is retried ends the attempt
  (``EndRequest``) before it reaches the cache, so only what the crawl finally got is
  stored (a final 503 after the last retry too, unless HTTPCACHE_IGNORE_HTTP_CODES says
  not), and a hit never waits for a retry's back-off.
- Outside AutoThrottle, proxies and your middlewares: a hit uses no proxy, is no ban, and
  does not teach AutoThrottle a zero latency; your request signing runs only on the wire.

The downloader follows redirects itself, so the stored response is the final one, with
its URL and redirect history (Scrapy stores the same, near its downloader). robots.txt
goes through the cache too (not through the chain): a cached crawl does not refetch it.

A response answered without the network gives its host's ``DOWNLOAD_DELAY`` back to the
frontier (``DelayRefunds``): hits cost no politeness wait.

The key is the request fingerprint (method, canonical URL, body): request headers are not
part of it and ``Vary`` is not honoured, so two requests for one URL with different
``Accept-Language`` share an entry. Cookies of a cached response are in its
``response.cookies`` but are not put in the session's cookie jar.
"""

from .cache import MODES, CacheClock, HttpCache, NotRecorded, WallClock
from .middleware import HttpCacheMiddleware, cached_fetcher

__all__ = [
    "MODES",
    "CacheClock",
    "HttpCache",
    "HttpCacheMiddleware",
    "NotRecorded",
    "WallClock",
    "cached_fetcher",
]
