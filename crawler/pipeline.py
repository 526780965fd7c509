"""Item pipelines: the ItemPipeline Protocol and the chain that runs them in order.

The chain also checks items that validate themselves (crawler/validation.py): one
whose class asks for it is validated again before the first pipeline, and a
validation error raised while a pipeline changes an item (pydantic's
``validate_assignment``, attrs' on-setattr validators) drops it as invalid
(``items_dropped/validation``), not as a pipeline failure.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .clock import Clock, sleep
from .errors import CrawlerError, DropItem, OutputError, SettingsError
from .loglines import get_logger
from .retry import RetryPolicy
from .storage import DatabaseKind, open_database
from .validation import invalid_item, revalidator

if TYPE_CHECKING:  # only for annotations (some of these modules import this one)
    from pathlib import Path

    import aiosqlite

    from .request import Request
    from .response import Response
    from .settings import Settings
    from .stats import Stats

__all__ = [
    "CheckpointedOutput",
    "DownloaderAccess",
    "ItemFailed",
    "ItemPipeline",
    "NeedsDownloader",
    "PipelineChain",
    "item_key",
    "load_object",
    "load_pipeline",
    "output_name",
]

_current_item_key: ContextVar[str | None] = ContextVar("crawler_item_key", default=None)


def item_key() -> str | None:
    """The stable key of the item being processed, for pipelines that upsert by key.

    By default ``<request fingerprint hex>:<index of the item in its callback>``; a
    spider can override ``Spider.item_key(item, response, index)``. The same page
    crawled again (e.g. after a resume) gives its items the same keys. It is set
    per worker task (a context variable), so concurrent items never mix keys.
    """
    return _current_item_key.get()


logger = get_logger("crawler.pipeline")


@runtime_checkable
class ItemPipeline(Protocol):
    """Receives every item a spider produces, in order.

    ``process_item`` returns the item (possibly changed) for the next pipeline
    or raises :class:`~crawler.errors.DropItem`. ``open(spider)`` and
    ``close(spider)`` are optional and may be coroutines.
    """

    async def process_item(self, item: Any, spider: Any) -> Any:
        """Return the item to pass it on, or raise DropItem."""


@runtime_checkable
class CheckpointedOutput(Protocol):
    """An output whose durable position is saved with every checkpoint (optional capability).

    With ``--state`` the engine asks every such output, right after a durable
    ``flush(spider)``, for :meth:`durable_position` and saves it in the same
    transaction as the acks of the requests whose items it holds. On a resume it
    hands the saved position back through :meth:`resume_at` *before*
    ``open(spider)``, so the output can cut itself back to exactly what the acked
    requests produced (files hold each item exactly once across kill -9).
    """

    def output_id(self) -> str:
        """A name that is the same in every run of the crawl (e.g. ``jsonlines:/abs/path``)."""

    def durable_position(self) -> dict[str, Any]:
        """JSON-serialisable position of what the last durable flush made durable."""

    def resume_at(self, position: dict[str, Any] | None, resuming: bool) -> None:
        """Called before ``open``: ``position`` saved by the last checkpoint (None if none).

        ``resuming`` is False on a fresh start (first run or ``--restart``): an
        overwriting output may overwrite. When True, it must never overwrite; it
        cuts back to ``position`` and raises :class:`~crawler.errors.OutputError`
        if the output is shorter than ``position`` or was replaced.
        """


@dataclass(frozen=True, slots=True)
class DownloaderAccess:
    """What a pipeline that downloads (e.g. the files of items) gets from the crawl.

    ``fetch(request)`` sends ``request`` at once through the crawl's Downloader: its
    per-domain sessions and cookies, the crawl's proxy choice, the size and time caps
    and the private-network guard. No frontier and no middlewares are involved (an item
    must not wait for a worker: the workers may all be waiting for items), so the
    pipeline applies politeness and retries itself, with the crawl's ``settings``,
    ``retry`` rules (RETRY_*) and clock (:meth:`sleep`). ``stats`` is the crawl's
    counter store. Built-in pipelines may import only the public API: what else they
    need from the crawl comes through here (e.g. :meth:`open_database`).
    """

    fetch: Callable[[Request], Awaitable[Response]]
    settings: Settings
    clock: Clock
    stats: Stats
    retry: RetryPolicy

    async def sleep(self, delay_s: float) -> None:
        """Wait ``delay_s`` seconds of the crawl's clock."""
        await sleep(self.clock, delay_s)

    async def open_database(self, path: Path, **kind: Any) -> aiosqlite.Connection:
        """Open or create one of our SQLite files (``crawler.storage.open_database``).

        ``kind`` are the fields of a :class:`crawler.storage.DatabaseKind` (noun,
        application_id, version, schema, tables, remedy); missing folders are created.
        Raises ConfigError for a file that is not of that kind, or is locked.
        """
        return await open_database(
            path, DatabaseKind(**kind), busy_timeout_s=5.0, make_parents=True
        )


