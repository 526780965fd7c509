"""Request <-> bytes for persistent frontiers (SQLite, Redis).

A stored request is one orjson object with short keys; fields at their default
value are left out. What is stored, and how it comes back:

- ``url``, ``method``, ``priority``, ``dont_filter``, ``depth``, ``proxy``,
  ``allow_redirects``, ``render``: as they are.
- ``headers`` (as ``[name, value]`` pairs, so repeated headers survive; decoded
  to a ``dict``, or a ``CIMultiDict`` when a name repeats) and ``cookies``.
- ``data``: ``bytes``, ``str`` or a ``dict`` of form fields, each decoded to the
  same type. Any other body (a ``FormData``, a file) cannot be stored.
- ``json`` and ``meta``: through JSON, so they must be JSON-able; tuples come
  back as lists and subclasses of str/int/dict as the plain type; dict keys
  must be strings. ``datetime`` and dataclass values are refused rather than
  silently turned into strings or dicts.
- ``callback`` / ``errback``: by *name*, the name of a method of the spider
  (``callback=self.parse_book`` is stored as ``"parse_book"``), and resolved
  back to the spider's bound method on decode. A lambda, a plain function or a
  ``functools.partial`` cannot be stored.
- ``ssl``: only ``True``/``False``; an ``SSLContext`` or aiohttp ``Fingerprint``
  is not stored and the decoded request has ``ssl=None`` (the downloader's TLS
  options apply).

Credentials in ``proxy``, ``headers`` and ``cookies`` are stored as given: the
state file needs them to resume the crawl, so protect it like the job config.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from multidict import CIMultiDict

from ..errors import CrawlerError
from ..loglines import get_logger
from ..request import Request
from .base import Lease

__all__ = ["RequestCodec"]

logger = get_logger("crawler.frontier")

_JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class RequestCodec:
    """Encodes requests to bytes and back; callbacks resolve against ``spider``.

    ``spider`` may be None when no stored request has a callback or errback
    (they then use the spider's ``parse``).
    """

    __slots__ = ("_names", "spider")

    def __init__(self, spider: object | None = None) -> None:
        self.spider = spider
        self._names: dict[str, Callable[..., Any]] = {}

    def encode(self, request: Request) -> bytes:
        """The stored form of ``request``; CrawlerError if part of it cannot be stored."""
        doc: dict[str, Any] = {"u": request.url}
        if request.method != "GET":
            doc["m"] = request.method
        if request.headers:
            doc["h"] = [[str(k), str(v)] for k, v in request.headers.items()]
        if request.cookies:
            doc["c"] = {str(k): str(v) for k, v in request.cookies.items()}
        data = request.data
        if data is not None:
            if isinstance(data, bytes):
                doc["d"] = ["b", base64.b64encode(data).decode()]
            elif isinstance(data, str):
                doc["d"] = ["s", data]
            elif isinstance(data, dict):
                doc["d"] = ["f", data]
            else:
                raise CrawlerError(
                    f"Request({request.url}) has data of type {type(data).__name__}, which"
                    " a persistent frontier cannot store: pass bytes, str or a dict of form fields"
                )
        if request.json is not None:
            doc["j"] = request.json
        if request.meta:
            doc["M"] = request.meta
        if request.priority:
            doc["p"] = request.priority
        if request.dont_filter:
            doc["f"] = 1
        if request.depth:
            doc["D"] = request.depth
        if request.proxy is not None:
            doc["x"] = request.proxy
        if not request.allow_redirects:
            doc["r"] = 0
        if request.render:
            doc["R"] = 1
        if isinstance(request.ssl, bool):
            doc["s"] = request.ssl
        if request.callback is not None:
            doc["cb"] = self._method_name(request.callback, "callback", request)
        if request.errback is not None:
            doc["eb"] = self._method_name(request.errback, "errback", request)
        try:
            # orjson's bytes keep a ~4 KB allocation however short the JSON; copy to the
            # exact size, or 60k buffered rows between checkpoints cost ~250 MB.
            return bytes(memoryview(orjson.dumps(doc, option=_JSON_OPTIONS)))
        except TypeError as exc:
            raise CrawlerError(
                f"Request({request.url}) cannot be stored in a persistent frontier: {exc}."
                " meta, json and form data must be JSON-able (str, int, float, bool, None,"
                " list, dict)"
            ) from None

    def decode(self, data: bytes) -> Request:
        """The request stored as ``data``; CrawlerError if its callback no longer exists."""
        doc = orjson.loads(data)
        headers: Any = None
        pairs = doc.get("h")
        if pairs:
            headers = dict(pairs)
            if len(headers) != len(pairs):
                headers = CIMultiDict(pairs)
        body = doc.get("d")
        if body is not None:
            kind, value = body
            body = base64.b64decode(value) if kind == "b" else value
        return Request(
            doc["u"],
            callback=self._method(doc.get("cb"), doc["u"]),
            method=doc.get("m", "GET"),
            headers=headers,
            cookies=doc.get("c"),
            data=body,
            json=doc.get("j"),
            meta=doc.get("M", {}),
            priority=doc.get("p", 0),
            dont_filter=bool(doc.get("f", 0)),
            errback=self._method(doc.get("eb"), doc["u"]),
            proxy=doc.get("x"),
            ssl=doc.get("s"),
            allow_redirects=bool(doc.get("r", 1)),
            depth=doc.get("D", 0),
            render=bool(doc.get("R", 0)),
        )

    def decode_stored(self, data: bytes, where: str, label: object) -> Request | None:
        """The request stored as ``data``, or None (logged) if it cannot be rebuilt: a renamed
        callback, damaged data. The caller marks the stored request failed ("undecodable")."""
        try:
            return self.decode(data)
        except (CrawlerError, ValueError, TypeError, KeyError) as exc:
            logger.error("frontier %s: dropping stored request %s: %s", where, label, exc)
            return None

    async def encode_retry(
        self, lease: Lease, fail: Callable[[Lease, str], Awaitable[None]]
    ) -> bytes:
        """The stored form of a retried lease's request as it is now (meta included).

        If it cannot be stored the lease is failed first (``fail(lease, "unstorable")``),
        then the CrawlerError is raised: the request is not lost in flight.
        """
        try:
            return self.encode(lease.request)
        except CrawlerError:
            await fail(lease, "unstorable")
            raise

    def _method_name(self, func: Callable[..., Any], what: str, request: Request) -> str:
        spider = self.spider
        name = getattr(func, "__name__", None)
        if (
            spider is not None
            and getattr(func, "__self__", None) is spider
            and isinstance(name, str)
            and getattr(spider, name, None) == func
        ):
            return name
        label = getattr(func, "__qualname__", None) or repr(func)
        owner = (
            f"spider {type(spider).__name__}" if spider is not None else "no spider (none given)"
        )
        raise CrawlerError(
            f"the {what} {label} of Request({request.url}) is not a method of {owner}:"
            " callbacks must be spider methods to be stored in a persistent frontier"
            " (use callback=self.parse_item, not a lambda, a function or a functools.partial)"
        )

    def _method(self, name: str | None, url: str) -> Callable[..., Any] | None:
        if name is None:
            return None
        method = self._names.get(name)
        if method is None:
            method = getattr(self.spider, name, None) if self.spider is not None else None
            if not callable(method):
                raise CrawlerError(
                    f"the stored request for {url} names callback {name!r}, but spider"
                    f" {type(self.spider).__name__} has no such method"
                    " (was it renamed since the crawl was started?)"
                )
            self._names[name] = method
        return method
