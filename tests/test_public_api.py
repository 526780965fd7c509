"""The public API is exactly what crawler/__init__.py exports; changing it is a decision."""

import crawler

EXPECTED = {
    "Clock",
    "CrawlResult",
    "Crawler",
    "CrawlerError",
    "DownloaderMiddleware",
    "DropItem",
    "FetchError",
    "Frontier",
    "FrontierCounts",
    "HttpError",
    "InvalidRequest",
    "ItemPipeline",
    "Lease",
    "MemoryFrontier",
    "MonotonicClock",
    "PolitenessPolicy",
    "RedirectHop",
    "Request",
    "Response",
    "Settings",
    "SettingsError",
    "Spider",
    "SpiderLoadError",
    "Stats",
    "compress_body",
    "item_key",
}


def test_all_is_pinned() -> None:
    assert set(crawler.__all__) == EXPECTED


def test_every_public_name_exists_and_is_documented() -> None:
    for name in crawler.__all__:
        obj = getattr(crawler, name)
        assert obj.__doc__, f"crawler.{name} has no docstring"
