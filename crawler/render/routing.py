"""How a rendered page's requests reach the network: every one is judged by the crawl's
private-network guard before it is sent, redirect hops included.

Playwright does not route the hops of a redirect Chromium follows, so an allowed request is
not continued in Chromium but sent from Playwright's driver (``route.fetch``) with redirects
off, and each redirect target is judged before it is asked for. WebSockets are routed too.
Headers are worked out per hop: credential headers only to the request's origin.
"""

from __future__ import annotations

import contextlib
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

from aiohttp import ThreadedResolver
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..downloader import Downloader, registered_domain
from ..downloader.connector import MappedResolver
from ..downloader.guard import BlockedAddressError, GuardedResolver
from ..downloader.sessions import merge_headers, split_credentials
from ..loglines import get_logger, short_url
from ..response import RedirectHop
from ..stats import Stats
from .options import RenderOptions

if TYPE_CHECKING:
    from playwright.async_api import Route, WebSocketRoute

    from .renderer import _Page

__all__ = ["PageRouting", "is_playwright_error", "same_url"]

logger = get_logger("crawler.render")

_MAXSIZE_META = "download_maxsize"
_MAX_REDIRECTS = 20  # Chromium's own limit
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_PER_ORIGIN = frozenset(("authorization", "cookie", "proxy-authorization", "host"))


