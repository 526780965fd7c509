"""The crawl window both benchmark children measure, and their shared command line.

A child (``bare.py`` or ``framework.py``) is started by ``run.py`` with one
``--config`` JSON argument, does its imports and setup, then crawls inside a
:class:`Window`, and prints one JSON line with what the window measured:
wall and CPU seconds of the crawl alone (interpreter start-up and imports
excluded) and the RSS before and after. ``run.py`` adds what it sees from the
outside (``os.wait4``: whole-process CPU and peak RSS).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any


def child_args() -> tuple[dict[str, Any], str | None]:
    """(config, pyinstrument output path or None) from the command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="JSON object written by run.py")
    parser.add_argument(
        "--pyinstrument", default=None, help="profile the crawl into PREFIX.txt and PREFIX.html"
    )
    args = parser.parse_args()
    return json.loads(args.config), args.pyinstrument


class Window:
    """Wall time, CPU time and RSS across the ``with`` block (optionally profiled)."""

    def __init__(self, profile_path: str | None = None) -> None:
        self.profile_path = profile_path
        self._profiler: Any = None

    def __enter__(self) -> Window:
        self.rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if self.profile_path:
            from pyinstrument import Profiler

            self._profiler = Profiler(interval=0.0005, async_mode="disabled")
            self._profiler.start()
        self._usage = resource.getrusage(resource.RUSAGE_SELF)
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.user_s = usage.ru_utime - self._usage.ru_utime
        self.sys_s = usage.ru_stime - self._usage.ru_stime
        self.rss_after_kb = usage.ru_maxrss
        if self._profiler is not None:
            self._profiler.stop()
            prefix = self.profile_path
            with open(f"{prefix}.txt", "w") as f:
                f.write(self._profiler.output_text(unicode=True, show_all=False))
            with open(f"{prefix}.html", "w") as f:
                f.write(self._profiler.output_html())

    def report(self, **extra: Any) -> None:
        """Print the window's measurements plus ``extra`` as one JSON line on stdout."""
        result = {
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.user_s + self.sys_s, 4),
            "user_s": round(self.user_s, 4),
            "sys_s": round(self.sys_s, 4),
            "rss_before_mb": round(self.rss_before_kb / 1024, 1),
            "rss_peak_mb": round(self.rss_after_kb / 1024, 1),
            **extra,
        }
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
