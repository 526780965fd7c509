"""Items that validate themselves: pydantic models, attrs validators, dataclass __post_init__.

A validation error drops that item only (``items_dropped/validation``, one WARNING line
naming the field and the value, bounded), whether the callback raised it while building
the item, the item's class asked to be validated again before the pipelines, or a
pipeline assigned a bad value. The example spider (examples/validated_items.py) runs
against the demo site and yields cleaned items.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attr
import attrs
import pytest
from conftest import SiteFactory, run_spider
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crawler import Response, Spider
from crawler.testing import html_page
from crawler.validation import InvalidItem, invalid_item

ROOT = Path(__file__).resolve().parent.parent


class Product(BaseModel):
    name: str
    price: float = Field(gt=0)


class Strict(BaseModel):
    model_config = ConfigDict(validate_assignment=True)
    name: str
    price: float = Field(gt=0)


class Rechecked(BaseModel):
    model_config = ConfigDict(revalidate_instances="always")
    name: str
    price: float = Field(gt=0)


@attrs.define
class AttrsProduct:
    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    price: float = attrs.field(validator=attrs.validators.ge(0))


@attr.s
class ClassicProduct:  # attr.s: assignments skip the validators
    name = attr.ib(validator=attr.validators.instance_of(str))
    price = attr.ib()

    @price.validator
    def _positive(self, attribute: Any, value: Any) -> None:
        if value < 0:
            raise ValueError(f"{attribute.name} must be >= 0")


@dataclasses.dataclass
class DataProduct:
    name: str
    price: float

    def __post_init__(self) -> None:
        if self.price < 0:
            raise ValueError(f"price must be >= 0, got {self.price!r}")


PAGES = {
    "a.test": {"/": html_page("home", ["/p1", "/p2", "/p3"])}
    | {f"/p{n}": html_page(f"page {n}") for n in (1, 2, 3)}
}


def price_of(response: Response) -> float:
    """page 2 is the bad one."""
    return -1.0 if response.url.endswith("/p2") else 9.5


def validation_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "invalid item" in r.getMessage()]


class OnePerPage(Spider):
    """Yields its requests first, then one item per page built by ``make``."""

    name = "one"
    make: Any = None

    def parse(self, response: Response) -> Iterator[Any]:
        yield from response.follow_all()
        if response.url.endswith("/"):
            return
        yield type(self).make(name=response.url[-2:], price=price_of(response))


@pytest.mark.parametrize(
    ("make", "field_text"),
    [
        (Product, "price=-1.0 (Input should be greater than 0)"),
        (AttrsProduct, "AttrsProduct: price=-1.0 ('price' must be >= 0: -1.0)"),
        (DataProduct, "DataProduct: price must be >= 0, got -1.0"),
    ],
    ids=["pydantic", "attrs", "dataclass"],
)
async def test_an_item_failing_validation_in_the_callback_is_dropped_and_counted(
    site: SiteFactory, caplog: pytest.LogCaptureFixture, make: Any, field_text: str
) -> None:
    server = await site(PAGES)

    class Spider_(OnePerPage):
        pass

    Spider_.make = make
    with caplog.at_level(logging.INFO, logger="crawler"):
        result, items = await run_spider(Spider_(start_urls=[server.url("a.test")]), server)
    assert sorted(item.name for item in items) == ["p1", "p3"]  # the other pages' items
    assert result.stats["items_dropped/validation"] == 1
    assert "callback_errors" not in result.stats
    (line,) = validation_lines(caplog)
    assert line.levelno == logging.WARNING
    assert field_text in line.getMessage(), line.getMessage()
    assert "/p2" in line.getMessage()
    assert "Traceback" not in caplog.text


async def test_a_generator_keeps_what_it_yielded_before_the_error(
    site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A raise ends a generator: earlier outputs are kept, later ones are lost (and said so)."""
    server = await site(PAGES)

    class Listing(Spider):
        name = "listing"

        def parse(self, response: Response) -> Iterator[Any]:
            yield Product(name="first", price=1)
            yield response.follow("/p1", callback=self.done)
            yield Product.model_validate({"name": "bad", "price": "x" * 10_000})  # raises
            yield Product(name="never", price=2)  # lost
            yield response.follow("/p3", callback=self.done)  # lost

        def done(self, response: Response) -> None:
            return None

    with caplog.at_level(logging.INFO, logger="crawler"):
        result, items = await run_spider(Listing(start_urls=[server.url("a.test")]), server)
    assert [item.name for item in items] == ["first"]
    assert server.paths_seen("a.test") == ["/", "/p1"]
    assert result.stats["items_dropped/validation"] == 1
    (line,) = validation_lines(caplog)
    message = line.getMessage()
    assert "Product: price='xxxxxxxx" in message and "later outputs are lost" in message
    assert len(message) < 600  # the 10,000-character value is cut


