"""The DownloaderMiddleware Protocol, the outcomes a request can end with, and the chain.

A middleware wraps the fetch (as Starlette builds its stack from a list)::

    class SignRequests:
        async def handle(self, request, call_next):
            request.headers = {**(request.headers or {}), "X-Signature": sign(request.url)}
            return await call_next(request)

The chain is built once per crawl from a plain ordered list, the first middleware
outermost: each one sees the request before the ones after it and the response
after them. It may change the request, pass another one on, return a response
without calling ``call_next`` (the callback gets it), or end the request at once
by raising :class:`EndRequest` with one of the outcomes below. The worker turns
whatever the chain ended with into exactly one :data:`Outcome` and gives the
lease back in one place (``RequestProcessor._give_back``):

    ==========  =========================================================
    Done        finished (ack); ``kept`` counts it toward MAX_PAGES
    Retry       back to the frontier after ``delay_s`` (``counted``: a retry)
    HoldHost    the whole host waits ``delay_s``, then the request is sent again
    Failed      finally failed (``failures/<reason>``; the errback gets ``error``)
    ==========  =========================================================
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from .errors import FetchError, SettingsError
from .pipeline import load_object
from .request import Request
from .response import Response

__all__ = [
    "DONE",
    "Done",
    "DownloaderMiddleware",
    "EndRequest",
    "Failed",
    "Handler",
    "HoldHost",
    "Outcome",
    "Retry",
    "build_chain",
    "lease_started",
    "load_middlewares",
]

lease_started: ContextVar[float] = ContextVar("lease_started")
"""The crawl-clock time the request being handled was leased (set by the worker for each
request): a middleware that answers without the network (the HTTP cache) gives its host's
delay back to the frontier only if no request of that host started after it."""

Handler = Callable[[Request], Awaitable[Response]]


@runtime_checkable
class DownloaderMiddleware(Protocol):
    """Wraps every attempt to fetch a request (retries included): ``handle(request, call_next)``.

    Return ``await call_next(request)`` (or a changed request), or a
    :class:`~crawler.Response` of your own; raise
    :class:`crawler.middleware.EndRequest` to end the request another way. Add
    yours with the spider attribute ``middlewares = [...]``, the
    ``DOWNLOADER_MIDDLEWARES`` setting or ``Crawler(..., middlewares=[...])``:
    they run after the built-ins, right before the fetch.
    """

    async def handle(self, request: Request, call_next: Handler) -> Response:
        """Fetch ``request`` through ``call_next`` (or not) and return the response."""


@dataclass(frozen=True, slots=True)
class Done:
    """The request is finished: ack it. ``kept``: a response was kept (counts for MAX_PAGES)."""

    kept: bool = True


@dataclass(frozen=True, slots=True)
class Retry:
    """Send the request again after ``delay_s``.

    ``counted``: a retry of the request (``retry_times`` + 1, ``retries/<reason>``);
    False when it was not really tried (a proxy wait, a robots.txt re-queue, a ban).
    """

    delay_s: float
    reason: str
    counted: bool = True
    kept: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class HoldHost:
    """The host must wait ``delay_s`` (nothing goes there before); then send the request again."""

    delay_s: float
    reason: str
    counted: bool = False
    kept: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class Failed:
    """The request finally failed (``failures/<reason>``).

    With an ``error`` it is logged at ``level`` and the request's errback gets it.
    """

    reason: str
    error: FetchError | None = None
    kept: bool = False
    level: int = logging.WARNING


Outcome = Done | Retry | HoldHost | Failed
DONE = Done()


class EndRequest(Exception):
    """Raised by a middleware to end the request with ``outcome`` (nothing else runs)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def build_chain(middlewares: Iterable[DownloaderMiddleware], endpoint: Handler) -> Handler:
    """One handler: ``middlewares[0]`` outermost, ``endpoint`` (the fetch) innermost."""
    handler = endpoint
    for middleware in reversed(list(middlewares)):
        handler = _link(middleware, handler)
    return handler


def _link(middleware: DownloaderMiddleware, call_next: Handler) -> Handler:
    handle = middleware.handle

    def link(request: Request) -> Awaitable[Response]:
        return handle(request, call_next)

    return link


def load_middlewares(specs: Sequence[Any], setting: str) -> list[DownloaderMiddleware]:
    """Middlewares from objects, classes or ``module:Name`` paths; a bad one is a SettingsError."""
    loaded = []
    for spec in specs:
        obj = load_object(spec, setting)
        if inspect.isclass(obj):
            obj = obj()
        if not inspect.iscoroutinefunction(getattr(obj, "handle", None)):
            raise SettingsError(
                f"bad value {setting} entry {spec!r}: {type(obj).__name__} has no"
                " `async def handle(self, request, call_next)`"
            )
        loaded.append(obj)
    return loaded
