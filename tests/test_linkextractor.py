"""LinkExtractor on real pages, and binary links skipped by follow()/follow_all().

Unit tests build responses with ``make_response``; the crawl tests run a real loopback
site (the ``site`` fixture) and assert what the server saw and what the stats counted.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import SiteFactory, run_spider

from crawler import ConfigError, Link, LinkExtractor, Response, Spider
from crawler.linkextractor import IGNORED_EXTENSIONS, is_binary_path
from crawler.response import ResponseLimits
from crawler.stats import Stats
from crawler.testing import Page, html_page, make_response

PAGE = """<html><head><title>t</title></head><body>
<nav class="menu"><a href="/category/books">Books</a> <a href="/category/music#top">Music</a></nav>
<div id="main">
  <a href="item/1" rel="NoFollow noopener">  Item <b>one</b>  </a>
  <a href="/item/2">Item two</a>
  <a href="/item/2#reviews">Item two, reviews</a>
  <a href="/files/manual.PDF">Manual</a>
  <a href="/pics/cat.jpg">Cat</a>
  <a href="/v1.2/notes">Notes</a>
  <a href="mailto:shop@example.com">Mail</a>
  <a href="javascript:void(0)">JS</a>
  <a href="http://[::1/broken">Broken</a>
  <a href="http://x.test:99999/">Bad port</a>
  <a href="#top">Top</a>
  <a href="   ">Blank</a>
  <a>No href</a>
  <a href="https://shop.example.com/cart">Cart</a>
  <a href="https://notexample.com/">Look-alike</a>
  <area href="/map/north" alt="North">
  <link href="/feed" rel="alternate">
  <img src="/img/logo.png">
