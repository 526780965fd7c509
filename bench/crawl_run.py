"""One timed crawl of the benchmark site in a fresh child process, and its checks.

``one_run`` resets the site's counters, runs ``bare.py`` or ``framework.py``
(``run_child``: optionally pinned to a CPU, profiled or under py-spy), then checks that
every page was fetched exactly once and written as one item (``check_output``) and adds
pages/s, CPU-ms/page, CPU util and the site's CPU per page to the child's report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from site_client import site_call

HERE = Path(__file__).resolve().parent


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
