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
TARGET_RATIO = 0.70
BUSY_UTIL = 0.95  # a crawl using less CPU than this share of its wall time was held up


def start_site(
    args: argparse.Namespace, cpu: int | None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    cmd = [
        sys.executable,
        str(HERE / "site_server.py"),
        "--pages",
        str(args.pages),
        "--hosts",
        str(args.hosts),
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
) -> dict[str, Any]:
    """Run one crawl in a fresh process; its own report plus what wait4 saw."""
    cmd = [sys.executable, str(HERE / f"{impl}.py"), "--config", json.dumps(config)]
    if profile:
        cmd += ["--pyinstrument", profile]
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
            untitled += not item.get("title")
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
) -> dict[str, Any]:
    out = os.path.join(workdir, f"{impl}-{run}.jsonl")
    config = {
        "start_urls": info["start_urls"],
        "hosts": info["hosts"],
        "ip": "127.0.0.1",
        "concurrency": args.concurrency,
        "per_host": args.per_host or args.concurrency,
        "out": out,
        "root": os.path.abspath(args.root) if args.root else None,
    }
    site_call(info, "/__bench/reset")
    report = run_child(impl, config, cpu, profile, py_spy)
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


def print_table(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    bare, fw = summary["bare"], summary["framework"]
    print(
        f"\n{args.pages} pages over {args.hosts} hosts, concurrency {args.concurrency}, "
        f"median of {args.repeat} run(s) each\n"
    )
    head = f"{'':<12}{'pages/s':>10}{'best':>10}{'CPU-ms/page':>13}{'peak RSS MB':>13}"
    head += f"{'crawl s':>9}{'process s':>11}{'CPU util':>10}{'site CPU-ms/p':>15}"
    print(head)
    for name, s in (("bare", bare), ("framework", fw)):
        print(
            f"{name:<12}{s['pages_per_s']:>10.0f}{s['pages_per_s_best']:>10.0f}"
            f"{s['cpu_ms_per_page']:>13.3f}{s['peak_rss_mb']:>13.1f}{s['wall_s']:>9.2f}"
            f"{s['process_wall_s']:>11.2f}{s['cpu_util']:>10.0%}{s['server_cpu_ms_per_page']:>15.3f}"
        )
    ratio = summary["ratio"]
    print(
        f"{'fw / bare':<12}{ratio['pages_per_s']:>10.2f}{ratio['pages_per_s_best']:>10.2f}"
        f"{ratio['cpu_ms_per_page']:>13.2f}{ratio['peak_rss_mb']:>13.2f}"
    )
    verdict = "PASS" if ratio["pages_per_s"] >= TARGET_RATIO else "FAIL"
    print(
        f"\ntarget: framework pages/s >= {TARGET_RATIO:.0%} of bare: "
        f"{ratio['pages_per_s']:.1%} -> {verdict}"
    )
    print(
        f"CPU-bound estimate (bare CPU-ms/page / framework CPU-ms/page): "
        f"{1 / ratio['cpu_ms_per_page']:.1%}"
    )
    busy = [name for name, s in (("bare", bare), ("framework", fw)) if s["cpu_util"] < BUSY_UTIL]
    if busy:
        print(
            f"warning: median CPU util of {' and '.join(busy)} below {BUSY_UTIL:.0%}: the machine"
            " was busy, so pages/s is noisy; trust CPU-ms/page more, or re-run with more --repeat"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pages", type=int, default=10_000, help="site size (>= 10000 for the target)"
    )
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight, both crawlers"
    )
    parser.add_argument(
        "--per-host",
        type=int,
        default=0,
        help="per-host connection limit, both crawlers (default: = concurrency)",
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
    args = parser.parse_args()

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = not args.no_pin and len(cpus) >= 2
    site_cpu, crawl_cpu = (cpus[0], cpus[1]) if pin else (None, None)
    impls = [args.only] if args.only else ["bare", "framework"]

    site, info = start_site(args, site_cpu)
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    problems = []
    try:
        with tempfile.TemporaryDirectory(prefix="crawler-bench-") as workdir:
            for n in range(args.repeat):
                order = impls if n % 2 == 0 else impls[::-1]
                for impl in order:
                    report = one_run(impl, args, info, workdir, n, crawl_cpu)
                    runs[impl].append(report)
                    print(
                        f"run {n + 1} {impl:<10} {report['pages']:>7} pages "
                        f"{report['pages_per_s']:>8.0f} pages/s "
                        f"{report['cpu_ms_per_page']:>7.3f} CPU-ms/page "
                        f"{report['peak_rss_mb']:>7.1f} MB peak RSS"
                        + (f"  PROBLEMS: {report['problems']}" if report["problems"] else ""),
                        file=sys.stderr,
                    )
                    problems += [f"{impl} run {n + 1}: {p}" for p in report["problems"]]
            if args.profile:
                os.makedirs(args.profile, exist_ok=True)
                for impl in impls:
                    prefix = os.path.join(os.path.abspath(args.profile), impl)
                    one_run(impl, args, info, workdir, 99, crawl_cpu, profile=prefix)
                    print(f"profile of {impl}: {prefix}.txt, {prefix}.html", file=sys.stderr)
            if args.py_spy:
                os.makedirs(args.py_spy, exist_ok=True)
                for impl in impls:
                    path = os.path.join(os.path.abspath(args.py_spy), f"{impl}.folded")
                    one_run(impl, args, info, workdir, 97, crawl_cpu, py_spy=path)
                    print(f"py-spy samples of {impl}: {path} (collapsed stacks)", file=sys.stderr)
    finally:
        site.terminate()
        site.wait()

    summary: dict[str, Any] = {impl: summarize(rs) for impl, rs in runs.items() if rs}
    if len(summary) == 2:
        bare, fw = summary["bare"], summary["framework"]
        summary["ratio"] = {
            "pages_per_s": round(fw["pages_per_s"] / bare["pages_per_s"], 3),
            "pages_per_s_best": round(fw["pages_per_s_best"] / bare["pages_per_s_best"], 3),
            "cpu_ms_per_page": round(fw["cpu_ms_per_page"] / bare["cpu_ms_per_page"], 3),
            "peak_rss_mb": round(fw["peak_rss_mb"] / bare["peak_rss_mb"], 3),
            "cpu_bound_pages_per_s": round(bare["cpu_ms_per_page"] / fw["cpu_ms_per_page"], 3),
        }
        print_table(summary, args)
    elif summary:
        print(json.dumps(summary, indent=2))
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
