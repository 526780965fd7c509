"""The downloader: a shared connector, per-domain sessions, and fetch()."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from ..request import Request
from ..response import Response
from ..settings import Settings
from .connector import build_connector
from .fetch import fetch
from .sessions import SessionOptions, SessionPool, registered_domain

__all__ = ["Downloader", "DownloaderOptions", "registered_domain"]


@dataclass(frozen=True, slots=True)
class DownloaderOptions:
    """What the downloader needs from the settings and the spider."""

    concurrency: int
    per_host: int
    max_bytes: int
    max_redirects: int
    resolve: dict[str, str]
    sessions: SessionOptions

    @classmethod
    def from_settings(cls, settings: Settings, headers: dict[str, str] | None = None) -> DownloaderOptions:
        """Options from the crawl settings plus the spider's default headers."""
        merged = {"User-Agent": settings.USER_AGENT, **settings.DEFAULT_HEADERS, **(headers or {})}
        return cls(
            concurrency=settings.CONCURRENCY,
            per_host=settings.CONCURRENCY_PER_HOST,
            max_bytes=settings.MAX_RESPONSE_SIZE,
            max_redirects=settings.MAX_REDIRECTS,
            resolve=dict(settings.RESOLVE),
            sessions=SessionOptions(
                headers=merged,
                cookie_jar=settings.COOKIE_JAR,
                timeout_s=settings.REQUEST_TIMEOUT,
                max_open=settings.MAX_SESSIONS,
            ),
        )


class Downloader:
    """Fetches requests through per-domain sessions sharing one connector.

    Use as ``async with Downloader(options) as downloader``; closing it closes
    every session and then the connector.
    """

    def __init__(self, options: DownloaderOptions) -> None:
        self.options = options
        self._connector: aiohttp.TCPConnector | None = None
        self._sessions: SessionPool | None = None

    async def __aenter__(self) -> Downloader:
        self._connector = build_connector(
            self.options.concurrency, self.options.per_host, self.options.resolve
        )
        self._sessions = SessionPool(self._connector, self.options.sessions)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def sessions(self) -> SessionPool:
        """The per-domain session pool."""
        assert self._sessions is not None, "use the Downloader inside `async with`"
        return self._sessions

    async def fetch(self, request: Request) -> Response:
        """Fetch ``request`` through its domain's session."""
        pool = self.sessions
        host = request.host
        session = pool.acquire(host)
        try:
            return await fetch(session, request, self.options.max_bytes, self.options.max_redirects)
        finally:
            pool.release(host)
            if pool._closing:
                await pool.close_idle()

    async def close(self) -> None:
        """Close all sessions, then the connector (lets TLS transports finish)."""
        if self._sessions is not None:
            await self._sessions.close()
            self._sessions = None
        if self._connector is not None:
            await self._connector.close()
            self._connector = None
