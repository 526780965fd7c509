"""The benchmark's run matrix: site shapes x event loops x implementations, ``--repeat`` times.

A shape is ``HOSTSxCONCURRENCY[xPER_HOST]``; each shape (on each loop of ``--loop``)
gets a site of its own, on which every implementation runs ``--repeat`` times, the
order alternating, plus the optional profiled and py-spy runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Any

from crawl_run import one_run
from site_client import start_site

# response.follow per anchor / response.follow_all() / a RuleSpider rule with a LinkExtractor
LINK_STYLES = ("follow", "follow_all", "rules")
DEFAULT_LINK_STYLES = ("follow", "follow_all")  # the two issue 17 measures; rules on request
DEFAULT_SHAPES = "8x32,16x64x8"  # HOSTSxCONCURRENCY[xPER_HOST]


def parse_shapes(text: str) -> list[dict[str, int]]:
    """``"8x32,16x64x8"`` -> site shapes: hosts, concurrency and per-host limit (default: all)."""
    shapes = []
    for part in text.split(","):
        numbers = [int(n) for n in part.strip().lower().split("x")]
        if len(numbers) not in (2, 3):
            raise SystemExit(f"bad shape {part!r}: HOSTSxCONCURRENCY[xPER_HOST]")
        hosts, concurrency = numbers[:2]
        per_host = numbers[2] if len(numbers) == 3 else concurrency
        shapes.append({"hosts": hosts, "concurrency": concurrency, "per_host": per_host})
    return shapes


def shape_name(shape: dict[str, int]) -> str:
    """``16 hosts / c64 / 8 per host``."""
    name = f"{shape['hosts']} hosts / c{shape['concurrency']}"
    if shape["per_host"] != shape["concurrency"]:
        name += f" / {shape['per_host']} per host"
    return name


def run_shape(
    args: argparse.Namespace,
    shape: dict[str, int],
    impls: list[str],
    site_cpu: int | None,
    crawl_cpu: int | None,
    problems: list[str],
) -> dict[str, list[dict[str, Any]]]:
    """Every implementation ``--repeat`` times (order alternating) on one site shape."""
    name = shape_name(shape)
    site, info = start_site(args, site_cpu, shape["hosts"])
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    try:
        with tempfile.TemporaryDirectory(prefix="crawler-bench-") as workdir:
            for n in range(args.repeat):
                order = impls if n % 2 == 0 else impls[::-1]
                for impl in order:
                    report = one_run(impl, args, info, workdir, n, crawl_cpu, shape=shape)
                    runs[impl].append(report)
                    print(
                        f"{name}: run {n + 1} {impl:<20} {report['pages']:>7} pages "
                        f"{report['pages_per_s']:>8.0f} pages/s "
                        f"{report['cpu_ms_per_page']:>7.3f} CPU-ms/page "
                        f"{report['peak_rss_mb']:>7.1f} MB peak RSS"
                        + (f"  PROBLEMS: {report['problems']}" if report["problems"] else ""),
                        file=sys.stderr,
                    )
                    problems += [f"{name} {impl} run {n + 1}: {p}" for p in report["problems"]]
            tag = f"{shape['hosts']}h{shape['concurrency']}c-"
            if args.profile:
                os.makedirs(args.profile, exist_ok=True)
                for impl in impls:
                    prefix = os.path.join(
                        os.path.abspath(args.profile), tag + impl.replace(":", "-")
                    )
                    one_run(impl, args, info, workdir, 99, crawl_cpu, profile=prefix, shape=shape)
                    print(f"profile of {impl}: {prefix}.txt, {prefix}.html", file=sys.stderr)
            if args.py_spy:
                os.makedirs(args.py_spy, exist_ok=True)
                for impl in impls:
                    path = os.path.join(
                        os.path.abspath(args.py_spy), tag + impl.replace(":", "-") + ".folded"
                    )
                    one_run(impl, args, info, workdir, 97, crawl_cpu, py_spy=path, shape=shape)
                    print(f"py-spy samples of {impl}: {path} (collapsed stacks)", file=sys.stderr)
    finally:
        site.terminate()
        site.wait()
    return runs


def run_matrix(
    args: argparse.Namespace,
    shapes: list[dict[str, int]],
    impls: list[str],
    loops: list[str],
    site_cpu: int | None,
    crawl_cpu: int | None,
    problems: list[str],
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every shape on every loop: the runs by block name (``<shape>[ / <loop>]``) and impl."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for loop in loops:
        for shape in shapes:
            name = shape_name(shape) + ("" if loop == "asyncio" else f" / {loop}")
            shape_on = {**shape, "loop": loop} if loop != "asyncio" else shape
            runs[name] = run_shape(args, shape_on, impls, site_cpu, crawl_cpu, problems)
    return runs
