"""Rendering in a real Chromium (Playwright, the system's browser) against loopback servers.

shop.test is the crawl's start host (RESOLVE points it at 127.0.0.1); 127.0.0.2 stands
for a private host the crawl must not reach. Assertions are on what the servers saw,
the items and the stats. The browser is launched once per crawl (~0.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from peers import ProxyPeer, crawl, require_module, tinyproxy

from crawler import Request, Response, Spider
from crawler.errors import ConfigError
from crawler.frontier.codec import RequestCodec
from crawler.render import BrowserMissing, Renderer, find_browser
from crawler.render.browser import browser_rss_bytes
from crawler.testing import SiteServer

HOST = "shop.test"

# Links and data exist only once the script ran.
JS_PAGE = """<html><body><div id="out"></div><script>
document.getElementById('out').innerHTML =
  '<span class="price">42</span><a href="/item">item</a>';
</script></body></html>"""
ITEM_PAGE = """<html><body><script>
document.body.innerHTML = '<span class="price">7</span>';
</script></body></html>"""


def browser_ready() -> None:
    require_module("playwright", install="pip install 'crawler[browser]'")
    try:
        find_browser()
    except BrowserMissing:
        from peers import _require

        _require(False, "chromium", "apt-get install chromium")


@pytest.fixture
def needs_browser() -> None:
    browser_ready()


browser = pytest.mark.usefixtures("needs_browser")


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many browsers each crawl's renderer launched (read when the crawl closes it)."""
    seen: list[int] = []
    original = Renderer.close

    async def close(self: Renderer) -> None:
        seen.append(self.host.launches)
        await original(self)

    monkeypatch.setattr(Renderer, "close", close)
    return seen


