"""`crawl parse URL --spider NAME`: one callback's items and requests, level by level."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from test_cli_fetch import RESOLVE, Invoke, cli_in

from crawler import Spider
from crawler.httpcache import HttpCache
from crawler.testing import SiteServer, html_page

SPIDER = textwrap.dedent(
    """
    from dataclasses import dataclass
    from crawler import Spider

    @dataclass
    class Product:
        name: str
        price: float

    class Shop(Spider):
        name = "shop"
        allowed_domains = ["a.test"]
        currency = "EUR"

        def parse(self, response):
            yield {"title": response.css_first("title").text(), "currency": self.currency}
            yield from response.follow_all(css="a.product", callback=self.parse_product)
            yield response.follow("http://elsewhere.test/x", callback=self.parse_product)

        def parse_product(self, response):
            title = response.css_first("title").text()
            if title == "Broken":
                raise ValueError(f"no price on {response.url}")
            return Product(title, 9.5)
    """
)


def _page(title: str, products: list[str]) -> str:
    links = "".join(f'<a class="product" href="{p}">{p}</a>' for p in products)
    return f"<html><head><title>{title}</title></head><body>{links}</body></html>"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    (tmp_path / "shop.py").write_text(SPIDER)
    yield from cli_in(tmp_path, monkeypatch)


@pytest.fixture
async def site() -> AsyncIterator[SiteServer]:
    pages = {
        "a.test": {
            "/": _page("Home", ["/p/1", "/p/2"]),
            "/bad": _page("Bad", ["/p/broken"]),
            "/p/1": html_page("One"),
            "/p/2": html_page("Two"),
            "/p/broken": html_page("Broken"),
        }
    }
    async with SiteServer(pages) as server:
        yield server


async def test_items_and_requests_of_parse(cli, site):
    result = await cli("parse", site.url("a.test"), "--spider", "shop.py", *RESOLVE)
    assert result.code == 0, result.err
    out = result.out
    assert out.startswith("# level 1 (1 request)\n")
    assert f"GET {site.url('a.test')} -> 200, callback parse" in out
    items_json = out.split("items (1):\n", 1)[1].split("  requests", 1)[0]
    assert json.loads(items_json) == {"title": "Home", "currency": "EUR"}
    assert f"GET {site.url('a.test', '/p/1')} -> parse_product\n" in out
    assert f"GET {site.url('a.test', '/p/2')} -> parse_product\n" in out
    assert "GET http://elsewhere.test/x -> parse_product  (offsite: not followed)" in out
    assert "# level 2" not in out
    assert site.paths_seen("a.test") == ["/"]  # depth 1: nothing followed
    assert len(site.robots_requests) == 1


async def test_named_callback_and_dataclass_item(cli, site):
    args = ["--spider", "shop.py", "-c", "parse_product", *RESOLVE]
    result = await cli("parse", site.url("a.test", "/p/1"), *args)
    assert result.code == 0, result.err
    assert "callback parse_product" in result.out
    assert '"name": "One"' in result.out and '"price": 9.5' in result.out
    assert "requests (0):" in result.out


async def test_depth_follows_produced_requests_level_by_level(cli, site):
    args = ["--spider", "shop.py", "--depth", "2", *RESOLVE]
    result = await cli("parse", site.url("a.test"), *args)
    assert result.code == 0, result.err
    level1, level2 = result.out.split("# level 2 (2 requests)\n")
    assert "# level 1" in level1
    one = level2.index(f"GET {site.url('a.test', '/p/1')} -> 200, callback parse_product")
    two = level2.index(f"GET {site.url('a.test', '/p/2')} -> 200, callback parse_product")
    assert one < two  # in the order the callback produced them
    assert '"name": "One"' in level2 and '"name": "Two"' in level2
    assert sorted(site.paths_seen("a.test")) == ["/", "/p/1", "/p/2"]  # offsite not followed


async def test_spider_argument(cli, site):
    args = ["--spider", "shop.py", "-a", "currency=USD", *RESOLVE]
    result = await cli("parse", site.url("a.test"), *args)
    assert result.code == 0, result.err
    assert '"currency": "USD"' in result.out


async def test_callback_error_shows_user_traceback_and_exits_10(cli, site, tmp_path):
    args = ["--spider", "shop.py", "--depth", "2", *RESOLVE]
    result = await cli("parse", site.url("a.test", "/bad"), *args)
    assert result.code == 10
    broken = site.url("a.test", "/p/broken")
    first, *rest = result.err.splitlines()
    assert first == (f"error: parse_product raised ValueError: no price on {broken} on {broken}")
    trace = "\n".join(rest)
    assert str(tmp_path / "shop.py") in trace and "raise ValueError" in trace
    assert "crawler/" not in trace  # only the user's frames
    assert f"GET {broken} -> 200, callback parse_product" in result.out  # still printed


async def test_an_error_in_the_spiders_open_shows_its_traceback_and_exits_10(cli, site, tmp_path):
    (tmp_path / "openfail.py").write_text(
        "from crawler import Spider\n\n\nclass OpenFail(Spider):\n    name = 'openfail'\n\n"
        "    async def open(self):\n        raise RuntimeError('cannot log in')\n"
    )
    result = await cli("parse", site.url("a.test"), "--spider", "openfail.py", *RESOLVE)
    assert result.code == 10, result.err
    assert result.err.splitlines()[-1] == "error: the spider raised RuntimeError: cannot log in"
    assert str(tmp_path / "openfail.py") in result.err and "crawler/" not in result.err


async def test_unhandled_status_is_not_given_to_the_callback(cli, site):
    args = ["--spider", "shop.py", "--no-robots", *RESOLVE]
    result = await cli("parse", site.url("a.test", "/missing"), *args)
    assert result.code == 0, result.err
    assert "-> 404" in result.out and "handle_httpstatus_list" in result.out


async def test_unknown_callback_lists_the_spiders_callbacks(cli, site):
    result = await cli("parse", site.url("a.test"), "--spider", "shop.py", "-c", "nope")
    assert result.code == 2
    assert result.err.strip() == (
        "error: spider Shop has no callback 'nope' (it has: parse, parse_product);"
        " pass -c NAME of one of its methods"
    )
    assert site.requests == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--spider", "nosuch"], 3, "no spider named 'nosuch'"),
        (["--spider", "shop.py", "-a", "noequals"], 2, "-a expects NAME=VALUE"),
        (["--spider", "shop.py", "--depth", "0"], 2, "--depth"),
        ([], 2, "--spider"),
    ],
)
async def test_bad_input(cli, args, code, message):
    result = await cli("parse", "http://a.test/", *args)
    assert result.code == code
    assert message in result.err and "Traceback" not in result.err


async def test_fetch_failure_exits_9(cli, refused_port):
    url = f"http://127.0.0.1:{refused_port}/"
    args = ["--spider", "shop.py", "--no-robots", "-s", "RETRY_TIMES=0"]
    result = await cli("parse", url, *args)
    assert result.code == 9
    assert result.err.startswith(f"error: cannot fetch {url}:")


async def test_record_stores_every_response_in_the_http_cache(cli, site, tmp_path):
    args = ["--spider", "shop.py", "--depth", "2", "--record", "rec.sqlite", *RESOLVE]
    result = await cli("parse", site.url("a.test"), *args)
    assert result.code == 0, result.err
    cache = HttpCache(tmp_path / "rec.sqlite", mode="replay")
    replayed = await _replay(cache, [site.url("a.test"), site.url("a.test", "/p/2")])
    assert replayed == ["Home", "Two"]


async def _replay(cache: HttpCache, urls: list[str]) -> list[str]:
    """Crawl ``urls`` offline from ``cache``: the titles the responses had."""
    from crawler import Crawler, Settings

    titles: list[str] = []

    class Replay(Spider):
        name = "replay"
        start_urls = urls

        def parse(self, response):
            titles.append(response.css_first("title").text())
            return None

    settings = Settings.build(("test", {"PROGRESS_INTERVAL": 0, "RESOLVE": {}}))
    await Crawler(Replay(), settings, http_cache=cache).run()
    assert not cache.not_recorded
    return sorted(titles)


async def test_help_has_an_example(cli):
    result = await cli("parse", "--help")
    assert result.code == 0
    assert "crawl parse https://" in result.out and "--depth" in result.out
