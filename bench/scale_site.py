"""The site of ``frontier_scale.py crawl``: every link a new URL, pages made from the path.

A bare asyncio ``Protocol`` on loopback (``frontier_scale.py serve`` runs it in its own
process): page ``/p/<n>`` links to ``/p/<n*L+1>`` .. ``/p/<n*L+L>`` (``L`` = ``links``),
page ``m`` on host ``h<m % hosts>.scale``; ``/__scale/stats`` gives its counters.
"""

from __future__ import annotations

import json
import socket
from typing import Any, ClassVar

from site_kit import http_response, serve_until_stopped

from crawler.benchsite import HeadsProtocol


def host_name(k: int) -> str:
    return f"h{k}.scale"


class ScaleSite(HeadsProtocol):
    """Keep-alive GETs of /p/<n>, each page rendered from its number; ``/__scale/stats``."""

    counters: ClassVar[dict[str, int]] = {"served": 0, "bytes": 0, "not_found": 0, "wrong_host": 0}
    port = 0
    links = 1000
    hosts = 8

    def answer(self, host: bytes, target: bytes) -> list[bytes]:
        return [self.response(host, target)]

    @classmethod
    def response(cls, host: bytes, target: bytes) -> bytes:
        counters = cls.counters
        if target.startswith(b"/p/") and target[3:].isdigit():
            n = int(target[3:])
            if host != host_name(n % cls.hosts).encode():
                counters["wrong_host"] += 1
                return http_response(404, b"wrong host", "text/plain")
            body = cls.page(n)
            counters["served"] += 1
            counters["bytes"] += len(body)
            return http_response(200, body, "text/html; charset=utf-8")
        if target == b"/__scale/stats":
            return http_response(200, json.dumps(counters).encode(), "application/json")
        counters["not_found"] += 1
        return http_response(404, b"not found", "text/plain")

    @classmethod
    def page(cls, n: int) -> bytes:
        port, hosts, first = cls.port, cls.hosts, n * cls.links + 1
        items = "".join(
            f'<li><a href="http://h{m % hosts}.scale:{port}/p/{m}">{m}</a></li>\n'
            for m in range(first, first + cls.links)
        )
        return (
            f"<!DOCTYPE html>\n<html><head><title>Page {n}</title></head>"
            f"<body><h1>Page {n}</h1><ul>\n{items}</ul></body></html>\n"
        ).encode()


async def serve(links: int, hosts: int) -> None:
    def site(port: int) -> type[ScaleSite]:
        ScaleSite.port, ScaleSite.links, ScaleSite.hosts = port, links, hosts
        return ScaleSite

    await serve_until_stopped(site)


def site_stats(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /__scale/stats HTTP/1.1\r\nHost: h0.scale\r\n\r\n")
        data = b""
        while b"}" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])
