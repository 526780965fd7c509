"""A generated, deterministic multi-host site served from one loopback port.

Page ``i`` (0 <= i < pages) lives on host ``host{i % hosts}.bench`` at
``/s{dir}/p{i}.html``. Each page is about 20 KB of HTML: a ``<title>``, an ``<h1>``, a
``<p class="price">``, a ``<nav>`` and a ``<ul>`` holding ~30 links (relative, root-relative and
absolute cross-host links, a few with ``#fragments`` and some repeated), and
filler text. Page ``i`` always links to page ``i + 1``, so every page is
reachable from the start pages (pages ``0 .. hosts-1``, one per host); the rest
of the link graph comes from a seeded ``random.Random``.

The server is a bare asyncio ``Protocol`` speaking just enough HTTP/1.1
(keep-alive GETs, routing on the Host header) to serve pre-rendered bytes, so
it spends as little CPU as possible: the crawler under test, not the server,
must be the bottleneck. Every host serves a permissive ``/robots.txt``.
``/__bench/stats`` and ``/__bench/reset`` (any host)
report and reset how many pages were served, how many of them more than once
and how many requests missed.

Run ``python bench/site_server.py --pages 10000 --hosts 8``: it prints one JSON line
(``port``, ``hosts``, ``start_urls``) on stdout once it is listening.
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

from crawler.benchsite import HeadsProtocol

LINKS_PER_PAGE = 30
PAGE_BYTES = 20_000
FILLER_BLOCKS = 32
DIRS = 50

_WORDS = (
    "crawler frontier request response spider pipeline lorem ipsum dolor sit amet consectetur"
    " adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua enim"
    " minim veniam quis nostrud exercitation ullamco laboris nisi aliquip commodo consequat"
    " duis aute irure reprehenderit voluptate velit esse cillum fugiat nulla pariatur"
    " excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit"
).split()


def price_of(i: int) -> str:
    """The price shown on page ``i`` (each item has a ``price`` next to its ``h1``)."""
    return f"${(i * 7919) % 100_000 / 100:.2f}"


def host_name(k: int) -> str:
    """The name of virtual host ``k``."""
    return f"host{k}.bench"


@dataclass(frozen=True, slots=True)
class SiteShape:
    """Which page lives where; shared by the server and the runner."""

    pages: int
    hosts: int
    seed: int = 1

    def host_of(self, i: int) -> int:
        return i % self.hosts

    def path_of(self, i: int) -> str:
        return f"/s{(i // self.hosts) % DIRS}/p{i}.html"

    def url_of(self, i: int, port: int) -> str:
        return f"http://{host_name(self.host_of(i))}:{port}{self.path_of(i)}"

    def host_names(self) -> list[str]:
        return [host_name(k) for k in range(self.hosts)]

    def start_urls(self, port: int) -> list[str]:
        return [self.url_of(i, port) for i in range(min(self.hosts, self.pages))]


def _filler_blocks(rng: random.Random, size: int) -> list[bytes]:
    blocks = []
    for _ in range(FILLER_BLOCKS):
        parts = []
        total = 0
        while total < size:
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 90)))
            para = f'<p class="text">{words.capitalize()}.</p>\n'
            parts.append(para)
            total += len(para)
        blocks.append("".join(parts).encode())
    return blocks


def _link_targets(shape: SiteShape, i: int, rng: random.Random) -> list[int]:
    n, h = shape.pages, shape.hosts
    targets = [(i + 1) % n]
    host = shape.host_of(i)
    same_host_count = (n - host + h - 1) // h  # pages j with j % h == host
    while len(targets) < LINKS_PER_PAGE:
        if rng.random() < 0.6 and same_host_count > 1:
            targets.append(host + h * rng.randrange(same_host_count))
        else:
            targets.append(rng.randrange(n))
    # a few repeats of links already on the page, as real navigation has
    for _ in range(3):
        targets.append(rng.choice(targets))
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


def render(shape: SiteShape, port: int) -> tuple[dict[tuple[bytes, bytes], int], list[list[bytes]]]:
    """(route -> page index, page index -> response parts incl. headers)."""
    rng = random.Random(shape.seed)
    filler_size = PAGE_BYTES - 3_500
    blocks = _filler_blocks(rng, filler_size)
    routes: dict[tuple[bytes, bytes], int] = {}
    responses: list[list[bytes]] = []
    for i in range(shape.pages):
        prng = random.Random(shape.seed * 1_000_003 + i)
        targets = _link_targets(shape, i, prng)
        hrefs = [_href(shape, i, j, port, prng) for j in targets]
        nav = "".join(
            f'<a class="nav" href="{h}">Page {j}</a> '
            for h, j in zip(hrefs[:8], targets[:8], strict=True)
        )
        related = "".join(
            f'<li><a href="{h}" title="related page {j}">Related page {j}</a></li>\n'
            for h, j in zip(hrefs[8:], targets[8:], strict=True)
        )
        head = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Page {i} \u2014 bench site</title>"
            f'<meta name="description" content="Generated page {i} of {shape.pages}">'
            '<link rel="stylesheet" href="/static/site.css"></head>\n'
            f'<body><header><nav id="top">{nav}</nav></header>\n'
            f"<main><article><h1>Page {i}</h1>\n"
            f'<p class="price">{price_of(i)}</p>\n'
        ).encode()
        tail = (
            '</article><aside><h2>Related</h2><ul class="related">\n'
            f"{related}</ul></aside></main>\n"
            f'<footer><p>Generated page {i}. <a href="#top">Back to top</a></p></footer>'
            "</body></html>\n"
        ).encode()
        filler = blocks[prng.randrange(FILLER_BLOCKS)]
        length = len(head) + len(filler) + len(tail)
        header = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {length}\r\nConnection: keep-alive\r\n\r\n"
        ).encode()
        responses.append([header + head, filler, tail])
        routes[(host_name(shape.host_of(i)).encode(), shape.path_of(i).encode())] = i
    return routes, responses


class SiteState:
    """Pre-rendered pages and serving counters."""

    def __init__(self, shape: SiteShape, port: int) -> None:
        self.shape = shape
        self.routes, self.responses = render(shape, port)
        self.reset()

    def reset(self) -> None:
        self.hits = bytearray(self.shape.pages)
        self.served = 0
        self.unique = 0
        self.not_found = 0
        self.robots = 0
        self.started = time.monotonic()
        self.cpu_started = time.process_time()

    def stats(self) -> dict[str, float]:
        return {
            "served": self.served,
            "unique": self.unique,
            "repeated": self.served - self.unique,
            "not_found": self.not_found,
            "robots_txt": self.robots,
            "pages": self.shape.pages,
            "server_cpu_s": round(time.process_time() - self.cpu_started, 4),
            "since_reset_s": round(time.monotonic() - self.started, 4),
        }


_ROBOTS_BODY = b"User-agent: *\nDisallow: /private/\n"
_ROBOTS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
    + str(len(_ROBOTS_BODY)).encode()
    + b"\r\n\r\n"
    + _ROBOTS_BODY
)
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"
)


def _json_response(data: object) -> bytes:
    body = json.dumps(data).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class SiteProtocol(HeadsProtocol):
    """The site's pages, robots.txt and ``/__bench/*``, on ``HeadsProtocol``'s HTTP/1.1."""

    def __init__(self, state: SiteState) -> None:
        super().__init__()
        self.state = state

    def answer(self, host: bytes, target: bytes) -> list[bytes]:
        state = self.state
        page = state.routes.get((host, target))
        if page is not None:
            state.served += 1
            if not state.hits[page]:
                state.hits[page] = 1
                state.unique += 1
            return state.responses[page]
        if target == b"/robots.txt":
            state.robots += 1
            return [_ROBOTS]
        if target == b"/__bench/stats":
            return [_json_response(state.stats())]
        if target == b"/__bench/reset":
            state.reset()
            return [_json_response({"reset": True})]
        state.not_found += 1
        return [_NOT_FOUND]


async def serve(shape: SiteShape, port: int, ready_out) -> None:  # type: ignore[no-untyped-def]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    port = sock.getsockname()[1]
    state = SiteState(shape, port)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SiteProtocol(state), sock=sock, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    info = {"port": port, "hosts": shape.host_names(), "start_urls": shape.start_urls(port)}
    ready_out.write(json.dumps(info) + "\n")
    ready_out.flush()
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(serve(SiteShape(args.pages, args.hosts, args.seed), args.port, sys.stdout))


if __name__ == "__main__":
    main()
