"""The built-in exporters: every item kind round-trips, append/overwrite, stdout, upserts,
durable flushes, and repair of a partial last record left by a crash."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pydantic
import pytest

from crawler import Crawler, ItemPipeline, Settings, Spider
from crawler.errors import ConfigError
from crawler.pipeline import PipelineChain
from crawler.pipelines import (
    CsvExporter,
    JsonArrayExporter,
    JsonLinesExporter,
    SqliteExporter,
    exporter_for,
)
from crawler.pipelines.jsonlines import FLUSH_BYTES
from crawler.pipelines.sqlite import BATCH_ITEMS
from crawler.testing import SiteServer, html_page

TEXT = "Zürich – 東京 🕷"  # noqa: RUF001 - the en dash is the point
META = {"spots": [{"name": TEXT, "ratings": [5, 4], "geo": {"lat": 47.37}}], "open": True}


@dataclass
class DataclassItem:
    url: str
    title: str
    meta: dict[str, Any]


@attrs.define
class AttrsItem:
    url: str
    title: str
    meta: dict[str, Any]


class PydanticItem(pydantic.BaseModel):
    url: str
    title: str
    meta: dict[str, Any]


class DemoSpider(Spider):
    name = "demo shop"


SPIDER = DemoSpider()


def make_items() -> list[Any]:
    """One item of each kind itemadapter understands."""
    return [
        {"url": "https://a.test/1", "title": TEXT, "meta": META},
        DataclassItem("https://a.test/2", TEXT, META),
        AttrsItem("https://a.test/3", TEXT, META),
        PydanticItem(url="https://a.test/4", title=TEXT, meta=META),
    ]


EXPECTED = [{"url": f"https://a.test/{n}", "title": TEXT, "meta": META} for n in range(1, 5)]


async def export(exporter: Any, items: list[Any], spider: Spider = SPIDER) -> None:
    await exporter.open(spider)
    try:
        for item in items:
            assert await exporter.process_item(item, spider) is item
    finally:
        await exporter.close(spider)


def read_jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def read_csv(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        row["meta"] = json.loads(row["meta"])
    return rows


def read_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def read_sqlite(path: Path, table: str = "demo_shop") -> list[Any]:
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(f'SELECT item FROM "{table}" ORDER BY rowid').fetchall()
    return [json.loads(item) for (item,) in rows]


def sqlite_rows(path: Path, table: str = "demo_shop") -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(
            f'SELECT key, url, item, first_seen, last_seen FROM "{table}" ORDER BY rowid'
        ).fetchall()


FORMATS: dict[str, tuple[Callable[[Path], Any], Callable[[Path], list[Any]]]] = {
    "jsonl": (JsonLinesExporter, read_jsonl),
    "csv": (CsvExporter, read_csv),
    "json": (JsonArrayExporter, read_json),
    "sqlite": (SqliteExporter, read_sqlite),
}


# --- every exporter ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FORMATS)
async def test_every_item_kind_round_trips_with_unicode_and_nested_values(
    tmp_path: Path, kind: str
) -> None:
    make, read = FORMATS[kind]
    path = tmp_path / f"items.{kind}"
    exporter = make(path)
    assert isinstance(exporter, ItemPipeline)
    await export(exporter, make_items())
    assert read(path) == EXPECTED


@pytest.mark.parametrize("kind", ["jsonl", "csv", "json"])
async def test_file_exporters_buffer_until_a_batch_is_full(tmp_path: Path, kind: str) -> None:
    make, read = FORMATS[kind]
    path = tmp_path / f"items.{kind}"
    exporter = make(path)
    await exporter.open(SPIDER)
    try:
        await exporter.process_item(EXPECTED[0], SPIDER)
        # Small output stays in memory: nothing touched the disk from the event loop.
        assert path.stat().st_size == 0
    finally:
        await exporter.close(SPIDER)
    assert read(path) == EXPECTED[:1]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "json"])
async def test_concurrent_items_over_many_batches_keep_their_order(
    tmp_path: Path, kind: str
) -> None:
    make, read = FORMATS[kind]
    path = tmp_path / f"items.{kind}"
    items = [{"url": f"https://a.test/{n}", "title": TEXT * 20, "meta": META} for n in range(3000)]
    exporter = make(path)
    await exporter.open(SPIDER)
    try:
        # Like many workers producing items at once.
        await asyncio.gather(*(exporter.process_item(item, SPIDER) for item in items))
    finally:
        await exporter.close(SPIDER)
    assert path.stat().st_size > 5 * FLUSH_BYTES
    assert read(path) == items


@pytest.mark.parametrize("kind", ["jsonl", "csv", "json"])
async def test_unopenable_path_is_a_config_error(tmp_path: Path, kind: str) -> None:
    make, _ = FORMATS[kind]
    with pytest.raises(ConfigError, match="cannot open output file"):
        await make(tmp_path).open(SPIDER)  # a directory


def test_unknown_types_become_strings_and_sets_lists() -> None:
    from crawler.pipelines.jsonlines import dumps

    value = {"price": Decimal("1.10"), "tags": {"b", "a"}, 3: datetime(2024, 1, 2, tzinfo=UTC)}
    assert json.loads(dumps(value)) == {
        "price": "1.10",
        "tags": ["a", "b"],
        "3": "2024-01-02T00:00:00+00:00",
    }
    assert json.loads(dumps({"nested": [AttrsItem("u", TEXT, {})]})) == {
        "nested": [{"url": "u", "title": TEXT, "meta": {}}]
    }


# --- JSON Lines -------------------------------------------------------------------------------


async def test_jsonl_appends_by_default_and_overwrite_truncates(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    await export(JsonLinesExporter(path), make_items())
    await export(JsonLinesExporter(path), make_items()[:1])
    assert read_jsonl(path) == [*EXPECTED, EXPECTED[0]]
    await export(JsonLinesExporter(path, overwrite=True), make_items()[1:2])
    assert read_jsonl(path) == [EXPECTED[1]]


async def test_jsonl_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "out" / "run" / "items.jl"
    await export(JsonLinesExporter(path), make_items()[:1])
    assert read_jsonl(path) == EXPECTED[:1]


async def test_jsonl_dash_streams_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    await export(JsonLinesExporter("-"), make_items())
    out = capsysbinary.readouterr().out
    assert [json.loads(line) for line in out.splitlines()] == EXPECTED
    assert TEXT.encode() in out  # real UTF-8, not \u escapes


# --- CSV --------------------------------------------------------------------------------------


async def test_csv_header_comes_from_the_first_item(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    await export(CsvExporter(path), [{"b": 1, "a": None}, {"a": "x", "b": 2}])
    assert path.read_text("utf-8").splitlines() == ["b,a", "1,", "2,x"]


async def test_csv_append_reuses_the_existing_header(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    await export(CsvExporter(path), make_items()[:2])
    # Same fields in another order: the existing column order wins, no second header.
    await export(CsvExporter(path), [{"meta": META, "title": TEXT, "url": "https://a.test/3"}])
    assert path.read_text("utf-8").count("url,title,meta") == 1
    assert read_csv(path) == EXPECTED[:3]


async def test_csv_overwrite_starts_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    await export(CsvExporter(path), [{"old": 1}])
    await export(CsvExporter(path, overwrite=True), make_items()[3:])
    assert read_csv(path) == EXPECTED[3:]


async def test_csv_fields_choose_columns_and_an_empty_crawl_still_gets_a_header(
    tmp_path: Path,
) -> None:
    path = tmp_path / "items.csv"
    await export(CsvExporter(path, fields=["title", "url"]), [])
    assert path.read_bytes() == b"title,url\r\n"
    await export(CsvExporter(path, fields=["title", "url"]), [{"url": "u", "title": "t"}])
    assert path.read_bytes() == b"title,url\r\nt,u\r\n"


async def test_csv_drops_unknown_fields_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "items.csv"
    caplog.set_level(logging.WARNING, logger="crawler.pipelines.csv")
    items = [{"url": "u1"}, {"url": "u2", "extra": 1}, {"url": "u3", "extra": 2}]
    await export(CsvExporter(path), items)
    assert path.read_text("utf-8").splitlines() == ["url", "u1", "u2", "u3"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "extra" in warnings[0] and "demo shop" in warnings[0]


# --- JSON array -------------------------------------------------------------------------------


async def test_json_array_layout_and_empty_crawl(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    await export(JsonArrayExporter(path), [])
    assert path.read_text("utf-8") == "[]\n"
    await export(JsonArrayExporter(path, overwrite=True), [{"a": 1}, {"a": 2}])
    assert path.read_text("utf-8") == '[\n{"a":1},\n{"a":2}\n]\n'


async def test_json_array_refuses_to_append(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    await export(JsonArrayExporter(path), make_items()[:1])
    with pytest.raises(ConfigError, match=r"cannot append to a JSON array file .*items\.json.*-O"):
        await JsonArrayExporter(path).open(SPIDER)
    assert read_json(path) == EXPECTED[:1]  # untouched
    await export(JsonArrayExporter(path, overwrite=True), make_items()[1:])
    assert read_json(path) == EXPECTED[1:]


async def test_json_array_accepts_an_existing_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.touch()
    await export(JsonArrayExporter(path), make_items()[:1])
    assert read_json(path) == EXPECTED[:1]


# --- SQLite -----------------------------------------------------------------------------------


def ticking_clock() -> Callable[[], datetime]:
    """A timestamp source that moves one second per call."""
    times: Iterator[datetime] = (
        datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=n) for n in range(10**6)
    )
    return lambda: next(times)


async def test_sqlite_same_item_twice_is_one_row_with_last_seen_updated(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    now = ticking_clock()
    await export(SqliteExporter(path, now=now), [dict(EXPECTED[0])])
    await export(SqliteExporter(path, now=now), [dict(EXPECTED[0]), make_items()[1]])
    rows = sqlite_rows(path)
    assert len(rows) == 2
    key, url, item, first_seen, last_seen = rows[0]
    assert (url, json.loads(item)) == ("https://a.test/1", EXPECTED[0])
    assert first_seen == "2024-01-01T00:00:00+00:00"
    assert last_seen == "2024-01-01T00:00:01+00:00"
    assert len(key) == 40  # sha1 hex of the content


async def test_sqlite_content_key_ignores_field_order(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    await export(SqliteExporter(path), [{"a": 1, "b": {"x": 1}}, {"b": {"x": 1}, "a": 1}])
    assert len(sqlite_rows(path)) == 1


async def test_sqlite_key_field_upserts_changed_items(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    items = [{"url": "u", "price": 1}, {"url": "u", "price": 2}, {"price": 3}]
    await export(SqliteExporter(path, key_field="url"), items)
    rows = sqlite_rows(path)
    assert [(key, url, json.loads(item)) for key, url, item, *_ in rows] == [
        ("u", "u", {"url": "u", "price": 2}),
        (rows[1][0], None, {"price": 3}),  # no key field: keyed by content, url NULL
    ]


async def test_sqlite_batches_many_items_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite3"
    items = [{"url": f"https://a.test/{n}", "n": n} for n in range(1234)]
    await export(SqliteExporter(path), items)
    assert read_sqlite(path) == items
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_one_table_per_spider_and_overwrite_drops_only_it(tmp_path: Path) -> None:
    path = tmp_path / "items.db"

    class Nameless(Spider):
        pass

    await export(SqliteExporter(path), make_items()[:1])
    await export(SqliteExporter(path), make_items()[1:2], spider=Nameless())
    await export(SqliteExporter(path, table="other-table!"), make_items()[2:3])
    assert read_sqlite(path, "items") == EXPECTED[1:2]
    assert read_sqlite(path, "other_table_") == EXPECTED[2:3]
    await export(SqliteExporter(path, overwrite=True), make_items()[3:])
    assert read_sqlite(path) == EXPECTED[3:]
    assert read_sqlite(path, "items") == EXPECTED[1:2]


async def test_sqlite_refuses_a_table_with_another_schema(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute('CREATE TABLE "demo_shop" (id INTEGER)')
        db.commit()
    with pytest.raises(ConfigError, match="has columns"):
        await SqliteExporter(path).open(SPIDER)
    await export(SqliteExporter(path, overwrite=True), make_items()[:1])
    assert read_sqlite(path) == EXPECTED[:1]


# --- durable flush (crash-safe checkpoints) ---------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file descriptors os.fsync is called with, in order."""
    calls: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.mark.parametrize("kind", FORMATS)
