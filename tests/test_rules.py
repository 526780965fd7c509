"""RuleSpider and Rule against a real loopback shop, porting hints, and the ``links`` spider's
``-a allow``/``-a deny`` through the ``crawl run`` entry point.

Assertions read what the server saw (``paths_seen``), the items and the crawl stats.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SiteFactory, run_spider
from test_cli import crawl

from crawler import ConfigError, Link, LinkExtractor, Request, Response, Spider
from crawler.porting import porting_hints
from crawler.spiders import Rule, RuleSpider
from crawler.spiders.links import _patterns
from crawler.testing import Page, SiteServer, html_page


def shop() -> dict[str, dict[str, Page]]:
    """Home -> categories -> items; /about and a pdf that no rule (or the binary filter) takes."""
    return {
        "a.test": {
            "/": html_page("Home", ["/category/1", "/category/2", "/about", "/files/cat.pdf"]),
            "/category/1": html_page("Cat 1", ["/item/1", "/item/2", "/category/2?page=2"]),
            "/category/2": html_page("Cat 2", ["/item/3", "/item/1"]),
            "/category/2?page=2": html_page("Cat 2 p2", ["/item/4", "/item/2.pdf"]),
            "/item/1": html_page("Item 1", ["/item/99", "/category/1"]),
            "/item/2": html_page("Item 2"),
            "/item/3": html_page("Item 3"),
            "/item/4": html_page("Item 4"),
            "/item/99": html_page("Item 99 (only linked from an item)"),
            "/about": html_page("About"),
            "/files/cat.pdf": b"%PDF",
            "/item/2.pdf": b"%PDF",
        }
    }


ITEMS = ["/item/1", "/item/2", "/item/3", "/item/4"]


class Shop(RuleSpider):
    name = "shop"
    rules = (
        Rule(LinkExtractor(allow=r"/category/")),
        Rule(LinkExtractor(allow=r"/item/\d+"), callback="parse_item"),
    )

    def parse_item(self, response: Response) -> Any:
        yield {
            "path": response.request.yarl_url.path,
            "title": response.css_first("title").text(),
            "rule": response.meta["rule"],
            "link_text": response.meta["link_text"],
        }


async def test_rules_follow_categories_and_call_back_items(site: SiteFactory) -> None:
    server = await site(shop())
    result, items = await run_spider(Shop(start_urls=[server.url("a.test")]), server)
    assert result.finish_reason == "finished"
    assert sorted(server.paths_seen("a.test")) == sorted(
        ["/", "/category/1", "/category/2", "/category/2?page=2", *ITEMS]
    )  # not /about (no rule), not /item/99 (items are not followed), no pdf
    assert sorted((i["path"], i["rule"]) for i in items) == [
        (f"/item/{n}", 1) for n in (1, 2, 3, 4)
    ]
    assert {i["path"]: i["link_text"] for i in items}["/item/3"] == "/item/3"
    # /item/2.pdf: a rule would take it; /files/cat.pdf matches no rule, so it is not counted
    assert result.stats["links_dropped/binary"] == 1


class FirstWins(RuleSpider):
    name = "first-wins"
    rules = (
        Rule(LinkExtractor(allow=r"/item/[12]$"), callback="parse_a"),
        Rule(LinkExtractor(allow=r"/item/\d+"), callback="parse_b"),
        Rule(LinkExtractor(allow=r"/category/1$"), follow=True),
    )

    def parse_a(self, response: Response) -> Any:
        return {"by": "a", "path": response.request.yarl_url.path}

    async def parse_b(self, response: Response) -> Any:  # a coroutine callback
        return [{"by": "b", "path": response.request.yarl_url.path}]


async def test_a_link_goes_to_the_first_rule_that_extracts_it(site: SiteFactory) -> None:
    server = await site(shop())
    result, items = await run_spider(
        FirstWins(start_urls=[server.url("a.test", "/category/1")]), server
    )
    # /item/1 and /item/2 match both item rules: rule 0 has them; rule 1 gets the rest
    assert sorted((i["by"], i["path"]) for i in items) == [("a", "/item/1"), ("a", "/item/2")]
    assert result.stats.get("callback_errors", 0) == 0
    server2 = await site(shop())
    _, items2 = await run_spider(
        FirstWins(start_urls=[server2.url("a.test", "/category/2")]), server2
    )
    assert sorted((i["by"], i["path"]) for i in items2) == [("a", "/item/1"), ("b", "/item/3")]


def test_rule_requests_of_one_page_are_each_link_once() -> None:
    from crawler.testing import make_response

    spider = FirstWins()
    body = html_page("c", ["/item/1", "/item/3", "/item/1", "/category/1", "/item/1#x"])
    requests = list(spider.rule_requests(make_response("http://a.test/category/1", body)))
    assert [(r.url, r.meta["rule"]) for r in requests] == [
        ("http://a.test/item/1", 0),
        ("http://a.test/item/3", 1),
        ("http://a.test/category/1", 2),
    ]
    assert all(r.callback == spider._parse_rule for r in requests)


def test_follow_defaults_as_in_scrapy() -> None:
    assert Rule().follow is True
    assert Rule(callback="parse_item").follow is False
    assert Rule(callback="parse_item", follow=True).follow is True
    assert Rule(follow=False).follow is False


class FollowItems(Shop):
    name = "follow-items"
    rules = (
        Rule(LinkExtractor(allow=r"/category/1$")),
        Rule(LinkExtractor(allow=r"/item/\d+"), callback="parse_item", follow=True),
    )


async def test_follow_true_with_a_callback_applies_the_rules_to_its_pages(
    site: SiteFactory,
) -> None:
    server = await site(shop())
    _, items = await run_spider(
        FollowItems(start_urls=[server.url("a.test", "/category/1")]), server
    )
    assert sorted(i["path"] for i in items) == ["/item/1", "/item/2", "/item/99"]


class Hooks(RuleSpider):
    name = "hooks"
    rules = (
        Rule(
            LinkExtractor(allow=r"/item/"),
            callback="parse_item",
            process_links="drop_nofollow",
            process_request="tag",
        ),
        Rule(LinkExtractor(allow=r"/category/"), process_links=lambda links: links[:1]),
    )

    def drop_nofollow(self, links: list[Link]) -> list[Link]:
        return [link for link in links if not link.nofollow]

    def tag(self, request: Request, response: Response) -> Request | None:
        if request.url.endswith("/item/3"):
            return None  # dropped
        request.meta["from"] = response.request.yarl_url.path
        return request

    def parse_start_url(self, response: Response) -> Any:
        yield {"start": response.request.yarl_url.path}

    def parse_item(self, response: Response) -> Any:
        yield {"path": response.request.yarl_url.path, "from": response.meta["from"]}


async def test_process_links_and_process_request_hooks(site: SiteFactory) -> None:
    pages: dict[str, dict[str, Page]] = {
        "a.test": {
            "/": '<html><body><a href="/item/1">1</a><a href="/item/2" rel="nofollow">2</a>'
            '<a href="/item/3">3</a><a href="/category/a">a</a><a href="/category/b">b</a></body>',
            "/category/a": html_page("A", ["/item/4"]),
            "/category/b": html_page("B"),
            "/item/1": html_page("1"),
            "/item/2": html_page("2"),
            "/item/3": html_page("3"),
            "/item/4": html_page("4"),
        }
    }
    server = await site(pages)
    _, items = await run_spider(Hooks(start_urls=[server.url("a.test")]), server)
    assert {"start": "/"} in items
    assert sorted((i["path"], i["from"]) for i in items if "path" in i) == [
        ("/item/1", "/"),
        ("/item/4", "/category/a"),
    ]
    assert "/category/b" not in server.paths_seen("a.test")
    assert "/item/2" not in server.paths_seen("a.test")  # nofollow, dropped by process_links
    assert "/item/3" not in server.paths_seen("a.test")  # process_request returned None


class Failing(RuleSpider):
    name = "failing"
    rules = (Rule(LinkExtractor(allow=r"/missing"), callback=lambda r: None, errback="failed"),)

    def failed(self, error: Exception) -> Any:
        yield {"failed": error.request.url}  # type: ignore[attr-defined]


async def test_errback_runs_for_a_rule_request_that_fails(site: SiteFactory) -> None:
    server = await site({"a.test": {"/": html_page("home", ["/missing"])}})
    _, items = await run_spider(Failing(start_urls=[server.url("a.test")]), server)
    assert items == [{"failed": server.url("a.test", "/missing")}]


async def test_rule_requests_can_be_stored_in_a_persistent_frontier(
    site: SiteFactory, tmp_path: Path
) -> None:
    server = await site(shop())
    spider = Shop(start_urls=[server.url("a.test")])
    result, items = await run_spider(spider, server, STATE_DIR=str(tmp_path / "state"))
    assert result.finish_reason == "finished"
    assert len(items) == 4


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([Rule(callback="nope")], "rules[0] names callback='nope', but the spider has no method"),
        ([Rule(), Rule(errback=42)], "rules[1] errback must be a method name or a callable"),
        (["/item/"], "rules[0] is str: rules must be Rule("),
    ],
)
def test_bad_rules_fail_when_the_spider_is_made(rules: list[Any], message: str) -> None:
    cls = type("Bad", (RuleSpider,), {"name": "bad", "rules": rules})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        cls()


def test_porting_hints_know_rule_spiders() -> None:
    class Plain(Spider):
        name = "plain"
        rules = (Rule(),)

        def parse_start_url(self, response: Response) -> None:
            return None

    hints = porting_hints(Plain())
    assert len(hints) == 2
    assert any("crawler.spiders.RuleSpider" in h and h.startswith("rules need") for h in hints)
    assert any(h.startswith("parse_start_url()") and "RuleSpider" in h for h in hints)
    assert porting_hints(Shop()) == []

    class Overrides(Shop):
        def parse(self, response: Response) -> Any:  # type: ignore[override]
            return None

    [hint] = porting_hints(Overrides())
    assert "parse() replaces RuleSpider's" in hint and "parse_start_url" in hint


# -- the links spider: -a allow / -a deny --------------------------------------------------------


def test_links_spider_splits_patterns_on_top_level_commas() -> None:
    assert _patterns(r"/a/,/b/\d{1,3}, (x|y),z\,w") == ["/a/", r"/b/\d{1,3}", "(x|y)", "z,w"]
    assert _patterns(["/a,b"]) == ["/a,b"]
    assert _patterns("") == []


async def test_links_spider_allow_and_deny_through_the_cli(tmp_path: Path) -> None:
    pages: dict[str, dict[str, Page]] = {
        "a.test": {
            "/": html_page("Home", ["/docs/1", "/docs/private/2", "/blog/3", "/docs/4.zip"]),
            "/docs/1": html_page("Doc 1", ["/docs/5"]),
            "/docs/5": html_page("Doc 5"),
            "/docs/private/2": html_page("Private"),
            "/blog/3": html_page("Blog"),
        }
    }
    async with SiteServer(pages) as server:
        code, out, err = await crawl(
            "run",
            "links",
            "-a",
            f"start_urls={server.url('a.test')}",
            "-a",
            r"allow=/docs/\d{1,3}$,/nothing",
            "-a",
            "deny=private",
            "-s",
            "RESOLVE=a.test:127.0.0.1",
            "-s",
            "PROGRESS_INTERVAL=0",
            "-s",
            "ROBOTSTXT_OBEY=false",
            "-o",
            "-",
            cwd=tmp_path,
        )
        assert code == 0, err
        seen = sorted(server.paths_seen("a.test"))
    assert seen == ["/", "/docs/1", "/docs/5"]
    assert sorted(json.loads(line)["url"].split(":", 2)[2] for line in out.splitlines()) == [
        f"{server.port}/",
        f"{server.port}/docs/1",
        f"{server.port}/docs/5",
    ]


async def test_links_spider_names_a_bad_regex(tmp_path: Path) -> None:
    code, _, err = await crawl(
        "run", "links", "-a", "start_urls=http://a.test/", "-a", "allow=(oops", cwd=tmp_path
    )
    assert code != 0
    assert "(oops" in err and "invalid" in err, err


def test_this_module_runs_under_the_suite_interpreter() -> None:
    assert sys.version_info >= (3, 11)


def test_rule_requests_keep_url_credentials_on_their_origin_only() -> None:
    from crawler.testing import make_response

    body = html_page("c", ["/item/1", "http://other.test/item/2"])
    source = Request("http://user:pw@a.test/category/1")
    response = make_response("http://a.test/category/1", body, request=source)
    first, other = FirstWins().rule_requests(response)
    assert first.headers is not None and "Authorization" in first.headers
    assert other.headers is None
