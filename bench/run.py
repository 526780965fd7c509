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
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 0.90  # framework pages/s / bare pages/s, every combination
TARGET_CPU_MS = 0.42  # framework CPU-ms per page, every combination
LINK_STYLES = ("follow", "follow_all")  # response.follow per anchor / response.follow_all()
DEFAULT_SHAPES = "8x32,16x64x8"  # HOSTSxCONCURRENCY[xPER_HOST]
BUSY_UTIL = 0.95  # a crawl using less CPU than this share of its wall time was held up


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


def start_site(
    args: argparse.Namespace, cpu: int | None, hosts: int | None = None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    cmd = [
        sys.executable,
        str(HERE / "site_server.py"),
        "--pages",
        str(args.pages),
        "--hosts",
        str(hosts or args.hosts),
        "--seed",
        str(args.seed),
    ]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit(f"site server exited with {proc.returncode} before it was ready")
    info = json.loads(line)
    deadline = time.monotonic() + 30
    while True:
        try:
            site_call(info, "/__bench/stats")
            return proc, info
        except OSError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise
            time.sleep(0.05)


def site_call(info: dict[str, Any], path: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", info["port"], timeout=10)
    try:
        conn.request("GET", path, headers={"Host": info["hosts"][0]})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def run_child(
    impl: str,
    config: dict[str, Any],
    cpu: int | None,
    profile: str | None,
    py_spy: str | None = None,
    profiler: str = "pyinstrument",
) -> dict[str, Any]:
    """Run one crawl in a fresh process; its own report plus what wait4 saw.

    ``impl`` is ``bare``, ``framework`` or ``framework:<link style>``.
    """
    script = impl.split(":")[0]
    cmd = [sys.executable, str(HERE / f"{script}.py"), "--config", json.dumps(config)]
    cmd += ["--loop", config.get("loop", "asyncio")]  # the child's event loop (evloop.py)
    if profile:
        cmd += [f"--{profiler}", profile]
    cpus = {cpu} if cpu is not None else None
    if py_spy:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        taskset = shutil.which("taskset")
        if cpu is not None and taskset:
            # the crawler alone on its CPU; py-spy's sampling runs on the others
            cmd = [taskset, "-c", str(cpu), *cmd]
            cpus = (set(os.sched_getaffinity(0)) - {cpu}) or {cpu}
        cmd = [spy, "record", "--rate", "1000", "--format", "raw", "--output", py_spy, "--", *cmd]
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus is not None else None
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=preexec)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{impl} exited with {proc.returncode}")
    lines = [line for line in output.splitlines() if line.startswith("{")]  # py-spy talks too
    if not lines:
        raise SystemExit(f"{impl} printed no report: {output!r:.300}")
    report = json.loads(lines[-1])
    report.update(
        process_wall_s=round(wall, 4),
        process_cpu_s=round(usage.ru_utime + usage.ru_stime, 4),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
    )
    return report


def check_output(path: str, pages: int) -> dict[str, Any]:
    """Lines and distinct URLs in the JSON Lines output."""
    urls = set()
    lines = 0
    untitled = 0
    with open(path, "rb") as f:
        for line in f:
            item = json.loads(line)
            urls.add(item["url"])
            untitled += not (item.get("title") and item.get("h1") and item.get("price"))
            lines += 1
    return {
        "lines": lines,
        "distinct_urls": len(urls),
        "untitled": untitled,
        "complete": lines == pages and len(urls) == pages and not untitled,
    }


def one_run(
    impl: str,
    args: argparse.Namespace,
    info: dict[str, Any],
    workdir: str,
    run: int,
    cpu: int | None,
    profile: str | None = None,
    py_spy: str | None = None,
    shape: dict[str, int] | None = None,
    profiler: str = "pyinstrument",
) -> dict[str, Any]:
    shape = shape or {
        "hosts": args.hosts,
        "concurrency": args.concurrency,
        "per_host": args.per_host or args.concurrency,
    }
    out = os.path.join(workdir, f"{impl.replace(':', '-')}-{run}.jsonl")
    config = {
        "start_urls": info["start_urls"],
        "hosts": info["hosts"],
        "ip": "127.0.0.1",
        "concurrency": shape["concurrency"],
        "per_host": shape["per_host"],
        "links": impl.partition(":")[2] or "follow",
        "loop": shape.get("loop", "asyncio"),
        "out": out,
        "root": os.path.abspath(args.root) if args.root else None,
    }
    site_call(info, "/__bench/reset")
    report = run_child(impl, config, cpu, profile, py_spy, profiler)
    site = site_call(info, "/__bench/stats")
    report["site"] = site
    report["output"] = check_output(out, args.pages)
    os.unlink(out)
    pages = report["pages"]
    report["pages_per_s"] = round(pages / report["wall_s"], 1) if report["wall_s"] else 0.0
    report["cpu_ms_per_page"] = round(1000 * report["cpu_s"] / pages, 4) if pages else None
    report["cpu_util"] = round(report["cpu_s"] / report["wall_s"], 3) if report["wall_s"] else 0.0
    report["server_cpu_ms_per_page"] = (
        round(1000 * site["server_cpu_s"] / pages, 4) if pages else None
    )
    problems = []
    if site["unique"] != args.pages:
        problems.append(f"fetched {site['unique']} of {args.pages} pages")
    if site["repeated"]:
        problems.append(f"fetched {site['repeated']} pages more than once")
    if site["not_found"]:
        problems.append(f"{site['not_found']} requests for unknown URLs")
    if not report["output"]["complete"]:
        problems.append(f"output incomplete: {report['output']}")
    if report.get("errors"):
        problems.append(f"{report['errors']} errors")
    report["problems"] = problems
    return report


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 4)

    return {
        "runs": len(runs),
        "pages": runs[0]["pages"],
        "pages_per_s": med("pages_per_s"),
        "pages_per_s_best": max(r["pages_per_s"] for r in runs),
        "cpu_ms_per_page": med("cpu_ms_per_page"),
        "peak_rss_mb": med("peak_rss_mb"),
        "wall_s": med("wall_s"),
        "process_wall_s": med("process_wall_s"),
        "process_cpu_s": med("process_cpu_s"),
        "server_cpu_ms_per_page": med("server_cpu_ms_per_page"),
        "cpu_util": med("cpu_util"),
    }


