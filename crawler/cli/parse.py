"""``crawl parse URL --spider NAME``: run one callback on one page and show what it produced."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import orjson

from ..httpcache import HttpCache
from ..outputs import OffsitePolicy
from ..request import Request
from ..spider import Spider
from ..testing.callbacks import CallbackOutput, run_callback
from .oneshot import Fetched, OneShot, status_handled
from .oneshot_setup import (
    exit_with,
    fetch_failure,
    load_setup,
    oneshot_options,
    run_crawl,
    to_request,
    user_traceback,
)

__all__ = ["parse_command"]


@dataclass
class _Node:
    """One request of the parse tree: its level (1 = the URL) and position, for printing."""

    request: Request
    level: int
    path: tuple[int, ...]
    callback: Callable[[Any], Any] | None = None
    fetched: Fetched | None = None
    output: CallbackOutput = field(default_factory=CallbackOutput)
    error: BaseException | None = None
    skipped: str = ""  # why the callback did not run on the response


class _ParseRun:
    """Fetches the URL, runs the callbacks, follows their requests ``depth - 1`` levels."""

    def __init__(self, spider: Spider, depth: int) -> None:
        self.spider = spider
        self.depth = depth
        self.offsite = OffsitePolicy(spider.allowed_domains)
        self.nodes: dict[int, _Node] = {}  # by id() of the request; the node keeps it alive

    def add(self, request: Request, level: int, path: tuple[int, ...]) -> None:
        """Track a request that is about to be fetched."""
        self.nodes[id(request)] = _Node(request, level, path)

    async def on_fetched(self, fetched: Fetched) -> Sequence[Request]:
        """Run the request's callback (or errback) and return what to follow next."""
        node = self.nodes[id(fetched.request)]
        node.fetched = fetched
        request = fetched.request
        response = fetched.response
        if response is not None:
            if not status_handled(response.status, request, self.spider):
                node.skipped = (
                    f"HTTP {response.status} is not in the spider's handle_httpstatus_list:"
                    " a crawl would not call the callback"
                )
                return ()
            node.callback = request.callback or self.spider.parse
            await self._run(node, node.callback, response)
        elif fetched.error is not None and request.errback is not None:
            node.callback = request.errback
            await self._run(node, request.errback, fetched.error)
        if node.level >= self.depth:
            return ()
        follow = [r for r in node.output.requests if self.offsite.allows(r.host)]
        for index, child in enumerate(follow):
            self.add(child, node.level + 1, (*node.path, index))
        return follow

    async def _run(self, node: _Node, callback: Callable[[Any], Any], arg: Any) -> None:
        try:
            await run_callback(callback, arg, output=node.output)
        except Exception as exc:  # shown with its traceback; what came before is kept
            node.error = exc

    def ordered(self) -> list[_Node]:
        """Every node, level by level, in the order the callbacks produced them."""
        return sorted(self.nodes.values(), key=lambda n: (n.level, n.path))


def _callback_name(callback: Callable[..., Any] | None) -> str:
    if callback is None:
        return "parse"
    return getattr(callback, "__name__", repr(callback))


def _json(item: Any) -> str:
    """An item as indented JSON (dataclasses, attrs, pydantic too; odd values as str)."""
    from itemadapter import ItemAdapter

    data = ItemAdapter(item).asdict() if not isinstance(item, dict) else item
    return orjson.dumps(
        data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str
    ).decode()


