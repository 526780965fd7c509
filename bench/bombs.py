"""Peak memory and event-loop stalls while the crawler refuses 1 GiB compression bombs.

    .venv/bin/python bench/bombs.py [--gib 1] [--cap-mib 10]

A bomb server runs in its own process on loopback (so its memory is not
counted) and serves, for each kind, a body that decodes to ``--gib`` GiB:
gzip, deflate, br, zstd and a gzip of a gzip bomb (``Content-Encoding: gzip,
gzip``), chunked (no Content-Length to check first). Each kind is crawled in
a fresh child process with ``MAX_RESPONSE_SIZE = --cap-mib`` MiB, next to a
baseline crawl of a small page; the child reports its peak RSS (ru_maxrss),
the longest gap its event loop went without a turn (a 5 ms ticker) and the
crawl's failure counts. Nothing is written to the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KINDS = ["baseline", "gzip", "deflate", "br", "zstd", "gzip, gzip"]
_MIB = bytes(1024 * 1024)


def build_bomb(kind: str, mib: int) -> bytes:
    """A body in ``kind`` decoding to ``mib`` MiB of zeros, built by streaming."""
    if kind == "gzip, gzip":
        outer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return outer.compress(build_bomb("gzip", mib)) + outer.flush()
    if kind in ("gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if kind == "gzip" else zlib.MAX_WBITS
        packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
        return b"".join([*(packer.compress(_MIB) for _ in range(mib)), packer.flush()])
    if kind == "br":
        import brotli

        br = brotli.Compressor(quality=5)
        return b"".join([*(br.process(_MIB) for _ in range(mib)), br.finish()])
    if kind == "zstd":
        from backports import zstd

        zs = zstd.ZstdCompressor()
        return b"".join([*(zs.compress(_MIB) for _ in range(mib)), zs.flush()])
    raise ValueError(kind)


async def serve(mib: int) -> None:
    """The bomb server: prints its port, then serves until killed."""
    from aiohttp import web

    bombs = {kind: build_bomb(kind, mib) for kind in KINDS if kind != "baseline"}

    async def handle(request: web.Request) -> web.StreamResponse:
        kind = request.query.get("kind", "baseline")
        if kind == "baseline":
            return web.Response(text="<p>a small page</p>", content_type="text/html")
        response = web.StreamResponse(
            headers={"Content-Encoding": kind, "Content-Type": "text/html"}
        )
        await response.prepare(request)
        body = bombs[kind]
        for start in range(0, len(body), 65536):
            await response.write(body[start : start + 65536])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


async def crawl_one(url: str, cap: int) -> dict[str, Any]:
    """In the child: crawl ``url`` once; report failures and the longest loop stall."""
    import resource

    from crawler import Crawler, Request, Response, Settings, Spider

    class One(Spider):
        name = "bomb"

        async def start(self) -> Any:
            yield Request(url)

        def parse(self, response: Response) -> Any:
            yield {"size": len(response.body)}

    stall = 0.0

    async def ticker() -> None:
        nonlocal stall
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.005)
            now = loop.time()
            stall = max(stall, now - last - 0.005)
            last = now

    settings = Settings.build(
        ("bench", {"MAX_RESPONSE_SIZE": cap, "PROGRESS_INTERVAL": 0, "ROBOTSTXT_OBEY": False})
    )
    tick = asyncio.create_task(ticker())
    result = await Crawler(One(), settings).run()
    tick.cancel()
    stats = result.stats
    return {
        "too_large": stats.get("failures/too_large", 0),
        "pages": stats.get("pages", 0),
        "max_stall_ms": round(stall * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="decoded size of each bomb")
    parser.add_argument("--cap-mib", type=int, default=10, help="MAX_RESPONSE_SIZE in MiB")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--crawl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    cap = args.cap_mib * 1024 * 1024
    if args.crawl:
        print(json.dumps(asyncio.run(crawl_one(args.crawl, cap))))
        return
    mib = int(args.gib * 1024)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(mib)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        print(f"bombs decode to {mib} MiB each; MAX_RESPONSE_SIZE = {args.cap_mib} MiB")
        print(f"{'kind':<12} {'peak RSS MB':>12} {'max loop stall ms':>18} {'refused':>8}")
        env = dict(os.environ, PYTHONPATH=str(HERE.parent))
        for kind in KINDS:
            url = f"http://127.0.0.1:{port}/?kind={kind.replace(', ', '%2C%20')}"
            out = subprocess.run(
                [sys.executable, __file__, "--crawl", url, "--cap-mib", str(args.cap_mib)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            print(
                f"{kind:<12} {row['peak_rss_mb']:>12} {row['max_stall_ms']:>18}"
                f" {row['too_large']:>8}"
            )
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