def print_table(summary: dict[str, Any], args: argparse.Namespace) -> None:
    """One block per site shape: bare, then each framework link style with its ratios."""
    print(f"\n{args.pages} pages, median of {args.repeat} run(s) each\n")
    head = f"{'':<22}{'pages/s':>9}{'best':>8}{'x bare':>8}{'CPU-ms/page':>13}{'x bare':>8}"
    head += f"{'RSS MB':>8}{'crawl s':>9}{'CPU util':>10}{'site CPU-ms/p':>15}"
    verdicts = []
    for name, block in summary.items():
        print(name)
        print(head)
        bare = block.get("bare")
        for impl, s in block.items():
            ratio = s["pages_per_s"] / bare["pages_per_s"] if bare else float("nan")
            cpu_ratio = s["cpu_ms_per_page"] / bare["cpu_ms_per_page"] if bare else float("nan")
            label = "bare" if impl == "bare" else "framework " + impl.partition(":")[2]
            print(
                f"  {label:<20}{s['pages_per_s']:>9.0f}{s['pages_per_s_best']:>8.0f}"
                f"{ratio:>8.2f}{s['cpu_ms_per_page']:>13.3f}{cpu_ratio:>8.2f}"
                f"{s['peak_rss_mb']:>8.1f}{s['wall_s']:>9.2f}{s['cpu_util']:>10.0%}"
                f"{s['server_cpu_ms_per_page']:>15.3f}"
            )
            if impl != "bare" and bare:
                ok = ratio >= TARGET_RATIO and s["cpu_ms_per_page"] <= TARGET_CPU_MS
                verdicts.append(ok)
                s["ratio_to_bare"] = round(ratio, 3)
                s["cpu_ratio_to_bare"] = round(cpu_ratio, 3)
                s["pass"] = ok
            if s["cpu_util"] < BUSY_UTIL:
                print(
                    f"  warning: CPU util below {BUSY_UTIL:.0%}: the machine was busy, so"
                    " pages/s is noisy; trust CPU-ms/page more, or use more --repeat"
                )
        print()
    if verdicts:
        print(
            f"target: every framework run >= {TARGET_RATIO:.2f}x the bare loop's pages/s and"
            f" <= {TARGET_CPU_MS} CPU-ms/page: {sum(verdicts)}/{len(verdicts)} ->"
            f" {'PASS' if all(verdicts) else 'FAIL'}"
        )


def print_loop_gain(summary: dict[str, Any], shapes: list[dict[str, int]]) -> None:
    """pages/s and CPU-ms/page on uvloop against the same crawler on asyncio's loop."""
    print("uvloop gain: uvloop / asyncio, same crawler and shape (pages/s: higher is better,")
    print("CPU-ms/page: lower is better)")
    for shape in shapes:
        name = shape_name(shape)
        on_asyncio, on_uvloop = summary.get(name, {}), summary.get(f"{name} / uvloop", {})
        for impl, s in on_asyncio.items():
            u = on_uvloop.get(impl)
            if u is None:
                continue
            label = "bare" if impl == "bare" else "framework " + impl.partition(":")[2]
            speed = u["pages_per_s"] / s["pages_per_s"]
            cpu = u["cpu_ms_per_page"] / s["cpu_ms_per_page"]
            print(f"  {name:<28}{label:<22}pages/s x{speed:.2f}   CPU-ms/page x{cpu:.2f}")
    print()


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
        default=",".join(LINK_STYLES),
        help="framework link styles: follow (per anchor), follow_all (default: both)",
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

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    problems: list[str] = []
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    for loop in loops:
        for shape in shapes:
            name = shape_name(shape) + ("" if loop == "asyncio" else f" / {loop}")
            shape_on = {**shape, "loop": loop} if loop != "asyncio" else shape
            runs[name] = run_shape(args, shape_on, impls, site_cpu, crawl_cpu, problems)
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
