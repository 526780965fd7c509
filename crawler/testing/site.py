"""A local site server for tests.

``SiteServer`` serves pages for many host names from one aiohttp server on
127.0.0.1; point those names at it with the ``RESOLVE`` setting
(``server.resolve_map()``). It records every request it receives, and the
maximum number of concurrent requests per host, so tests can assert on what
the crawler really did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["Page", "SeenRequest", "SiteServer", "html_page"]

Page = str | bytes | Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """A request as the server saw it."""

    host: str
    path_qs: str
    method: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class SiteServer:
    """An aiohttp.web server on 127.0.0.1:<free port> serving ``pages[host][path_qs]``.

    A page is HTML text, bytes, or an aiohttp handler ``async (request) -> response``.
    Unknown paths answer 404. Use ``async with SiteServer(pages) as server``.
    ``requests`` lists every request but those for ``/robots.txt``, which go to
    ``robots_requests``.
    """

    pages: dict[str, dict[str, Page]]
    host: str = "127.0.0.1"
    requests: list[SeenRequest] = field(default_factory=list)
    robots_requests: list[SeenRequest] = field(default_factory=list)
    max_concurrency: dict[str, int] = field(default_factory=dict)
    port: int = 0
    _active: dict[str, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> SiteServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, host: str, path: str = "/") -> str:
        """The URL of ``path`` on virtual host ``host``."""
        return f"http://{host}:{self.port}{path}"

    def resolve_map(self) -> dict[str, str]:
        """``RESOLVE`` setting value pointing every served host name at this server."""
        return {host: self.host for host in self.pages}

    def paths_seen(self, host: str | None = None) -> list[str]:
        """Paths requested, in order (of one host, or as ``host/path`` for all)."""
        if host is not None:
            return [r.path_qs for r in self.requests if r.host == host]
        return [f"{r.host}{r.path_qs}" for r in self.requests]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0].lower()
        body = await request.read()
        seen = SeenRequest(host, request.path_qs, request.method, dict(request.headers), body)
        if request.path == "/robots.txt":
            self.robots_requests.append(seen)  # kept apart: most tests count only pages
        else:
            self.requests.append(seen)
        active = self._active[host] = self._active.get(host, 0) + 1
        self.max_concurrency[host] = max(self.max_concurrency.get(host, 0), active)
        try:
            page = self.pages.get(host, {}).get(request.path_qs)
            if page is None:
                page = self.pages.get(host, {}).get(request.path)
            if page is None:
                return web.Response(status=404, text="not found")
            if callable(page):
                return await page(request)
            if isinstance(page, bytes):
                return web.Response(body=page, content_type="application/octet-stream")
            return web.Response(text=page, content_type="text/html")
        finally:
            self._active[host] -= 1


def html_page(title: str, links: list[str] = (), body: str = "") -> str:  # type: ignore[assignment]
    """A small HTML page with a title and links (for test sites)."""
    anchors = "".join(f'<a href="{href}">{href}</a>\n' for href in links)
    return f"<html><head><title>{title}</title></head><body>{body}{anchors}</body></html>"
