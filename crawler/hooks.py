"""Request hooks: code the engine runs around every fetch (e.g. conditional requests)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .request import Request
from .response import Response

__all__ = ["RequestHooks"]


@runtime_checkable
class RequestHooks(Protocol):
    """Passed as ``Crawler(..., hooks=[...])``; called in list order for every request.

    ``before_fetch`` runs right before each attempt is sent (retries included) and may
    change ``request.headers`` and ``request.meta``. ``after_fetch`` runs when a response
    arrived (before retry, redirect and status handling); if any hook returns False the
    callback is not run and the request counts as done (``hooks/skipped``).
    """

    async def before_fetch(self, request: Request) -> None:
        """Adjust the request before it is sent."""

    async def after_fetch(self, request: Request, response: Response) -> bool:
        """True to handle the response as usual, False to skip its callback."""
