"""The ``http`` policy's rules (RFC 9111, as a private cache): what may be stored, how
long a stored response stays fresh, and how to revalidate it.

Freshness comes from the response alone: ``Cache-Control: max-age`` (``s-maxage`` is
for shared caches), else ``Expires`` minus ``Date``; ``no-cache`` means "always
revalidate". A response with neither is stale at once (no heuristic freshness):
it is revalidated if it has an ``ETag`` or a ``Last-Modified``, fetched again if not.
Lifetimes are differences of the server's own dates, so the cache clock that
measures age may be a test's manual clock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from ..request import Request

__all__ = ["directives", "lifetime_s", "must_revalidate", "no_store", "validators"]

# Methods whose responses the http policy stores (the others change things).
CACHEABLE_METHODS = frozenset(("GET", "HEAD"))


def directives(value: str | None) -> dict[str, str]:
    """``"no-cache, max-age=60"`` -> ``{"no-cache": "", "max-age": "60"}`` (names lower-cased)."""
    result: dict[str, str] = {}
    if not value:
        return result
    for part in value.split(","):
        name, _, argument = part.strip().partition("=")
        if name:
            result[name.strip().lower()] = argument.strip().strip('"')
    return result


def _request_directives(request: Request) -> dict[str, str]:
    headers = request.headers
    if not headers:
        return {}
    value = next((v for k, v in headers.items() if k.lower() == "cache-control"), None)
    return directives(value)


def no_store(request: Request, response_headers: Mapping[str, str]) -> bool:
    """True if the request or the response says ``no-store``."""
    return "no-store" in _request_directives(request) or "no-store" in directives(
        response_headers.get("Cache-Control")
    )


def must_revalidate(request: Request) -> bool:
    """True if the request asks for a response checked with the server (``no-cache``,
    ``max-age=0``)."""
    asked = _request_directives(request)
    return "no-cache" in asked or asked.get("max-age") == "0"


def lifetime_s(headers: Mapping[str, str]) -> float:
    """Seconds a response with these headers stays fresh (0: revalidate before use)."""
    control = directives(headers.get("Cache-Control"))
    if "no-cache" in control:
        return 0.0
    if "max-age" in control:
        try:
            return max(0.0, float(int(control["max-age"])))
        except ValueError:
            return 0.0  # an invalid max-age makes the response stale (RFC 9111 4.2.1)
    expires = _date(headers.get("Expires"))
    if expires is None:
        return 0.0
    date = _date(headers.get("Date"))
    return max(0.0, expires - (date if date is not None else time.time()))


def validators(headers: Mapping[str, str]) -> dict[str, str]:
    """The conditional request headers that revalidate a response with these headers."""
    found = {}
    etag = headers.get("ETag")
    if etag:
        found["If-None-Match"] = etag
    modified = headers.get("Last-Modified")
    if modified:
        found["If-Modified-Since"] = modified
    return found


def _date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