</div></body></html>"""


def page(body: str = PAGE, url: str = "https://example.com/shop/list") -> Response:
    return make_response(url, body)


def urls(links: list[Link]) -> list[str]:
    return [link.url for link in links]


def test_default_reads_a_and_area_and_skips_what_cannot_be_crawled() -> None:
    links = LinkExtractor().extract_links(page())
    assert urls(links) == [
        "https://example.com/category/books",
        "https://example.com/category/music",
        "https://example.com/shop/item/1",
        "https://example.com/item/2",
        "https://example.com/v1.2/notes",  # a dot in a folder name is no extension
        "https://shop.example.com/cart",
        "https://notexample.com/",
        "https://example.com/map/north",
    ]
    assert links[1] == Link("https://example.com/category/music", "Music", "top", False)
    assert links[2] == Link("https://example.com/shop/item/1", "Item one", "", True)
    assert links[-1].text == ""  # an <area> has no text


def test_link_is_a_frozen_value() -> None:
    link = Link("https://a.test/", "A")
    with pytest.raises(AttributeError):
        link.url = "https://b.test/"  # type: ignore[misc]
    assert link == Link("https://a.test/", "A", "", False) and hash(link)


def test_base_href_is_honoured() -> None:
    body = '<html><head><base href="https://cdn.test/x/"></head><body><a href="y">y</a></body>'
    assert urls(LinkExtractor().extract_links(page(body))) == ["https://cdn.test/x/y"]


def test_allow_and_deny_match_the_absolute_url() -> None:
    response = page()
    assert urls(LinkExtractor(allow=r"/item/\d+$").extract_links(response)) == [
        "https://example.com/shop/item/1",
        "https://example.com/item/2",
    ]
    # several patterns: any allow, no deny; compiled patterns work too
    extractor = LinkExtractor(
        allow=[r"/category/", re.compile(r"^https://example\.com/item/")], deny=r"music"
    )
    assert urls(extractor.extract_links(response)) == [
        "https://example.com/category/books",
        "https://example.com/item/2",
    ]
    assert urls(
        LinkExtractor(deny=[r"example\.com/(category|item|shop)"]).extract_links(response)
    ) == [
        "https://example.com/v1.2/notes",
        "https://shop.example.com/cart",
        "https://notexample.com/",
        "https://example.com/map/north",
    ]
    assert extractor.matches("https://example.com/category/x")
    assert not extractor.matches("https://example.com/category/music")


def test_domains_include_subdomains_and_nothing_else() -> None:
    response = page()
    only = LinkExtractor(allow_domains="example.com", allow=r"cart|notexample")
    assert urls(only.extract_links(response)) == ["https://shop.example.com/cart"]
    shop = LinkExtractor(allow_domains=["SHOP.example.com."])
    assert urls(shop.extract_links(response)) == ["https://shop.example.com/cart"]
    denied = LinkExtractor(deny_domains=["example.com"])
    assert urls(denied.extract_links(response)) == ["https://notexample.com/"]
    idn = page('<a href="http://xn--mnchen-3ya.de/a">m</a><a href="http://b.de/">b</a>')
    assert urls(LinkExtractor(allow_domains="münchen.de").extract_links(idn)) == [
        "http://xn--mnchen-3ya.de/a"
    ]


def test_restrict_css_reads_only_inside_the_regions() -> None:
    response = page()
    menu = LinkExtractor(restrict_css="nav.menu")
    assert urls(menu.extract_links(response)) == [
        "https://example.com/category/books",
        "https://example.com/category/music",
    ]
    # a region that is itself a link counts; several selectors, in their order
    both = LinkExtractor(restrict_css=['a[href^="/item"]', "nav a:first-child"])
    assert urls(both.extract_links(response)) == [
        "https://example.com/item/2",
        "https://example.com/category/books",
    ]
    assert LinkExtractor(restrict_css="#nothing").extract_links(response) == []


def test_tags_and_attrs_choose_what_is_read() -> None:
    response = page()
    images = LinkExtractor(tags="img", attrs="src", deny_extensions=[])
    assert urls(images.extract_links(response)) == ["https://example.com/img/logo.png"]
    feeds = LinkExtractor(tags=["link"], attrs=["href"])
    assert urls(feeds.extract_links(response)) == ["https://example.com/feed"]
    two = page('<a href="/a" data-url="/b">x</a>')
    assert urls(LinkExtractor(attrs=("href", "data-url")).extract_links(two)) == [
        "https://example.com/a",
        "https://example.com/b",
    ]


def test_deny_extensions_default_list_can_be_replaced_or_turned_off() -> None:
    response = page()
    assert {"pdf", "zip", "jpg", "png", "mp4", "docx", "exe", "tgz"} <= IGNORED_EXTENSIONS
    assert len(IGNORED_EXTENSIONS) >= 70
    everything = urls(LinkExtractor(deny_extensions=[]).extract_links(response))
    assert "https://example.com/files/manual.PDF" in everything
    assert "https://example.com/pics/cat.jpg" in everything
    only_pdf = urls(LinkExtractor(deny_extensions=[".pdf"]).extract_links(response))
    assert "https://example.com/files/manual.PDF" not in only_pdf
    assert "https://example.com/pics/cat.jpg" in only_pdf
    assert is_binary_path("/a/B.Zip") and not is_binary_path("/a.zip/b")
    assert not is_binary_path("/download.php")


def test_unique_keeps_the_first_occurrence() -> None:
    response = page()
    unique = urls(LinkExtractor(allow="/item/2").extract_links(response))
    assert unique == ["https://example.com/item/2"]
    every = LinkExtractor(allow="/item/2", unique=False).extract_links(response)
    assert [(x.url, x.fragment, x.text) for x in every] == [
        ("https://example.com/item/2", "", "Item two"),
        ("https://example.com/item/2", "reviews", "Item two, reviews"),
    ]


def test_canonicalize_and_process_value() -> None:
    response = page(
        '<a href="/s?b=2&a=1">s</a><a href="/s?a=1&b=2">t</a><a href="js:go(\'/x\')">x</a>'
    )
    assert urls(LinkExtractor().extract_links(response)) == [
        "https://example.com/s?b=2&a=1",
        "https://example.com/s?a=1&b=2",
    ]
    canonical = LinkExtractor(canonicalize=True).extract_links(response)
    assert urls(canonical) == ["https://example.com/s?a=1&b=2"]

    def unwrap(value: str) -> str | None:
        found = re.match(r"js:go\('(.*)'\)", value)
        return found.group(1) if found else None

    assert urls(LinkExtractor(process_value=unwrap).extract_links(response)) == [
        "https://example.com/x"
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allow": "(unclosed"}, "allow regex '(unclosed' is invalid"),
        ({"deny": ["ok", "[bad"]}, "deny regex '[bad' is invalid"),
        ({"tags": "a b"}, "tags must be plain names"),
        ({"attrs": []}, "at least one tag and one attribute"),
        ({"allow_domains": [""]}, "allow_domains holds an empty"),
        ({"process_value": "strip"}, "process_value must be callable"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        LinkExtractor(**kwargs)


def test_binary_links_are_counted_once_per_response_and_page() -> None:
    stats = Stats()
    response = page()
    response.limits = ResponseLimits(stats=stats, spider="s")
    LinkExtractor().extract_links(response)
    LinkExtractor(allow="/files/").extract_links(response)  # the same pdf again
    assert len(response.follow_all()) == 8  # a[href] only, duplicates included
    assert stats.counters["links_dropped/binary"] == 2  # manual.PDF and cat.jpg


def test_follow_binary_links_lets_the_default_extractor_keep_them() -> None:
    response = page()
    response.limits = ResponseLimits(skip_binary=False)
    kept = urls(LinkExtractor().extract_links(response))
    assert "https://example.com/files/manual.PDF" in kept
    explicit = urls(LinkExtractor(deny_extensions=["pdf"]).extract_links(response))
    assert "https://example.com/files/manual.PDF" not in explicit  # an explicit list still counts
    assert "https://example.com/pics/cat.jpg" in explicit
    assert len(response.follow_all()) == 10


def test_follow_all_skips_binary_links_and_follow_returns_the_one_asked_for() -> None:
    response = page('<a href="/a.pdf#p2">pdf</a><a href="/b.html">b</a><a href="/c.tar.gz">c</a>')
    assert [r.url for r in response.follow_all()] == ["https://example.com/b.html"]
    # one link named by the caller is a decision: it is returned, not filtered
    assert response.follow("/a.pdf").url == "https://example.com/a.pdf"


def test_extraction_is_capped_per_call_by_max_links() -> None:
    stats = Stats()
    response = page(html_page("many", [f"/{i}" for i in range(10)]))
    response.limits = ResponseLimits(max_links=4, stats=stats)
    assert len(LinkExtractor().extract_links(response)) == 4
    assert stats.counters["links_dropped/too_many"] == 6


# -- in a crawl --------------------------------------------------------------------------------


BINARY_SITE: dict[str, dict[str, Page]] = {
    "a.test": {
        "/": html_page(
            "home",
            ["/doc.pdf", "/photo.JPG", "/song.mp3?x=1", "/page", "/archive.zip#part"],
        ),
        "/page": html_page("page", ["/doc.pdf", "/"]),
        "/doc.pdf": b"%PDF-1.4",
        "/photo.JPG": b"\xff\xd8",
        "/song.mp3?x=1": b"ID3",
        "/archive.zip": b"PK",
    }
}


class FollowAll(Spider):
    name = "follow-all"

    def parse(self, response: Response) -> Any:
        yield {"path": response.request.yarl_url.path_qs}
        yield from response.follow_all()


async def test_a_crawl_never_fetches_binary_links(site: SiteFactory) -> None:
    server = await site(BINARY_SITE)
    result, items = await run_spider(FollowAll(start_urls=[server.url("a.test")]), server)
    assert sorted(server.paths_seen("a.test")) == ["/", "/page"]
    assert sorted(i["path"] for i in items) == ["/", "/page"]
    assert result.stats["links_dropped/binary"] == 5  # the pdf twice: once per page


async def test_follow_binary_links_setting_fetches_them(site: SiteFactory) -> None:
    server = await site(BINARY_SITE)
    spider = FollowAll(start_urls=[server.url("a.test")])
    result, _ = await run_spider(spider, server, FOLLOW_BINARY_LINKS=True)
    assert sorted(server.paths_seen("a.test")) == sorted(
        ["/", "/page", "/doc.pdf", "/photo.JPG", "/song.mp3?x=1", "/archive.zip"]
    )
    assert "links_dropped/binary" not in result.stats
