"""``RuleSpider``: follow links by rules, as Scrapy's CrawlSpider does.

::

    from crawler import LinkExtractor
    from crawler.spiders import Rule, RuleSpider

    class Books(RuleSpider):
        name = "books"
        start_urls = ["https://books.example/"]
        rules = [
            Rule(LinkExtractor(allow=r"/category/")),  # no callback: followed
            Rule(LinkExtractor(allow=r"/item/\\d+"), callback="parse_item"),
        ]

        def parse_item(self, response):
            yield {"url": response.url, "title": response.css_first("h1").text()}
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from crawler import ConfigError, Link, LinkExtractor, Request, Response, Spider

__all__ = ["Rule", "RuleSpider"]

Hook = str | Callable[..., Any] | None


class Rule:
    """Which links of a page to follow, and what to do with their responses.

    ``link_extractor`` picks the links (default: every crawlable link of the page).
    ``callback`` (a spider method's name, or a callable) handles each response of
    those links; its items and requests are yielded as usual. Then, if ``follow``,
    the rules are applied to that response too. ``follow`` defaults to True when
    there is no callback and False otherwise (as in Scrapy).

    ``process_links(links)`` may filter or change the list of Links; ``process_request(
    request, response)`` may change each Request (return it, or None to drop it);
    ``errback(error)`` runs when a request finally fails. Each is a spider method's
    name or a callable. Pass values to the callback in ``meta`` (set in
    ``process_request``): there is no ``cb_kwargs``.
    """

    __slots__ = (
        "callback",
        "errback",
        "follow",
        "link_extractor",
        "process_links",
        "process_request",
    )

    def __init__(
        self,
        link_extractor: LinkExtractor | None = None,
        callback: Hook = None,
        follow: bool | None = None,
        process_links: Hook = None,
        process_request: Hook = None,
        errback: Hook = None,
    ) -> None:
        self.link_extractor = link_extractor if link_extractor is not None else LinkExtractor()
        self.callback = callback
        self.follow = callback is None if follow is None else follow
        self.process_links = process_links
        self.process_request = process_request
        self.errback = errback

    def __repr__(self) -> str:
        return f"<Rule {self.link_extractor!r} callback={self.callback!r} follow={self.follow}>"


class _Compiled:
    """A Rule with its hooks resolved on one spider (names become bound methods)."""

    __slots__ = ("callback", "errback", "extractor", "follow", "links", "request")

    def __init__(self, rule: Rule, spider: Spider, index: int) -> None:
        if not isinstance(rule, Rule):
            raise ConfigError(
                f"{type(spider).__name__}.rules[{index}] is {type(rule).__name__}:"
                " rules must be Rule(LinkExtractor(...), callback=...) objects"
            )
        self.extractor = rule.link_extractor
        self.callback = _hook(spider, rule.callback, "callback", index)
        self.follow = bool(rule.follow)
        self.links = _hook(spider, rule.process_links, "process_links", index)
        self.request = _hook(spider, rule.process_request, "process_request", index)
        self.errback = _hook(spider, rule.errback, "errback", index)


def _hook(spider: Spider, hook: Hook, what: str, index: int) -> Callable[..., Any] | None:
    if hook is None or callable(hook):
        return hook
    if isinstance(hook, str):
        method = getattr(spider, hook, None)
        if callable(method):
            return method
        raise ConfigError(
            f"{type(spider).__name__}.rules[{index}] names {what}={hook!r},"
            f" but the spider has no method {hook!r}"
        )
    raise ConfigError(
        f"{type(spider).__name__}.rules[{index}] {what} must be a method name or a callable,"
        f" got {type(hook).__name__}"
    )


class RuleSpider(Spider):
    """A spider that follows links by ``rules``, as Scrapy's CrawlSpider.

    For the start URLs' responses (``parse``) and the responses of requests the rules
    made, each rule in order extracts its links; a link goes to the first rule whose
    extractor found it (a later rule never requests it again from that page). The
    start responses also go to ``parse_start_url(response)``, whose output is yielded
    first; do not override ``parse``, which runs the rules.

    Requests made by a rule carry ``meta["rule"]`` (the rule's index) and
    ``meta["link_text"]``, as in Scrapy.
    """

    rules: Sequence[Rule] = ()
    _compiled: tuple[_Compiled, ...] = ()
    _compiled_from: Any = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rules()  # a bad rule fails now, before the crawl

    def _rules(self) -> tuple[_Compiled, ...]:
        rules = self.rules
        if rules is not self._compiled_from:  # compiled again if the spider swapped its rules
            self._compiled = tuple(_Compiled(rule, self, i) for i, rule in enumerate(rules))
            self._compiled_from = rules
        return self._compiled

    def parse_start_url(self, response: Response) -> Any:
        """Items or requests for a start URL's response (default: none); the rules run after."""
        return None

    async def parse(self, response: Response) -> AsyncIterator[Any]:
        """The start responses: ``parse_start_url``'s output, then every rule's links."""
        async for output in _outputs(self.parse_start_url(response)):
            yield output
        for request in self.rule_requests(response):
            yield request

    async def _parse_rule(self, response: Response) -> AsyncIterator[Any]:
        """The callback of every request a rule made: the rule's callback, then its links."""
        rule = self._rules()[response.meta["rule"]]
        if rule.callback is not None:
            async for output in _outputs(rule.callback(response)):
                yield output
        if rule.follow:
            for request in self.rule_requests(response):
                yield request

    def rule_requests(self, response: Response) -> Iterable[Request]:
        """A request for each link of ``response`` some rule picks (the first one that does)."""
        seen: set[str] = set()
        rules = self._rules()
        for index, rule in enumerate(rules):
            links = rule.extractor.extract_links(response)
            if len(rules) > 1:  # a link goes to the first rule that found it
                links = [link for link in links if link.url not in seen]
                seen.update(link.url for link in links)
            if rule.links is not None:
                links = list(rule.links(links) or ())
            for link in links:
                request = self._request(response, link, index, rule)
                if rule.request is not None:
                    request = rule.request(request, response)
                if request is not None:
                    yield request

    def _request(self, response: Response, link: Link, index: int, rule: _Compiled) -> Request:
        # follow(): a plain absolute link.url is taken as it is (crawler/linkjoin.py), and
        # the page's URL credentials go to links of the same origin.
        request = response.follow(link.url, callback=self._parse_rule)
        request.errback = rule.errback  # a callable or None: checked when the rule compiled
        request.meta = {"rule": index, "link_text": link.text}
        return request


async def _outputs(result: Any) -> AsyncIterator[Any]:
    """Each output of a callback's result (async or plain generator, awaitable, list, one)."""
    if inspect.isasyncgen(result):
        async for output in result:
            yield output
        return
    if inspect.isawaitable(result):
        result = await result
    if inspect.isgenerator(result) or isinstance(result, (list, tuple)):
        for output in result:
            yield output
    elif result is not None:
        yield result
