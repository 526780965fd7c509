"""Validated items: a pydantic model cleans every field of a book as the spider builds it.

    crawl run examples/validated_items.py -O books.jsonl

The spider serves the demo site itself on 127.0.0.1 (see ``open``), so this needs
no network; pass ``-a start_url=http://127.0.0.1:8000/`` to crawl one you started
with ``python examples/demo_site.py``. Cleaning lives in the model, not the callback:

* ``BeforeValidator`` in ``Annotated[...]``: reusable cleaners (strip and squash
  whitespace, join several text nodes, parse a price, parse an HTTP date);
* ``field_validator(mode="before")``: a cleaner for one field of one model
  (``in_stock`` from "In stock" / "Out of stock").

A book that does not validate (a price the parser cannot read, a title left empty) is
dropped with one log line naming the field and the value, and counted as
``items_dropped/validation`` in the summary. The callback yields its requests before
its item: the model raises in the callback, and a generator that raised cannot go on.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from crawler import Response, Spider

sys.path.append(str(Path(__file__).parent))
from demo_site import DemoSite


def squash(value: Any) -> Any:
    """Strip a text and turn every run of whitespace into one space."""
    return " ".join(value.split()) if isinstance(value, str) else value


def join_texts(value: Any) -> Any:
    """Several text nodes (a list) as one string: each squashed, empty ones skipped."""
    if isinstance(value, (list, tuple)):
        return " · ".join(text for text in (squash(v) for v in value) if text)
    return value


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_price(value: Any) -> Any:
    """``"£1,234.50 "`` -> ``Decimal("1234.50")``; anything without a number stays as it is
    (and fails validation, naming the field and the text)."""
    if isinstance(value, str):
        match = _NUMBER.search(value)
        if match is not None:
            return Decimal(match.group().replace(",", ""))
    return value


def parse_http_date(value: Any) -> Any:
    """An HTTP date (``Last-Modified``) -> an aware datetime; None stays None."""
    if isinstance(value, str):
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return value  # not a date: the field's validation says so
    return value


Text = Annotated[str, BeforeValidator(squash), Field(min_length=1)]
Joined = Annotated[str, BeforeValidator(join_texts)]
Price = Annotated[Decimal, BeforeValidator(parse_price), Field(gt=0, decimal_places=2)]
HttpDate = Annotated[datetime | None, BeforeValidator(parse_http_date)]


class Book(BaseModel):
    """One book, cleaned. Assignments are validated too (a pipeline cannot break it)."""

    model_config = ConfigDict(validate_assignment=True)

    url: str
    title: Text
    price: Price
    in_stock: bool
    genre: Text
    details: Joined = ""
    updated: HttpDate = None

    @field_validator("in_stock", mode="before")
    @classmethod
    def stock_text(cls, value: Any) -> Any:
        """``"In stock"`` / ``"Out of stock"`` (any case and spacing) -> True / False."""
        if isinstance(value, str):
            text = squash(value).lower()
            if text in ("in stock", "out of stock"):
                return text == "in stock"
        return value


class ValidatedBooksSpider(Spider):
    """Follows pagination and book links; yields one validated ``Book`` per book page."""

    name = "validated_books"
    settings: ClassVar[dict[str, Any]] = {"CONCURRENCY": 8, "PROGRESS_INTERVAL": 5}
    start_url: str = ""
    # Only the catalogue: the index, genre listings and book pages (not login, sitemaps...).
    allow_urls = (r"://[^/]+/(\?.*)?$", r"/genre/", r"/book/\d+\.html$")

    async def open(self) -> None:
        """Start the demo site unless a start_url was given."""
        self._site: DemoSite | None = None
        if not self.start_url:
            self._site = await DemoSite().__aenter__()
            self.start_url = self._site.url
        self.start_urls = [self.start_url]

    async def close(self, reason: str) -> None:
        """Stop the demo site."""
        if self._site is not None:
            await self._site.__aexit__(None, None, None)

    def parse(self, response: Response) -> Any:
        """Listing pages: follow books, genres and the next page."""
        yield from response.follow_all(css="li.book a", callback=self.parse_book)
        yield from response.follow_all(css="nav a, a.next")

    def parse_book(self, response: Response) -> Any:
        """A book page: the raw texts go in, the model cleans them (or the item is dropped)."""
        yield Book.model_validate(
            {
                "url": response.url,
                "title": response.css_first("h1").text(),
                "price": response.css_first("p.price").text(),  # "£26.72"
                "in_stock": response.css_first("p.stock").text(),  # "In stock"
                "genre": response.css_first("p.genre").text(),
                "details": [p.text() for p in response.css("p.price, p.stock, p.genre")],
                "updated": response.headers.get("Last-Modified"),  # an HTTP date
            }
        )
