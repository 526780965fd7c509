"""A small bookstore website served on 127.0.0.1, for the README's first crawl and docs/examples.md.

Run it alone with ``python examples/demo_site.py --port 8000``; the example spiders
start it by themselves on a free port. Besides the books it has:

* ``/login`` (a form; user ``reader``, password ``books``) setting a ``session`` cookie,
  and a members-only area under ``/members/`` that redirects to ``/login`` without it;
* ``/robots.txt`` with a ``Sitemap:`` line, a sitemap index and three sitemaps (one gzipped);
* ``ETag`` / ``Last-Modified`` on every page, answering conditional requests with 304;
* ``day``: the catalogue as of day N (on day 2 and later some books are cheaper), so a
  scheduled job has something to notice between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import html
import random
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import quote

from aiohttp import web

GENRES = ["Travel", "Mystery", "Poetry", "Science", "History", "Fiction"]
BOOKS_PER_PAGE = 10
OFFERS_PER_PAGE = 5
DEMO_USER = "reader"
DEMO_PASSWORD = "books"
SESSION_COOKIE = "session"
FIRST_DAY = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)  # the catalogue's "day 1"
REQUESTS = web.AppKey("requests", list)  # (method, path and query, status) answered


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


def books_on_day(books: list[dict], day: int) -> list[dict]:
    """The catalogue on ``day``: on each day N from 2 on, the books whose id ends in N's last
    digit get 10% cheaper (``changed`` is the last day a book changed; day 1 is ``books``)."""
    result = []
    for book in books:
        book = {**book, "changed": 1}
        for n in range(2, day + 1):
            if book["id"] % 10 == n % 10:
                book["price"] = round(book["price"] * 0.9, 2)
                book["changed"] = n
        result.append(book)
    return result


def changed_on(books: list[dict], day: int) -> list[int]:
    """Ids of the books whose page changed from ``day - 1`` to ``day``."""
    before = {b["id"]: b for b in books_on_day(books, day - 1)} if day > 1 else {}
    return [b["id"] for b in books_on_day(books, day) if before and before[b["id"]] != b]


def _layout(title: str, body: str) -> str:
    nav = " | ".join(f'<a href="/genre/{g.lower()}/">{g}</a>' for g in GENRES)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><nav><a href='/'>Home</a> | {nav}</nav><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>"
    )


def _page(request: web.Request, text: str, modified: datetime | None = None) -> web.Response:
    """An HTML page with an ETag (and Last-Modified): a matching conditional request gets 304."""
    etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:16] + '"'
    headers = {"ETag": etag}
    if modified is not None:
        headers["Last-Modified"] = format_datetime(modified, usegmt=True)
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:  # RFC 9110: If-None-Match wins over If-Modified-Since
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        if etag in tags or "*" in tags:
            return web.Response(status=304, headers=headers)
    elif modified is not None and "If-Modified-Since" in request.headers:
        try:
            since = parsedate_to_datetime(request.headers["If-Modified-Since"])
        except (TypeError, ValueError):
            since = None
        if since is not None and modified <= since:
            return web.Response(status=304, headers=headers)
    return web.Response(text=text, content_type="text/html", headers=headers)


def _urlset(base: str, paths: list[tuple[str, datetime | None]]) -> bytes:
    entries = "".join(
        f"<url><loc>{base}{path}</loc>"
        + (f"<lastmod>{modified.date().isoformat()}</lastmod>" if modified else "")
        + "</url>"
        for path, modified in paths
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
    ).encode()


def build_app(books: list[dict] | None = None, day: int = 1) -> web.Application:
    """The demo site as an aiohttp application; ``app[REQUESTS]`` logs what it answered."""
    books = books_on_day(books or make_books(), day)
    pages = max(1, (len(books) + BOOKS_PER_PAGE - 1) // BOOKS_PER_PAGE)
    offers = [b for b in books if b["in_stock"]]
    offer_pages = max(1, (len(offers) + OFFERS_PER_PAGE - 1) // OFFERS_PER_PAGE)
    sessions: dict[str, str] = {}  # session cookie value -> user name

    def modified(book: dict) -> datetime:
        return FIRST_DAY + timedelta(days=book["changed"] - 1)

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
        return _page(request, _layout(f"Books, page {page}", body))

    async def genre(request: web.Request) -> web.Response:
        name = request.match_info["genre"]
        items = [b for b in books if b["genre"].lower() == name]
        if not items:
            raise web.HTTPNotFound()
        body = "".join(
            f'<p><a href="/book/{b["id"]}.html">{html.escape(b["title"])}</a></p>' for b in items
        )
        return _page(request, _layout(name.title(), body))

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
        return _page(request, _layout(b["title"], body), modified(b))

    # --- login, session cookie and the members-only area ---

    def login_form(next_path: str, error: str = "") -> str:
        message = f'<p class="error">{html.escape(error)}</p>' if error else ""
        return _layout(
            "Sign in",
            f'{message}<form id="login" method="post" action="/login">'
            f'<input type="hidden" name="next" value="{html.escape(next_path)}">'
            '<input name="username"> <input name="password" type="password">'
            "<button>Sign in</button></form>",
        )

    async def login_page(request: web.Request) -> web.Response:
        form = login_form(request.query.get("next", "/members/"))
        return web.Response(text=form, content_type="text/html")

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        next_path = str(form.get("next") or "/members/")
        if not next_path.startswith("/") or next_path.startswith("//"):
            next_path = "/members/"  # no open redirect
        if form.get("username") != DEMO_USER or form.get("password") != DEMO_PASSWORD:
            text = login_form(next_path, "Wrong user name or password.")
            return web.Response(status=401, text=text, content_type="text/html")
        token = secrets.token_hex(16)
        sessions[token] = DEMO_USER
        response = web.Response(status=303, headers={"Location": next_path})
        response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="Lax")
        return response

    def member(request: web.Request) -> str:
        """The signed-in user, or a redirect to the login form."""
        user = sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if user is None:
            raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='/')}")
        return user

    async def members(request: web.Request) -> web.Response:
        user = member(request)
        page = int(request.query.get("page", "1"))
        start = (page - 1) * OFFERS_PER_PAGE
        rows = "".join(
            f'<li class="offer"><a href="/members/offer/{b["id"]}.html">'
            f"{html.escape(b['title'])}</a></li>"
            for b in offers[start : start + OFFERS_PER_PAGE]
        )
        nxt = f'<a class="next" href="/members/?page={page + 1}">next</a>'
        body = f'<p class="user">Signed in as {user}</p><ul>{rows}</ul>'
        body += nxt if page < offer_pages else ""
        text = _layout(f"Member offers, page {page}", body)
        return web.Response(text=text, content_type="text/html")

    async def offer(request: web.Request) -> web.Response:
        user = member(request)
        book_id = int(request.match_info["id"])
        b = next((b for b in offers if b["id"] == book_id), None)
        if b is None:
            raise web.HTTPNotFound()
        body = (
            f'<p class="user">Signed in as {user}</p>'
            f'<p class="price">£{b["price"]:.2f}</p>'
            f'<p class="member-price">£{b["price"] * 0.8:.2f}</p>'
        )
        return web.Response(text=_layout(b["title"], body), content_type="text/html")

    # --- robots.txt and sitemaps ---

    async def robots(request: web.Request) -> web.Response:
        sitemap = f"{request.scheme}://{request.host}/sitemap_index.xml"
        text = f"User-agent: *\nDisallow: /cart/\n\nSitemap: {sitemap}\n"
        return web.Response(text=text)

    async def sitemap_index(request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        names = ["books-1.xml", "books-2.xml.gz", "pages.xml"]
        entries = "".join(f"<sitemap><loc>{base}/sitemaps/{n}</loc></sitemap>" for n in names)
        text = (
            '<?xml version="1.0" encoding="UTF-8"?><sitemapindex'
            f' xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'
        )
        return web.Response(text=text, content_type="application/xml")

    async def sitemap(request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        name = request.match_info["name"]
        half = len(books) // 2
        if name in ("books-1.xml", "books-2.xml.gz"):
            part = books[:half] if name == "books-1.xml" else books[half:]
            body = _urlset(base, [(f"/book/{b['id']}.html", modified(b)) for b in part])
        elif name == "pages.xml":
            paths = ["/", *(f"/genre/{g.lower()}/" for g in GENRES)]
            body = _urlset(base, [(path, None) for path in paths])
        else:
            raise web.HTTPNotFound()
        if name.endswith(".gz"):  # a gzipped file, not a gzip Content-Encoding
            return web.Response(body=gzip.compress(body), content_type="application/gzip")
        return web.Response(body=body, content_type="application/xml")

    log: list[tuple[str, str, int]] = []

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            log.append((request.method, request.path_qs, exc.status))
            raise
        log.append((request.method, request.path_qs, response.status))
        return response

    app = web.Application(middlewares=[record])
    app[REQUESTS] = log
    app.router.add_get("/", index)
    app.router.add_get("/genre/{genre}/", genre)
    app.router.add_get(r"/book/{id:\d+}.html", book)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_get("/members/", members)
    app.router.add_get(r"/members/offer/{id:\d+}.html", offer)
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/sitemap_index.xml", sitemap_index)
    app.router.add_get("/sitemaps/{name}", sitemap)
    return app


class DemoSite:
    """Serve the demo site on 127.0.0.1 (port 0 = a free port) inside ``async with``.

    ``requests`` lists ``(method, path and query, status)`` of every request answered.
    """

    def __init__(self, port: int = 0, *, day: int = 1) -> None:
        self.port = port
        self.day = day
        self._runner: web.AppRunner | None = None
        self.requests: list[tuple[str, str, int]] = []

    @property
    def url(self) -> str:
        """The site's home page URL."""
        return f"http://127.0.0.1:{self.port}/"

    async def __aenter__(self) -> DemoSite:
        app = build_app(day=self.day)
        self.requests = app[REQUESTS]
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _serve(port: int, day: int) -> None:
    async with DemoSite(port, day=day) as site:
        print(f"demo site on {site.url}, day {day} (Ctrl-C to stop)", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--day", type=int, default=1, help="the catalogue as of this day")
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port, args.day))
    except KeyboardInterrupt:
        pass
