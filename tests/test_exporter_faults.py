"""Nothing lost, ever: real write failures become OutputError, transient ones are retried, a
failed batch never poisons later ones, and a resumed crawl cuts every file back to its last
checkpoint so it holds each item exactly once."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from crawler import Spider
from crawler.errors import OutputError
from crawler.pipeline import CheckpointedOutput
from crawler.pipelines import (
    CsvExporter,
    JsonArrayExporter,
    JsonLinesExporter,
    SqliteExporter,
    WriteRetry,
)


class FaultSpider(Spider):
    name = "faults"


SPIDER = FaultSpider()


def item(n: int) -> dict[str, str]:
    """A flat item whose values are all strings, so every format reads it back equal."""
    return {"url": f"https://a.test/{n}", "title": f"item {n} " + "x" * 100}


def read_jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def read_sqlite(path: Path, table: str = "faults") -> list[Any]:
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(f'SELECT item FROM "{table}" ORDER BY rowid').fetchall()
    return [json.loads(value) for (value,) in rows]


FILES: dict[str, tuple[Callable[..., Any], Callable[[Path], list[Any]]]] = {
    "jsonl": (JsonLinesExporter, read_jsonl),
    "csv": (CsvExporter, read_csv),
    "json": (JsonArrayExporter, read_json),
}


def run_child(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter (its own resource limits, its own death)."""
    child = tmp_path / "child.py"
    child.write_text(textwrap.dedent(script), "utf-8")
    return subprocess.run(
        [sys.executable, str(child), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- fatal failures: real faults -------------------------------------------------------------

EFBIG_CHILD = """
    import asyncio, json, resource, sys
    from crawler.errors import OutputError
    from crawler.pipelines import exporter_for

    path, limit = sys.argv[1], int(sys.argv[2])

    def item(n):
        return {"url": f"https://a.test/{n}", "title": f"item {n} " + "x" * 100}

    async def main():
        exporter = exporter_for(path)
        await exporter.open(None)
        report = {}
        for n in range(20):
            await exporter.process_item(item(n), None)
        await exporter.flush(None)  # well under the limit
        # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            for n in range(20, 300):
                await exporter.process_item(item(n), None)
            await exporter.flush(None)
        except OutputError as exc:
            report.update(
                error=str(exc),
                output=exc.output,
                cause=type(exc.__cause__).__name__,
                errno=getattr(exc.__cause__, "errno", None),
            )
            try:
                await exporter.process_item(item(999), None)
            except OutputError as again:
                report["again_same"] = again is exc
            try:
                await exporter.flush(None)
            except OutputError as again:
                report["flush_same"] = again is exc
        try:
            await exporter.close(None)
        except OutputError as exc:
            report["close"] = str(exc)
        print(json.dumps(report))

    asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["jsonl", "csv", "json", "db"])
def test_file_too_large_is_an_output_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"items.{kind}"
    result = run_child(tmp_path, EFBIG_CHILD, str(path), str(24 * 1024))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    error = report["error"]
    assert error.startswith(f"cannot write {path}: ")
    assert "\n" not in error and "a.test" not in error  # one line, no item data
    assert report["output"] == str(path)
    if kind == "db":
        # SQLite reports a write past the limit as an I/O error (or "full" on a short write).
        assert "disk I/O error (SQLITE_IOERR" in error or "database or disk is full" in error
        assert "ulimit -f" in error
        assert report["cause"] == "OperationalError"
    else:
        assert "[Errno 27] File too large" in error and "ulimit -f" in error
        assert (report["cause"], report["errno"]) == ("OSError", 27)
    assert report["again_same"] and report["flush_same"]
    assert report["close"] == error  # close raises it too, and still closes
    if kind == "jsonl":
        # The partial batch was cut: the file holds the 20 flushed items, whole.
        assert read_jsonl(path) == [item(n) for n in range(20)]
    if kind == "csv":
        assert read_csv(path) == [item(n) for n in range(20)]
    if kind == "db":
        assert read_sqlite(path, "items") == [item(n) for n in range(20)]


@pytest.fixture(scope="module")
def tmpfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 64 KiB tmpfs (a real full disk), or a skip saying why it cannot be mounted."""
    folder = tmp_path_factory.mktemp("tmpfs")
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command: the full-disk (tmpfs) variant needs one")
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(
            "cannot mount a 64 KiB tmpfs (needs root with CAP_SYS_ADMIN):"
            f" {result.stderr.strip() or result.returncode}"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("kind", FILES)
async def test_full_disk_is_an_output_error(tmpfs_dir: Path, kind: str) -> None:
    make, read = FILES[kind]
    path = tmpfs_dir / f"items.{kind}"
    exporter = make(path, overwrite=True)
    exporter.resume_at(None, False)  # with a state folder: the message says how to resume
    await exporter.open(SPIDER)
    try:
        for n in range(20):
            await exporter.process_item(item(n), SPIDER)
        await exporter.flush(SPIDER)
        with pytest.raises(OutputError) as failed:
            for n in range(20, 2000):  # ~250 KB: far more than the disk holds
                await exporter.process_item(item(n), SPIDER)
            await exporter.flush(SPIDER)
        message = str(failed.value)
        assert message == (
            f"cannot write {path}: [Errno 28] No space left on device — free space and run"
            " the same command again (with the same --state) to resume"
        )
        assert isinstance(failed.value.__cause__, OSError)
        with pytest.raises(OutputError) as again:
            await exporter.process_item(item(0), SPIDER)
        assert again.value is failed.value
        if kind != "json":  # (an array is whole only once closed)
            # The batch that did not fit was cut: the file holds the 20 flushed items.
            assert read(path) == [item(n) for n in range(20)]
    finally:
        with pytest.raises(OutputError) as at_close:
            await exporter.close(SPIDER)
        path.unlink()  # frees the tmpfs for the next variant
    assert at_close.value is failed.value


@pytest.mark.parametrize("kind", FILES)
async def test_a_close_that_fails_is_an_output_error(tmp_path: Path, kind: str) -> None:
    make, _ = FILES[kind]
    path = tmp_path / f"items.{kind}"
    exporter = make(path)
    await exporter.open(SPIDER)
    await exporter.process_item(item(0), SPIDER)
    # Something replaces the exporter's descriptor with a read-only one under it.
    fd = exporter._out._file.fileno()
    read_only = os.open(path, os.O_RDONLY)
    os.dup2(read_only, fd)
    os.close(read_only)
    with pytest.raises(OutputError, match=r"Bad file descriptor") as failed:
        await exporter.close(SPIDER)
    assert str(failed.value).startswith(f"cannot write {path}: [Errno 9] ")
    assert failed.value.output == str(path)
    assert exporter._out._file is None  # closed anyway


async def test_a_failed_batch_fails_process_item_and_every_later_call(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    exporter = JsonLinesExporter(path)
    await exporter.open(SPIDER)
    fd = exporter._out._file.fileno()
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, fd)
    os.close(full)
    big = {"url": "u", "title": "x" * (70 * 1024)}  # one item fills a batch
    # The batch write is started by this item: it fails with ENOSPC, named, with no item data.
    with pytest.raises(OutputError, match=r"No space left on device") as failed:
        await exporter.process_item(big, SPIDER)
    assert "x" * 20 not in str(failed.value)
    with pytest.raises(OutputError) as again:
        await exporter.process_item(item(0), SPIDER)
    assert again.value is failed.value
    with pytest.raises(OutputError) as at_close:
        await exporter.close(SPIDER)
    assert at_close.value is failed.value


# --- transient failures are retried ----------------------------------------------------------


async def test_a_pipe_that_would_block_is_retried_without_losing_or_repeating_bytes(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "items.jsonl"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(reader, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                return
            received.extend(data)

    retries: list[float] = []

    async def sleep(delay_s: float) -> None:
        retries.append(delay_s)
        drain()  # the reader catches up while the writer backs off

    exporter = JsonLinesExporter(fifo, retry=WriteRetry(sleep=sleep))
    items = [item(n) for n in range(1500)]  # ~190 KB: several pipefuls
    try:
        await exporter.open(SPIDER)
        os.set_blocking(exporter._out._file.fileno(), False)  # EAGAIN when the pipe is full
        for one in items:
            await exporter.process_item(one, SPIDER)
        await exporter.close(SPIDER)
        drain()
    finally:
        os.close(reader)
    assert retries  # the pipe filled up at least once
    assert [json.loads(line) for line in received.decode().splitlines()] == items


def locked_retry(
    blocker: sqlite3.Connection, release_after: int | None, attempts: int = 6
) -> tuple[WriteRetry, list[float]]:
    """A WriteRetry whose back-off releases ``blocker``'s lock after that many failed tries."""
    failures: list[float] = []

    async def sleep(delay_s: float) -> None:
        failures.append(delay_s)
        if len(failures) == release_after:
            blocker.execute("COMMIT")

    return WriteRetry(attempts=attempts, sleep=sleep), failures


@pytest.fixture
def blocker(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A second connection to items.db that can hold the write lock (``BEGIN EXCLUSIVE``)."""
    with closing(sqlite3.connect(tmp_path / "items.db", timeout=0, isolation_level=None)) as db:
        yield db
        if db.in_transaction:
            db.execute("ROLLBACK")


async def test_sqlite_lock_released_during_retries_stores_every_row(
    tmp_path: Path, blocker: sqlite3.Connection
) -> None:
    path = tmp_path / "items.db"
    retry, failures = locked_retry(blocker, release_after=2)
    exporter = SqliteExporter(path, retry=retry, busy_timeout_s=0)
    await exporter.open(SPIDER)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        for n in range(10):
            await exporter.process_item(item(n), SPIDER)
        await exporter.flush(SPIDER)
    finally:
        await exporter.close(SPIDER)
    assert len(failures) == 2
    assert read_sqlite(path) == [item(n) for n in range(10)]


async def test_sqlite_one_transient_failure_does_not_poison_later_batches(
    tmp_path: Path, blocker: sqlite3.Connection
) -> None:
    path = tmp_path / "items.db"
    retry, failures = locked_retry(blocker, release_after=1)
    exporter = SqliteExporter(path, retry=retry, busy_timeout_s=0)
    await exporter.open(SPIDER)
    try:
        for n in range(4):
            await exporter.process_item(item(n), SPIDER)
            await exporter.flush(SPIDER)
        blocker.execute("BEGIN EXCLUSIVE")
        flushes = []
        for n in range(4, 10):  # six batches queued behind the one that hits the lock
            await exporter.process_item(item(n), SPIDER)
            flushes.append(asyncio.create_task(exporter.flush(SPIDER)))
        await asyncio.gather(*flushes)
    finally:
        await exporter.close(SPIDER)
    assert len(failures) == 1
    assert read_sqlite(path) == [item(n) for n in range(10)]


async def test_sqlite_locked_for_good_is_an_output_error(
    tmp_path: Path, blocker: sqlite3.Connection
) -> None:
    path = tmp_path / "items.db"
    retry, failures = locked_retry(blocker, release_after=None, attempts=3)
    exporter = SqliteExporter(path, retry=retry, busy_timeout_s=0)
    await exporter.open(SPIDER)
    try:
        await exporter.process_item(item(0), SPIDER)
        await exporter.flush(SPIDER)
        blocker.execute("BEGIN EXCLUSIVE")
        await exporter.process_item(item(1), SPIDER)
        with pytest.raises(OutputError) as failed:
            await exporter.flush(SPIDER)
        with pytest.raises(OutputError) as again:
            await exporter.process_item(item(2), SPIDER)
        assert again.value is failed.value
    finally:
        with pytest.raises(OutputError) as at_close:
            await exporter.close(SPIDER)
    assert at_close.value is failed.value
    assert str(failed.value) == (
        f"cannot write {path}: database is locked (SQLITE_BUSY), still failing after 3 attempts"
        " — stop the program that keeps the database locked and run the same command again"
        " (with the same --state, if any) to resume"
    )
    assert isinstance(failed.value.__cause__, sqlite3.OperationalError)
    assert len(failures) == 2  # waits between the three tries
    blocker.execute("ROLLBACK")
    assert read_sqlite(path) == [item(0)]  # the failed batch left nothing half-written


async def test_sqlite_schema_error_is_an_output_error_at_once(
    tmp_path: Path, blocker: sqlite3.Connection
) -> None:
    path = tmp_path / "items.db"
    retry, failures = locked_retry(blocker, release_after=None)
    exporter = SqliteExporter(path, retry=retry, busy_timeout_s=0)
    await exporter.open(SPIDER)
    try:
        blocker.execute('DROP TABLE "faults"')
        await exporter.process_item(item(0), SPIDER)
        with pytest.raises(OutputError, match=r"no such table: faults \(SQLITE_ERROR\)"):
            await exporter.flush(SPIDER)
    finally:
        with pytest.raises(OutputError):
            await exporter.close(SPIDER)
    assert failures == []  # not a transient error: no retry


# --- item-level: one bad item is dropped, the output stays healthy ---------------------------


@pytest.mark.parametrize("kind", ["jsonl", "csv", "json", "db"])
@pytest.mark.parametrize(
    "bad",
    [{"title": {"n": 2**70}}, {"title": "half a surrogate \ud800"}],
    ids=["int-too-big", "surrogate"],
)
async def test_an_unencodable_item_is_an_item_error_naming_its_field(
    tmp_path: Path, kind: str, bad: dict[str, Any]
) -> None:
    path = tmp_path / f"items.{kind}"
    exporter = SqliteExporter(path) if kind == "db" else FILES[kind][0](path)
    await exporter.open(SPIDER)
    try:
        await exporter.process_item(item(0), SPIDER)
        with pytest.raises((TypeError, ValueError), match=repr(next(iter(bad)))) as failed:
            await exporter.process_item({"url": "https://a.test/bad", **bad}, SPIDER)
        assert not isinstance(failed.value, OutputError)
        await exporter.process_item(item(1), SPIDER)
    finally:
        await exporter.close(SPIDER)
    read = read_sqlite if kind == "db" else FILES[kind][1]
    assert read(path) == [item(0), item(1)]


# --- exactly once across kill -9 --------------------------------------------------------------

KILLED_CHILD = """
    import asyncio, json, os, signal, sys
    from crawler.pipelines import exporter_for

    path, overwrite, checkpoint_at = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])

    def item(n):
        return {"url": f"https://a.test/{n}", "title": f"item {n} " + "x" * 100}

    async def main():
        exporter = exporter_for(path, overwrite=overwrite)
        exporter.resume_at(None, False)  # a fresh start with a state folder
        await exporter.open(None)
        for n in range(checkpoint_at):
            await exporter.process_item(item(n), None)
        await exporter.flush(None)
        # What the engine saves with the acks of the checkpoint.
        print(json.dumps(exporter.durable_position()), flush=True)
        for n in range(checkpoint_at, checkpoint_at + 3):
            await exporter.process_item(item(n), None)
        await exporter.flush(None)  # durable, but its checkpoint never commits
        for n in range(checkpoint_at + 3, checkpoint_at + 5):
            await exporter.process_item(item(n), None)  # only buffered
        with open(path, "ab") as file:
            file.write(b',\\n{"url": "https://a.te')  # a write cut short by the kill
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
"""


def killed_after_checkpoint(
    tmp_path: Path, path: Path, *, overwrite: bool = False, checkpoint_at: int = 5
) -> dict[str, Any]:
    """Run a crawl's output to a checkpoint, write past it, kill -9 it; return the position."""
    result = run_child(tmp_path, KILLED_CHILD, str(path), str(int(overwrite)), str(checkpoint_at))
    assert result.returncode == -signal.SIGKILL, result.stderr
    position: dict[str, Any] = json.loads(result.stdout)
    return position


async def resume(exporter: Any, position: dict[str, Any] | None, items: list[Any]) -> None:
    exporter.resume_at(position, True)
    await exporter.open(SPIDER)
    try:
        for one in items:
            await exporter.process_item(one, SPIDER)
    finally:
        await exporter.close(SPIDER)


@pytest.mark.parametrize("overwrite", [False, True], ids=["append", "overwrite"])
@pytest.mark.parametrize("checkpoint_at", [5, 0])
@pytest.mark.parametrize("kind", FILES)
async def test_resume_after_kill_holds_each_item_exactly_once(
    tmp_path: Path,
    kind: str,
    checkpoint_at: int,
    overwrite: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make, read = FILES[kind]
    path = tmp_path / f"items.{kind}"
    position = killed_after_checkpoint(
        tmp_path, path, overwrite=overwrite, checkpoint_at=checkpoint_at
    )
    assert {"offset", "dev", "ino"} <= position.keys()
    size_at_kill = path.stat().st_size
    assert size_at_kill > position["offset"]
    caplog.set_level(logging.INFO, logger="crawler.pipelines.files")
    # -O on the resumed run too: resuming never overwrites.
    await resume(make(path, overwrite=overwrite), position, [item(n) for n in range(20, 23)])
    expected = [item(n) for n in [*range(checkpoint_at), *range(20, 23)]]
    assert read(path) == expected
    if kind == "csv":
        assert path.read_text("utf-8").count("url,title") == 1  # one header
    [line] = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert str(path) in line
    assert f"dropped {size_at_kill - position['offset']} bytes" in line


@pytest.mark.parametrize("kind", FILES)
async def test_resume_after_an_interrupted_run_that_closed_its_file(
    tmp_path: Path, kind: str
) -> None:
    make, read = FILES[kind]
    path = tmp_path / f"items.{kind}"
    exporter = make(path)
    exporter.resume_at(None, False)
    await exporter.open(SPIDER)
    for n in range(3):
        await exporter.process_item(item(n), SPIDER)
    await exporter.close(SPIDER)  # Ctrl-C: closed cleanly (the array got its "]")
    position = exporter.durable_position()  # the final checkpoint saves it after close
    assert read(path) == [item(n) for n in range(3)]
    await resume(make(path), json.loads(json.dumps(position)), [item(3), item(4)])
    assert read(path) == [item(n) for n in range(5)]  # json: still one valid array


@pytest.mark.parametrize("kind", FILES)
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("shorter", "cut short since"),
        ("replaced", "replaced or moved since"),
        ("missing", "the file is missing"),
    ],
)
async def test_resume_refuses_a_file_that_changed_since_the_checkpoint(
    tmp_path: Path, kind: str, damage: str, message: str
) -> None:
    make, _ = FILES[kind]
    path = tmp_path / f"items.{kind}"
    exporter = make(path)
    exporter.resume_at(None, False)
    await exporter.open(SPIDER)
    try:
        for n in range(3):
            await exporter.process_item(item(n), SPIDER)
        await exporter.flush(SPIDER)
        position = exporter.durable_position()
    finally:
        await exporter.close(SPIDER)
    data = path.read_bytes()
    assert len(data) >= position["offset"] > 0
    if damage == "shorter":
        path.write_bytes(data[: position["offset"] - 1])
    elif damage == "replaced":
        copy = tmp_path / "copy"
        copy.write_bytes(data)
        copy.replace(path)
    else:
        path.unlink()
    before = path.read_bytes() if path.exists() else None
    resumed = make(path, overwrite=True)
    with pytest.raises(OutputError, match=r"--restart") as failed:
        resumed.resume_at(position, True)
    assert message in str(failed.value) and str(path) in str(failed.value)
    assert failed.value.output == str(path)
    assert (path.read_bytes() if path.exists() else None) == before  # untouched


@pytest.mark.parametrize("kind", FILES)
async def test_a_fresh_start_behaves_as_without_state(tmp_path: Path, kind: str) -> None:
    make, read = FILES[kind]
    path = tmp_path / f"items.{kind}"
    first = make(path)
    first.resume_at(None, False)
    await first.open(SPIDER)
    await first.process_item(item(0), SPIDER)
    await first.flush(SPIDER)
    position = first.durable_position()
    await first.close(SPIDER)
    # --restart with -O: the saved position is ignored and the file overwritten.
    second = make(path, overwrite=True)
    second.resume_at(position, False)
    await second.open(SPIDER)
    await second.process_item(item(1), SPIDER)
    await second.close(SPIDER)
    assert read(path) == [item(1)]


async def test_resume_without_a_saved_position(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_bytes(b'{"url":"old"}\n{"url":"par')
    caplog.set_level(logging.WARNING)
    # JSON Lines appends after the last whole line (never overwrites), and says items may repeat.
    await resume(JsonLinesExporter(jsonl, overwrite=True), None, [item(0)])
    assert read_jsonl(jsonl) == [{"url": "old"}, item(0)]
    assert any("may appear twice" in r.getMessage() for r in caplog.records)
    # A JSON array cannot tell its items apart: refused, with the way out.
    array = tmp_path / "items.json"
    array.write_bytes(b'[\n{"url":"old"}')
    exporter = JsonArrayExporter(array, overwrite=True)
    exporter.resume_at(None, True)
    with pytest.raises(OutputError, match=r"no position was saved.*--restart"):
        await exporter.open(SPIDER)
    assert array.read_bytes() == b'[\n{"url":"old"}'


async def test_checkpointed_outputs_and_their_positions(tmp_path: Path) -> None:
    for make, _ in FILES.values():
        assert isinstance(make(tmp_path / "x"), CheckpointedOutput)
    path = tmp_path / "items.csv"
    exporter = CsvExporter(path)
    assert exporter.output_id() == f"csv:{os.path.abspath(path)}"
    exporter.resume_at(None, False)
    await exporter.open(SPIDER)
    try:
        assert exporter.durable_position()["offset"] == 0
        await exporter.process_item(item(0), SPIDER)
        await exporter.flush(SPIDER)
        position = exporter.durable_position()
    finally:
        await exporter.close(SPIDER)
    info = path.stat()
    assert position == {
        "offset": info.st_size,
        "dev": info.st_dev,
        "ino": info.st_ino,
        "header": True,
        "fields": ["url", "title"],
    }
    assert json.loads(json.dumps(position)) == position


async def test_stdout_has_no_position(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    exporter = JsonLinesExporter("-")
    assert exporter.output_id() == "jsonlines:-"
    exporter.resume_at({"offset": 10, "dev": 1, "ino": 2}, True)  # a no-op
    await exporter.open(SPIDER)
    try:
        await exporter.process_item(item(0), SPIDER)
        await exporter.flush(SPIDER)
        assert exporter.durable_position() == {}
    finally:
        await exporter.close(SPIDER)
    assert json.loads(capsysbinary.readouterr().out) == item(0)
    assert not isinstance(SqliteExporter("items.db"), CheckpointedOutput)
