"""A way in for Scrapy spiders: Scrapy's names read as ours, and a hint for every other one.

A spider ported from Scrapy keeps working where the meaning is the same
(``start_requests()``, ``custom_settings``, ``download_delay``, ``closed()``...),
and each Scrapy-only name is reported once, at crawl start, with what to write
instead (:func:`log_porting_hints`): nothing a Scrapy spider defines does
nothing silently. The guide is docs/coming-from-scrapy.md.

Nothing here runs per request: :mod:`crawler.spider` adapts a class once, when it
is defined; the engine logs the hints once; :mod:`crawler.response` calls in only
for parsel selectors and on errors. parsel is imported only when first used.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest, SettingsError
from .loglines import get_logger, short_url
from .scrapy_names import SCRAPY_SAME_VALUE, SCRAPY_SETTINGS

if TYPE_CHECKING:
    from parsel import Selector

    from .spider import Spider

__all__ = [
    "PARSEL_MISSING",
    "all_statuses",
    "call_closed",
    "check_request_kwargs",
    "css_error",
    "log_porting_hints",
    "make_selector",
    "porting_hints",
    "request_kwargs_error",
    "selector_href",
    "spider_settings",
    "start_requests",
    "user_defined",
    "user_method",
]

logger = get_logger("crawler.porting")

PARSEL_MISSING = (
    "response.sel and response.xpath() need parsel, which is not installed:"
    " pip install 'crawler[parsel]'"
)

# Spider attributes Scrapy reads as settings: they are read as ours (the spider's own
# `settings` still wins) when set on the class.
_ATTRIBUTE_SETTINGS = {
    "download_delay": "DOWNLOAD_DELAY",
    "max_concurrent_requests": "CONCURRENCY_PER_HOST",
    "user_agent": "USER_AGENT",
    "download_timeout": "REQUEST_TIMEOUT",
    "download_maxsize": "MAX_RESPONSE_SIZE",
}

# Scrapy settings in custom_settings that mean exactly what ours mean: renamed.
_SAME_MEANING = {name: SCRAPY_SETTINGS[name] for name in SCRAPY_SAME_VALUE}

# Scrapy-only names that nothing here reads: the hint says what to write instead.
_UNREAD = {
    "rules": "rules need a CrawlSpider: on a plain Spider they do nothing; subclass"
    " crawler.spiders.RuleSpider (from crawler.spiders import Rule, RuleSpider;"
    " from crawler import LinkExtractor)",
    "parse_start_url": "parse_start_url() is CrawlSpider's hook and is never called on a plain"
    " Spider: the start responses go to parse(); subclass crawler.spiders.RuleSpider",
    "http_user": "http_user/http_pass are not read here: put the credentials in the start URL"
    " (http://user:pass@host/, sent to that origin only) or in headers = {'Authorization': ...}",
    "from_crawler": "from_crawler() is never called here (spiders get no crawler object):"
    " do set-up in __init__(self, **kwargs) or in async def open(self)",
    "update_settings": "update_settings() is never called here: put settings in settings = {...}",
}
_UNREAD["http_pass"] = _UNREAD["http_user"]

_ALL_STATUSES = tuple(range(100, 600))


def user_defined(cls: type, name: str) -> bool:
    """True if ``name`` comes from a user's class, not from one of ours (``crawler.*``)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return not klass.__module__.startswith("crawler.")
    return False


def user_method(cls: type, name: str) -> bool:
    """True if ``name`` is a method (anything callable) of a user's class."""
    return user_defined(cls, name) and callable(getattr(cls, name))


def spider_settings(cls: type, written: Mapping[str, Any]) -> dict[str, Any] | None:
    """A spider class's settings with Scrapy's names folded in (None: it uses none).

    Lowest first: the Scrapy attributes (``download_delay``...), ``custom_settings``
    (its Scrapy names that mean the same renamed), then ``written``: the
    ``settings`` the user wrote, which wins on every name both give.
    """
    custom = getattr(cls, "custom_settings", None) if user_defined(cls, "custom_settings") else None
    attributes = {
        setting: getattr(cls, attr)
        for attr, setting in _ATTRIBUTE_SETTINGS.items()
        if user_defined(cls, attr)
    }
    if custom is None and not attributes:
        return None
    if custom is not None and not isinstance(custom, Mapping):
        raise SettingsError(
            f"{cls.__name__}.custom_settings must be a dict of settings,"
            f" got {type(custom).__name__}: write settings = {{'NAME': value}}"
        )
    return {**_renamed(custom or {}), **attributes, **written}


def _renamed(custom: Mapping[str, Any]) -> dict[str, Any]:
    """``custom_settings`` with the Scrapy names that mean the same as ours renamed."""
    settings = {_SAME_MEANING.get(str(k), str(k)): v for k, v in custom.items()}
    pipelines = settings.pop("ITEM_PIPELINES", None)
    if isinstance(pipelines, Mapping):  # {path: order} -> paths in order (None disables)
        ordered = sorted((order, path) for path, order in pipelines.items() if order is not None)
        settings["PIPELINES"] = [path for _, path in ordered]
    elif pipelines is not None:
        settings["ITEM_PIPELINES"] = pipelines  # refused by name, with ours, by Settings
    return settings


