"""A small bookstore website served on 127.0.0.1, for the README's first crawl.

Run it alone with ``python examples/demo_site.py --port 8000``; the bookstore
example spider starts it by itself on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import random

from aiohttp import web

GENRES = ["Travel", "Mystery", "Poetry", "Science", "History", "Fiction"]
BOOKS_PER_PAGE = 10


def make_books(count: int = 60, seed: int = 7) -> list[dict]:
    """Deterministic fake books (with some non-ASCII titles)."""
    rng = random.Random(seed)
    words = ["Night", "Garden", "Zürich", "River", "Ōsaka", "Light", "Stone", "Crónica", "Sea"]
    return [
        {
            "id": n,
            "title": f"{rng.choice(words)} {rng.choice(words)} #{n}",
            "genre": GENRES[n % len(GENRES)],
            "price": round(rng.uniform(5, 60), 2),
            "in_stock": rng.random() > 0.2,
        }
        for n in range(1, count + 1)
    ]


def _layout(title: str, body: str) -> str:
    nav = " | ".join(f'<a href="/genre/{g.lower()}/">{g}</a>' for g in GENRES)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><nav><a href='/'>Home</a> | {nav}</nav><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>"
    )


def build_app(books: list[dict] | None = None) -> web.Application:
    """The demo site as an aiohttp application."""
    books = books or make_books()
    pages = max(1, (len(books) + BOOKS_PER_PAGE - 1) // BOOKS_PER_PAGE)

    def listing(items: list[dict], page: int, base: str) -> str:
        rows = "".join(
            f'<li class="book"><a href="/book/{b["id"]}.html">{html.escape(b["title"])}</a></li>'
            for b in items
        )
        nxt = f'<a class="next" href="{base}?page={page + 1}">next</a>' if page < pages else ""
        return f"<ul>{rows}</ul>{nxt}"

    async def index(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        start = (page - 1) * BOOKS_PER_PAGE
        body = listing(books[start : start + BOOKS_PER_PAGE], page, "/")
        return web.Response(text=_layout(f"Books, page {page}", body), content_type="text/html")

    async def genre(request: web.Request) -> web.Response:
        name = request.match_info["genre"]
        items = [b for b in books if b["genre"].lower() == name]
        if not items:
            raise web.HTTPNotFound()
        body = "".join(
            f'<p><a href="/book/{b["id"]}.html">{html.escape(b["title"])}</a></p>' for b in items
        )
        return web.Response(text=_layout(name.title(), body), content_type="text/html")

    async def book(request: web.Request) -> web.Response:
        book_id = int(request.match_info["id"])
        if not 1 <= book_id <= len(books):
            raise web.HTTPNotFound()
        b = books[book_id - 1]
        stock = "In stock" if b["in_stock"] else "Out of stock"
        body = (
            f'<p class="price">£{b["price"]:.2f}</p><p class="stock">{stock}</p>'
            f'<p class="genre">{b["genre"]}</p>'
        )
        return web.Response(text=_layout(b["title"], body), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/genre/{genre}/", genre)
    app.router.add_get(r"/book/{id:\d+}.html", book)
    return app


class DemoSite:
    """Serve the demo site on 127.0.0.1 (port 0 = a free port) inside ``async with``."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The site's home page URL."""
        return f"http://127.0.0.1:{self.port}/"

    async def __aenter__(self) -> DemoSite:
        self._runner = web.AppRunner(build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _serve(port: int) -> None:
    async with DemoSite(port) as site:
        print(f"demo site on {site.url} (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    try:
        asyncio.run(_serve(parser.parse_args().port))
    except KeyboardInterrupt:
        pass
