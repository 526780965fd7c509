"""The final summary: every number once, bytes in human units, grouped counters."""

from __future__ import annotations

from crawler.stats import StatsSnapshot
from crawler.summary import human_bytes, render_plain, summary_rows

SNAPSHOT = StatsSnapshot(
    {
        "pages": 66,
        "items": 60,
        "bytes": 5 * 1024 * 1024 + 1,
        "elapsed_s": 125.0,
        "pages_per_s": 0.53,
        "status/200": 60,
        "status/404": 6,
        "callback_errors": 2,
        "callback_errors/ValueError": 2,
        "failures/timeout": 3,
        "failures/network": 1,
        "retries": 4,
        "retries/timeout": 4,
        "duplicates": 78,
        "timings/total/p50_ms": 12.4,
        "timings/total/p95_ms": 3.2,
        "timings/reused_ratio": 0.9,
        "finish_reason": "max_items",
    }
)


def test_every_topic_once_with_grouped_counters() -> None:
    rows = dict(summary_rows(SNAPSHOT))
    assert rows["stopped"] == "max_items, after 2m05s"
    assert rows["pages"] == "66 (0.5/s)"
    assert rows["bytes"] == "5.0 MiB"
    assert rows["status codes"] == "200=60, 404=6"
    assert rows["callback errors"] == "2 (ValueError=2)"
    assert rows["failures"] == "4 (timeout=3, network=1)"
    assert rows["retries"] == "4 (timeout=4)"
    assert rows["not followed"] == "duplicates 78"
    assert rows["timings"] == "response p50 12 ms, p95 3.2 ms; connections reused 90%"
    text = render_plain(summary_rows(SNAPSHOT))
    assert text.count("callback") == 1 and text.count("ValueError") == 1
    assert len(text.splitlines()) == len(rows)


def test_an_already_finished_crawl_shows_no_rate() -> None:
    rows = dict(summary_rows(StatsSnapshot(pages=66, finish_reason="already_finished")))
    assert rows["finished"] == "already, in an earlier run (nothing was fetched now)"
    assert rows["pages"] == "66"


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 40995, 3 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "40.0 KiB",
        "3.0 GiB",
    ]
