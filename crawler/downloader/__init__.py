"""The downloader: a shared connector, per-domain sessions, TLS and proxy choice, fetch()."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..errors import RequestTimeout, SettingsError, TooManyRedirects
from ..pipeline import load_object
from ..request import Request
from ..response import RedirectHop, Response
from ..settings import Settings
from .connector import ConnectorOptions, build_connector
from .cookies import check_cookies
from .fetch import fetch
from .proxies import check_proxy_url, redact
from .redirects import REDIRECT_STATUSES, next_hop
from .sessions import SessionOptions, SessionPool, merge_headers, registered_domain
from .tls import TlsOptions, TlsPolicy
from .tracing import TimingSummary, finish_timings, timing_trace_config

__all__ = ["Downloader", "DownloaderOptions", "redact", "registered_domain"]

UNLIMITED_WORKERS = 512


@dataclass(frozen=True, slots=True)
class DownloaderOptions:
    """What the downloader needs, grouped by concern."""

    connector: ConnectorOptions
    sessions: SessionOptions
    tls: TlsOptions = field(default_factory=TlsOptions)
    max_bytes: int = 16 * 1024 * 1024
    max_redirects: int = 10
    proxy: str = ""

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
                max_open=settings.MAX_SESSIONS,
                unix_sockets=dict(settings.UNIX_SOCKETS),
                trust_env=settings.TRUST_ENV,
                trace_configs=(timing_trace_config(), *traces),
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

    def __init__(self, options: DownloaderOptions) -> None:
        self.options = options
        self.tls = TlsPolicy(options.tls)  # loads CA bundles now: a bad path fails before the crawl
        self.timings = TimingSummary()
        self._connector: aiohttp.TCPConnector | None = None
        self._sessions: SessionPool | None = None

    async def __aenter__(self) -> Downloader:
        self._connector = build_connector(self.options.connector)
        self._sessions = SessionPool(self._connector, self.options.sessions)
        return self

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
        follow: Callable[[str], bool] | None = None,
    ) -> Response:
        """Fetch ``request``, following redirects hop by hop through each hop's own session.

        The proxy is ``request.proxy``, else ``proxy`` (a pool's choice), else PROXY.
        ``follow(host)`` may refuse a redirect target (e.g. an offsite host): the
        3xx that pointed there is then returned as the response.
        """
        proxy = request.proxy or proxy or self.options.proxy or None
        timings: dict[str, float] = {}
        started = time.monotonic()
        response = await self._exchange(request, proxy, timings, None)
        if request.allow_redirects and response.status in REDIRECT_STATUSES:
            deadline = started + self.options.sessions.timeout_s  # for the whole chain
            response = await self._follow(request, response, proxy, timings, deadline, follow)
        response.timings = finish_timings(timings)
        self.timings.add(response.timings)
        return response

    async def _exchange(
        self,
        hop: Request,
        proxy: str | None,
        timings: dict[str, float],
        timeout_s: float | None,
    ) -> Response:
        """One request/response through ``hop``'s domain session."""
        pool = self.sessions
        host = hop.host
        session = pool.acquire(host)
        ssl = None
        if hop.yarl_url.scheme == "https" or hop.ssl is not None:
            ssl = self.tls.for_request(hop.ssl, registered_domain(host))
        try:
            return await fetch(
                session,
                hop,
                self.options.max_bytes,
                proxy=proxy,
                ssl=ssl,
                timings=timings,
                timeout_s=timeout_s,
            )
        finally:
            pool.release(host)
            if pool._closing:
                await pool.close_idle()

    async def _follow(
        self,
        request: Request,
        response: Response,
        proxy: str | None,
        timings: dict[str, float],
        deadline: float,
        follow: Callable[[str], bool] | None,
    ) -> Response:
        """Follow the redirects starting at ``response``; the final response carries them all."""
        max_redirects = self.options.max_redirects
        history: list[RedirectHop] = []
        hop = request
        while True:
            target = next_hop(hop, response.status, response.headers.get("Location"))
            if target is None or (follow is not None and not follow(target.host)):
                break
            history.append(RedirectHop(response.url, response.status, response.headers))
            if len(history) > max_redirects:
                chain = " -> ".join(h.url for h in history[-3:])
                raise TooManyRedirects(
                    f"too many redirects for {request.url} (more than {max_redirects};"
                    f" a loop?) last: {chain} -> {target.url}",
                    request.url,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeout(
                    f"timed out fetching {request.url} after {len(history)} redirects",
                    request.url,
                )
            hop = target
            response = await self._exchange(hop, proxy, timings, remaining)
        response.request = request
        response.history = tuple(history)
        return response

    async def close(self) -> None:
        """Close all sessions, then the connector (lets TLS transports finish)."""
        if self._sessions is not None:
            await self._sessions.close()
            self._sessions = None
        if self._connector is not None:
            await self._connector.close()
            self._connector = None