@runtime_checkable
class NeedsDownloader(Protocol):
    """A pipeline that downloads (optional capability).

    The engine calls :meth:`use_downloader` once, as soon as its Downloader is open and
    before ``open(spider)``, so ``open`` can check the settings it reads.
    """

    def use_downloader(self, access: DownloaderAccess) -> None:
        """Keep ``access`` for the crawl (it is valid until the pipelines are closed)."""


def load_object(spec: Any, setting: str) -> Any:
    """``spec`` itself, or the object a ``module:Name`` / ``module.Name`` string names."""
    if not isinstance(spec, str):
        return spec
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise SettingsError(f"bad value {setting} entry {spec!r}: expected 'module:Name'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SettingsError(
            f"bad value {setting} entry {spec!r}: cannot import it ({exc})"
        ) from None


def load_pipeline(spec: Any) -> Any:
    """A pipeline from an object, a class, or a ``module:Name`` / ``module.Name`` path."""
    obj = load_object(spec, "PIPELINES")
    if inspect.isclass(obj):
        obj = obj()
    if not callable(getattr(obj, "process_item", None)):
        raise SettingsError(
            f"bad value PIPELINES entry {spec!r}:"
            f" {type(obj).__name__} has no process_item(item, spider)"
        )
    return obj


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def output_name(pipeline: Any) -> str:
    """How logs and errors name ``pipeline``: its ``output_id()`` if it has one, else its class."""
    if isinstance(pipeline, CheckpointedOutput):
        try:
            return str(pipeline.output_id())
        except Exception:  # a name for an error message must not raise one
            pass
    return type(pipeline).__name__


class ItemFailed(CrawlerError):
    """A pipeline raised on one item (not DropItem, not OutputError): that item is dropped.

    ``pipeline`` names it; ``__cause__`` is what it raised. Internal: the chain raises
    it so the caller can count and log the item with its URL; the crawl goes on.
    """

    def __init__(self, pipeline: str, error: Exception) -> None:
        super().__init__(f"pipeline {pipeline} failed: {error!r:.300}")
        self.pipeline = pipeline
        self.error = error


def _output_error(pipeline: Any, what: str, exc: Exception) -> OutputError:
    """An OutputError naming ``pipeline`` for ``exc`` (``exc`` if it is one)."""
    if isinstance(exc, OutputError):
        return exc
    name = output_name(pipeline)
    return OutputError(f"pipeline {name} failed to {what}: {exc!r:.300}", output=name)


