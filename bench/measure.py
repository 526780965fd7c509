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
import os
import resource
import sys
import time
from typing import Any


def child_args() -> tuple[dict[str, Any], str | None]:
    """(config, profile output prefix or None) from the command line.

    ``--cprofile PREFIX`` comes back as ``"cprofile:PREFIX"`` (see :class:`Window`).
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="JSON object written by run.py")
    parser.add_argument(
        "--pyinstrument", default=None, help="profile the crawl into PREFIX.txt and PREFIX.html"
    )
    parser.add_argument(
        "--cprofile", default=None, help="profile the crawl into PREFIX.txt and PREFIX.pstats"
    )
    args = parser.parse_args()
    profile = f"cprofile:{args.cprofile}" if args.cprofile else args.pyinstrument
    return json.loads(args.config), profile


def _stdlib_cprofile() -> Any:
    """``cProfile``, whose ``import profile`` must not find ``bench/profile.py`` (the
    script's folder comes first on ``sys.path`` in a child)."""
    here = os.path.dirname(os.path.abspath(__file__))
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        import cProfile
    finally:
        sys.path[:] = saved
    return cProfile


class Window:
    """Wall time, CPU time and RSS across the ``with`` block (optionally profiled)."""

    def __init__(self, profile_path: str | None = None) -> None:
        # "cprofile:PREFIX" profiles with cProfile (deterministic: exact call counts and
        # own times, at ~2x the run time), a plain PREFIX with pyinstrument (sampling)
        self.cprofile = bool(profile_path and profile_path.startswith("cprofile:"))
        self.profile_path = (
            profile_path.partition(":")[2] if profile_path and self.cprofile else profile_path
        )
        self._profiler: Any = None

    def __enter__(self) -> Window:
        self.rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if self.profile_path and self.cprofile:
            cProfile = _stdlib_cprofile()
            self._profiler = cProfile.Profile()
            self._profiler.enable()
        elif self.profile_path:
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
        if self._profiler is not None and self.cprofile:
            self._profiler.disable()
            self._write_cprofile(f"{self.profile_path}")
        elif self._profiler is not None:
            self._profiler.stop()
            prefix = self.profile_path
            with open(f"{prefix}.txt", "w") as f:
                f.write(self._profiler.output_text(unicode=True, show_all=False))
            with open(f"{prefix}.html", "w") as f:
                f.write(self._profiler.output_html())

    def _write_cprofile(self, prefix: str) -> None:
        """PREFIX.pstats (for snakeviz, pstats) and PREFIX.txt: top functions by own time."""
        import io
        import pstats

        self._profiler.dump_stats(f"{prefix}.pstats")
        text = io.StringIO()
        stats = pstats.Stats(self._profiler, stream=text)
        stats.sort_stats("tottime").print_stats(45)
        stats.sort_stats("cumulative").print_stats(45)
        with open(f"{prefix}.txt", "w") as f:
            f.write(text.getvalue())

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
