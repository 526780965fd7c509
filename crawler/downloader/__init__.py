"""The downloader: a shared connector, per-domain sessions, TLS and proxy choice, fetch().

HTTP proxies are aiohttp's ``proxy=``; a SOCKS proxy has a connector of its own
(``socks.py``), owned here and closed after the sessions.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..clock import Clock, MonotonicClock
from ..errors import BlockedAddress, FetchError, RequestTimeout, SettingsError, TooManyRedirects
from ..loglines import short_url
from ..pipeline import load_object
from ..request import Request
from ..response import RedirectHop, Response
from ..settings import Settings
from .connector import Connector, ConnectorOptions, build_connector
from .cookies import check_cookies
from .fetch import BodyLimit, fetch
from .guard import AddressGuard, BlockedAddressError, GuardedResolver
from .proxies import check_proxy_url, is_socks, redact
from .redirects import REDIRECT_STATUSES, next_hop
from .sessions import SessionOptions, SessionPool, merge_headers, registered_domain
from .socks import SocksConnectors
from .tls import TlsOptions, TlsPolicy
from .tracing import TimingSummary, instrument_connector

__all__ = ["Downloader", "DownloaderOptions", "GuardOptions", "redact", "registered_domain"]

UNLIMITED_WORKERS = 512


# Request.meta keys (Scrapy's name for the first): a per-request body limit.
MAXSIZE_META = "download_maxsize"
TRUNCATE_META = "download_truncate"


@dataclass(frozen=True, slots=True)
class GuardOptions:
    """The private-network guard (BLOCK_PRIVATE_NETWORKS, ALLOWED_NETWORKS)."""

    enabled: bool = True
    allowed_networks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DownloaderOptions:
    """What the downloader needs, grouped by concern."""

    connector: ConnectorOptions
    sessions: SessionOptions
    tls: TlsOptions = field(default_factory=TlsOptions)
    max_bytes: int = 16 * 1024 * 1024
    max_redirects: int = 10
    proxy: str = ""
    guard: GuardOptions = field(default_factory=GuardOptions)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        trace_configs: Sequence[Any] = (),
    ) -> DownloaderOptions:
        """Options from the crawl settings plus the spider's ``headers``/``cookies``."""
        merged = merge_headers(
            {"User-Agent": settings.USER_AGENT}, settings.DEFAULT_HEADERS, headers
        )
        traces = [
            load_object(t, "TRACE_CONFIGS") for t in [*settings.TRACE_CONFIGS, *trace_configs]
        ]
        for trace in traces:
            if not isinstance(trace, aiohttp.TraceConfig):
                raise_settings(f"TRACE_CONFIGS entry {trace!r} is not an aiohttp.TraceConfig")
        if settings.PROXY:
            check_proxy_url(settings.PROXY)
        return cls(
            connector=ConnectorOptions(
                limit=settings.CONCURRENCY,
                limit_per_host=settings.CONCURRENCY_PER_HOST,
                resolve=dict(settings.RESOLVE),
                dns_cache=settings.DNS_CACHE,
                dns_cache_ttl_s=settings.DNS_CACHE_TTL,
                nameservers=tuple(settings.DNS_NAMESERVERS),
            ),
            sessions=SessionOptions(
                headers=merged,
                domain_headers={
                    domain: merge_headers(values)
                    for domain, values in _per_domain(settings.DOMAIN_HEADERS, "DOMAIN_HEADERS")
                },
                cookies=check_cookies(cookies or {}, "Spider.cookies"),
                domain_cookies={
                    domain: check_cookies(values, f"DOMAIN_COOKIES[{domain!r}]")
                    for domain, values in _per_domain(settings.DOMAIN_COOKIES, "DOMAIN_COOKIES")
                },
                cookie_jar=settings.COOKIE_JAR,
                timeout_s=settings.REQUEST_TIMEOUT,
                read_timeout_s=settings.READ_TIMEOUT,
                max_open=settings.MAX_SESSIONS,
                unix_sockets=dict(settings.UNIX_SOCKETS),
                trust_env=settings.TRUST_ENV,
                trace_configs=tuple(traces),  # timings come from instrument_connector
            ),
            tls=TlsOptions(
                verify=settings.SSL_VERIFY,
                ca_bundle=settings.SSL_CA_BUNDLE,
                client_cert=settings.SSL_CLIENT_CERT,
                client_key=settings.SSL_CLIENT_KEY,
                per_domain=dict(_per_domain(settings.DOMAIN_SSL, "DOMAIN_SSL")),
            ),
            max_bytes=settings.MAX_RESPONSE_SIZE,
            max_redirects=settings.MAX_REDIRECTS,
            proxy=settings.PROXY,
            guard=GuardOptions(settings.BLOCK_PRIVATE_NETWORKS, tuple(settings.ALLOWED_NETWORKS)),
        )


