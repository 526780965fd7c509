"""A generated site for ``crawl bench``, served on loopback by a bare asyncio Protocol.

Page ``i`` (0 <= i < pages) lives on host ``bench{i % hosts}.test`` at
``/d{dir}/p{i}.html``: about 20 KB of HTML with a ``<title>`` and ~33 links
(relative, root-relative, absolute links to other hosts, a few ``#fragments``
and repeats). Page ``i`` links to page ``i + 1``, so every page is reachable
from the start pages (one per host); the other links come from a seeded
``random.Random``, so every run crawls the same site. Every host serves an
allow-all ``/robots.txt``.

The server speaks just enough HTTP/1.1 (keep-alive GETs routed on the Host
header) to write pre-rendered bytes, so it costs a small fraction of what the
crawler spends per page; it runs in its own process so its CPU is not counted
as the crawler's. Run it as::

    python -m crawler.benchsite --pages 2000 --hosts 4

It prints one JSON line (``port``, ``hosts``, ``start_urls``, ``pages``) once
listening, serves until its stdin closes (or SIGTERM/SIGINT), then prints one
JSON line of counters (``served``, ``unique``, ``not_found``, ``robots``, ``cpu_s``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO, cast

__all__ = ["HeadsProtocol", "SiteShape", "host_name", "main", "render", "serve"]

LINKS_PER_PAGE = 30
REPEATED_LINKS = 3
PAGE_BYTES = 20_000
FILLER_BLOCKS = 16  # pages share these text blocks, so memory stays ~4 KB per page
DIRS = 50

_WORDS = (
    "crawler frontier request response spider pipeline lorem ipsum dolor sit amet consectetur"
    " adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua enim"
    " minim veniam quis nostrud exercitation ullamco laboris nisi aliquip commodo consequat"
).split()


def host_name(k: int) -> str:
    """The name of virtual host ``k`` (``.test`` is reserved: it never leaves the machine)."""
    return f"bench{k}.test"


@dataclass(frozen=True, slots=True)
class SiteShape:
    """Which page lives where: ``pages`` pages over ``hosts`` virtual hosts."""

    pages: int
    hosts: int
    seed: int = 1

    def host_of(self, i: int) -> int:
        """The host index of page ``i``."""
        return i % self.hosts

    def path_of(self, i: int) -> str:
        """The path of page ``i`` on its host."""
        return f"/d{(i // self.hosts) % DIRS}/p{i}.html"

    def url_of(self, i: int, port: int) -> str:
        """The absolute URL of page ``i``."""
        return f"http://{host_name(self.host_of(i))}:{port}{self.path_of(i)}"

    def host_names(self) -> list[str]:
        """Every virtual host name that serves at least one page."""
        return [host_name(k) for k in range(min(self.hosts, self.pages))]

    def start_urls(self, port: int) -> list[str]:
        """The first page of every host."""
        return [self.url_of(i, port) for i in range(min(self.hosts, self.pages))]


def _filler_blocks(rng: random.Random, size: int) -> list[bytes]:
    blocks = []
    for _ in range(FILLER_BLOCKS):
        parts: list[str] = []
        total = 0
        while total < size:
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 90)))
            parts.append(f'<p class="text">{words.capitalize()}.</p>\n')
            total += len(parts[-1])
        blocks.append("".join(parts).encode())
    return blocks


def _targets(shape: SiteShape, i: int, rng: random.Random) -> list[int]:
    n, h = shape.pages, shape.hosts
    targets = [(i + 1) % n]
    host = shape.host_of(i)
    same_host = (n - host + h - 1) // h  # how many pages j have j % h == host
    while len(targets) < LINKS_PER_PAGE:
        if rng.random() < 0.6 and same_host > 1:
            targets.append(host + h * rng.randrange(same_host))
        else:
            targets.append(rng.randrange(n))
    # real navigation repeats links, which the crawler must de-duplicate
    targets += [rng.choice(targets) for _ in range(REPEATED_LINKS)]
    return targets


def _href(shape: SiteShape, src: int, dst: int, port: int, rng: random.Random) -> str:
    if shape.host_of(src) != shape.host_of(dst):
        href = shape.url_of(dst, port)
    else:
        src_dir = shape.path_of(src).rsplit("/", 1)[0]
        dst_dir, name = shape.path_of(dst).rsplit("/", 1)
        if src_dir == dst_dir:
            href = name
        elif rng.random() < 0.5:
            href = f"..{dst_dir}/{name}"
        else:
            href = shape.path_of(dst)
    if rng.random() < 0.1:
        href += f"#sec{rng.randrange(5)}"
    return href


def _page(shape: SiteShape, i: int, port: int, filler: bytes, rng: random.Random) -> list[bytes]:
    targets = _targets(shape, i, rng)
    hrefs = [_href(shape, i, j, port, rng) for j in targets]
    pairs = list(zip(hrefs, targets, strict=True))
    nav = "".join(f'<a class="nav" href="{h}">Page {j}</a> ' for h, j in pairs[:8])
    related = "".join(f'<li><a href="{h}">Related page {j}</a></li>\n' for h, j in pairs[8:])
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Page {i} - bench site</title></head>\n"
        f'<body><header><nav id="top">{nav}</nav></header>\n'
        f"<main><article><h1>Page {i}</h1>\n"
    ).encode()
    tail = (
        f'</article><aside><ul class="related">\n{related}</ul></aside></main>\n'
        f'<footer><a href="#top">Back to top</a></footer></body></html>\n'
    ).encode()
    length = len(head) + len(filler) + len(tail)
    header = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {length}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    return [header + head, filler, tail]


def render(shape: SiteShape, port: int) -> tuple[dict[tuple[bytes, bytes], int], list[list[bytes]]]:
    """(``(host, path)`` -> page index, page index -> response parts, headers included)."""
    rng = random.Random(shape.seed)
    blocks = _filler_blocks(rng, PAGE_BYTES - 3_500)  # ~3.5 KB of markup and links per page
    routes: dict[tuple[bytes, bytes], int] = {}
    responses: list[list[bytes]] = []
    for i in range(shape.pages):
        page_rng = random.Random(shape.seed * 1_000_003 + i)
        filler = blocks[page_rng.randrange(FILLER_BLOCKS)]
        responses.append(_page(shape, i, port, filler, page_rng))
        routes[(host_name(shape.host_of(i)).encode(), shape.path_of(i).encode())] = i
    return routes, responses


def _plain(status: str, content_type: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


_ROBOTS = _plain("200 OK", "text/plain", b"User-agent: *\nDisallow: /private/\n")
_NOT_FOUND = _plain("404 Not Found", "text/plain", b"not found")


class _Counters:
    """What the server served, reported when it stops."""

    def __init__(self, pages: int) -> None:
        self.hits = bytearray(pages)
        self.served = 0
        self.unique = 0
        self.not_found = 0
        self.robots = 0
        self.cpu_started = time.process_time()

    def snapshot(self) -> dict[str, Any]:
        return {
            "served": self.served,
            "unique": self.unique,
            "not_found": self.not_found,
            "robots": self.robots,
            "cpu_s": round(time.process_time() - self.cpu_started, 4),
        }


class HeadsProtocol(asyncio.Protocol):
    """Just enough HTTP/1.1 for a benchmark site: pipelined keep-alive requests without
    bodies, each answered with the bytes :meth:`answer` gives (here: 404).

    Also the base of the sites in ``bench/``. ``one_per_connection`` closes the
    connection after each answer (a crawler must not keep many idle sockets open).
    """

    one_per_connection = False

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Anything with write/writelines/close will do (bench/slow_site.py delays writes).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        transport = self.transport
        assert transport is not None
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head, buffer = buffer[:end], buffer[end + 4 :]
            line_end = head.find(b"\r\n")
            parts = (head if line_end < 0 else head[:line_end]).split(b" ")
            if len(parts) != 3:
                transport.close()
                return
            lower = head.lower()
            host = b""
            at = lower.find(b"\r\nhost:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 7)
                host = lower[at + 7 : stop if stop >= 0 else None].strip().rsplit(b":", 1)[0]
            transport.writelines(self.answer(host, parts[1]))
            if self.one_per_connection or b"\r\nconnection: close" in lower:
                transport.close()
                return
        self.buffer = buffer

    def answer(self, host: bytes, target: bytes) -> list[bytes]:
        """The response to a GET of ``target`` on ``host`` (lower case, no port), in parts."""
        return [_NOT_FOUND]


class _SiteProtocol(HeadsProtocol):
    """The generated site's pages, a permissive robots.txt, 404 for the rest; counted."""

    def __init__(
        self,
        routes: dict[tuple[bytes, bytes], int],
        responses: list[list[bytes]],
        counters: _Counters,
    ) -> None:
        super().__init__()
        self.routes = routes
        self.responses = responses
        self.counters = counters

    def answer(self, host: bytes, target: bytes) -> list[bytes]:
        counters = self.counters
        page = self.routes.get((host, target))
        if page is not None:
            counters.served += 1
            if not counters.hits[page]:
                counters.hits[page] = 1
                counters.unique += 1
            return self.responses[page]
        if target == b"/robots.txt":
            counters.robots += 1
            return [_ROBOTS]
        counters.not_found += 1
        return [_NOT_FOUND]


