"""Following redirects hop by hop, each hop through its own domain's session.

aiohttp would follow a redirect inside the session that sent the first request,
so a redirect from a.test to b.test would use a.test's cookie jar, default
headers (DOMAIN_HEADERS: often a token) and TLS choice. The downloader asks
aiohttp for one response at a time instead and builds the next hop here, with
the rules aiohttp (and browsers) apply:

* 303 (except for HEAD), and 301/302 after a POST, become a GET without a body;
  307/308 repeat the method and the body;
* leaving the origin (scheme, host or port) drops every ``Authorization``,
  ``Cookie`` and ``Proxy-Authorization`` header of the request, duplicates
  included, and the request's own ``cookies=``. The configured ones
  (DEFAULT_HEADERS, the spider's ``headers``, DOMAIN_HEADERS) are not in the
  sessions' defaults: the downloader adds them only while the chain stays on
  the first request's origin.

Each hop is a request of its own for aiohttp tracing (``on_request_start`` /
``on_request_end`` per hop; ``on_request_redirect`` does not fire).
"""

from __future__ import annotations

from collections.abc import Mapping

from yarl import URL

from ..errors import FetchError, InvalidRequest
from ..loglines import short_url
from ..request import Request
from .sessions import CREDENTIAL_HEADERS, split_headers

__all__ = ["REDIRECT_STATUSES", "next_hop"]

REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))

_BODY_HEADERS = frozenset(
    ("content-type", "content-length", "content-encoding", "transfer-encoding")
)


def next_hop(hop: Request, status: int, location: str | None) -> Request | None:
    """The request for the redirect ``hop`` received, or None if it is not a redirect.

    Raises :class:`FetchError` for a Location that cannot be followed.
    """
    if status not in REDIRECT_STATUSES or not location:
        return None  # a 3xx without Location is an answer in its own right (as in aiohttp)
    try:
        target = URL(location.strip())
        if not target.is_absolute():
            target = hop.yarl_url.join(target)
    except (ValueError, TypeError):
        raise FetchError(
            f"{short_url(hop.url)} redirected to a malformed Location {short_url(location)!r}",
            hop.url,
        ) from None
    method = hop.method
    data, json = hop.data, hop.json
    headers = hop.headers
    cookies = hop.cookies
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, data, json = "GET", None, None
        headers = _without(headers, _BODY_HEADERS)
    try:
        same_origin = target.origin() == hop.yarl_url.origin()
    except ValueError:
        same_origin = False
    if not same_origin:
        cookies = None
        headers = _without(headers, CREDENTIAL_HEADERS)
    try:
        return hop.replace(
            url=target,
            method=method,
            data=data,
            json=json,
            headers=headers or None,
            cookies=cookies,
        )
    except InvalidRequest as exc:
        raise FetchError(
            f"{short_url(hop.url)} redirected to {short_url(location)!r},"
            f" which cannot be fetched: {exc}",
            hop.url,
        ) from None


def _without(headers: Mapping[str, str] | None, names: frozenset[str]) -> Mapping[str, str] | None:
    """``headers`` less every header (every duplicate, any case) named in ``names``."""
    return split_headers(headers, names)[0] if headers else None