def _print(run: _ParseRun) -> bool:
    """Print every level; True if a callback raised."""
    failed = False
    level = 0
    for node in run.ordered():
        if node.level != level:
            level = node.level
            count = sum(1 for n in run.nodes.values() if n.level == level)
            click.echo(f"# level {level} ({count} request{'s' if count != 1 else ''})")
        fetched = node.fetched
        request = node.request
        if fetched is None or fetched.response is None:
            why = fetch_failure(fetched) if fetched is not None else "not fetched"
            click.echo(f"{request.method} {request.url}: {why}")
            if node.callback is None:
                click.echo("")
                continue
        else:
            name = _callback_name(node.callback) if node.callback else "-"
            status = fetched.response.status
            click.echo(f"{request.method} {request.url} -> {status}, callback {name}")
        if node.skipped:
            click.echo(f"  {node.skipped}\n")
            continue
        output = node.output
        click.echo(f"  items ({len(output.items)}):")
        for item in output.items:
            click.echo("    " + _json(item).replace("\n", "\n    "))
        click.echo(f"  requests ({len(output.requests)}):")
        for child in output.requests:
            offsite = "" if run.offsite.allows(child.host) else "  (offsite: not followed)"
            name = _callback_name(child.callback)
            click.echo(f"    {child.method} {child.url} -> {name}{offsite}")
        if node.error is not None:
            failed = True
            where = _callback_name(node.callback)
            click.echo(
                f"error: {where} raised {type(node.error).__name__}: {node.error} on {request.url}",
                err=True,
            )
            click.echo(user_traceback(node.error), err=True)
        click.echo("")
    return failed


def _callback(spider: Spider, name: str) -> Callable[[Any], Any]:
    """The spider's method ``name`` (exit 2 naming the callbacks it has if there is none)."""
    method = getattr(spider, name, None) if not name.startswith("_") else None
    if method is None or not callable(method) or isinstance(method, type):
        base = set(dir(Spider))
        found = sorted(
            attr
            for attr, value in inspect.getmembers(type(spider), callable)
            if not attr.startswith("_") and attr not in base and not isinstance(value, type)
        )
        known = ", ".join(["parse", *found]) if found else "parse"
        exit_with(
            "EXIT_CONFIG",
            f"spider {type(spider).__name__} has no callback {name!r} (it has: {known});"
            " pass -c NAME of one of its methods",
        )
    return method  # type: ignore[no-any-return]


@click.command("parse")
@click.argument("url")
@click.option(
    "-c",
    "--callback",
    "callback_name",
    default="parse",
    show_default=True,
    help="The spider method to run on the page.",
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Follow the requests the callback produced this many levels in all (1 = none).",
)
@click.option(
    "-a", "arguments", multiple=True, metavar="NAME=VALUE", help="Spider argument, as for run."
)
@click.option(
    "--record",
    "record_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Record every response fetched into the HTTP cache FILE (replay with the cache).",
)
@oneshot_options(spider_required=True)
def parse_command(
    url: str,
    callback_name: str,
    depth: int,
    arguments: tuple[str, ...],
    record_file: str | None,
    spider_target: str,
    set_settings: tuple[str, ...],
    no_robots: bool,
    log_level: str,
) -> None:
    """Run a spider's callback on URL and print the items and requests it produced.

    Items are printed as JSON, requests as METHOD URL -> CALLBACK. The page is
    fetched as the crawl would fetch it (robots.txt, headers, cookies, retries).
    A callback that raises is shown with its traceback and exits 10.

    \b
    Examples:
      crawl parse https://books.toscrape.com/ --spider books
      crawl parse https://shop.test/p/1 --spider shop.py -c parse_product
      crawl parse https://shop.test/ --spider shop --depth 2 -a category=shoes
    """
    from . import EXIT_NOTHING_FETCHED, EXIT_USER_CODE

    setup = load_setup(spider_target, set_settings, no_robots, log_level, arguments)
    spider = setup.spider
    assert spider is not None  # --spider is required
    callback = _callback(spider, callback_name)
    request = to_request(url, callback=callback)
    cache = HttpCache(Path(record_file), mode="record") if record_file else None
    run = _ParseRun(spider, depth)
    run.add(request, 1, (0,))
    oneshot = OneShot(setup.settings, spider, open_spider=True, http_cache=cache)
    run_crawl(oneshot.crawl([request], run.on_fetched), setup.settings.LOOP)
    root = run.nodes[id(request)]
    fetched = root.fetched
    if fetched is None or (fetched.response is None and root.callback is None):
        exit_with(
            "EXIT_NOTHING_FETCHED", fetch_failure(fetched) if fetched else f"cannot fetch {url}"
        )
    failed = _print(run)  # an errback that ran on the URL's failure is shown too
    if fetched.response is None:
        raise SystemExit(EXIT_NOTHING_FETCHED)
    raise SystemExit(EXIT_USER_CODE if failed else 0)
