"""crawler.testing.callbacks: make_response() and run_callback() without any server."""

from __future__ import annotations

import dataclasses

import pytest

from crawler import Request, Spider
from crawler.errors import CrawlerError, FetchError
from crawler.testing.callbacks import CallbackOutput, make_response, run_callback

PAGE = """<html><head><title>Shop é</title></head><body>
<a href="/p/1">one</a> <a href="p/2">two</a> <a href="mailto:x@y">mail</a>
</body></html>"""


def test_make_response_is_a_real_response() -> None:
    response = make_response("https://shop.test/cat/", PAGE)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.body == PAGE.encode()
    assert response.css_first("title").text() == "Shop é"
    assert response.follow("/x").url == "https://shop.test/x"
    urls = [r.url for r in response.follow_all()]
    assert urls == ["https://shop.test/p/1", "https://shop.test/cat/p/2"]
    assert response.request.url == "https://shop.test/cat/"


def test_make_response_options() -> None:
    response = make_response(
        "https://api.test/v1",
        '{"n": 1}',
        status=404,
        headers={"content-type": "application/json", "X-A": "b"},
        meta={"page": 3},
    )
    assert response.status == 404
    assert response.json() == {"n": 1}
    assert response.headers["Content-Type"] == "application/json"  # headers win
    assert response.headers["x-a"] == "b"
    assert response.meta == {"page": 3}


def test_make_response_encoding_and_bytes_body() -> None:
    latin = make_response("https://a.test/", "café", encoding="latin-1")
    assert latin.body == "café".encode("latin-1")
    assert latin.text == "café"
    raw = make_response("https://a.test/", b"\x00\x01")
    assert raw.body == b"\x00\x01"


def test_make_response_with_request_keeps_its_meta() -> None:
    request = Request("https://a.test/x", meta={"k": 1})
    response = make_response("https://a.test/y", request=request)
    assert response.request is request
    assert response.meta == {"k": 1}
    assert response.url == "https://a.test/y"  # as after a redirect


@dataclasses.dataclass
class Product:
    name: str


class ShapesSpider(Spider):
    name = "shapes"

    async def parse(self, response):  # async generator
        yield {"title": response.css_first("title").text()}
        for request in response.follow_all():
            yield request

    def gen(self, response):
        yield Product("a")
        yield None
        yield response.follow("/next", callback=self.parse)

    async def coro(self, response):
        return [{"a": 1}, response.follow("/c")]

    def plain_request(self, response):
        return response.follow("/only")

    def plain_item(self, response):
        return Product("solo")

    def nothing(self, response):
        return None

    def bad(self, response):
        yield {"ok": 1}
        yield 42


async def test_run_callback_async_generator() -> None:
    out = await run_callback(ShapesSpider().parse, make_response("https://shop.test/", PAGE))
    assert out.items == [{"title": "Shop é"}]
    assert [r.url for r in out.requests] == ["https://shop.test/p/1", "https://shop.test/p/2"]


@pytest.mark.parametrize(
    ("method", "items", "urls"),
    [
        ("gen", [Product("a")], ["https://shop.test/next"]),
        ("coro", [{"a": 1}], ["https://shop.test/c"]),
        ("plain_request", [], ["https://shop.test/only"]),
        ("plain_item", [Product("solo")], []),
        ("nothing", [], []),
    ],
)
async def test_run_callback_every_shape(method: str, items: list, urls: list[str]) -> None:
    spider = ShapesSpider()
    out = await run_callback(getattr(spider, method), make_response("https://shop.test/", PAGE))
    assert out.items == items
    assert [r.url for r in out.requests] == urls


async def test_run_callback_keeps_callback_of_requests() -> None:
    spider = ShapesSpider()
    out = await run_callback(spider.gen, make_response("https://shop.test/"))
    assert out.requests[0].callback == spider.parse


async def test_bad_output_raises_the_crawl_error_and_keeps_partial_output() -> None:
    output = CallbackOutput()
    with pytest.raises(CrawlerError, match="callback produced int 42"):
        await run_callback(ShapesSpider().bad, make_response("https://a.test/"), output=output)
    assert output.items == [{"ok": 1}]


async def test_callback_exception_propagates() -> None:
    def broken(response):
        raise ValueError("no price")

    with pytest.raises(ValueError, match="no price"):
        await run_callback(broken, make_response("https://a.test/"))


async def test_run_callback_for_an_errback() -> None:
    def errback(failure):
        yield {"failed": str(failure)}
        yield Request("https://a.test/fallback")

    out = await run_callback(errback, FetchError("boom"))
    assert out.items == [{"failed": "boom"}]
    assert out.requests[0].url == "https://a.test/fallback"