class PipelineChain:
    """Runs items through pipelines in list order; opens, flushes and closes them all.

    Errors say how the crawl reacts: :class:`~crawler.errors.DropItem` and any other
    exception from ``process_item`` concern one item (:class:`ItemFailed`); an
    :class:`~crawler.errors.OutputError` from anywhere, and anything a ``flush`` or
    ``close`` raises, means an output cannot make items durable (the crawl stops).
    """

    def __init__(self, pipelines: Sequence[Any]) -> None:
        self.pipelines = [load_pipeline(p) for p in pipelines]
        self._process = [p.process_item for p in self.pipelines]
        self._opened: list[Any] = []
        # Per item class: what validates it again before the pipelines (None: nothing).
        self._checks: dict[type, Callable[[Any], Any] | None] = {dict: None}

    def resume_at(self, positions: Mapping[str, Any], resuming: bool) -> None:
        """Before :meth:`open`: hand every :class:`CheckpointedOutput` its saved position.

        ``positions`` maps ``output_id()`` to what :meth:`positions` returned at the last
        checkpoint; ``resuming`` is False on a fresh start. Raises OutputError if an
        output cannot be cut back to its position.
        """
        for pipeline in self.pipelines:
            if isinstance(pipeline, CheckpointedOutput):
                try:
                    pipeline.resume_at(positions.get(pipeline.output_id()), resuming)
                except OutputError:
                    raise
                except Exception as exc:
                    raise _output_error(pipeline, "resume", exc) from exc

    def use_downloader(
        self,
        fetch: Callable[[Request], Awaitable[Response]],
        settings: Settings,
        clock: Clock,
        stats: Stats,
    ) -> None:
        """Hand every :class:`NeedsDownloader` pipeline a :class:`DownloaderAccess`."""
        access = DownloaderAccess(
            fetch, settings, clock, stats, RetryPolicy.from_settings(settings)
        )
        for pipeline in self.pipelines:
            if isinstance(pipeline, NeedsDownloader):
                pipeline.use_downloader(access)

    def positions(self) -> dict[str, Any]:
        """``durable_position()`` of every opened :class:`CheckpointedOutput`, by ``output_id()``.

        Call right after a successful :meth:`flush`.
        """
        return {
            pipeline.output_id(): pipeline.durable_position()
            for pipeline in self._opened
            if isinstance(pipeline, CheckpointedOutput)
        }

    async def open(self, spider: Any) -> None:
        """Call every pipeline's ``open(spider)``."""
        for pipeline in self.pipelines:
            opener = getattr(pipeline, "open", None) or getattr(pipeline, "open_spider", None)
            if opener is not None:
                await _maybe_await(opener(spider))
            self._opened.append(pipeline)

    async def process(self, item: Any, spider: Any, key: str | None = None) -> Any:
        """The item after every pipeline.

        Raises DropItem if one drops it (:class:`~crawler.validation.InvalidItem` if the
        item fails its own validation, before or while a pipeline changes it), OutputError
        if an output cannot write, and :class:`ItemFailed` if one raises anything else.
        ``key`` is what :func:`item_key` returns while the pipelines run.
        """
        _current_item_key.set(key)
        cls = type(item)
        try:
            check = self._checks[cls]
        except KeyError:
            check = self._checks[cls] = revalidator(cls)
        process = None
        try:
            if check is not None:
                item = check(item)
            for process in self._process:
                item = process(item, spider)
                if inspect.isawaitable(item):
                    item = await item
                if item is None:
                    raise DropItem("a pipeline returned None")
        except (DropItem, OutputError):
            raise
        except Exception as exc:
            invalid = invalid_item(exc)
            if invalid is not None:
                raise invalid from exc
            pipeline = getattr(process, "__self__", process)
            raise ItemFailed(output_name(pipeline), exc) from exc
        return item

    async def flush(self, spider: Any) -> None:
        """Make every item processed so far durable (pipelines with a ``flush(spider)``).

        Raises OutputError if one cannot (whatever it raised is its ``__cause__``).
        """
        for pipeline in self._opened:
            flusher = getattr(pipeline, "flush", None)
            if flusher is not None:
                try:
                    await _maybe_await(flusher(spider))
                except OutputError:
                    raise
                except Exception as exc:
                    raise _output_error(pipeline, "flush", exc) from exc

    async def close(self, spider: Any) -> None:
        """Call ``close(spider)`` on every opened pipeline, each even if one before failed.

        Raises the first failure as an OutputError once all were closed: an output
        that cannot close may not have written its items (e.g. a full disk).
        """
        opened, self._opened = self._opened, []
        first: OutputError | None = None
        for pipeline in opened:
            closer = getattr(pipeline, "close", None) or getattr(pipeline, "close_spider", None)
            if closer is None:
                continue
            try:
                await _maybe_await(closer(spider))
            except Exception as exc:
                error = _output_error(pipeline, "close", exc)
                if error is not exc:
                    error.__cause__ = exc
                    # Not an output reporting a write error: a bug, worth its traceback.
                    logger.error("pipeline %s failed to close", output_name(pipeline), exc_info=exc)
                if first is None:
                    first = error
                else:
                    logger.error("%s", error)
        if first is not None:
            raise first
