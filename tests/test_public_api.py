"""The public API is exactly what crawler/__init__.py exports; changing it is a decision.

Names *and* the signatures users write against are pinned: a changed parameter of
``Request``, ``Crawler``, an overridable ``Spider`` method or an extension-point method
fails here first. Plumbing (frontier backends, clocks, stats) lives in its own module.
"""

import inspect
from collections.abc import Callable
from typing import Any

import pytest

import crawler

EXPECTED = {
    # what a user writes
    "Crawler",
    "CrawlResult",
    "DownloaderMiddleware",
    "ItemPipeline",
    "Link",
    "LinkExtractor",
    "RedirectHop",
    "Request",
    "Response",
    "Settings",
    "Spider",
    "compress_body",
    "item_key",
    # what a user raises or catches
    "BadResponse",
    "BlockedAddress",
    "ConfigError",
    "CrawlerError",
    "DropItem",
    "FetchError",
    "HttpError",
    "InvalidRequest",
    "NetworkError",
    "OutputError",
    "ProxyError",
    "RequestTimeout",
    "ResponseTooLarge",
    "SettingsError",
    "SpiderLoadError",
    "TlsError",
    "TooManyRedirects",
}

SIGNATURES: dict[str, tuple[Callable[..., Any], str]] = {
    "Request": (
        crawler.Request,
        "(url: 'str', callback: 'Callable[..., Any] | None' = None, method: 'str' = 'GET', "
        "headers: 'Mapping[str, str] | None' = None, cookies: 'Mapping[str, str] | None' = None, "
        "data: 'Any' = None, json: 'Any' = None, meta: 'dict[str, Any]' = <factory>, "
        "priority: 'int' = 0, dont_filter: 'bool' = False, "
        "errback: 'Callable[..., Any] | None' = None, proxy: 'str | None' = None, "
        "ssl: 'Any' = None, allow_redirects: 'bool' = True, depth: 'int' = 0, *, "
        "render: 'bool' = False) -> None",
    ),
    "Crawler": (
        crawler.Crawler,
        "(spider: 'Spider', settings: 'Settings | None' = None, *, "
        "pipelines: 'Sequence[Any]' = (), frontier: 'Frontier | None' = None, "
        "clock: 'Clock | None' = None, restart: 'bool' = False, "
        "middlewares: 'Sequence[DownloaderMiddleware]' = (), "
        "conditional: 'DownloaderMiddleware | None' = None, "
        "session_hooks: 'Sequence[SessionHook]' = (), collect_items: 'bool' = False, "
        "http_cache: 'HttpCache | None' = None, progress: 'ProgressView | None' = None) -> 'None'",
    ),
    "Crawler.run": (crawler.Crawler.run, "(self) -> 'CrawlResult'"),
    "Spider": (crawler.Spider, "(**kwargs: 'Any') -> 'None'"),
    "Spider.parse": (crawler.Spider.parse, "(self, response: 'Response') -> 'Any'"),
    "Spider.start": (crawler.Spider.start, "(self) -> 'AsyncIterator[Request]'"),
    "Spider.open": (crawler.Spider.open, "(self) -> 'None'"),
    "Spider.close": (crawler.Spider.close, "(self, reason: 'str') -> 'None'"),
    "Response.follow": (
        crawler.Response.follow,
        "(self, href: 'str | LexborNode | URL', **kwargs: 'Any') -> 'Request'",
    ),
    "Response.follow_all": (
        crawler.Response.follow_all,
        "(self, hrefs: 'Iterable[str | LexborNode] | None' = None, css: 'str' = 'a[href]', "
        "**kwargs: 'Any') -> 'list[Request]'",
    ),
    "LinkExtractor": (
        crawler.LinkExtractor,
        "(allow: 'Patterns' = (), deny: 'Patterns' = (), *, "
        "allow_domains: 'str | Iterable[str]' = (), deny_domains: 'str | Iterable[str]' = (), "
        "restrict_css: 'str | Iterable[str]' = (), tags: 'str | Iterable[str]' = ('a', 'area'), "
        "attrs: 'str | Iterable[str]' = ('href',), "
        "deny_extensions: 'Iterable[str] | None' = None, unique: 'bool' = True, "
        "canonicalize: 'bool' = False, "
        "process_value: 'Callable[[str], str | None] | None' = None) -> 'None'",
    ),
    "LinkExtractor.extract_links": (
        crawler.LinkExtractor.extract_links,
        "(self, response: 'Response') -> 'list[Link]'",
    ),
    "Link": (
        crawler.Link,
        "(url: 'str', text: 'str' = '', fragment: 'str' = '', nofollow: 'bool' = False) -> None",
    ),
    "DownloaderMiddleware.handle": (
        crawler.DownloaderMiddleware.handle,
        "(self, request: 'Request', call_next: 'Handler') -> 'Response'",
    ),
    "ItemPipeline.process_item": (
        crawler.ItemPipeline.process_item,
        "(self, item: 'Any', spider: 'Any') -> 'Any'",
    ),
    "item_key": (crawler.item_key, "() -> 'str | None'"),
    "compress_body": (
        crawler.compress_body,
        "(data: 'bytes | str', encoding: 'str' = 'gzip') -> 'tuple[bytes, dict[str, str]]'",
    ),
    "Settings.build": (
        crawler.Settings.build,
        "(*layers: 'tuple[str, Mapping[str, Any]]') -> 'Settings'",
    ),
    "CrawlResult": (
        crawler.CrawlResult,
        "(finish_reason: 'str', stats: 'dict[str, Any]', "
        "error: 'BaseException | None' = None, items: 'list[Any]' = <factory>) -> None",
    ),
    "FetchError": (crawler.FetchError, "(message: 'str', url: 'str' = '') -> 'None'"),
    "HttpError": (
        crawler.HttpError,
        "(message: 'str', url: 'str' = '', response: 'object' = None) -> 'None'",
    ),
    "OutputError": (crawler.OutputError, "(message: 'str', output: 'str' = '') -> 'None'"),
}


