"""Profile one framework crawl of the benchmark site and say where its CPU goes.

    .venv/bin/python bench/profile.py --pages 8000 --hosts 16 --concurrency 64 --per-host 8
    .venv/bin/python bench/profile.py --links follow_all --profiler pyinstrument

Starts ``site_server.py`` as ``run.py`` does, runs ``framework.py`` once under cProfile
(default: deterministic, exact own time per function) or pyinstrument (sampling, a call
tree), and writes the profile to ``--out`` (default ``$TMPDIR/crawler-profile``):
``framework-<links>.txt`` plus ``.pstats`` (cProfile) or ``.html`` (pyinstrument). With
cProfile it also prints the top functions by own time and their share of the profiled
time, and the share per package (``crawler``, ``aiohttp``, ``yarl``, ``selectolax``...),
so a change can be checked against where the time was. A profiled crawl runs ~2x slower
(cProfile) than a timed one: use ``run.py`` for numbers, this to see where they come from.
"""

from __future__ import annotations

import argparse
import os
import pstats
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from crawl_run import one_run  # noqa: E402
from matrix import LINK_STYLES  # noqa: E402
from site_client import start_site  # noqa: E402


def package_of(filename: str) -> str:
    """The package a profiled function belongs to: crawler/<module>, aiohttp, yarl, ..."""
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    parts = Path(filename).parts
    for marker in ("site-packages", "lib-dynload"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return rest[0].split(".")[0] if rest else marker
    if "crawler" in parts:
        rest = parts[parts.index("crawler") :]
        return "/".join(rest[:2]) if len(rest) > 2 else "/".join(rest)
    if "pipelines" in parts or "bench" in parts:
        return "/".join(parts[-2:])
    return "python stdlib" if "python3" in filename else filename


def summarize(path: str, top: int) -> str:
    """Top functions by own time and own time per package, as shares of the whole."""
    stats = pstats.Stats(path)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)
    lines = [f"profiled own time: {total:.3f} s", "", "top functions by own time:"]
    for (filename, line, name), (_cc, calls, own, _cum, _callers) in rows[:top]:
        where = f"{package_of(filename)}:{line}" if line else package_of(filename)
        lines.append(f"  {own / total:6.1%}  {own:7.3f} s  {calls:>9}  {name}  ({where})")
    packages: dict[str, float] = defaultdict(float)
    for (filename, _line, _name), entry in raw.items():
        packages[package_of(filename)] += entry[2]
    lines += ["", "own time per package / crawler module:"]
    for package, own in sorted(packages.items(), key=lambda kv: kv[1], reverse=True)[:top]:
        lines.append(f"  {own / total:6.1%}  {own:7.3f} s  {package}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=8_000)
    parser.add_argument("--hosts", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--links", choices=LINK_STYLES, default="follow")
    parser.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile")
    parser.add_argument("--impl", choices=("framework", "bare"), default="framework")
    parser.add_argument("--top", type=int, default=25, help="rows in the printed summary")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--root", default=None, help="profile another checkout's crawler/")
    parser.add_argument(
        "--out", default=os.path.join(tempfile.gettempdir(), "crawler-profile"), help="folder"
    )
    args = parser.parse_args()
    args.repeat = 0
    shape = {"hosts": args.hosts, "concurrency": args.concurrency, "per_host": args.per_host}
    impl = f"framework:{args.links}" if args.impl == "framework" else "bare"
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(os.path.abspath(args.out), impl.replace(":", "-"))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    site_cpu, crawl_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    site, info = start_site(args, site_cpu, args.hosts)
    try:
        with tempfile.TemporaryDirectory(prefix="crawler-profile-") as workdir:
            report = one_run(
                impl, args, info, workdir, 0, crawl_cpu, profile=prefix, shape=shape,
                profiler=args.profiler,
            )  # fmt: skip
    finally:
        site.terminate()
        site.wait()
    print(
        f"{impl}, {report['pages']} pages, {report['cpu_ms_per_page']:.3f} CPU-ms/page"
        f" under the profiler; problems: {report['problems'] or 'none'}"
    )
    if args.profiler == "cprofile":
        print(summarize(f"{prefix}.pstats", args.top))
        print(f"\nfull profile: {prefix}.txt, {prefix}.pstats")
    else:
        print(f"profile: {prefix}.txt, {prefix}.html")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
