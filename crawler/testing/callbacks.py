"""Unit-test a spider callback without a server: build a Response, run the callback.

``make_response()`` builds a real :class:`crawler.Response` (``css()``, ``follow()``,
``follow_all()`` and ``json()`` work on it); ``run_callback()`` runs a callback of any
shape exactly as the engine iterates it and returns what it produced::

    response = make_response("https://shop.test/", "<a href='/p/1'>1</a>")
    out = await run_callback(spider.parse, response)
    assert [r.url for r in out.requests] == ["https://shop.test/p/1"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from ..itemcheck import is_item
from ..outputs import bad_output, for_each_output
from ..request import Request
from ..response import Response

__all__ = ["CallbackOutput", "make_response", "run_callback"]


@dataclass
class CallbackOutput:
    """What one callback run produced, in order: ``items`` and follow-up ``requests``."""

    items: list[Any] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def add(self, output: Any) -> None:
        """Sort one output: a Request, an item, or None (ignored); anything else raises."""
        if output is None:
            return
        if isinstance(output, Request):
            self.requests.append(output)
        elif type(output) is dict or is_item(output):
            self.items.append(output)
        else:
            raise bad_output(output)  # the same error a crawl logs for this output


def make_response(
    url: str,
    body: str | bytes = b"",
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    request: Request | None = None,
    meta: dict[str, Any] | None = None,
    encoding: str | None = None,
) -> Response:
    """A Response for ``url`` as if the crawl had fetched it.

    A str ``body`` is encoded with ``encoding`` (UTF-8 by default); the Content-Type
    is ``text/html; charset=<encoding>`` unless ``headers`` sets one. ``request``
    defaults to a GET of ``url`` carrying ``meta`` (``meta`` is ignored when a request
    is given: use ``request.meta``).
    """
    charset = encoding or "utf-8"
    data = body.encode(charset) if isinstance(body, str) else bytes(body)
    merged: CIMultiDict[str] = CIMultiDict(headers or {})
    if "Content-Type" not in merged:
        merged["Content-Type"] = f"text/html; charset={charset}"
    if request is None:
        request = Request(url, meta=dict(meta or {}))
    return Response(url, status, CIMultiDictProxy(merged), data, request)


async def run_callback(
    callback: Callable[[Any], Any], response: Any, *, output: CallbackOutput | None = None
) -> CallbackOutput:
    """Run ``callback(response)`` and collect its items and requests.

    The callback may be an async generator, a generator, a coroutine or a plain
    function returning a Request, an item, a list of them or None: the engine's own
    iteration runs it. Errbacks work too: pass the error as ``response``. An exception
    from the callback propagates; pass ``output`` to keep what it produced before.
    """
    collected = output if output is not None else CallbackOutput()
    await for_each_output(callback(response), _add, collected)
    return collected


async def _add(item: Any, output: CallbackOutput) -> None:
    output.add(item)