class Render(Spider):
    """Yields ``extract(response)`` for every response; follows what ``follow`` returns."""

    name = "render"

    def __init__(
        self,
        requests: list[Request],
        extract: Callable[[Response], Any] | None = None,
        follow: Callable[[Response], list[Request]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.requests = requests
        self.extract = extract or prices
        self.follow = follow
        self.responses: list[Response] = []
        self.failures: list[Exception] = []

    async def start(self) -> AsyncIterator[Request]:
        for request in self.requests:
            request.errback = self.on_error
            yield request

    def parse(self, response: Response) -> Any:
        self.responses.append(response)
        found = self.extract(response)
        if found is not None:
            yield found
        yield from self.follow(response) if self.follow else []

    def on_error(self, failure: Exception) -> None:
        self.failures.append(failure)


def prices(response: Response) -> dict[str, Any] | None:
    node = response.css_first("span.price")
    return {"url": response.url, "price": node.text()} if node is not None else None


def follow_links(render: bool) -> Callable[[Response], list[Request]]:
    def follow(response: Response) -> list[Request]:
        return [r.replace(render=render) for r in response.follow_all(css="a[href]")]

    return follow


async def serve(pages: dict[str, Any]) -> SiteServer:
    server = SiteServer({HOST: pages})
    await server.__aenter__()
    return server


@pytest.fixture
async def shop() -> AsyncIterator[Callable[[dict[str, Any]], Any]]:
    servers: list[SiteServer] = []

    async def start(pages: dict[str, Any]) -> SiteServer:
        server = await serve(pages)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.__aexit__(None, None, None)


def settings_for(server: SiteServer, **extra: Any) -> dict[str, Any]:
    return {"RESOLVE": server.resolve_map(), **extra}


# -- what rendering gives ----------------------------------------------------------------------


@browser
async def test_js_built_links_and_data_need_rendering(shop: Any) -> None:
    server = await shop({"/": JS_PAGE, "/item": ITEM_PAGE})
    url = server.url(HOST, "/")
    plain = Render([Request(url)], follow=follow_links(False))
    run = await crawl(plain, **settings_for(server))
    assert run.items == [] and server.paths_seen(HOST) == ["/"]

    rendered = Render([Request(url, render=True)], follow=follow_links(True))
    run = await crawl(rendered, **settings_for(server))
    assert sorted(i["price"] for i in run.items) == ["42", "7"]
    assert run.stats["render/pages"] == 2
    first = rendered.responses[0]
    assert first.status == 200 and "text/html" in first.headers["Content-Type"]


@browser
async def test_render_always_setting_and_redirect_history(shop: Any) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/")

    server = await shop({"/": JS_PAGE, "/old": moved})
    spider = Render([Request(server.url(HOST, "/old"))])
    run = await crawl(spider, **settings_for(server, RENDER="always"))
    [response] = spider.responses
    assert run.items[0]["price"] == "42"
    assert response.url == server.url(HOST, "/")
    assert [(hop.url, hop.status) for hop in response.history] == [(server.url(HOST, "/old"), 302)]


# -- one identity per domain -------------------------------------------------------------------


@browser
async def test_cookies_headers_and_user_agent_are_the_domains(shop: Any) -> None:
    async def login(request: web.Request) -> web.StreamResponse:
        response = web.Response(text="<a href='/app'>app</a>", content_type="text/html")
        response.set_cookie("server_sid", "s1", path="/")
        return response

    app = """<html><body><p id="seen"></p><script>
    document.getElementById('seen').textContent = document.cookie;
    document.cookie = 'from_js=j2; path=/';
    </script></body></html>"""
    server = await shop({"/login": login, "/app": app, "/after": "<p>after</p>"})

    def follow(response: Response) -> list[Request]:
        if response.url.endswith("/login"):
            return [response.follow("/app", render=True, headers={"X-Own": "mine"})]
        if response.url.endswith("/app"):
            return [response.follow("/after")]  # over HTTP again, same jar
        return []

    def seen(response: Response) -> Any:
        found = response.css("#seen")
        return {"js_saw": found[0].text()} if found else None

    spider = Render([Request(server.url(HOST, "/login"))], extract=seen, follow=follow)
    run = await crawl(
        spider,
        **settings_for(
            server,
            USER_AGENT="render-test/1.0",
            DEFAULT_HEADERS={"X-Default": "d"},
            DOMAIN_HEADERS={HOST: {"X-Domain": "k"}},
        ),
    )
    assert run.items == [{"js_saw": "server_sid=s1"}]  # the HTTP cookie reached the page's JS
    by_path = {r.path_qs: r.headers for r in server.requests}
    assert "from_js=j2" in by_path["/after"].get("Cookie", "")  # JS cookie went back to HTTP
    rendered = by_path["/app"]
    assert rendered["User-Agent"] == "render-test/1.0"
    assert rendered["X-Default"] == "d" and rendered["X-Domain"] == "k"
    assert rendered["X-Own"] == "mine"
    assert "server_sid=s1" in rendered.get("Cookie", "")


@browser
async def test_render_through_a_proxy(tmp_path: Path) -> None:
    pages = {"127.0.0.1": {"/": JS_PAGE}}
    async with SiteServer(pages) as server, tinyproxy(tmp_path) as proxy:
        assert isinstance(proxy, ProxyPeer)
        spider = Render([Request(server.url("127.0.0.1", "/"), render=True)])
        run = await crawl(spider, PROXY=proxy.url)
        assert run.items and run.items[0]["price"] == "42"
        assert len(server.requests) == 1
        # the page's requests are sent by Playwright's driver, which tunnels (CONNECT)
        # through an HTTP proxy: no Via header, the proxy's log names the server instead
        await proxy.wait_for_log(f"127.0.0.1:{server.port}")


# -- the guard and resource blocking -----------------------------------------------------------


@pytest.fixture
async def private_host() -> AsyncIterator[SiteServer]:
    pages = {"127.0.0.2": {"/secret.js": "document.title = 'leaked'", "/admin": JS_PAGE}}
    async with SiteServer(pages, host="127.0.0.2") as server:
        yield server


@browser
async def test_guard_aborts_a_page_request_to_a_private_address(
    shop: Any, private_host: SiteServer
) -> None:
    script = f"http://127.0.0.2:{private_host.port}/secret.js"
    page = f'<html><head><script src="{script}"></script></head><body>{JS_PAGE}</body></html>'
    admin = f"http://127.0.0.2:{private_host.port}/admin"
    server = await shop({"/": page, "/links": f'<a href="{admin}">admin</a>'})

    def follow(response: Response) -> list[Request]:  # a rendered link to the private host
        return [r.replace(render=True) for r in response.follow_all(css="a[href]")]

    start = [Request(server.url(HOST, "/"), render=True), Request(server.url(HOST, "/links"))]
    spider = Render(start, follow=follow)
    run = await crawl(spider, RESOLVE=server.resolve_map())
    assert private_host.requests == []  # neither the page's script nor the page itself
    assert run.items[0]["price"] == "42"  # the page still rendered, without the script
    assert run.stats["render/blocked_requests"] >= 1
    assert run.stats["failures/blocked_address"] == 1
    assert spider.responses[0].css("title") == [] or "leaked" not in spider.responses[0].text


@browser
async def test_redirects_to_a_private_address_never_leave_the_browser(shop: Any) -> None:
    pages = {
        "127.0.0.2": {
            "/secret.js": "document.title = 'leaked'",
            "/frame": "<p>private frame</p>",
            "/pic.png": b"\x89PNG",
            "/api": "{}",
            "/admin": JS_PAGE,
        }
    }
    async with SiteServer(pages, host="127.0.0.2") as private:
        base = f"http://127.0.0.2:{private.port}"

        def to(path: str) -> Callable[[web.Request], Any]:
            async def moved(request: web.Request) -> web.StreamResponse:
                raise web.HTTPFound(path if path.startswith("/") else f"{base}/{path}")

            return moved

        async def hop_with_cookie(request: web.Request) -> web.StreamResponse:
            response = web.HTTPFound("/landing")
            response.set_cookie("hop", "h1", path="/")
            raise response

        page = """<html><head><script src="/r/script"></script></head><body>
        <iframe src="/r/frame"></iframe><img src="/r/img">
        <script>fetch('/r/api').catch(() => {});
        const ws = new WebSocket(WS);  // the page is taken once it was refused or failed
        ws.onclose = () => document.body.insertAdjacentHTML('beforeend', '<i id="ws"></i>');
        </script>
        <div id="out"></div><script src="/r/ok.js"></script></body></html>"""
        landing = """<html><body><p id="seen"></p><script>
        document.getElementById('seen').textContent = document.cookie;
        </script></body></html>"""
        page = page.replace("WS", repr(f"ws://127.0.0.2:{private.port}/ws"))
        server = await shop(
            {
                "/": page,
                "/r/script": to("secret.js"),
                "/r/frame": to("frame"),
                "/r/img": to("pic.png"),
                "/r/api": to("api"),
                "/r/ok.js": to("/ok.js"),  # an allowed redirect still works
                "/ok.js": "document.getElementById('out').innerHTML ="
                " '<span class=\"price\">42</span>';",
                "/doc": to("admin"),  # the page itself redirects to the private host
                "/hop": hop_with_cookie,
                "/landing": landing,
            }
        )

        def extract(response: Response) -> Any:
            seen = response.css_first("#seen")
            if seen is not None:
                return {"url": response.url, "cookie": seen.text()}
            return prices(response)

        start = [Request(server.url(HOST, "/"), render=True, meta={"wait_for": "#ws"})]
        start += [Request(server.url(HOST, p), render=True) for p in ("/doc", "/hop")]
        spider = Render(start, extract=extract)
        settings = settings_for(server, BROWSER_ALLOW_RESOURCES=["image"], RETRY_TIMES=0)
        run = await crawl(spider, **settings)
    assert private.requests == []  # not one request, not even a redirect hop
    items = {i["url"]: i for i in run.items}
    assert items[server.url(HOST, "/")]["price"] == "42"
    assert items[server.url(HOST, "/landing")]["cookie"] == "hop=h1"  # set by the 302
    assert run.stats["render/blocked_requests"] == 6  # script, frame, img, fetch, socket, page
    assert run.stats["failures/blocked_address"] == 1
    [failure] = spider.failures
    assert "redirects to" in str(failure) and "/doc" in str(failure)
    [landed] = [r for r in spider.responses if r.url.endswith("/landing")]
    assert [(h.url, h.status) for h in landed.history] == [(server.url(HOST, "/hop"), 302)]
    assert "/r/img" in server.paths_seen(HOST) and "/r/frame" in server.paths_seen(HOST)


@browser
async def test_images_are_blocked_unless_allowed(shop: Any) -> None:
    page = '<html><body><img src="/pic.png"><span class="price">1</span></body></html>'
    server = await shop({"/": page, "/pic.png": b"\x89PNG"})
    await crawl(Render([Request(server.url(HOST, "/"), render=True)]), **settings_for(server))
    assert "/pic.png" not in server.paths_seen(HOST)

    spider = Render([Request(server.url(HOST, "/?again"), render=True)])
    await crawl(spider, **settings_for(server, BROWSER_ALLOW_RESOURCES=["image"]))
    assert "/pic.png" in server.paths_seen(HOST)


# -- waiting and acting ------------------------------------------------------------------------

# The span comes only once /gate answers, which the test allows only after the page that
# does not wait has been parsed: no timer, no race.
LATE = """<html><body><script>
fetch('/gate').then(() => { document.body.innerHTML += '<span class="price">late</span>'; });
</script></body></html>"""

BUTTON = """<html><body><button id="more" onclick="
document.body.insertAdjacentHTML('beforeend', '<span class=price>clicked</span>')">more</button>
</body></html>"""


@browser
async def test_wait_for_a_selector_that_appears_later(shop: Any) -> None:
    seen_now = asyncio.Event()  # the page that did not wait has been parsed

    async def gate(request: web.Request) -> web.StreamResponse:
        await seen_now.wait()
        return web.Response(text="open")

    def extract(response: Response) -> Any:
        if response.url.endswith("?now"):
            seen_now.set()
        return prices(response)

    server = await shop({"/late": LATE, "/gate": gate})
    url = server.url(HOST, "/late")
    waited = Request(url, render=True, meta={"wait_for": "span.price"})
    # whichever is fetched first, the waited page is done only after the other was parsed
    spider = Render([Request(url + "?now", render=True), waited], extract=extract)
    run = await crawl(spider, **settings_for(server))
    seen_now.set()  # let a still held /gate end (the server's cleanup waits for it)
    assert [i["price"] for i in run.items] == ["late"]  # the one that did not wait saw none


class Clicker(Render):
    async def page_actions(self, page: Any, request: Request) -> None:
        await page.click("#more")


@browser
async def test_page_actions_click_and_screenshot(shop: Any, tmp_path: Path) -> None:
    server = await shop({"/": BUTTON})
    request = Request(server.url(HOST, "/"), render=True, meta={"screenshot": True})
    spider = Clicker([request])
    run = await crawl(spider, **settings_for(server, BROWSER_SCREENSHOT_DIR=str(tmp_path)))
    assert [i["price"] for i in run.items] == ["clicked"]
    shot = Path(spider.responses[0].meta["screenshot"])
    assert shot.parent == tmp_path and shot.read_bytes().startswith(b"\x89PNG")


# -- robust and bounded ------------------------------------------------------------------------


@browser
async def test_a_hanging_page_times_out_and_is_retried(shop: Any) -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await never.wait()  # the page never comes
        return web.Response(text="never")

    server = await shop({"/hang": hang})
    spider = Render([Request(server.url(HOST, "/hang"), render=True)])
    run = await crawl(spider, **settings_for(server, REQUEST_TIMEOUT=0.5, RETRY_TIMES=1))
    never.set()  # let the server's handlers end (its cleanup waits for them)
    # /hang never answers, so every attempt times out however slow the machine is; whether
    # an attempt got as far as the server within 0.5 s is timing, and is not asserted.
    assert run.stats["retries/timeout"] == 1 and run.stats["failures/timeout"] == 1
    assert set(server.paths_seen(HOST)) <= {"/hang"} and len(server.paths_seen(HOST)) <= 2
    assert [type(f).__name__ for f in spider.failures] == ["RequestTimeout"]
    assert spider.responses == [] and run.items == []


@browser
async def test_max_response_size_bounds_each_answer_and_the_page(shop: Any) -> None:
    big = "x" * 5000
    page = '<html><body><span class="price">1</span><script src="/big.js"></script></body></html>'
    server = await shop({"/": page, "/big.js": f"/*{big}*/", "/huge": f"<p>{big}</p>"})
    start = [Request(server.url(HOST, p), render=True) for p in ("/", "/huge")]
    spider = Render(start)
    run = await crawl(spider, **settings_for(server, MAX_RESPONSE_SIZE=2000))
    assert [i["price"] for i in run.items] == ["1"]  # the page, without its too large script
    assert run.stats["failures/too_large"] == 1
    assert [type(f).__name__ for f in spider.failures] == ["ResponseTooLarge"]


@browser
async def test_browser_pages_caps_pages_open_at_once(shop: Any) -> None:
    crowd = asyncio.Event()  # a third page at once: the cap failed
    paired = asyncio.Event()  # two pages at once: the cap lets two through
    active = 0

    async def slow(request: web.Request) -> web.StreamResponse:
        nonlocal active
        active += 1
        if active >= 2:
            paired.set()
        if active > 2:
            crowd.set()
        try:
            await asyncio.wait_for(paired.wait(), 5)  # bounded: only a bug waits this long
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(crowd.wait(), 0.25)  # give a third page its chance
        finally:
            active -= 1
        return web.Response(text="<span class='price'>p</span>", content_type="text/html")

    server = await shop({f"/p{n}": slow for n in range(6)})
    requests = [Request(server.url(HOST, f"/p{n}"), render=True) for n in range(6)]
    run = await crawl(Render(requests), **settings_for(server, BROWSER_PAGES=2))
    assert len(run.items) == 6
    assert server.max_concurrency[HOST] == 2 and not crowd.is_set()


class Crasher(Render):
    crashed = False

    async def page_actions(self, page: Any, request: Request) -> None:
        if not Crasher.crashed:
            Crasher.crashed = True
            await page.context.browser.close()  # the browser dies under the page


@browser
async def test_a_browser_crash_fails_that_request_and_the_browser_is_relaunched(
    shop: Any, launches: list[int]
) -> None:
    server = await shop({"/": JS_PAGE})
    spider = Crasher([Request(server.url(HOST, "/"), render=True)])
    run = await crawl(spider, **settings_for(server, RETRY_TIMES=1, RETRY_BACKOFF_BASE=0))
    assert run.stats["retries/browser"] == 1
    assert [i["price"] for i in run.items] == ["42"]
    assert launches == [2]


@browser
async def test_browser_is_recycled_and_closed_cleanly(shop: Any, launches: list[int]) -> None:
    server = await shop({f"/{n}": JS_PAGE for n in range(5)})
    spider = Render([Request(server.url(HOST, f"/{n}"), render=True) for n in range(5)])
    run = await crawl(spider, **settings_for(server, BROWSER_RECYCLE_PAGES=2, BROWSER_PAGES=1))
    assert len(run.items) == 5 and launches == [3]
    assert browser_rss_bytes() == 0  # no Chromium process is left behind


# -- the flag in persistent frontiers, and a missing browser -----------------------------------


def test_the_codec_keeps_the_render_flag() -> None:
    codec = RequestCodec(None)
    assert codec.decode(codec.encode(Request("http://a.test/", render=True))).render is True
    assert codec.decode(codec.encode(Request("http://a.test/"))).render is False
    assert Request._link(Request("http://a.test/").yarl_url).render is False
    assert Request("http://a.test/").replace(render=True).render is True


@browser
async def test_a_render_request_through_a_sqlite_state_dir(shop: Any, tmp_path: Path) -> None:
    server = await shop({"/": JS_PAGE, "/item": ITEM_PAGE})
    spider = Render([Request(server.url(HOST, "/"), render=True)], follow=follow_links(True))
    run = await crawl(spider, **settings_for(server, STATE_DIR=str(tmp_path / "state")))
    assert sorted(i["price"] for i in run.items) == ["42", "7"]  # the link came back rendered


async def test_a_missing_browser_is_a_config_error_before_the_crawl(shop: Any) -> None:
    server = await shop({"/": JS_PAGE})
    spider = Render([Request(server.url(HOST, "/"))])
    with pytest.raises(ConfigError, match="BROWSER_EXECUTABLE") as caught:
        await crawl(spider, **settings_for(server, RENDER="always", BROWSER_EXECUTABLE="/nope"))
    assert isinstance(caught.value, BrowserMissing)
    assert "apt-get install chromium" in str(caught.value)
    assert server.requests == []


def test_find_browser_names_the_setting_and_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BrowserMissing) as caught:
        find_browser()
    message = str(caught.value)
    assert "BROWSER_EXECUTABLE" in message and "apt-get install chromium" in message
    assert "\n" not in message


async def test_a_render_request_without_a_browser_fails_alone(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no chromium on PATH
    server = await shop({"/": JS_PAGE, "/plain": "<span class='price'>3</span>"})
    start = [Request(server.url(HOST, "/"), render=True), Request(server.url(HOST, "/plain"))]
    spider = Render(start)
    run = await crawl(spider, **settings_for(server))
    assert [i["price"] for i in run.items] == ["3"]  # the aiohttp request was not held up
    assert run.stats["failures/browser_missing"] == 1
    assert "apt-get install chromium" in str(spider.failures[0])


@browser
async def test_rendered_responses_pass_the_middleware_chain(
    shop: Any, private_host: SiteServer
) -> None:
    async def to_private(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://127.0.0.2:{private_host.port}/admin")

    server = await shop({"/go": to_private})  # /missing answers 404
    start = [Request(server.url(HOST, "/missing"), render=True)]
    start.append(Request(server.url(HOST, "/go"), render=True))
    spider = Render(start)
    run = await crawl(spider, **settings_for(server))
    assert run.stats["failures/http_status"] == 1 and run.stats["status/404"] == 1
    # the redirect hop is judged before it is sent: the page fails, the private host saw nothing
    assert run.stats["failures/blocked_address"] == 1
    assert run.items == [] and private_host.requests == []


@browser
async def test_a_ban_on_a_rendered_page_benches_the_rotated_proxy(tmp_path: Path) -> None:
    async def banned(request: web.Request) -> web.StreamResponse:
        return web.Response(status=403, text="<p>go away</p>", content_type="text/html")

    async with SiteServer({"127.0.0.1": {"/": banned}}) as server, tinyproxy(tmp_path) as proxy:
        spider = Render([Request(server.url("127.0.0.1", "/"), render=True)])
        run = await crawl(spider, PROXIES=[proxy.url], PROXY_BAN_COOLDOWN=0)
        assert run.stats["proxies/bans/http_403"] == 4  # the first try and 3 more, then give up
        assert run.stats["failures/proxy"] == 1
        assert len(server.requests) == 4
        await proxy.wait_for_log(f"127.0.0.1:{server.port}")  # tunnelled through the proxy