def test_all_is_pinned() -> None:
    assert set(crawler.__all__) == EXPECTED
    assert len(crawler.__all__) == len(EXPECTED), "a name is listed twice in __all__"


def test_every_public_name_exists_and_is_documented() -> None:
    for name in crawler.__all__:
        obj = getattr(crawler, name)
        assert obj.__doc__, f"crawler.{name} has no docstring"
        assert obj.__doc__ != Exception.__doc__, f"crawler.{name} only inherits a docstring"


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature_is_pinned(name: str) -> None:
    obj, expected = SIGNATURES[name]
    assert str(inspect.signature(obj)) == expected


@pytest.mark.parametrize(
    "method",
    [
        crawler.Spider.open,
        crawler.Spider.close,
        crawler.DownloaderMiddleware.handle,
        crawler.ItemPipeline.process_item,
        crawler.Crawler.run,
    ],
)
def test_extension_methods_are_async(method: Callable[..., Any]) -> None:
    assert inspect.iscoroutinefunction(method)


def test_fetch_errors_share_one_root() -> None:
    for name in crawler.__all__:
        obj = getattr(crawler, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, crawler.CrawlerError), name


def test_plumbing_stays_reachable_from_its_module() -> None:
    from crawler.clock import Clock, MonotonicClock
    from crawler.frontier import Frontier, FrontierCounts, Lease, MemoryFrontier, PolitenessPolicy
    from crawler.stats import Stats
    from crawler.testing import ManualClock

    for obj in (Clock, MonotonicClock, Frontier, FrontierCounts, Lease, MemoryFrontier):
        assert obj.__doc__
    for obj in (PolitenessPolicy, Stats, ManualClock):
        assert obj.__doc__
    assert not hasattr(crawler.errors, "CallbackError")


def test_built_in_spiders_and_pipelines_use_only_the_public_api() -> None:
    """``crawler.spiders`` and ``crawler.pipelines`` import ``crawler``'s exports only.

    The one exception is ``crawler.loglines.get_logger``: a logger with the filter that
    keeps credentials (proxy passwords, Authorization, cookies) out of log lines.
    """
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    allowed = {"crawler", "crawler.loglines"}
    for path in sorted([*root.glob("spiders/*.py"), *root.glob("pipelines/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                module = node.module
                if module == "crawler" or module.startswith("crawler."):
                    assert module in allowed, f"{path.name} imports {module}"
                    if module == "crawler":
                        for alias in node.names:
                            assert alias.name in crawler.__all__, f"{path.name}: {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("crawler."), f"{path.name}: {alias.name}"
