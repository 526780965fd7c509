"""One rendered request: the page in the domain's identity, guarded, waited for, as a Response.

Identity: a fresh browser context per page (nothing leaks between pages) that is the
domain's aiohttp identity. The jar's cookies for the URL are copied in before the page
loads and the cookies the page ends with (set over HTTP or by its JavaScript) are copied
back into the jar of the request's registered domain; the User-Agent, the default and
domain headers go on every request the page makes (credential headers, and the
request's own headers, only to the request's origin); the proxy is the request's (set
by ProxyRotation for this attempt) or PROXY.

Guard: every request the page makes goes through ``page.route`` (WebSockets through
``page.route_web_socket``; service workers are blocked, their requests would not be
routed): blocked resource types are aborted, and the host is resolved with the crawl's
RESOLVE map and DNS and checked by the crawl's private-network guard (start hosts and
ALLOWED_NETWORKS allowed) before anything is sent. Playwright does not route the hops of
a redirect Chromium follows, so allowed requests are not continued in Chromium but sent
from Playwright's driver (``route.fetch``) with redirects off; each redirect target is
judged before it is asked for (see ``_send`` and docs/rendering.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from http.cookies import Morsel, SimpleCookie
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..downloader import Downloader, registered_domain
from ..downloader.guard import GuardedResolver
from ..errors import BlockedAddress, FetchError, RequestTimeout, ResponseTooLarge
from ..loglines import get_logger, short_url
from ..request import Request
from ..response import RedirectHop, Response
from ..stats import Stats
from .browser import BrowserHost
from .options import WAIT_STATES, BrowserError, BrowserMissing, BrowserUnavailable, RenderOptions
from .routing import PageRouting, is_playwright_error, same_url

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

__all__ = ["PageActions", "Renderer"]

logger = get_logger("crawler.render")

WAIT_META = "wait_for"
SCREENSHOT_META = "screenshot"
_MAXSIZE_META = "download_maxsize"
_MAX_REDIRECTS = 20  # Chromium's own limit
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_PER_ORIGIN = frozenset(("authorization", "cookie", "proxy-authorization", "host"))


@runtime_checkable
class PageActions(Protocol):
    """A spider that acts on its rendered pages (click, scroll, fill forms) before the HTML
    is taken: ``async def page_actions(self, page, request)`` gets the Playwright Page."""

    async def page_actions(self, page: Any, request: Request) -> None:
        """Act on ``page`` (the render of ``request``); its HTML is taken afterwards."""


class _Page:
    """What one render learns while its page loads."""

    __slots__ = (
        "addresses", "blocked", "blocked_document", "context", "domain", "hops", "navigating",
        "next_url", "origin", "proxy", "request", "resolved", "sent_own", "too_large",
    )  # fmt: skip

    def __init__(self, request: Request, proxy: str | None) -> None:
        self.request = request
        self.proxy = proxy
        self.domain = registered_domain(request.host)
        self.origin = request.yarl_url.origin()
        self.blocked: list[str] = []  # refused by the guard: the first one is reported
        self.resolved: dict[str, bool] = {}  # host -> allowed, for this page
        self.sent_own = False  # the request's own headers went with the main document
        self.addresses: dict[str, str] = {}  # host -> the address the guard judged
        self.context: Any = None  # the page's BrowserContext, for its cookies
        self.too_large: list[str] = []  # responses over MAX_RESPONSE_SIZE, not delivered
        self.blocked_document = ""  # the page itself, or a redirect of it, was refused
        self.hops: list[RedirectHop] = []  # the page's own redirects, first first
        self.next_url = ""  # where the page's document redirected: the next navigation
        self.navigating = False  # _goto is loading the page's document


class Renderer(PageRouting):
    """Renders requests in Chromium through the crawl's sessions, guard and limits.

    Built once per crawl (crawler/assembly.py); nothing is launched until the first
    render. ``close()`` (the crawl's, at its end) closes the browser and Playwright.
    """

    def __init__(
        self,
        options: RenderOptions,
        downloader: Downloader,
        stats: Stats,
        spider: Any = None,
        resolve: dict[str, str] | None = None,
    ) -> None:
        self.options = options
        self.always = options.always
        self.downloader = downloader
        self.stats = stats
        self.spider = spider
        self.host = BrowserHost(options, resolve)
        self._resolve = dict(resolve or {})
        self._resolver: GuardedResolver | None = None  # made on the first guarded host

    async def fetch(self, request: Request) -> Response:
        """Render ``request``; a FetchError (BrowserError, RequestTimeout...) on failure."""
        proxy = request.proxy or self.downloader.options.proxy or None
        state = _Page(request, proxy)
        timeout_s = self.options.timeout_s
        try:
            # Waiting for a free page (BROWSER_PAGES) or a browser launch is not loading.
            async with self.host.browser() as browser, asyncio.timeout(timeout_s):
                context = await browser.new_context(**self._context_options(state))
                try:
                    return await self._render(context, state)
                finally:
                    await context.close()
        except FetchError:
            raise
        except BrowserMissing as exc:  # asked for per request: only RENDER="always" checks first
            raise BrowserUnavailable(str(exc), request.url) from None
        except TimeoutError:
            raise RequestTimeout(
                f"timed out rendering {short_url(request.url)} (REQUEST_TIMEOUT={timeout_s:g})",
                request.url,
            ) from None
        except Exception as exc:
            if state.blocked_document:
                where = state.blocked_document
                how = (
                    "is"
                    if same_url(where, request.url)
                    else f"redirects to {short_url(where, 100)},"
                )
                raise BlockedAddress(
                    f"not rendering {short_url(request.url)}: it {how} a private address",
                    request.url,
                ) from None
            if state.too_large and same_url(state.too_large[0], request.url):
                raise ResponseTooLarge(
                    f"{short_url(request.url)} is over MAX_RESPONSE_SIZE", request.url
                ) from None
            if _is_playwright_timeout(exc):
                raise RequestTimeout(
                    f"timed out rendering {short_url(request.url)}", request.url
                ) from None
            if not is_playwright_error(exc):
                raise
            reason = str(exc).splitlines()[0][:300]
            raise BrowserError(
                f"browser failed rendering {short_url(request.url)}: {reason}", request.url
            ) from None

    def _context_options(self, state: _Page) -> dict[str, Any]:
        headers = self.downloader.options.sessions.headers
        options: dict[str, Any] = {
            "user_agent": headers.get("User-Agent", "crawler"),
            "java_script_enabled": True,
            "ignore_https_errors": not self.downloader.options.tls.verify,
            # a service worker's own requests would not come through page.route (the guard)
            "service_workers": "block",
        }
        if state.proxy:
            url = URL(state.proxy)
            proxy: dict[str, str] = {
                "server": str(url.with_user(None).with_path("")),
                "bypass": "<-loopback>",  # Chromium skips proxies for loopback unless told
            }
            if url.user:
                proxy["username"] = url.user
                proxy["password"] = url.password or ""
            options["proxy"] = proxy
        return options

    async def _render(self, context: BrowserContext, state: _Page) -> Response:
        request = state.request
        state.context = context
        await self._cookies_in(context, request)
        page = await context.new_page()
        page.set_default_timeout(self.options.timeout_s * 1000)
        await page.route("**/*", lambda route: self._route(route, state))
        await page.route_web_socket(lambda _: True, lambda ws: self._route_websocket(ws, state))
        wait_for = str(request.meta.get(WAIT_META) or self.options.wait_for)
        until = wait_for if wait_for in WAIT_STATES else "domcontentloaded"
        response = await self._goto(page, state, until)
        if wait_for not in WAIT_STATES:
            await page.wait_for_selector(wait_for, state="attached")
        if isinstance(self.spider, PageActions):
            await self.spider.page_actions(page, request)
        self._check_blocked(state)
        if response is None:
            raise BrowserError(f"no document for {short_url(request.url)}", request.url)
        history = tuple(state.hops)
        html = (await page.content()).encode("utf-8")
        max_bytes = int(request.meta.get(_MAXSIZE_META, self.options.max_bytes))
        if max_bytes and len(html) > max_bytes:
            raise ResponseTooLarge(
                f"rendered page {short_url(request.url)} is {len(html)} bytes, over"
                f" MAX_RESPONSE_SIZE={max_bytes}",
                request.url,
            )
        if request.meta.get(SCREENSHOT_META):
            request.meta[SCREENSHOT_META] = await self._screenshot(page, request)
        await self._cookies_out(context, state)
        headers = CIMultiDict(await response.all_headers())
        headers["Content-Type"] = "text/html; charset=utf-8"  # the DOM, serialised as UTF-8
        self.stats.inc("render/pages")
        return Response(
            page.url,
            response.status,
            CIMultiDictProxy(headers),
            html,
            request,
            history=history,
        )

    async def _goto(self, page: Page, state: _Page, until: str) -> Any:
        """Navigate to the request's URL, then to each redirect target the route handler
        judged allowed (it stops the navigation at every 3xx of the page's document)."""
        url = state.request.url
        for _ in range(_MAX_REDIRECTS + 1):
            state.next_url = ""
            state.navigating = True
            try:
                return await page.goto(url, wait_until=until)  # type: ignore[arg-type]
            except Exception:
                if not state.next_url:
                    raise
            finally:
                state.navigating = False
            url = state.next_url
        raise BrowserError(
            f"too many redirects rendering {short_url(state.request.url)}", state.request.url
        )

    async def _cookies_in(self, context: BrowserContext, request: Request) -> None:
        """The jar's cookies for the URL (and the request's own) into the new context."""
        pool = self.downloader.sessions
        values = dict(pool.cookies_for(request.url))
        values.update(request.cookies or {})
        if values:
            root = str(request.yarl_url.origin()) + "/"
            await context.add_cookies(
                [{"name": k, "value": v, "url": root} for k, v in values.items()]
            )

    async def _cookies_out(self, context: BrowserContext, state: _Page) -> None:
        """The context's cookies of the request's registered domain back into its jar."""
        jar = self.downloader.sessions.cookie_jar(state.request.host)
        own = dict(state.request.cookies or {})
        now = time.time()
        for cookie in await context.cookies():
            if own.get(cookie["name"]) == cookie["value"]:
                continue  # Request(cookies=) are for this request only, never stored
            domain = cookie.get("domain", "")
            host = domain.lstrip(".")
            if not host or registered_domain(host) != state.domain:
                continue  # a third party's cookie is not this domain's identity
            morsel: Morsel[str] = Morsel()
            morsel.set(cookie["name"], cookie["value"], cookie["value"])
            if domain.startswith("."):
                morsel["domain"] = host
            morsel["path"] = cookie.get("path", "/")
            expires = cookie.get("expires", -1)
            if expires and expires > 0:
                morsel["max-age"] = str(max(0, int(expires - now)))
            if cookie.get("secure"):
                morsel["secure"] = True
            if cookie.get("httpOnly"):
                morsel["httponly"] = True
            scheme = "https" if cookie.get("secure") else state.request.yarl_url.scheme
            found: SimpleCookie = SimpleCookie()
            found[cookie["name"]] = morsel
            jar.update_cookies(found, URL.build(scheme=scheme, host=host, path="/"))

    async def _screenshot(self, page: Page, request: Request) -> str:
        folder = self.options.screenshot_dir
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        name = hashlib.sha1(request.url.encode(), usedforsecurity=False).hexdigest()[:16]
        path = folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return str(path)

    async def close(self) -> None:
        """Close the browser and Playwright, then the resolver."""
        try:
            await self.host.close()
        finally:
            if self._resolver is not None:
                await self._resolver.close()


def _is_playwright_timeout(exc: BaseException) -> bool:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    return isinstance(exc, PlaywrightTimeout)
