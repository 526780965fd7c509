"""The benchmark site as a separate process: start ``site_server.py``, call its ``/__bench`` URLs.

``start_site`` returns once the site answers; ``site_call`` reads its counters
(``/__bench/stats``) or resets them (``/__bench/reset``) between runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


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