def _watch_eof(loop: asyncio.AbstractEventLoop, fd: int, stop: asyncio.Event) -> bool:
    """Set ``stop`` at EOF on ``fd``; False if ``fd`` cannot be watched (a regular file).

    The parent closes our stdin to stop us, and so does its death: no orphan server.
    """

    def readable() -> None:
        if not os.read(fd, 4096):
            stop.set()

    try:
        loop.add_reader(fd, readable)
    except (OSError, ValueError, NotImplementedError):
        return False
    return True


async def serve(shape: SiteShape, out: TextIO, stdin_fd: int | None = None) -> None:
    """Serve ``shape`` on 127.0.0.1 until SIGTERM/SIGINT or EOF on ``stdin_fd``.

    Writes the ready line and, on stop, the counters line to ``out``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    routes, responses = render(shape, port)  # before the ready line: not part of the crawl
    counters = _Counters(shape.pages)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _SiteProtocol(routes, responses, counters), sock=sock, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watching = stdin_fd is not None and _watch_eof(loop, stdin_fd, stop)
    ready = {
        "port": port,
        "pages": shape.pages,
        "hosts": shape.host_names(),
        "start_urls": shape.start_urls(port),
    }
    out.write(json.dumps(ready) + "\n")
    out.flush()
    async with server:
        await stop.wait()
    if watching:
        assert stdin_fd is not None
        loop.remove_reader(stdin_fd)
    out.write(json.dumps(counters.snapshot()) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m crawler.benchsite --pages N --hosts N [--seed N]``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.pages < 1 or args.hosts < 1:
        parser.error("--pages and --hosts must be at least 1")
    asyncio.run(serve(SiteShape(args.pages, args.hosts, args.seed), sys.stdout, sys.stdin.fileno()))


if __name__ == "__main__":
    main()
