"""Typed crawl settings and their precedence.

Precedence, lowest first: the defaults below < ``[tool.crawler]`` in
pyproject.toml < the spider's ``settings`` dict < ``-s NAME=VALUE`` on the
command line. Every layer is checked: an unknown name or a bad value raises
:class:`~crawler.errors.SettingsError` naming the setting, the value, where it
came from and what is expected, before anything is crawled.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from .errors import SettingsError
from .scrapy_names import SCRAPY_SETTINGS
from .setting_values import coerce

__all__ = ["SCRAPY_SETTINGS", "Settings"]

_SUGGESTIONS = 3  # close matches named in an unknown-setting error, never the whole list


def _unknown(name: str, source: str, known: Mapping[str, Any]) -> str:
    """The one-line error for an unknown setting: Scrapy's equivalent, else a few close names."""
    upper = name.upper()
    if upper in known:
        return f"unknown setting {name!r} in {source}; did you mean {upper}? (names are upper case)"
    ours = SCRAPY_SETTINGS.get(upper)
    if ours is not None:
        return f"unknown setting {name!r} in {source}: that is Scrapy's name; use {ours}"
    hints = difflib.get_close_matches(upper, known, n=_SUGGESTIONS, cutoff=0.6)
    if hints:
        also = f" (also close: {', '.join(hints[1:])})" if hints[1:] else ""
        return f"unknown setting {name!r} in {source}; did you mean {hints[0]}?{also}"
    return f"unknown setting {name!r} in {source}; every name is in docs/settings.md"