def all_statuses(cls: type) -> tuple[int, ...] | None:
    """Every status, for a class with Scrapy's ``handle_httpstatus_all = True`` (else None)."""
    if user_defined(cls, "handle_httpstatus_all") and cls.handle_httpstatus_all:  # type: ignore[attr-defined]
        return _ALL_STATUSES
    return None


async def start_requests(spider: Any) -> AsyncIterator[Any]:
    """The requests of Scrapy's ``start_requests()``: a generator, async generator or list."""
    result = spider.start_requests()
    if inspect.isasyncgen(result):
        async for request in result:
            yield request
        return
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return
    try:
        requests = iter(result)
    except TypeError:
        raise TypeError(
            f"{type(spider).__name__}.start_requests() returned {type(result).__name__}:"
            " yield Requests (or return a list of them)"
        ) from None
    for request in requests:
        yield request


async def call_closed(spider: Any, reason: str) -> None:
    """Call Scrapy's ``closed(reason)`` hook (sync or async)."""
    result = spider.closed(reason)
    if inspect.isawaitable(result):
        await result


def porting_hints(spider: Spider) -> list[str]:
    """One line per Scrapy-only name ``spider`` uses: what it does here, what to write instead."""
    cls = type(spider)
    hints = []
    base = _spider_class()
    own_start = cls.start is not base.start
    if user_method(cls, "start_requests"):
        hints.append(
            "start_requests() is never called because start() is defined: move its requests"
            " into start()"
            if own_start
            else "start_requests() is Scrapy's name; define async def start(self) instead"
            " (its requests are crawled meanwhile)"
        )
    if user_defined(cls, "custom_settings"):
        hints.append(_custom_settings_hint(cls))
    merged = cls.settings
    instance = vars(spider)
    for attr, setting in _ATTRIBUTE_SETTINGS.items():
        if attr in instance:
            hints.append(
                f"{attr} set on the spider object (-a {attr}=...) is not read:"
                f" use -s {setting}=VALUE"
                f" or settings = {{{setting!r}: ...}}"
            )
        elif user_defined(cls, attr):
            value = getattr(cls, attr)
            used = "read as it" if merged.get(setting) == value else "settings wins"
            hints.append(
                f"{attr} = {value!r:.40} is Scrapy's name for {setting} ({used});"
                f" write settings = {{{setting!r}: {value!r:.40}}}"
            )
    if all_statuses(cls) is not None:
        hints.append(
            "handle_httpstatus_all is Scrapy's name: every status reaches the callbacks"
            " (handle_httpstatus_list covers 100-599); prefer handle_httpstatus_list = [...]"
        )
    if user_method(cls, "closed"):
        hints.append(
            "closed() is never called because close() is defined: move its code into close()"
            if cls.close is not base.close
            else "closed(reason) is Scrapy's name: it is called at the end; rename it to"
            " async def close(self, reason)"
        )
    if not own_start and (user_defined(cls, "sitemap_urls") or user_defined(cls, "sitemap_rules")):
        hints.append(
            "sitemap_urls/sitemap_rules need a sitemap spider: subclass"
            " crawler.spiders.sitemap.SitemapSpider (crawl run sitemap -a sitemap_urls=...)"
        )
    if _read_by_ours(cls, "rules") and user_method(cls, "parse"):
        hints.append(
            "parse() replaces RuleSpider's, which applies the rules: the start responses skip"
            " them; put start-page code in parse_start_url(self, response) instead"
        )
    seen = set()
    for attr, hint in _UNREAD.items():
        if _read_by_ours(cls, attr):  # a base class of ours reads it (RuleSpider: rules)
            continue
        if hint not in seen and (user_defined(cls, attr) or attr in instance):
            seen.add(hint)
            hints.append(hint)
    return hints


def log_porting_hints(spider: Spider) -> None:
    """Log :func:`porting_hints` as warnings, one line each (the engine calls it once)."""
    for hint in porting_hints(spider):
        logger.warning("[%s] %s", spider.name, hint)


def _read_by_ours(cls: type, name: str) -> bool:
    """True if one of our classes in ``cls``'s bases defines ``name``: it reads it."""
    return any(
        name in klass.__dict__ and klass.__module__.startswith("crawler.") for klass in cls.__mro__
    )