async def test_flush_makes_items_readable_before_close(tmp_path: Path, kind: str) -> None:
    make, read = FORMATS[kind]
    path = tmp_path / f"items.{kind}"
    exporter = make(path)
    await exporter.open(SPIDER)
    try:
        for item in make_items()[:2]:
            await exporter.process_item(item, SPIDER)
        await exporter.flush(SPIDER)
        # Another reader (a second connection for SQLite) sees both items before close.
        if kind == "json":
            # The array is closed only by close(); its elements are all there.
            assert (
                read_jsonl_text(path.read_text("utf-8").removeprefix("[\n"), ",") == (EXPECTED[:2])
            )
        else:
            assert read(path) == EXPECTED[:2]
        await exporter.process_item(make_items()[2], SPIDER)
        await exporter.flush(SPIDER)
        if kind != "json":
            assert read(path) == EXPECTED[:3]
    finally:
        await exporter.close(SPIDER)
    assert read(path) == EXPECTED[:3]


def read_jsonl_text(text: str, separator: str = "") -> list[Any]:
    return [json.loads(line.removesuffix(separator)) for line in text.splitlines()]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "json"])
async def test_flush_fsyncs_only_when_something_was_written(
    tmp_path: Path, kind: str, fsyncs: list[int]
) -> None:
    make, _ = FORMATS[kind]
    exporter = make(tmp_path / f"items.{kind}")
    await exporter.open(SPIDER)
    try:
        fd = exporter._out._file.fileno()
        opened = len(fsyncs)  # the new file's directory entry
        await exporter.process_item(EXPECTED[0], SPIDER)
        assert fsyncs[opened:] == []  # buffering never syncs
        await exporter.flush(SPIDER)
        assert fsyncs[opened:] == [fd]
        await exporter.flush(SPIDER)
        assert fsyncs[opened:] == [fd]  # nothing new: no second fsync
    finally:
        await exporter.close(SPIDER)