def _setting(default: Any, doc: str, minimum: float | None = None, choices: tuple[str, ...] = ()):
    extra = {"doc": doc, "minimum": minimum, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=extra)
    return field(default=default, metadata=extra)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of a crawl, with its default. Build one with :meth:`Settings.build`."""

    CONCURRENCY: int = _setting(
        16,
        "Requests in flight at once across all hosts: the worker count and the connector's"
        " `limit` (0 = no connector limit, with 512 workers).",
        minimum=0,
    )
    CONCURRENCY_PER_HOST: int = _setting(8, "Requests in flight at once to one host.", minimum=1)
    DOWNLOAD_DELAY: float = _setting(
        0.0, "Seconds between the starts of two requests to the same host.", minimum=0
    )
    DOWNLOAD_DELAY_JITTER: float = _setting(
        0.0,
        "Randomise each delay by this fraction: 0.5 gives 0.5x..1.5x DOWNLOAD_DELAY.",
        minimum=0,
    )
    HOST_DELAYS: dict[str, float] = _setting(
        {}, "Per-host DOWNLOAD_DELAY overrides: {host: seconds}."
    )
    ROBOTSTXT_OBEY: bool = _setting(True, "Fetch and obey robots.txt (Protego) for every host.")
    ROBOTSTXT_RETRY_S: float = _setting(
        60.0,
        "Seconds before retrying a robots.txt that answered 5xx or timed out (a network error,"
        " e.g. connection refused, is retried after 1 s, 2 s, 4 s...).",
        minimum=0,
    )
    ROBOTSTXT_MAX_FAILURES: int = _setting(
        3, "Failed robots.txt tries before a host's requests are dropped.", minimum=1
    )
    ROBOTSTXT_MAX_DELAY: float = _setting(
        60.0, "Cap on a robots.txt Crawl-delay / Request-rate delay (seconds).", minimum=0
    )
    AUTOTHROTTLE: bool = _setting(False, "Adapt each host's delay to its latency and 429/503s.")
    AUTOTHROTTLE_START_DELAY: float = _setting(1.0, "AutoThrottle's first delay.", minimum=0)
    AUTOTHROTTLE_MAX_DELAY: float = _setting(60.0, "AutoThrottle's highest delay.", minimum=0)
    AUTOTHROTTLE_TARGET_CONCURRENCY: float = _setting(
        1.0, "Requests AutoThrottle aims to have in flight per host.", minimum=0.01
    )
    RETRY_TIMES: int = _setting(
        2, "Retries of a transient failure (meta max_retry_times).", minimum=0
    )
    RETRY_HTTP_CODES: list[int] = _setting(
        [408, 429, 500, 502, 503, 504], "Response statuses that are retried."
    )
    RETRY_BACKOFF_BASE: float = _setting(
        0.5, "First retry delay (seconds); doubles each try, with jitter.", minimum=0
    )
    RETRY_BACKOFF_MAX: float = _setting(60.0, "Longest back-off between retries.", minimum=0)
    RETRY_AFTER_MAX: float = _setting(300.0, "Cap on a server's Retry-After (seconds).", minimum=0)
    RETRY_NON_IDEMPOTENT: bool = _setting(
        False, "Also retry POST/PATCH (meta retry_non_idempotent per request)."
    )
    ALLOW_URLS: list[str] = _setting(
        [],
        "Regexes: when given, only URLs matching one are crawled (checked for every request,"
        " redirects included, before de-duplication; others count as filtered/url_pattern).",
    )
    DENY_URLS: list[str] = _setting(
        [], "Regexes: URLs matching one are never crawled (counted as filtered/url_pattern)."
    )
    FOLLOW_BINARY_LINKS: bool = _setting(
        False,
        "Let response.follow_all() and LinkExtractor follow links to binary files (pdf, zip,"
        " images, media, office files...); skipped by default, as Scrapy's LinkExtractor does.",
    )
    DEPTH_LIMIT: int = _setting(
        0, "Maximum link depth from a start request (0 = unlimited).", minimum=0
    )
    MAX_PAGES: int = _setting(
        0,
        "Stop after this many responses (0 = unlimited); retries, robots.txt and proxy waits"
        " do not count.",
        minimum=0,
    )
    MAX_ITEMS: int = _setting(
        0, "Stop gracefully once this many items were scraped (0 = unlimited).", minimum=0
    )
    MAX_DURATION: float = _setting(
        0.0, "Stop gracefully after this many seconds of crawling (0 = unlimited).", minimum=0
    )
    MAX_ERRORS: int = _setting(
        0,
        "Stop gracefully once this many errors happened: callback errors plus requests that"
        " finally failed (0 = unlimited).",
        minimum=0,
    )
    USER_AGENT: str = _setting("crawler/0.1", "The User-Agent header sent with every request.")
    DEFAULT_HEADERS: dict[str, str] = _setting(
        {}, "Headers sent with every request (the spider's `headers` and the request's win)."
    )
    DOMAIN_HEADERS: dict[str, dict[str, str]] = _setting(
        {}, "Extra default headers per registered domain: {domain: {header: value}}."
    )
    DOMAIN_COOKIES: dict[str, dict[str, str]] = _setting(
        {}, "Initial cookies per registered domain: {domain: {name: value}}."
    )
    REQUEST_TIMEOUT: float = _setting(
        30.0, "Seconds allowed for one request, redirects and body included.", minimum=0.001
    )
    READ_TIMEOUT: float = _setting(
        20.0,
        "Seconds without a byte from the server before a request fails (a dead keep-alive"
        " connection or a stalled body); REQUEST_TIMEOUT still bounds the whole exchange.",
        minimum=0.001,
    )
    MAX_RESPONSE_SIZE: int = _setting(
        16 * 1024 * 1024,
        "Largest accepted response body in bytes after decoding gzip/deflate/br/zstd"
        " (0 = unlimited); a larger one fails as failures/too_large.",
        minimum=0,
    )
    MAX_LINKS_PER_RESPONSE: int = _setting(
        100_000,
        "Most links response.follow_all() turns into requests for one response; the rest are"
        " counted as links_dropped/too_many (0 = unlimited).",
        minimum=0,
    )
    BLOCK_PRIVATE_NETWORKS: bool = _setting(
        True,
        "Refuse to connect to loopback, private, link-local, unspecified and multicast"
        " addresses, except those the start requests resolve to and ALLOWED_NETWORKS.",
    )
    ALLOWED_NETWORKS: list[str] = _setting(
        [],
        "Networks (CIDR, e.g. 10.0.0.0/8 or 127.0.0.2/32) the crawl may connect to although"
        " BLOCK_PRIVATE_NETWORKS would refuse them.",
    )
    MAX_REDIRECTS: int = _setting(10, "Longest redirect chain followed.", minimum=0)
    COOKIE_JAR: str = _setting(
        "strict",
        "strict: RFC cookie jar; unsafe: also accept cookies from IP hosts; none: no cookies.",
        choices=("strict", "unsafe", "none"),
    )
    RESOLVE: dict[str, str] = _setting(
        {},
        "Static host -> IP map used before DNS, like curl --resolve (host:ip on the CLI);"
        " requests sent through a proxy are resolved by the proxy.",
    )
    DNS_CACHE: bool = _setting(True, "Cache DNS answers in the connector (use_dns_cache).")
    DNS_CACHE_TTL: float = _setting(10.0, "Seconds a cached DNS answer is kept.", minimum=0)
    DNS_NAMESERVERS: list[str] = _setting(
        [], "Nameservers ('ip' or 'ip:port') for an aiodns resolver instead of the system's."
    )
    UNIX_SOCKETS: dict[str, str] = _setting(
        {}, "Send requests for these hosts over Unix sockets: {host: socket path}."
    )
    SSL_VERIFY: bool = _setting(True, "Verify TLS certificates (False is logged loudly).")
    SSL_CA_BUNDLE: str = _setting(
        "", "PEM file of CA certificates to trust instead of the system's."
    )
    SSL_CLIENT_CERT: str = _setting("", "PEM client certificate (may include the key).")
    SSL_CLIENT_KEY: str = _setting("", "PEM private key of SSL_CLIENT_CERT, if separate.")
    DOMAIN_SSL: dict[str, Any] = _setting(
        {}, "Per registered domain TLS: {domain: false (no verification) | 'ca-bundle.pem'}."
    )
    PROXY: str = _setting(
        "", "Default proxy URL, credentials in the URL: http://user:pass@host:port."
    )
    PROXIES: list[str] = _setting(
        [], "A pool of proxy URLs to rotate (else PROXY_FILE, else the PROXIES env variable)."
    )
    PROXY_FILE: str = _setting("", "File with one proxy URL per line (# comments allowed).")
    PROXY_ROTATION: str = _setting(
        "round_robin",
        "How a proxy is chosen: round_robin, random, or sticky (per domain, with its cookies).",
        choices=("round_robin", "random", "sticky"),
    )
    BAN_STATUS_CODES: list[int] = _setting([403, 429], "Statuses meaning 'this proxy is banned'.")
    BAN_BODY_PATTERNS: list[str] = _setting(
        [], "Regexes on the body meaning 'banned' (e.g. a captcha marker)."
    )
    BAN_ON_NETWORK_ERROR: bool = _setting(
        True, "Count connection failures through a proxy as a ban of that proxy."
    )
    PROXY_BAN_COOLDOWN: float = _setting(
        60.0, "Seconds a banned proxy rests for that domain (doubles per ban).", minimum=0
    )
    PROXY_MAX_BANS: int = _setting(5, "Bans after which a proxy is retired.", minimum=1)
    TRUST_ENV: bool = _setting(
        False, "Read HTTP_PROXY/HTTPS_PROXY/NO_PROXY (and .netrc) from the environment."
    )
    TRACE_CONFIGS: list[Any] = _setting(
        [], "Extra aiohttp TraceConfig objects (or 'module:name' paths) for every session."
    )
    MAX_SESSIONS: int = _setting(
        256, "Open per-domain HTTP sessions kept before idle ones are closed.", minimum=1
    )
    DOWNLOADER_MIDDLEWARES: list[Any] = _setting(
        [],
        "Downloader middlewares run after the built-ins, before the fetch: objects or"
        " 'module:Name' paths.",
    )
    HTTPCACHE_ENABLED: bool = _setting(
        False,
        "Keep every response in an SQLite cache and answer repeated requests from it"
        " (`crawl run --cache`): rerunning an edited spider costs no network.",
    )
    HTTPCACHE_DIR: str = _setting(
        ".crawler/httpcache", "Folder of the HTTP cache: one <spider name>.sqlite file per spider."
    )
    HTTPCACHE_EXPIRATION_SECS: float = _setting(
        0.0, "Seconds a cached response stays usable (0 = forever).", minimum=0
    )
    HTTPCACHE_POLICY: str = _setting(
        "always",
        "always: serve every cached response as is (development); http: honour Cache-Control"
        " and revalidate stale entries with ETag / Last-Modified.",
        choices=("always", "http"),
    )
    HTTPCACHE_IGNORE_HTTP_CODES: list[int] = _setting(
        [], "Response statuses never stored in the HTTP cache."
    )
    FILES_STORE: str = _setting(
        "", "Folder where the files pipeline stores downloaded files (required to use it)."
    )
    FILES_URLS_FIELD: str = _setting("file_urls", "Item field listing the URLs of files to fetch.")
    FILES_RESULT_FIELD: str = _setting(
        "files", "Item field the files pipeline fills with {url, path, checksum, status}."
    )
    FILES_MAX_SIZE: int = _setting(
        0,
        "Largest file the files pipeline keeps, in bytes (0 = MAX_RESPONSE_SIZE).",
        minimum=0,
    )
    PIPELINES: list[Any] = _setting(
        [], "Item pipelines in order: objects or 'module:Name' / 'module.Name' import paths."
    )
    PROGRESS_INTERVAL: float = _setting(
        10.0, "Seconds between progress lines on stderr (0 = none).", minimum=0
    )
    LOOP: str = _setting(
        "auto",
        "The event loop of crawl run, jobs, scheduler, fetch/shell/parse, bench: auto (uvloop"
        " when installed: pip install 'crawler[speedups]'), asyncio, or uvloop.",
        choices=("auto", "asyncio", "uvloop"),
    )
    SHUTDOWN_TIMEOUT: float = _setting(
        30.0, "Seconds a graceful stop waits for requests in flight.", minimum=0
    )
    STATE_DIR: str = _setting(
        "", "Folder holding the crawl's durable state (SQLite frontier, cookies, stats): resumable."
    )
    CHECKPOINT_INTERVAL: float = _setting(
        1.0,
        "Seconds between checkpoints of a persistent crawl (items flushed, then requests marked"
        " done); also the most work redone after a crash.",
        minimum=0.01,
    )
    FRONTIER_URL: str = _setting(
        "", "A shared frontier, e.g. redis://host:6379/0: every process with the same JOB joins."
    )
    JOB: str = _setting("", "Name of the shared crawl in FRONTIER_URL (default: the spider name).")
    LEASE_TIMEOUT: float = _setting(
        60.0,
        "Seconds before a shared frontier re-delivers a request whose worker went silent.",
        minimum=1,
    )
    REDIS_UNAVAILABLE_TIMEOUT: float = _setting(
        300.0,
        "Seconds a shared crawl waits out an unreachable Redis before it stops (exit 12;"
        " run the same command again to continue).",
        minimum=1,
    )
    RENDER: str = _setting(
        "never", "always: every request is rendered in Chromium.", choices=("never", "always")
    )
    BROWSER_EXECUTABLE: str = _setting("", "Chromium to render with (default: found on PATH).")
    BROWSER_PAGES: int = _setting(4, "Browser pages open at once.", minimum=1)
    BROWSER_WAIT_FOR: str = _setting(
        "load", "A rendered page waits for: load, domcontentloaded, networkidle or a CSS selector."
    )
    BROWSER_ALLOW_RESOURCES: list[str] = _setting(
        [], "Resource types a page may load although blocked by default (image, font, media)."
    )
    BROWSER_RECYCLE_PAGES: int = _setting(500, "Pages per browser (0 = no limit).", minimum=0)
    BROWSER_RECYCLE_MEMORY: int = _setting(1024, "Browser restart past MiB (PSS).", minimum=0)
    BROWSER_SCREENSHOT_DIR: str = _setting("screenshots", "Folder of meta screenshot=True files.")
    LOG_LEVEL: str = _setting(
        "INFO", "Logging level.", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    )

    @classmethod
    def names(cls) -> list[str]:
        """All setting names."""
        return [f.name for f in fields(cls)]

    @classmethod
    def build(cls, *layers: tuple[str, Mapping[str, Any]]) -> Settings:
        """Apply ``(source, mapping)`` layers over the defaults, lowest precedence first.

        String values (from the command line) are parsed to the setting's type.
        """
        settings = cls()
        for source, layer in layers:
            settings = settings.merged(layer, source=source)
        return settings

    def merged(self, values: Mapping[str, Any], source: str = "settings") -> Settings:
        """A copy with ``values`` applied on top, each checked."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for name, value in values.items():
            spec = known.get(name)
            if spec is None:
                raise SettingsError(_unknown(str(name), source, known))
            changes[name] = coerce(spec, value, source)
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for logs and stats)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any]]:
        """``(name, doc, default)`` for every setting, for documentation and ``--help``."""
        rows = []
        for f in fields(cls):
            factory: Any = f.default_factory
            default = f.default if f.default is not MISSING else factory()
            rows.append((f.name, f.metadata["doc"], default))
        return rows
