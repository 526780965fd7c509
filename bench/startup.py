"""Start-up latency of the ``crawl`` command (issue 17): best of N, wall clock, in ms.

    python bench/startup.py            # best of 10
    python bench/startup.py -n 20 --loop uvloop

Measures, each in a fresh process started from this one:

* ``python -c "import crawler"`` (and ``python -c pass``, the interpreter's own floor);
* ``crawl --help`` and ``crawl list`` (run in an empty folder: no project);
* ``crawl run`` to the first request: a loopback HTTP server in this process records
  when the first request arrives, measured from just before the ``crawl run`` process
  is spawned. The spider is one page; robots.txt is off so the first request is the page.

Prints a table. ``python -X importtime -m crawler --help`` shows where the time goes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SPIDER = """\
from crawler import Spider


class StartupSpider(Spider):
    name = "startup"
    start_urls = [{url!r}]

    async def parse(self, response):
        yield {{"url": response.url}}
"""


class FirstRequest:
    """A loopback server that records the arrival time (perf_counter) of each first request."""

    def __init__(self) -> None:
        self.arrived: float | None = None
        self.event = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if owner.arrived is None:
                    owner.arrived = time.perf_counter()
                    owner.event.set()
                body = b"<html><head><title>t</title></head><body>ok</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        self.arrived = None
        self.event.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def crawl_argv() -> list[str]:
    """The ``crawl`` console script next to this interpreter, else ``python -m crawler``."""
    script = Path(sys.executable).with_name("crawl")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "crawler"]


def timed(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def first_request(argv: list[str], cwd: str, env: dict[str, str], server: FirstRequest) -> float:
    server.reset()
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if not server.event.wait(30):
            raise RuntimeError("crawl run made no request within 30 s")
        assert server.arrived is not None
        return (server.arrived - start) * 1000
    finally:
        if proc.wait(30) != 0:
            raise RuntimeError(f"crawl run exited {proc.returncode}")


def best(n: int, measure: Callable[[], float]) -> tuple[float, float]:
    samples = sorted(measure() for _ in range(n))
    return samples[0], samples[len(samples) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10, help="runs per measure (best is shown)")
    parser.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default=None, help="LOOP for crawl run"
    )
    args = parser.parse_args()
    crawl = crawl_argv()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    env.pop("CRAWLER_SETTINGS", None)
    server = FirstRequest()
    folder = tempfile.mkdtemp(prefix="crawl-startup-")
    try:
        spider = Path(folder, "startup_spider.py")
        spider.write_text(SPIDER.format(url=server.url))
        run = [*crawl, "run", str(spider), "-q", "-s", "ROBOTSTXT_OBEY=false"]
        run += ["-s", "BLOCK_PRIVATE_NETWORKS=false"]
        if args.loop:
            run += ["-s", f"LOOP={args.loop}"]
        # One warm-up of each, so .pyc files exist and the OS caches are warm.
        timed([*crawl, "--help"], folder, env)
        timed([*crawl, "list"], folder, env)
        first_request(run, folder, env, server)
        rows = [
            (
                "python -c pass",
                best(args.n, lambda: timed([sys.executable, "-c", "pass"], folder, env)),
            ),
            (
                "python -c 'import crawler'",
                best(args.n, lambda: timed([sys.executable, "-c", "import crawler"], folder, env)),
            ),
            ("crawl --help", best(args.n, lambda: timed([*crawl, "--help"], folder, env))),
            ("crawl list", best(args.n, lambda: timed([*crawl, "list"], folder, env))),
            (
                "crawl run -> first request",
                best(args.n, lambda: first_request(run, folder, env, server)),
            ),
        ]
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  {'best ms':>8}  {'median ms':>9}   (n={args.n})")
    for name, (low, median) in rows:
        print(f"{name:<{width}}  {low:8.0f}  {median:9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
