"""The benchmark's summary: medians per implementation, the table, the target, the uvloop gain."""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from matrix import shape_name

TARGET_RATIO = 0.90  # framework pages/s / bare pages/s, every combination
TARGET_CPU_MS = 0.42  # framework CPU-ms per page, every combination
BUSY_UTIL = 0.95  # a crawl using less CPU than this share of its wall time was held up


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