async def test_flush_to_stdout_writes_without_fsync(
    capsysbinary: pytest.CaptureFixture[bytes], fsyncs: list[int]
) -> None:
    exporter = JsonLinesExporter("-")
    await exporter.open(SPIDER)
    try:
        await exporter.process_item(EXPECTED[0], SPIDER)
        await exporter.flush(SPIDER)
        assert read_jsonl_text(capsysbinary.readouterr().out.decode()) == EXPECTED[:1]
    finally:
        await exporter.close(SPIDER)
    assert fsyncs == []


async def test_sqlite_flush_waits_for_a_batch_already_being_written(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    exporter = SqliteExporter(path)
    await exporter.open(SPIDER)
    try:
        items = [{"n": n} for n in range(BATCH_ITEMS)]
        processing = [asyncio.create_task(exporter.process_item(item, SPIDER)) for item in items]
        await asyncio.sleep(0)  # all buffered; the last item took the full batch to write it
        # Nothing left in the buffer, yet flush must not return before that batch is committed.
        await exporter.flush(SPIDER)
        assert read_sqlite(path) == items
        await asyncio.gather(*processing)
    finally:
        await exporter.close(SPIDER)


# --- keyed upserts: a resumed crawl re-emits a page's items with the same keys -----------------


async def test_sqlite_upserts_by_the_crawl_item_key(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    chain = PipelineChain([SqliteExporter(path, now=ticking_clock())])
    await chain.open(SPIDER)
    try:
        await chain.process({"url": "u", "price": 1}, SPIDER, key="ab12:0")
        await chain.flush(SPIDER)
        # Resumed: the same page again, same key -> the row is updated, not duplicated.
        await chain.process({"url": "u", "price": 2}, SPIDER, key="ab12:0")
        # Equal content under another key (another page, or the page's next item): a new row.
        await chain.process({"url": "u", "price": 2}, SPIDER, key="ab12:1")
    finally:
        await chain.close(SPIDER)
    rows = sqlite_rows(path)
    assert [(key, json.loads(item)) for key, _, item, *_ in rows] == [
        ("ab12:0", {"url": "u", "price": 2}),
        ("ab12:1", {"url": "u", "price": 2}),
    ]
    assert rows[0][3:] == ("2024-01-01T00:00:00+00:00", "2024-01-01T00:00:01+00:00")


async def test_sqlite_key_field_wins_over_the_crawl_item_key(tmp_path: Path) -> None:
    path = tmp_path / "items.db"
    chain = PipelineChain([SqliteExporter(path, key_field="url")])
    await chain.open(SPIDER)
    try:
        await chain.process({"url": "u", "price": 1}, SPIDER, key="ab12:0")
        await chain.process({"url": "u", "price": 2}, SPIDER, key="cd34:0")
        await chain.process({"price": 3}, SPIDER, key="cd34:1")  # no url: the crawl key
    finally:
        await chain.close(SPIDER)
    assert [(key, json.loads(item)) for key, _, item, *_ in sqlite_rows(path)] == [
        ("u", {"url": "u", "price": 2}),
        ("cd34:1", {"price": 3}),
    ]


# --- repairing a partial last record after a crash --------------------------------------------


def dropped_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "dropped its last" in r.getMessage()]


async def test_jsonl_append_drops_a_partial_last_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "items.jsonl"
    await export(JsonLinesExporter(path), make_items()[:2])
    partial = b'{"url":"https://a.test/3","tit'
    path.write_bytes(path.read_bytes() + partial)  # killed mid-write
    caplog.set_level(logging.WARNING)
    await export(JsonLinesExporter(path), make_items()[2:])
    assert read_jsonl(path) == EXPECTED  # the item in the cut line was emitted again
    assert path.read_bytes().count(partial) == 1  # only in the re-emitted line
    [warning] = dropped_warnings(caplog)
    assert str(path) in warning and f"{len(partial)} bytes" in warning
    assert "demo shop" in warning


async def test_jsonl_append_to_a_file_without_any_whole_line_empties_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_bytes(b'{"url":' * 20_000)  # bigger than one scan window
    caplog.set_level(logging.WARNING)
    await export(JsonLinesExporter(path), make_items()[:1])
    assert read_jsonl(path) == EXPECTED[:1]
    assert "140000 bytes" in dropped_warnings(caplog)[0]


async def test_jsonl_append_keeps_a_whole_file_untouched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "items.jsonl"
    await export(JsonLinesExporter(path), make_items()[:1])
    caplog.set_level(logging.WARNING)
    await export(JsonLinesExporter(path), make_items()[1:2])
    assert read_jsonl(path) == EXPECTED[:2]
    assert dropped_warnings(caplog) == []


CSV_HEAD = b'url,title,meta\r\nu1,"two\nlines",{}\r\n'


@pytest.mark.parametrize(
    "partial",
    [
        b"u2,half a ro",  # cut in an unquoted cell
        b'u2,"first line\n',  # cut inside a quoted cell: ends with a newline, still partial
        b'u2,"say ""hi""\r\nand',  # escaped quotes and a line break inside the cell
        b"u2,t,{}\r",  # cut between \r and \n
    ],
)
async def test_csv_append_drops_a_partial_last_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, partial: bytes
) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(CSV_HEAD + partial)
    caplog.set_level(logging.WARNING)
    await export(CsvExporter(path), [{"url": "u2", "title": "t", "meta": {}}])
    assert path.read_bytes() == CSV_HEAD + b"u2,t,{}\r\n"
    assert list(csv.reader(io.StringIO(path.read_text("utf-8"), newline=""))) == [
        ["url", "title", "meta"],
        ["u1", "two\nlines", "{}"],
        ["u2", "t", "{}"],
    ]
    [warning] = dropped_warnings(caplog)
    assert str(path) in warning and f"{len(partial)} bytes" in warning