def _per_domain(values: Mapping[str, Any], setting: str) -> list[tuple[str, Any]]:
    """``values`` keyed by lower-cased registered domain; a subdomain key is a settings error.

    Sessions (and so headers, cookie jars and TLS choices) are per registered
    domain, so a key like ``www.shop.test`` would silently never apply.
    """
    result = []
    for key, value in values.items():
        domain = key.strip().lower().rstrip(".")
        if registered_domain(domain) != domain:
            raise_settings(
                f"bad value {setting}[{key!r}]: settings apply per registered domain;"
                f" use {registered_domain(domain)!r} (it covers all its subdomains)"
            )
        result.append((domain, value))
    return result


def raise_settings(message: str) -> None:
    """Raise a SettingsError (kept here so option building reads top to bottom)."""
    raise SettingsError(message)


class Downloader:
    """Fetches requests through per-domain sessions sharing one connector.

    Use as ``async with Downloader(options) as downloader``; closing it closes
    every session and then the connector, waiting for transports (TLS included)
    to finish, so no ResourceWarning is left behind.
    """

    def __init__(self, options: DownloaderOptions, clock: Clock | None = None) -> None:
        self.options = options
        self.clock = clock or MonotonicClock()  # the redirect chain's deadline
        self.tls = TlsPolicy(options.tls)  # loads CA bundles now: a bad path fails before the crawl
        self.timings = TimingSummary()
        self.guard = AddressGuard(options.guard.enabled, options.guard.allowed_networks)
        if options.proxy and not is_socks(options.proxy):
            self.guard.trust_url(options.proxy)
        self._known_proxies: set[str] = set()
        self._default_limit = BodyLimit(options.max_bytes)
        self._connector: Connector | None = None
        self._socks: SocksConnectors | None = None
        self._sessions: SessionPool | None = None

    async def __aenter__(self) -> Downloader:
        self._connector = connector = build_connector(self.options.connector, self.guard)
        instrument_connector(connector)  # response.timings' connect and dns
        resolver = connector.owned_resolver  # guarded: socks5/socks4 targets go through it
        unguarded = resolver.inner if isinstance(resolver, GuardedResolver) else resolver
        self._socks = socks = SocksConnectors(
            self.options.connector, resolver, unguarded, self.guard
        )
        opener = socks._open  # each SOCKS connector times its connections too
        socks._open = lambda proxy: instrument_connector(opener(proxy))  # type: ignore[method-assign,assignment,return-value]
        self._sessions = SessionPool(connector, self.options.sessions, self._socks)
        if self.options.sessions.trust_env:
            for url in urllib.request.getproxies().values():
                self.guard.trust_url(url)  # the user's own proxies, from the environment
        return self

    def trust_start_host(self, host: str) -> None:
        """Let the crawl connect to whatever ``host`` (a start request's) resolves to,
        private or not: crawling your own localhost or intranet needs no setting.

        Cheap: the name is resolved when it is first fetched, or when a private
        address turns up that it might explain (see ``guard.py``). Its domain also
        gets the spider-wide credentials and cookies (see ``SessionPool.credentials``).
        """
        self.guard.trust_host(host)
        self.sessions.add_home(host)

    async def _explain_literal(self, hop: Request) -> None:
        """Before dialling a private IP literal, resolve the start hosts not resolved yet:
        one of them may be that address (the socket factory cannot wait for DNS)."""
        connector = self._connector
        resolver = connector.owned_resolver if connector is not None else None
        if isinstance(resolver, GuardedResolver):
            try:
                address = ipaddress.ip_address(hop.host.strip("[]"))
            except ValueError:
                return
            if not self.guard.allows(address):
                await resolver.resolve_pending()

    def _check_through_proxy(self, hop: Request) -> None:
        """A proxy resolves names itself, but an IP literal (or localhost) in the URL is
        visibly private: refuse it here rather than ask the proxy to fetch it."""
        try:
            self.guard.check_unresolved(hop.host)
        except BlockedAddressError as exc:
            raise BlockedAddress(
                f"not fetching {short_url(hop.url)} through a proxy: {exc.strerror}", hop.url
            ) from None

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def sessions(self) -> SessionPool:
        """The per-domain session pool."""
        assert self._sessions is not None, "use the Downloader inside `async with`"
        return self._sessions

    async def fetch(
        self,
        request: Request,
        proxy: str | None = None,
        *,
        follow: Callable[[Request], bool] | None = None,
    ) -> Response:
        """Fetch ``request``, following redirects hop by hop through each hop's own session.

        The proxy is ``request.proxy``, else ``proxy`` (a pool's choice), else PROXY.
        ``follow(target)`` may refuse a redirect's target request before it is sent (an
        offsite host, a URL pattern): the 3xx that pointed there is then the response.
        """
        proxy = request.proxy or proxy or self.options.proxy or None
        if proxy and proxy not in self._known_proxies:
            self._first_sight(proxy, request.url)
        timings: dict[str, float] = {}
        deadline = self.clock.now() + self.options.sessions.timeout_s  # for the whole chain
        limit = self._limit(request)
        response = await self._exchange(request, proxy, timings, None, limit, True)
        if request.allow_redirects and response.status in REDIRECT_STATUSES:
            response = await self._follow(
                request, response, proxy, timings, deadline, limit, follow
            )
        response.timings = self.timings.finish(timings)  # total, then into the summary
        return response

    def _first_sight(self, proxy: str, url: str) -> None:
        """An HTTP proxy the user chose may be on a private network: trust its address
        (aiohttp dials it through the guarded connector). A SOCKS URL is checked (a
        ``Request(proxy=)`` is not, up front); its address is not trusted (``socks.py``)."""
        if is_socks(proxy):
            try:
                check_proxy_url(proxy, "Request.proxy")
            except SettingsError as exc:
                raise FetchError(str(exc), url) from None
        else:
            self.guard.trust_url(proxy)
        if len(self._known_proxies) < 4096:
            self._known_proxies.add(proxy)

    def _limit(self, request: Request) -> BodyLimit:
        """The body limit for ``request``: MAX_RESPONSE_SIZE unless its meta says otherwise."""
        meta = request.meta
        if MAXSIZE_META not in meta and TRUNCATE_META not in meta:
            return self._default_limit
        max_bytes = meta.get(MAXSIZE_META, self.options.max_bytes)
        return BodyLimit(int(max_bytes), truncate=bool(meta.get(TRUNCATE_META)))

    async def _exchange(
        self,
        hop: Request,
        proxy: str | None,
        timings: dict[str, float],
        deadline: float | None,
        limit: BodyLimit,
        with_credentials: bool,
    ) -> Response:
        """One request/response through ``hop``'s domain session.

        ``with_credentials``: add the configured credential headers of the hop's
        domain (false once a redirect chain has left the first request's origin).
        """
        pool = self.sessions
        host = hop.host
        if self.guard.pending:
            await self._explain_literal(hop)
        if proxy and self.guard.enabled:
            self._check_through_proxy(hop)
        remaining = None  # the first hop has the session's REQUEST_TIMEOUT, whole
        if deadline is not None:
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                raise RequestTimeout(f"timed out fetching {short_url(hop.url)}", hop.url)
        session = pool.acquire(host, proxy)
        ssl = None
        if hop.yarl_url.scheme == "https" or hop.ssl is not None:
            ssl = self.tls.for_request(hop.ssl, registered_domain(host))
        headers = hop.headers
        if with_credentials:
            credentials = pool.credentials(host)
            if credentials:
                headers = merge_headers(credentials, hop.headers)
        try:
            return await fetch(
                session,
                hop,
                limit,
                timeout_s=remaining,
                read_timeout_s=self.options.sessions.read_timeout_s,
                headers=headers,
                proxy=proxy,
                ssl=ssl,
                timings=timings,
            )
        finally:
            pool.release(host, proxy)
            if pool.has_evicted:
                await pool.close_idle()

    async def _follow(
        self,
        request: Request,
        response: Response,
        proxy: str | None,
        timings: dict[str, float],
        deadline: float,
        limit: BodyLimit,
        follow: Callable[[Request], bool] | None,
    ) -> Response:
        """Follow the redirects starting at ``response``; the final response carries them all.

        Configured credentials go only to the first request's origin, and not
        even back there once the chain has left it.
        """
        max_redirects = self.options.max_redirects
        history: list[RedirectHop] = []
        hop = request
        origin = request.yarl_url.origin()
        on_origin = True
        while True:
            target = next_hop(hop, response.status, response.headers.get("Location"))
            if target is None or (follow is not None and not follow(target)):
                break
            history.append(RedirectHop(response.url, response.status, response.headers))
            if len(history) > max_redirects:
                chain = " -> ".join(short_url(h.url, 100) for h in history[-3:])
                raise TooManyRedirects(
                    f"too many redirects for {short_url(request.url)} (more than {max_redirects};"
                    f" a loop?) last: {chain} -> {short_url(target.url, 100)}",
                    request.url,
                )
            if self.clock.now() >= deadline:
                raise RequestTimeout(
                    f"timed out fetching {short_url(request.url)} after {len(history)} redirects",
                    request.url,
                )
            hop = target
            on_origin = on_origin and _same_origin(hop, origin)
            response = await self._exchange(hop, proxy, timings, deadline, limit, on_origin)
        response.request = request
        response.history = tuple(history)
        return response

    async def close(self) -> None:
        """Close all sessions, then the connector (lets TLS transports finish)."""
        if self._sessions is not None:
            await self._sessions.close()
            self._sessions = None
        if self._socks is not None:
            await self._socks.close()
            self._socks = None
        if self._connector is not None:
            await self._connector.close()
            self._connector = None


def _same_origin(hop: Request, origin: Any) -> bool:
    try:
        return bool(hop.yarl_url.origin() == origin)
    except ValueError:
        return False
