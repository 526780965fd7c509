"""The engine end to end: redirects (history, de-duplication, offsite targets).

Every site is a ``SiteServer`` whose host names (a.test, b.test, ...) the
``RESOLVE`` setting points at 127.0.0.1; the assertions read what the server
really received (``server.requests``), the items the crawl produced and the
stats. No test sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from conftest import SiteFactory, run_spider
from engine_peers import EVIL, LinkSpider, redirect
from yarl import URL

from crawler import Response
from crawler.testing import html_page


async def test_redirect_records_history_and_the_target_is_not_fetched_again(
    site: SiteFactory,
) -> None:
    server = await site(
        {
            "a.test": {
                "/": html_page("home", ["/old"]),
                "/old": redirect("/new"),
                "/new": html_page("new", ["/next"]),
                "/next": html_page("next", ["/new", "/old"]),  # both already seen
            }
        }
    )

    class HistorySpider(LinkSpider):
        async def parse(self, response: Response) -> AsyncIterator[Any]:
            async for output in super().parse(response):
                if isinstance(output, dict):
                    output["history"] = [(h.url, h.status) for h in response.history]
                    output["redirect_urls"] = response.redirect_urls
                    output["request_url"] = response.request.url
                yield output

    result, items = await run_spider(HistorySpider(start_urls=[server.url("a.test")]), server)
    assert server.paths_seen("a.test") == ["/", "/old", "/new", "/next"]
    redirected = [item for item in items if item["history"]]
    assert len(redirected) == 1
    assert redirected[0]["url"] == server.url("a.test", "/new")
    assert redirected[0]["request_url"] == server.url("a.test", "/old")
    assert redirected[0]["history"] == [(server.url("a.test", "/old"), 302)]
    assert redirected[0]["redirect_urls"] == [
        server.url("a.test", "/old"),
        server.url("a.test", "/new"),
    ]
    assert len(items) == 3
    assert result.stats["redirects/302"] == 1
    assert result.stats["duplicates"] == 2


async def test_a_redirect_to_an_already_queued_page_gives_one_item(site: SiteFactory) -> None:
    server = await site(
        {
            "a.test": {
                "/": html_page("home", ["/r", "/target"]),
                "/r": redirect("/target", 301),
                "/target": html_page("target"),
            }
        }
    )
    result, items = await run_spider(
        LinkSpider(start_urls=[server.url("a.test")]), server, CONCURRENCY=1
    )
    assert [URL(item["url"]).path for item in items].count("/target") == 1
    assert result.stats["duplicates/redirect"] == 1


async def test_a_redirect_to_an_offsite_host_is_not_followed(site: SiteFactory) -> None:
    server = await site(
        {
            "a.test": {"/": html_page("home", ["/away"]), "/away": redirect(f"{EVIL}/")},
            "evil.test": {"/": html_page("evil")},
        }
    )
    spider = LinkSpider(start_urls=[server.url("a.test")], allowed_domains=["a.test"])
    result, items = await run_spider(spider, server)
    assert "evil.test" not in {r.host for r in server.requests}
    assert all(URL(item["url"]).host == "a.test" for item in items)
    assert result.stats["offsite"] == 1
    assert result.stats["offsite/redirect"] == 1