async def test_csv_append_keeps_rows_with_quoted_line_breaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "items.csv"
    first = {"url": "u1", "title": 'a "quoted"\r\nmulti-line\ntitle', "meta": {}}
    await export(CsvExporter(path), [first])
    caplog.set_level(logging.WARNING)
    await export(CsvExporter(path), [{"url": "u2", "title": "t", "meta": {}}])
    assert [row["title"] for row in read_csv(path)] == [first["title"], "t"]
    assert dropped_warnings(caplog) == []


async def test_csv_append_after_a_partial_header_writes_the_header_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes(b"url,ti")
    await export(CsvExporter(path), make_items()[:1])
    assert read_csv(path) == EXPECTED[:1]
    assert path.read_text("utf-8").count("url,title,meta") == 1


# --- exporter_for -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        ("-", JsonLinesExporter),
        ("out/items.jsonl", JsonLinesExporter),
        ("items.JL", JsonLinesExporter),
        ("items.csv", CsvExporter),
        ("items.json", JsonArrayExporter),
        ("items.db", SqliteExporter),
        ("items.sqlite", SqliteExporter),
        ("items.sqlite3", SqliteExporter),
    ],
)
def test_exporter_for_picks_by_extension(path: str, cls: type) -> None:
    exporter = exporter_for(path, overwrite=True)
    assert type(exporter) is cls
    assert exporter.overwrite is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["items.txt", "items"])
