"""Benchmark: the framework against a bare aiohttp + selectolax loop on the same site.

    /work/venv/bin/python bench/run.py --pages 10000 --hosts 8 --concurrency 32 --repeat 3

Starts the generated site (``site_server.py``) in its own process on loopback,
then crawls it ``--repeat`` times with each implementation, alternating, each
run in a fresh subprocess (``bare.py``, ``framework.py``). For every run it
checks that every page was fetched exactly once and written as one item, and
records:

* pages/s      -- pages / wall seconds of the crawl itself (measured in the child,
                  imports and interpreter start-up excluded);
* CPU-ms/page  -- user + system CPU of the crawl (child's getrusage) / pages;
* peak RSS     -- the child's ru_maxrss as ``os.wait4`` reports it;
* whole-process wall and CPU as the parent sees them (start-up included).

It prints the median of each metric per implementation and the ratio
framework / bare, and writes everything to a JSON file (``--out``, default in
the temp directory; nothing is written into the repository).

The parts: ``site_client.py`` (the site's process), ``crawl_run.py`` (one checked crawl),
``matrix.py`` (shapes x loops x implementations) and ``report.py`` (the summary table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from matrix import DEFAULT_LINK_STYLES, DEFAULT_SHAPES, LINK_STYLES, parse_shapes, run_matrix
from report import print_loop_gain, print_table, summarize


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=8_000, help="site size")
    parser.add_argument(
        "--shapes",
        default=DEFAULT_SHAPES,
        help="site shapes, HOSTSxCONCURRENCY[xPER_HOST] comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--links",
        default=",".join(DEFAULT_LINK_STYLES),
        help="framework link styles: follow (per anchor), follow_all, rules (a RuleSpider"
        " with a LinkExtractor); default: %(default)s",
    )
    parser.add_argument("--hosts", type=int, default=None, help="one shape: this many hosts")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="one shape: requests in flight"
    )
    parser.add_argument(
        "--per-host",
        type=int,
        default=0,
        help="one shape: per-host connection limit, both crawlers (default: = concurrency)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per implementation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=("bare", "framework"), default=None)
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the site to CPU 0 and the crawler to CPU 1",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="after the timed runs, one pyinstrument-profiled run each, into DIR",
    )
    parser.add_argument(
        "--root",
        default=None,
        help="measure crawler/ and pipelines/ of this checkout (default: this repo)",
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        default=None,
        help="after the timed runs, one py-spy run each (collapsed stacks) into DIR",
    )
    parser.add_argument("--out", default=None, help="JSON results file (default: in the temp dir)")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "both"),
        default="asyncio",
        help="event loop of both crawlers; both: every shape on each, plus the uvloop gain",
    )
    args = parser.parse_args()

    if args.hosts or args.concurrency:  # the single shape of the older command line
        args.hosts, args.concurrency = args.hosts or 8, args.concurrency or 32
        shapes = [
            {
                "hosts": args.hosts,
                "concurrency": args.concurrency,
                "per_host": args.per_host or args.concurrency,
            }
        ]
    else:
        shapes = parse_shapes(args.shapes)
    styles = [style.strip() for style in args.links.split(",") if style.strip()]
    unknown = set(styles) - set(LINK_STYLES)
    if unknown:
        raise SystemExit(f"unknown --links {sorted(unknown)}: choose from {LINK_STYLES}")

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = not args.no_pin and len(cpus) >= 2
    site_cpu, crawl_cpu = (cpus[0], cpus[1]) if pin else (None, None)
    impls = ([] if args.only == "framework" else ["bare"]) + (
        [] if args.only == "bare" else [f"framework:{style}" for style in styles]
    )

    problems: list[str] = []
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    runs = run_matrix(args, shapes, impls, loops, site_cpu, crawl_cpu, problems)
    summary: dict[str, Any] = {
        name: {impl: summarize(rs) for impl, rs in block.items() if rs}
        for name, block in runs.items()
    }
    if args.repeat:
        print_table(summary, args)
        if len(loops) > 1:
            print_loop_gain(summary, shapes)
    result = {
        "params": vars(args) | {"pinned": pin, "python": sys.version.split()[0]},
        "summary": summary,
        "runs": runs,
        "problems": problems,
    }
    out = args.out or os.path.join(tempfile.gettempdir(), "crawler-bench-results.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"results: {out}")
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