async def test_items_are_validated_again_before_the_pipelines_when_their_class_asks(
    site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await site({"a.test": {"/": html_page("home")}})

    class Bypass(Spider):
        name = "bypass"

        def parse(self, response: Response) -> Iterator[Any]:
            # built without validation, or changed after it: the class asks for a re-check
            yield Rechecked.model_construct(name="constructed", price=-3)
            classic = ClassicProduct(name="classic", price=1)
            classic.price = -2
            yield classic
            plain = Product(name="plain", price=1)
            plain.price = -4  # no validate_assignment, no revalidate_instances: kept
            yield plain
            yield Rechecked(name="fine", price=1)

    with caplog.at_level(logging.INFO, logger="crawler"):
        result, items = await run_spider(Bypass(start_urls=[server.url("a.test")]), server)
    assert [item.name for item in items] == ["plain", "fine"]
    assert result.stats["items_dropped/validation"] == 2
    messages = [r.getMessage() for r in validation_lines(caplog)]
    assert "Rechecked: price=-3" in messages[0]
    assert "ClassicProduct: price=-2 (price must be >= 0)" in messages[1]


async def test_a_pipeline_assigning_a_bad_value_drops_the_item_as_invalid(
    site: SiteFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await site({"a.test": {"/": html_page("home")}})

    class Discount:
        def process_item(self, item: Any, spider: Any) -> Any:
            item.price = item.price - 5  # validate_assignment: the model refuses <= 0
            return item

    class Items(Spider):
        name = "items"

        def parse(self, response: Response) -> Iterator[Any]:
            yield Strict(name="cheap", price=3)
            yield Strict(name="dear", price=30)

    settings = {"PIPELINES": [Discount()]}
    with caplog.at_level(logging.INFO, logger="crawler"):
        result, items = await run_spider(
            Items(start_urls=[server.url("a.test")]), server, **settings
        )
    assert [(i.name, i.price) for i in items] == [("dear", 25)]
    assert result.stats["items_dropped/validation"] == 1
    assert "pipeline_errors" not in result.stats and "items_dropped/error" not in result.stats
    (line,) = validation_lines(caplog)
    assert "Strict: price=-2.0 (Input should be greater than 0)" in line.getMessage()


async def test_other_errors_in_a_callback_are_still_callback_errors(site: SiteFactory) -> None:
    server = await site({"a.test": {"/": html_page("home")}})

    class Broken(Spider):
        name = "broken"

        def parse(self, response: Response) -> Iterator[Any]:
            yield {"ok": 1}
            int("not a number")  # a ValueError, but not from an item's validation

    result, items = await run_spider(Broken(start_urls=[server.url("a.test")]), server)
    assert items == [{"ok": 1}]
    assert result.stats["callback_errors/ValueError"] == 1
    assert "items_dropped/validation" not in result.stats


def test_invalid_item_names_every_field_bounded() -> None:
    class Many(BaseModel):
        a: int
        b: int
        c: int
        d: int

    with pytest.raises(ValidationError) as caught:
        Many.model_validate({"a": "x", "b": "y", "c": "z", "d": "w"})
    invalid = invalid_item(caught.value)
    assert isinstance(invalid, InvalidItem)
    text = str(invalid)
    assert text.startswith("Many: a='x' (") and "c='z'" in text and text.endswith("+1 more")
    assert invalid_item(KeyError("x")) is None
    assert invalid_item(ValueError("plain")) is None


def test_importing_the_framework_does_not_import_pydantic_for_validation() -> None:
    """crawler.validation and crawler.pipeline never import pydantic or attrs themselves."""
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name.split('.')[0] in ('pydantic', 'attr', 'attrs') and a and a[0] and\\\n"
        "       a[0].get('__name__', '') in ('crawler.validation', 'crawler.pipeline'):\n"
        "        raise AssertionError(name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "import crawler.validation, crawler.pipeline\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


async def test_the_example_spider_yields_cleaned_books() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from validated_items import Book, ValidatedBooksSpider
    finally:
        sys.path.remove(str(ROOT / "examples"))
    result, items = await run_spider(ValidatedBooksSpider(), None)
    assert result.finish_reason == "finished"
    assert len(items) == 60 and all(isinstance(item, Book) for item in items)
    book = items[0]
    assert isinstance(book.price, Decimal) and book.price > 0
    assert isinstance(book.in_stock, bool)
    assert book.title == book.title.strip() and "  " not in book.title
    assert book.details.count(" · ") == 2 and book.updated is not None
    assert "items_dropped/validation" not in result.stats
    # the same cleaners refuse what they cannot read, naming the field
    with pytest.raises(ValidationError) as caught:
        Book.model_validate(
            {"url": "u", "title": "  ", "price": "free", "in_stock": "maybe", "genre": "g"}
        )
    fields = {error["loc"][0] for error in caught.value.errors()}
    assert fields == {"title", "price", "in_stock"}
    raw = {"url": "u", "title": " A \n  B ", "price": "£1,234.50", "in_stock": " In  Stock"}
    clean = Book.model_validate({**raw, "genre": "g"})
    assert (clean.title, clean.price, clean.in_stock) == ("A B", Decimal("1234.50"), True)