def _custom_settings_hint(cls: Any) -> str:
    custom = cls.custom_settings
    names = {**_SAME_MEANING, "ITEM_PIPELINES": "PIPELINES"}
    renamed = [f"{k} as {names[k]}" for k in custom if k in names]
    # What the spider's settings overrode is what differs in the merged result.
    merged = cls.settings
    wins = sorted(
        name for name, value in _renamed(custom).items() if name in merged and merged[name] != value
    )
    hint = "custom_settings is Scrapy's name: read as settings"
    if renamed:
        hint += f" ({', '.join(renamed)})"
    if wins:
        hint += f"; merged with settings, which wins on {', '.join(wins)}"
    return hint + "; rename it to settings"


def _spider_class() -> type[Spider]:
    from .spider import Spider  # here: spider.py imports this module

    return Spider


# -- requests ----------------------------------------------------------------------------


def request_kwargs_error(kwargs: Mapping[str, Any], url: str) -> str | None:
    """The error line for arguments ``Request`` does not take (None: they are all known)."""
    from .request import Request

    known = [name for name in Request.__dataclass_fields__ if not name.startswith("_")]
    unknown = sorted(set(kwargs) - set(known))
    if not unknown:
        return None
    if "cb_kwargs" in unknown:
        return (
            f"Request for {short_url(url)} got cb_kwargs, which is Scrapy's: pass the values in"
            " meta={...} and read them from response.meta in the callback"
        )
    if "xpath" in unknown:
        return (
            f"follow_all(xpath=...) is Scrapy's: pass the selected links instead,"
            f" follow_all(response.xpath(...)) (parsel), or use css=... (on {short_url(url)})"
        )
    name = unknown[0]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"Request takes {', '.join(known[1:])}"
    return f"Request for {short_url(url)} got an unknown argument {name!r}: {hint}"


def check_request_kwargs(kwargs: Mapping[str, Any], url: str) -> None:
    """Raise InvalidRequest if ``kwargs`` holds an argument ``Request`` does not take."""
    error = request_kwargs_error(kwargs, url)
    if error is not None:
        raise InvalidRequest(error)


# -- selectors ---------------------------------------------------------------------------

_PSEUDO = re.compile(r"::(?:attr\([^)]*\)|text)")


def css_error(selector: Any) -> str:
    """Why selectolax cannot parse ``selector``, and the form it takes instead."""
    shown = f"{selector!r:.200}"
    if not isinstance(selector, str):
        return f"CSS selector must be a str, got {type(selector).__name__} {shown}"
    parsel = f"or response.sel.css({shown}) with parsel (pip install 'crawler[parsel]')"
    plain = _PSEUDO.sub("", selector) or "*"
    if "::attr(" in selector:
        name = re.search(r"::attr\(([^)]*)\)", selector)
        attr = name.group(1).strip(" '\"") if name else "href"
        return (
            f"cannot parse CSS selector {shown}: ::attr() is Scrapy's; select the elements"
            f" with response.css({plain!r}) and read node.attributes[{attr!r}], {parsel}"
        )
    if "::text" in selector:
        return (
            f"cannot parse CSS selector {shown}: ::text is Scrapy's; select the elements"
            f" with response.css({plain!r}) and read node.text(), {parsel}"
        )
    if ":contains(" in selector:
        return (
            f"cannot parse CSS selector {shown}: :contains() is not CSS; selectolax writes it"
            f' :lexbor-contains("text") (add i for any case), {parsel}'
        )
    return f"cannot parse CSS selector {shown}: it is not CSS selectolax (Lexbor) understands"


def make_selector(text: str, url: str, content_type: str | None) -> Selector:
    """A parsel Selector over ``text`` (links resolve against ``url``); parsel imported now."""
    try:
        from parsel import Selector
    except ImportError:
        raise ModuleNotFoundError(PARSEL_MISSING, name="parsel") from None
    kind = (content_type or "").lower()
    if "html" in kind:
        type_: str | None = "html"
    elif "xml" in kind:
        type_ = "xml"
    else:
        type_ = None  # parsel tells JSON from HTML by itself
    return Selector(text=text, type=type_, base_url=url)


def selector_href(link: Any, page: str) -> str:
    """The URL a parsel Selector stands for: an attribute/text value, or an <a>/<link> href."""
    if isinstance(link, list):  # a SelectorList
        raise InvalidRequest(
            f"follow() takes one link, got a list of {len(link)} on {short_url(page)}:"
            " use follow_all(...) or pick one (.get(), [0])"
        )
    root: Any = link.root if type(link).__module__.startswith("parsel") else None
    if isinstance(root, str):  # e.g. response.xpath("//a/@href")[0]
        return root.strip()
    tag = getattr(root, "tag", None)
    if tag is None:
        raise InvalidRequest(
            f"a link must be a URL string, an <a> node or a parsel Selector of one,"
            f" got {type(link).__name__} {link!r:.80} on {short_url(page)}"
        )
    if tag not in ("a", "link"):
        raise InvalidRequest(f"only <a> and <link> selectors can be followed, got <{tag}>")
    href = root.get("href")
    if href is None:
        raise InvalidRequest(f"<{tag}> has no href attribute on {short_url(page)}")
    return str(href).strip()
