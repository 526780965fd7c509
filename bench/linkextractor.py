"""Benchmark: µs per link of ``LinkExtractor.extract_links`` against ``response.follow_all()``.

    .venv/bin/python bench/linkextractor.py [--links 30 100 300] [--pages 200] [--repeat 5]

For each page size, ``--pages`` distinct generated pages (every page has its own URLs,
so yarl's parse caches do not flatter either side) are parsed ahead of time; then each
variant runs over all of them on fresh Response objects, ``--repeat`` times, and the
best CPU time (process time) per link is printed. The page parse itself is not timed
(every variant shares it).
Variants:

* ``follow_all()``: the built-in link-following hot path (Requests);
* ``extract_links()``: a default LinkExtractor (Links);
* ``extract_links(allow)``: with one ``allow`` regex;
* ``extract + follow``: extract, then ``response.follow(link.url)`` per link (Requests);
* ``RuleSpider (2 rules)``: ``rule_requests`` of a spider with two rules.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crawler import LinkExtractor, Response
from crawler.spiders import Rule, RuleSpider
from crawler.testing import make_response


def page(number: int, links: int) -> str:
    """A shop-like page: navigation, items, some absolute, fragment and binary links."""
    parts = []
    for i in range(links):
        kind = i % 10
        if kind == 0:
            href = f"/category/{number}-{i}/"
        elif kind == 1:
            href = f"https://shop.example/item/{number}{i}?ref=nav"
        elif kind == 2:
            href = f"../item/{number}{i}#reviews"
        elif kind == 3 and i % 30 == 3:
            href = f"/files/manual-{number}-{i}.pdf"
        else:
            href = f"/item/{number}{i}"
        parts.append(f'<li><a href="{href}" class="l">Link <b>{i}</b> of page {number}</a></li>')
    return (
        f"<html><head><title>Page {number}</title></head><body><ul>"
        + "".join(parts)
        + "</ul></body></html>"
    )


def responses(count: int, links: int, salt: int) -> list[Response]:
    """Fresh, already-parsed responses (the parse is not what is measured)."""
    made = []
    for number in range(count):
        response = make_response(f"https://shop.example/list/{salt}/{number}", page(number, links))
        response.selector  # noqa: B018 - parse now, outside the timed loop
        made.append(response)
    return made


class Bench(RuleSpider):
    name = "bench"
    rules = (
        Rule(LinkExtractor(allow=r"/category/"), follow=True),
        Rule(LinkExtractor(allow=r"/item/\d+"), callback="parse_item"),
    )

    def parse_item(self, response: Response) -> Any:
        return None


def measure(
    run: Callable[[Response], Any], count: int, links: int, repeat: int
) -> tuple[float, int]:
    """Best µs per link over ``repeat`` passes; the number of outputs per page."""
    best = float("inf")
    produced = 0
    for attempt in range(repeat):
        batch = responses(count, links, salt=attempt * 1000 + links)
        started = time.process_time()
        for response in batch:
            produced = len(run(response))
        best = min(best, time.process_time() - started)
    return best / (count * links) * 1e6, produced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    plain = LinkExtractor()
    allow = LinkExtractor(allow=r"/item/\d+")
    spider = Bench()
    variants: dict[str, Callable[[Response], Any]] = {
        "follow_all()": lambda r: r.follow_all(),
        "extract_links()": plain.extract_links,
        "extract_links(allow)": allow.extract_links,
        "extract + follow": lambda r: [r.follow(x.url) for x in plain.extract_links(r)],
        "RuleSpider (2 rules)": lambda r: list(spider.rule_requests(r)),
    }
    print(f"{'variant':24s}" + "".join(f"{n:>10d} links" for n in args.links) + "   (µs/link)")
    for name, run in variants.items():
        cells = []
        for links in args.links:
            us, produced = measure(run, args.pages, links, args.repeat)
            cells.append(f"{us:8.2f} ({produced:3d})")
        print(f"{name:24s}" + "".join(f"{c:>16s}" for c in cells))
    print("(n): outputs per page; binary links and duplicates are left out by both")


if __name__ == "__main__":
    main()
