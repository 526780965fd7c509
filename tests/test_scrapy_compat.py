"""Scrapy spiders find their way in: Scrapy's names work or are reported, and the guide's
port of a real Scrapy spider crawls the demo bookstore (docs/coming-from-scrapy.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web
from conftest import HANG_GUARD_S, Collect, SiteFactory, run_spider
from multidict import CIMultiDict, CIMultiDictProxy
from selectolax.lexbor import SelectolaxError

from crawler import Crawler, DropItem, InvalidRequest, Request, Response, Settings, Spider
from crawler.pipeline import PipelineChain
from crawler.porting import porting_hints
from crawler.settings import SCRAPY_SETTINGS
from crawler.testing import SiteServer, html_page

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "coming-from-scrapy.md"
sys.path.insert(0, str(ROOT / "examples"))
from demo_site import DemoSite, make_books  # noqa: E402

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
PAGE = "http://a.test/dir/page.html"
HTML = (
    b"<html><body><h1>Title <b>bold</b></h1><p class='price'>Price: 12.50 EUR</p>"
    b"<a href='/one' class='x'>One</a><a href='two'>Two</a><span>no link</span></body></html>"
)


def hints_logged(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def make(body: bytes = HTML, content_type: str = "text/html") -> Response:
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": content_type}))
    return Response(PAGE, 200, headers, body, Request(PAGE))


# -- start_requests() ------------------------------------------------------------------------


class SyncGen(Spider):
    name = "syncgen"
    urls: tuple[str, ...] = ()  # -a urls=...

    def start_requests(self) -> Any:
        for url in self.urls:
            yield Request(url, callback=self.parse_page)

    def parse_page(self, response: Response) -> Any:
        yield {"url": response.url}


class AsyncGen(SyncGen):
    name = "asyncgen"

    async def start_requests(self) -> Any:  # type: ignore[override]
        for url in self.urls:
            yield Request(url, callback=self.parse_page)


class ReturnsList(SyncGen):
    name = "returnslist"

    def start_requests(self) -> Any:
        return [Request(url, callback=self.parse_page) for url in self.urls]


class NoCallback(Spider):
    name = "nocallback"
    urls: tuple[str, ...] = ()

    def start_requests(self) -> Any:
        return (Request(url) for url in self.urls)  # any iterable

    def parse(self, response: Response) -> Any:
        yield {"url": response.url}


@pytest.mark.parametrize("spider_class", [SyncGen, AsyncGen, ReturnsList, NoCallback])
async def test_start_requests_are_crawled_with_one_hint(
    spider_class: type[Spider], site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await site({"a.test": {"/1": html_page("1"), "/2": html_page("2")}})
    urls = [server.url("a.test", "/1"), server.url("a.test", "/2")]
    result, items = await run_spider(spider_class(urls=tuple(urls)), server)
    assert sorted(i["url"] for i in items) == urls
    assert result.stats["pages"] == 2
    assert hints_logged(caplog, "start_requests() is Scrapy's name; define async def start") == 1


def test_start_wins_over_start_requests() -> None:
    class Both(Spider):
        async def start(self) -> Any:
            yield Request("http://a.test/")

        def start_requests(self) -> Any:
            return []

    assert porting_hints(Both()) == [
        "start_requests() is never called because start() is defined: move its requests"
        " into start()"
    ]


async def test_start_requests_returning_nonsense_is_named() -> None:
    class Bad(Spider):
        def start_requests(self) -> Any:
            return 42

    with pytest.raises(TypeError, match=r"Bad.start_requests\(\) returned int"):
        [r async for r in Bad().start()]


# -- custom_settings --------------------------------------------------------------------------


class Custom(Spider):
    name = "custom"
    custom_settings: ClassVar[Any] = {
        "CONCURRENT_REQUESTS": 3,
        "DOWNLOAD_DELAY": 0.5,
        "RETRY_TIMES": 1,
    }
    settings: ClassVar[Any] = {"DOWNLOAD_DELAY": 0.25}


def test_custom_settings_merge_under_settings_through_crawler() -> None:
    settings = Crawler(Custom()).settings
    assert (settings.CONCURRENCY, settings.DOWNLOAD_DELAY, settings.RETRY_TIMES) == (3, 0.25, 1)
    [hint] = porting_hints(Custom())
    assert hint == (
        "custom_settings is Scrapy's name: read as settings (CONCURRENT_REQUESTS as CONCURRENCY);"
        " merged with settings, which wins on DOWNLOAD_DELAY; rename it to settings"
    )


def test_custom_settings_are_inherited_and_item_pipelines_ordered() -> None:
    class Parent(Spider):
        custom_settings: ClassVar[Any] = {
            "ITEM_PIPELINES": {"b:B": 300, "a:A": 100, "off:Off": None}
        }

    class Child(Parent):
        settings: ClassVar[Any] = {"CONCURRENCY": 2}

    assert Parent.settings == {"PIPELINES": ["a:A", "b:B"]}
    assert Child.settings == {"PIPELINES": ["a:A", "b:B"], "CONCURRENCY": 2}


def test_custom_settings_refuse_what_means_something_else() -> None:
    class Refused(Spider):
        custom_settings: ClassVar[Any] = {"RETRY_ENABLED": False}

    with pytest.raises(Exception, match=r"RETRY_ENABLED.*that is Scrapy's name; use RETRY_TIMES"):
        Settings.build(("spider settings", Refused.settings))


def test_custom_settings_must_be_a_dict() -> None:
    with pytest.raises(Exception, match=r"Wrong.custom_settings must be a dict of settings"):

        class Wrong(Spider):
            custom_settings: ClassVar[Any] = ["CONCURRENCY"]


CLI_SPIDER = """
from crawler import Spider