class PageRouting:
    """The routing half of :class:`~crawler.render.renderer.Renderer` (a mixin): what a page
    may ask for, and how it is sent."""

    options: RenderOptions
    downloader: Downloader
    stats: Stats
    _resolve: dict[str, str]
    _resolver: GuardedResolver | None

    async def _route(self, route: Route, state: _Page) -> None:
        """Every request the page makes: blocked types, the guard, then our headers."""
        try:
            await self._decide(route, state)
        except Exception as exc:
            if not is_playwright_error(exc):
                raise
            # the page or the browser went away meanwhile: the render itself reports that
            logger.debug("route of %s: %s", short_url(route.request.url), exc)

    async def _route_websocket(self, ws: WebSocketRoute, state: _Page) -> None:
        """A WebSocket the page opens: page.route never sees it, so the guard judges it here."""
        url = URL(ws.url)
        try:
            if url.host and await self._allowed(url.host, state):
                ws.connect_to_server()
                return
            state.blocked.append(ws.url)
            self.stats.inc("render/blocked_requests")
            await ws.close(code=1008, reason="blocked by the crawler")
        except Exception as exc:
            if not is_playwright_error(exc):
                raise
            logger.debug("websocket %s: %s", short_url(ws.url), exc)

    async def _decide(self, route: Route, state: _Page) -> None:
        sent = route.request
        if sent.resource_type in self.options.blocked_resources:
            self.stats.inc("render/blocked_resources")
            await route.abort("blockedbyclient")
            return
        url = URL(sent.url)
        if url.scheme not in ("http", "https") or not url.host:
            await route.continue_()
            return
        if not await self._allowed(url.host, state):
            state.blocked.append(sent.url)
            if state.navigating and _is_main_document(sent) and not state.blocked_document:
                state.blocked_document = sent.url
            self.stats.inc("render/blocked_requests")
            await route.abort("blockedbyclient")
            return
        headers = {**sent.headers, **self._headers_for(url, sent, state)}
        await self._send(route, url, headers, state)

    async def _send(self, route: Route, url: URL, headers: dict[str, str], state: _Page) -> None:
        """Send an allowed request ourselves with redirects not followed, then follow them
        here, judging every target before it is asked for: ``route.continue_()``, or
        fulfilling with the 3xx, would let Chromium follow it unrouted, to any address.

        The page's own document stops at each 3xx: ``_goto`` navigates to the (allowed)
        target, so the page's URL, relative links and ``history`` are right. A frame or a
        resource gets its final answer under its first URL."""
        sent = route.request
        main = state.navigating and _is_main_document(sent)
        current = url
        method: str | None = None  # the request's own, until a redirect turns it into GET
        for _ in range(_MAX_REDIRECTS + 1):
            fetched = await self._fetch_one(route, current, headers, state, method)
            location = fetched.headers.get("location")
            if fetched.status not in _REDIRECTS or not location:
                break
            target = current.join(URL(location, encoded=True))
            await self._keep_cookies(fetched, current, state)
            if main:
                headers_all = CIMultiDictProxy(
                    CIMultiDict((h["name"], h["value"]) for h in fetched.headers_array)
                )
                state.hops.append(RedirectHop(str(current), fetched.status, headers_all))
            await fetched.dispose()
            if target.scheme not in ("http", "https") or not target.host:
                await route.abort("failed")
                return
            if not await self._allowed(target.host, state):
                state.blocked.append(str(target))
                if main and not state.blocked_document:
                    state.blocked_document = str(target)
                self.stats.inc("render/blocked_requests")
                await route.abort("blockedbyclient")
                return
            if main:
                state.next_url = str(target)
                await route.abort("aborted")
                return
            headers = {k: v for k, v in sent.headers.items() if k.lower() not in _PER_ORIGIN}
            headers.update(self._headers_for(target, sent, state))
            if fetched.status == 303 or (fetched.status in (301, 302) and sent.method == "POST"):
                method = "GET"
                headers = {
                    k: v for k, v in headers.items() if not k.startswith(("content-", "Content-"))
                }
            current = target
        else:
            await route.abort("failed")  # too many redirects
            return
        max_bytes = int(state.request.meta.get(_MAXSIZE_META, self.options.max_bytes))
        if max_bytes and len(await fetched.body()) > max_bytes:
            state.too_large.append(state.request.url if main else sent.url)
            await fetched.dispose()
            await route.abort("failed")
            return
        await route.fulfill(response=fetched)

    async def _fetch_one(
        self, route: Route, url: URL, headers: dict[str, str], state: _Page, method: str | None
    ) -> Any:
        """One request from Playwright's driver (the context's proxy and cookies), no
        redirects followed. Plain HTTP without a proxy goes to the very address the guard
        judged (RESOLVE applied, no second DNS lookup); HTTPS and proxied requests go by
        name (SNI and certificates need it; the proxy resolves names)."""
        target = str(url)
        headers = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
        headers["Accept-Encoding"] = "gzip, deflate, br"  # what the driver can decode
        address = state.addresses.get(url.host or "")
        if address and url.scheme == "http" and not state.proxy:
            target = str(url.with_host(address))
            headers = {k: v for k, v in headers.items() if k.lower() != "host"}
            headers["Host"] = url.raw_authority
            jar = await state.context.cookies(str(url))  # the driver would look up the address
            own = headers.pop("Cookie", None) or headers.pop("cookie", None)
            cookies = "; ".join(f"{c['name']}={c['value']}" for c in jar)
            if cookies or own:
                headers["Cookie"] = "; ".join(x for x in (cookies, own) if x)
        if method == "GET":  # a 303 (or a POST's 301/302): GET, no body
            return await route.fetch(
                url=target,
                headers=headers,
                method="GET",
                post_data=b"",
                max_redirects=0,
                max_retries=0,
                timeout=self.options.timeout_s * 1000,
            )
        return await route.fetch(
            url=target,
            headers=headers,
            max_redirects=0,
            max_retries=0,
            timeout=self.options.timeout_s * 1000,
        )

    async def _keep_cookies(self, fetched: Any, url: URL, state: _Page) -> None:
        """The cookies a 3xx sets (the browser never sees that answer) into the context."""
        found: SimpleCookie = SimpleCookie()
        for header in fetched.headers_array:
            if header["name"].lower() == "set-cookie":
                with contextlib.suppress(Exception):
                    found.load(header["value"])
        cookies = []
        for name, morsel in found.items():
            cookie: dict[str, Any] = {"name": name, "value": morsel.value}
            if morsel["domain"]:
                cookie["domain"] = morsel["domain"]
                cookie["path"] = morsel["path"] or "/"
            else:
                cookie["url"] = str(url.with_path(morsel["path"] or "/").with_query(None))
            cookies.append(cookie)
        if cookies:
            with contextlib.suppress(Exception):
                await state.context.add_cookies(cookies)

    def _headers_for(self, url: URL, sent: Any, state: _Page) -> dict[str, str]:
        """The headers aiohttp would send to ``url``'s domain; credentials only on the origin."""
        options = self.downloader.options.sessions
        domain = registered_domain(url.host or "")
        layered, _ = split_credentials(
            merge_headers(options.headers, options.domain_headers.get(domain))
        )
        headers = dict(layered)
        if url.origin() == state.origin:
            headers.update(self.downloader.sessions.credentials(url.host or ""))
            if not state.sent_own and sent.is_navigation_request() and state.request.headers:
                state.sent_own = True
                headers.update(state.request.headers)
        return headers

    async def _allowed(self, host: str, state: _Page) -> bool:
        guard = self.downloader.guard
        if not guard.enabled:
            return True
        known = state.resolved.get(host)
        if known is not None:
            return known
        allowed = True
        try:
            if state.proxy:  # the proxy resolves names: only literals and localhost are judged
                guard.check_unresolved(host)
            else:
                found = await self._guarded_resolver().resolve(host.strip("[]"), 0)
                if found:
                    state.addresses[host] = found[0]["host"]
        except BlockedAddressError:
            allowed = False
        except OSError:
            allowed = True  # unresolvable: the browser fails that request itself
        state.resolved[host] = allowed
        return allowed

    def _check_blocked(self, state: _Page) -> None:
        """Log (once per page) that some of its requests were refused by the guard."""
        if state.blocked:
            logger.info(
                "refused %d request(s) of %s to private addresses, e.g. %s",
                len(state.blocked),
                short_url(state.request.url),
                short_url(state.blocked[0], 100),
            )

    def _guarded_resolver(self) -> GuardedResolver:
        """The same answers the connector gets: RESOLVE first, then the system's DNS."""
        if self._resolver is None:
            inner = MappedResolver(self._resolve, ThreadedResolver())
            self._resolver = GuardedResolver(inner, self.downloader.guard)
        return self._resolver


def _is_main_document(sent: Any) -> bool:
    """The page's own document (or a redirect hop of it), not a frame's or a resource."""
    try:
        return bool(sent.is_navigation_request()) and sent.frame.parent_frame is None
    except Exception:  # a service worker's request has no frame
        return False


def same_url(a: str, b: str) -> bool:
    return a.split("#")[0] == b.split("#")[0]


def is_playwright_error(exc: BaseException) -> bool:
    from playwright.async_api import Error

    return isinstance(exc, Error)
