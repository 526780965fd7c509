"""Log in with a form POST, then crawl the members-only pages: all offline.

    crawl run examples/login.py -O offers.jsonl

The members' area of the demo site (``/members/``) redirects to ``/login`` without a
session cookie. The spider posts the login form once; the ``session`` cookie the site
sets is kept in the domain's cookie jar and sent with every later request to it. The
spider serves the demo site itself on 127.0.0.1; pass
``-a start_url=http://127.0.0.1:8000/`` to use one started with
``python examples/demo_site.py``, and ``-a password=...`` to see a failed login.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from crawler import Request, Response, Spider

sys.path.append(str(Path(__file__).parent))
from demo_site import DemoSite


class LoginSpider(Spider):
    """Signs in, follows the member offers; one item per offer page."""

    name = "login"
    settings: ClassVar[dict[str, Any]] = {
        "CONCURRENCY": 4,
        "PROGRESS_INTERVAL": 0,
        # The default (strict, RFC 6265) jar ignores cookies of IP-address hosts such as
        # 127.0.0.1; a real site has a name and needs no such setting.
        "COOKIE_JAR": "unsafe",
    }
    start_url: str = ""
    username: str = "reader"
    password: str = "books"

    async def open(self) -> None:
        """Start the demo site unless a start_url was given."""
        self._site: DemoSite | None = None
        if not self.start_url:
            self._site = await DemoSite().__aenter__()
            self.start_url = self._site.url

    async def close(self, reason: str) -> None:
        """Stop the demo site."""
        if self._site is not None:
            await self._site.__aexit__(None, None, None)

    async def start(self) -> Any:
        """The login form first: nothing else is worth fetching before we have a session."""
        yield Request(self.start_url.rstrip("/") + "/login", callback=self.login)

    def login(self, response: Response) -> Any:
        """Fill in the form and POST it; the site answers with a redirect to /members/."""
        form = response.css_first("form#login")
        yield Request(
            response.urljoin(form.attributes["action"]),
            method="POST",
            data={"username": self.username, "password": self.password, "next": "/members/"},
            callback=self.parse_offers,
            # a 401 (wrong password) reaches the callback, which says so
            meta={"handle_httpstatus_list": [401]},
        )

    def parse_offers(self, response: Response) -> Any:
        """A page of member offers (also what the login POST was redirected to)."""
        if urlsplit(response.url).path == "/login":  # no (valid) session: sent back to the form
            error = response.css_first("p.error")
            reason = error.text() if error is not None else "the session cookie was not kept"
            self.logger.error("login failed at %s: %s", response.url, reason)
            return
        yield from response.follow_all(css="li.offer a", callback=self.parse_offer)
        yield from response.follow_all(css="a.next", callback=self.parse_offers)

    def parse_offer(self, response: Response) -> Any:
        """An offer page: only a signed-in member sees the member price."""
        yield {
            "url": response.url,
            "title": response.css_first("h1").text(),
            "price": float(response.css_first("p.price").text().lstrip("£")),
            "member_price": float(response.css_first("p.member-price").text().lstrip("£")),
            # what the jar sends to this URL: the session cookie set by the login answer
            "has_session": "session" in self.cookies_for(response.url),
        }