class Ported(Spider):
    name = "ported"
    custom_settings = {"USER_AGENT": "ported/1.0", "CLOSESPIDER_PAGECOUNT": 1}

    def parse(self, response):
        yield {"url": response.url}
        yield from response.follow_all()
"""


async def test_custom_settings_through_crawl_run(tmp_path: Path) -> None:
    (tmp_path / "ported.py").write_text(CLI_SPIDER)
    pages = {"a.test": {"/": html_page("Home", ["/1", "/2"]), "/1": html_page("1")}}
    async with SiteServer(pages) as server:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "crawler", "run", "ported.py", "-o", "-"),
            *("-a", f"start_urls={server.url('a.test')}", "-s", "RESOLVE=a.test:127.0.0.1"),
            *("-s", "PROGRESS_INTERVAL=0", "-s", "ROBOTSTXT_OBEY=false"),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        seen = list(server.requests)
    assert proc.returncode == 0, err.decode()
    assert [json.loads(line)["url"] for line in out.decode().splitlines()] == [server.url("a.test")]
    assert [r.headers["User-Agent"] for r in seen] == ["ported/1.0"]  # MAX_PAGES=1: one page
    assert err.decode().count("custom_settings is Scrapy's name") == 1


# -- other Scrapy-only names -------------------------------------------------------------------


def _spider(attributes: dict[str, Any]) -> Spider:
    return type("Ported", (Spider,), {"name": "ported", **attributes})()


def _noop(self: Any, *args: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("attributes", "hint"),
    [
        ({"rules": ()}, "rules need a CrawlSpider"),
        ({"parse_start_url": _noop}, "parse_start_url() is CrawlSpider's hook"),
        ({"http_user": "u", "http_pass": "p"}, "http_user/http_pass are not read here"),
        ({"from_crawler": classmethod(_noop)}, "from_crawler() is never called"),
        ({"update_settings": classmethod(_noop)}, "update_settings() is never called"),
        ({"download_delay": 2}, "download_delay = 2 is Scrapy's name for DOWNLOAD_DELAY"),
        ({"max_concurrent_requests": 2}, "Scrapy's name for CONCURRENCY_PER_HOST"),
        ({"user_agent": "bot/1"}, "user_agent = 'bot/1' is Scrapy's name for USER_AGENT"),
        ({"download_timeout": 5}, "Scrapy's name for REQUEST_TIMEOUT"),
        ({"download_maxsize": 10}, "Scrapy's name for MAX_RESPONSE_SIZE"),
        ({"handle_httpstatus_all": True}, "handle_httpstatus_all is Scrapy's name"),
        ({"closed": _noop}, "closed(reason) is Scrapy's name"),
        ({"closed": _noop, "close": _noop}, "closed() is never called because close()"),
        ({"sitemap_urls": ["http://a.test/sitemap.xml"]}, "need a sitemap spider"),
        ({"custom_settings": {}}, "custom_settings is Scrapy's name"),
    ],
)
async def test_each_scrapy_name_warns_once_at_start(
    attributes: dict[str, Any], hint: str, caplog: pytest.LogCaptureFixture
) -> None:
    spider = _spider(attributes)
    settings = Settings.build(("spider", spider.settings), ("test", {"PROGRESS_INTERVAL": 0}))
    async with asyncio.timeout(HANG_GUARD_S):
        result = await Crawler(spider, settings).run()
    assert result.finish_reason == "finished"
    assert hints_logged(caplog, hint) == 1, [r.getMessage() for r in caplog.records]
    assert len(porting_hints(spider)) == 1


def test_a_spider_without_scrapy_names_gets_no_hint() -> None:
    class Plain(Spider):
        settings: ClassVar[Any] = {"CONCURRENCY": 2}
        handle_httpstatus_list = (404,)
        rules = "mine"  # a crawler.* class may define it: only user names are reported

    Plain.__module__ = "crawler.spiders.example"
    assert porting_hints(Plain()) == []
    assert porting_hints(Spider()) == []


def test_scrapy_attributes_are_read_as_settings() -> None:
    spider = _spider({"download_delay": 2, "user_agent": "bot/1", "max_concurrent_requests": 3})
    settings = Crawler(spider).settings
    assert (settings.DOWNLOAD_DELAY, settings.USER_AGENT, settings.CONCURRENCY_PER_HOST) == (
        2,
        "bot/1",
        3,
    )
    ours = _spider({"download_delay": 2, "settings": {"DOWNLOAD_DELAY": 1}})
    assert Crawler(ours).settings.DOWNLOAD_DELAY == 1
    assert "(settings wins)" in porting_hints(ours)[0]


def test_scrapy_attributes_as_arguments_are_named_not_read() -> None:
    spider = Spider(download_delay="2")
    assert porting_hints(spider) == [
        "download_delay set on the spider object (-a download_delay=...) is not read:"
        " use -s DOWNLOAD_DELAY=VALUE"
        " or settings = {'DOWNLOAD_DELAY': ...}"
    ]


async def test_handle_httpstatus_all_and_closed_work(site: SiteFactory) -> None:
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="gone")

    reasons: list[str] = []

    class Tolerant(Spider):
        name = "tolerant"
        handle_httpstatus_all = True

        def parse(self, response: Response) -> Any:
            yield {"status": response.status}

        async def closed(self, reason: str) -> None:
            reasons.append(reason)

    server = await site({"a.test": {"/gone": missing}})
    _, items = await run_spider(Tolerant(start_urls=[server.url("a.test", "/gone")]), server)
    assert items == [{"status": 404}]
    assert reasons == ["finished"]


# -- requests: cb_kwargs and other unknown arguments -------------------------------------------


def test_cb_kwargs_is_named_with_the_meta_hint() -> None:
    response = make()
    for call in (
        lambda: response.follow("/x", cb_kwargs={"a": 1}),
        lambda: response.follow_all(cb_kwargs={"a": 1}),
    ):
        with pytest.raises(InvalidRequest, match=r"cb_kwargs, which is Scrapy's: pass .* meta="):
            call()


def test_unknown_follow_all_arguments_are_not_dropped_silently() -> None:
    response = make()
    with pytest.raises(InvalidRequest, match=r"follow_all\(xpath=\.\.\.\) is Scrapy's"):
        response.follow_all(xpath="//a")
    with pytest.raises(InvalidRequest, match="unknown argument 'priorty': did you mean priority"):
        response.follow_all(priorty=3)
    with pytest.raises(InvalidRequest, match="unknown argument 'priorty'"):
        response.follow("/x", priorty=3)


# -- selectors ---------------------------------------------------------------------------------


def test_sel_and_xpath_are_parsel() -> None:
    response = make()
    assert response.sel is response.sel  # built once
    assert response.xpath("//a/@href").getall() == ["/one", "two"]
    assert response.xpath("//h1/text()").get() == "Title "
    assert response.sel.css("a::attr(href)").get() == "/one"
    assert response.sel.css("p.price::text").re(r"[\d.]+") == ["12.50"]
    assert response.xpath("//p").re_first(r"(\d+)\.") == "12"
    assert response.xpath("//a")[0].attrib == {"href": "/one", "class": "x"}
    assert response.xpath("//a")[0].root.base_url == PAGE
    assert response.xpath("//nothing").get() is None


def test_sel_reads_xml() -> None:
    response = make(b"<feed><entry><id>1</id></entry></feed>", "application/xml")
    assert response.xpath("//entry/id/text()").getall() == ["1"]


def test_follow_takes_parsel_selectors() -> None:
    response = make()
    assert response.follow(response.xpath("//a")[0]).url == "http://a.test/one"
    assert response.follow(response.xpath("//a/@href")[1]).url == "http://a.test/dir/two"
    urls = [r.url for r in response.follow_all(response.xpath("//a"))]
    assert urls == ["http://a.test/one", "http://a.test/dir/two"]
    urls = [r.url for r in response.follow_all(response.sel.css("a::attr(href)"), priority=1)]
    assert urls == ["http://a.test/one", "http://a.test/dir/two"]
    with pytest.raises(InvalidRequest, match="only <a> and <link> selectors"):
        response.follow(response.xpath("//span")[0])
    with pytest.raises(InvalidRequest, match="got a list of 2"):
        response.follow(response.xpath("//a"))
    with pytest.raises(InvalidRequest, match="got int 5"):
        response.follow(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("selector", "hint"),
    [
        ("a::attr(href)", "response.css('a') and read node.attributes['href']"),
        ("h1::text", "response.css('h1') and read node.text()"),
        ("p:contains(Price)", ':lexbor-contains("text")'),
        ("a[", "not CSS selectolax (Lexbor) understands"),
    ],
)
def test_css_errors_name_the_selector_and_the_fix(selector: str, hint: str) -> None:
    response = make()
    for method in (response.css, response.css_first, response.follow_all):
        with pytest.raises(SelectolaxError) as caught:
            method(selector) if method != response.follow_all else method(css=selector)
        message = str(caught.value)
        assert message.startswith(f"cannot parse CSS selector {selector!r}"), message
        assert hint in message
    if "::" in selector:
        assert "response.sel.css(" in message and "pip install 'crawler[parsel]'" in message


def test_missing_parsel_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "parsel", None)  # `import parsel` now raises ImportError
    response = make()
    for use in (lambda: response.sel, lambda: response.xpath("//a")):
        with pytest.raises(ModuleNotFoundError, match=r"pip install 'crawler\[parsel\]'"):
            use()
    assert [n.attributes["href"] for n in response.css("a")] == ["/one", "two"]


def test_parsel_is_imported_lazily() -> None:
    code = "import crawler, crawler.cli.run, sys; print('parsel' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the guide and its port --------------------------------------------------------------------


def guide_blocks() -> list[str]:
    return _BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def ours(block: str) -> bool:
    return not block.startswith("# scrapy\n")


def run_block(source: str, name: str) -> dict[str, Any]:
    """Execute a guide block as a module of its own (dataclasses look their module up)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        exec(compile(source, f"coming-from-scrapy.md ({name})", "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module.__dict__


def guide_spider(class_name: str) -> type[Spider]:
    [source] = [b for b in guide_blocks() if ours(b) and f"\nclass {class_name}(" in b]
    return run_block(source, f"guide_{class_name.lower()}")[class_name]


def test_every_guide_block_of_ours_runs() -> None:
    blocks = [b for b in guide_blocks() if ours(b)]
    assert len(blocks) >= 5 and len(guide_blocks()) > len(blocks)
    for number, source in enumerate(blocks, 1):
        run_block(source, f"guide_block_{number}")


def test_guide_shows_the_example_verbatim() -> None:
    code = (ROOT / "examples" / "scrapy_port.py").read_text(encoding="utf-8")
    port = code.split("verbatim ---\n", 1)[1]
    assert port in guide_blocks()


def test_guide_maps_every_scrapy_setting_we_know() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    missing = [name for name in SCRAPY_SETTINGS if f"`{name}`" not in guide]
    assert not missing


async def test_guide_pipeline_runs_as_in_scrapy() -> None:
    [source] = [b for b in guide_blocks() if "class PricePipeline" in b]
    pipeline = run_block(source, "guide_pipeline")["PricePipeline"]()
    chain = PipelineChain([pipeline])
    spider = Spider()
    await chain.open(spider)
    assert await chain.process({"url": "u", "price": 2.5}, spider) == {"url": "u", "price": 2.5}
    with pytest.raises(DropItem, match="no price in v"):
        await chain.process({"url": "v", "price": 0}, spider)
    await chain.close(spider)
    assert pipeline.kept == 1


async def crawl_demo(spider: Spider) -> tuple[list[dict[str, Any]], str]:
    collect = Collect()
    async with DemoSite() as demo:
        spider.start_url = demo.url  # type: ignore[attr-defined]
        settings = Settings.build(("spider", spider.settings), ("test", {"PROGRESS_INTERVAL": 0}))
        async with asyncio.timeout(HANG_GUARD_S):
            result = await Crawler(spider, settings, pipelines=[collect]).run()
    assert result.finish_reason == "finished"
    return collect.items, demo.url


def expected_books(base: str) -> list[dict[str, Any]]:
    return sorted(
        (
            {
                "url": f"{base}book/{b['id']}.html",
                "title": b["title"],
                "price": round(b["price"], 2),
                "in_stock": b["in_stock"],
                "genre": b["genre"],
            }
            for b in make_books()
        ),
        key=lambda item: item["url"],
    )


async def test_the_port_crawls_the_demo_bookstore() -> None:
    from scrapy_port import BookstorePort

    items, base = await crawl_demo(BookstorePort())
    listings = {item.pop("listing") for item in items}
    assert sorted(items, key=lambda item: item["url"]) == expected_books(base)
    assert listings == {base} | {f"{base}?page={n}" for n in range(2, 7)}


async def test_step_one_of_the_guide_gives_the_same_items(caplog: pytest.LogCaptureFixture) -> None:
    items, base = await crawl_demo(guide_spider("BookstoreStep1")())
    for item in items:
        item.pop("listing")
    assert sorted(items, key=lambda item: item["url"]) == expected_books(base)
    assert hints_logged(caplog, "start_requests() is Scrapy's name") == 1
    assert hints_logged(caplog, "custom_settings is Scrapy's name") == 1
