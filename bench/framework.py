"""The same job as ``bare.py``, written as an ordinary user of the framework.

A ``crawler.Spider`` whose ``parse`` yields ``{"url", "title", "h1", "price"}`` and a
request per link: ``response.follow(href)`` for every ``<a href>`` (the README's pattern,
config ``"links": "follow"``), ``response.follow_all()`` (``"follow_all"``), or a
``RuleSpider`` whose one rule's ``LinkExtractor`` picks them (``"rules"``, Scrapy's
CrawlSpider way). Items go to a JSON Lines file through
``crawler.pipelines.exporter_for`` when that exists, else through a minimal orjson
pipeline defined here. Settings: ``CONCURRENCY`` and
``CONCURRENCY_PER_HOST`` as the bare loop's, no progress lines,
``RESOLVE`` pointing the site's hosts at loopback. Run by ``run.py``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import orjson
from evloop import loop_option
from evloop import run as run_on
from measure import Window, child_args

LOOP = loop_option()  # --loop asyncio|uvloop
CONFIG, PROFILE = child_args()
# The checkout whose crawler/ and pipelines/ are measured (run.py --root), else this repo.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, CONFIG.get("root") or REPO)

from crawler import Crawler, Settings, Spider  # noqa: E402


def _text(node: Any) -> str | None:
    return node.text() if node is not None else None


def item_of(response: Any) -> dict[str, Any]:
    """The page's item, as bare.py writes it."""
    return {
        "url": response.url,
        "title": _text(response.css_first("title")),
        "h1": _text(response.css_first("h1")),
        "price": _text(response.css_first(".price")),
    }


class BenchSpider(Spider):
    """An item per page, then every link, the README's way: ``response.follow`` per anchor."""

    name = "bench"

    async def parse(self, response):  # type: ignore[no-untyped-def]
        yield item_of(response)
        for a in response.css("a[href]"):
            yield response.follow(a.attributes["href"], callback=self.parse)


class FollowAllSpider(BenchSpider):
    """The same item, then the links through ``response.follow_all()``."""

    async def parse(self, response):  # type: ignore[no-untyped-def]
        yield item_of(response)
        for request in response.follow_all():
            yield request


def rules_spider() -> type[Spider]:
    """The same item, the links picked by a ``RuleSpider`` rule (Scrapy's CrawlSpider way).

    Built on demand: a checkout measured with ``--root`` may predate ``crawler.spiders``.
    """
    from crawler import LinkExtractor
    from crawler.spiders import Rule, RuleSpider

    class RulesSpider(RuleSpider):
        name = "bench"
        rules = (Rule(LinkExtractor(), callback="parse_item", follow=True),)

        def parse_start_url(self, response):  # type: ignore[no-untyped-def]
            return self.parse_item(response)

        def parse_item(self, response):  # type: ignore[no-untyped-def]
            yield item_of(response)

    return RulesSpider


SPIDERS = {"follow": BenchSpider, "follow_all": FollowAllSpider, "rules": rules_spider}


class JsonLinesFile:
    """Minimal JSON Lines pipeline (used only if crawler.pipelines.exporter_for is missing)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Any = None

    def open(self, spider: Spider) -> None:
        self._file = open(self.path, "wb", buffering=1 << 16)

    def process_item(self, item: Any, spider: Spider) -> Any:
        self._file.write(orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE))
        return item

    def close(self, spider: Spider) -> None:
        self._file.close()


def exporter(path: str) -> tuple[Any, str]:
    """(pipeline, description): the measured checkout's exporter if there is one.

    Its ``pipelines/`` folder installs as ``crawler.pipelines``; it is loaded from beside the
    ``crawler`` imported above, so ``--root`` measures that checkout's exporters, not the
    folder an editable install of another checkout maps ``crawler.pipelines`` to.
    """
    folder = os.path.join(crawler_origin(), "pipelines")
    init = os.path.join(folder, "__init__.py")
    spec = importlib.util.spec_from_file_location(
        "crawler.pipelines", init, submodule_search_locations=[folder]
    )
    if not os.path.isfile(init) or spec is None or spec.loader is None:
        return JsonLinesFile(path), "bench/framework.py:JsonLinesFile"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    exporter_for = getattr(module, "exporter_for", None)
    if exporter_for is None:
        return JsonLinesFile(path), "bench/framework.py:JsonLinesFile"
    return exporter_for(path, overwrite=True), "crawler.pipelines.exporter_for"


def crawler_origin() -> str:
    import crawler

    return os.path.dirname(os.path.dirname(os.path.abspath(crawler.__file__)))


async def crawl(config: dict[str, Any]) -> dict[str, Any]:
    spider_class = SPIDERS[config.get("links", "follow")]
    if not isinstance(spider_class, type):
        spider_class = spider_class()
    spider = spider_class(start_urls=config["start_urls"], allowed_domains=config["hosts"])
    settings = Settings.build(
        (
            "bench",
            {
                "CONCURRENCY": config["concurrency"],
                "CONCURRENCY_PER_HOST": config["per_host"],
                "PROGRESS_INTERVAL": 0,
                "RESOLVE": {host: config["ip"] for host in config["hosts"]},
                "LOG_LEVEL": "WARNING",
            },
        )
    )
    pipeline, pipeline_name = exporter(config["out"])
    result = await Crawler(spider, settings, pipelines=[pipeline]).run()
    stats = result.stats
    failures = sum(v for k, v in stats.items() if k.startswith("failures/"))
    return {
        "pages": stats.get("pages", 0),
        "items": stats.get("items", 0),
        "errors": failures + stats.get("callback_errors", 0) + stats.get("internal_errors", 0),
        "finish_reason": result.finish_reason,
        "exporter": pipeline_name,
        "crawler_root": crawler_origin(),
    }


def main() -> None:
    with Window(PROFILE) as window:
        result = run_on(crawl(CONFIG), LOOP)
    window.report(impl="framework", loop=LOOP, **result)


if __name__ == "__main__":
    main()