def test_exporter_for_rejects_unknown_extensions(path: str) -> None:
    with pytest.raises(ConfigError, match=r"\.jsonl.*\.csv.*\.json.*\.db"):
        exporter_for(path)


# --- end to end -------------------------------------------------------------------------------


class ShopSpider(Spider):
    name = "shop"

    def parse(self, response: Any) -> Iterator[Any]:
        yield {
            "url": response.url,
            "title": response.css_first("title").text(),
            "meta": {"links": [{"href": a.attributes["href"]} for a in response.css("a")]},
        }
        yield from response.follow_all()


@pytest.mark.parametrize("extension", [".jsonl", ".csv", ".json", ".db"])
async def test_crawl_exports_one_item_per_page(tmp_path: Path, extension: str) -> None:
    pages = {
        "/": html_page(TEXT, ["/a", "/b"]),
        "/a": html_page("A", ["/", "/b"]),
        "/b": html_page("B", ["/c"]),
        "/c": html_page("C"),
    }
    async with SiteServer({"shop.test": dict(pages)}) as server:
        path = tmp_path / f"items{extension}"
        settings = Settings.build(
            ("test", {"RESOLVE": server.resolve_map(), "PROGRESS_INTERVAL": 0})
        )
        spider = ShopSpider(start_urls=[server.url("shop.test")])
        result = await Crawler(spider, settings, pipelines=[exporter_for(str(path))]).run()
    assert result.stats["items"] == 4
    reader = {".jsonl": read_jsonl, ".csv": read_csv, ".json": read_json}.get(extension)
    items = reader(path) if reader else read_sqlite(path, "shop")
    by_path = {item["url"].rsplit(":", 1)[1].partition("/")[2]: item for item in items}
    assert sorted(by_path) == ["", "a", "b", "c"]
    assert by_path[""]["title"] == TEXT
    assert by_path[""]["meta"] == {"links": [{"href": "/a"}, {"href": "/b"}]}
