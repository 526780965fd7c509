"""Link following's hot path: from an ``href`` to a Request, a few µs per link.

A spider follows ~30 links a page, so this is where a crawl spends much of its
own time. ``Response.follow`` and ``Response.follow_all`` resolve each link
against the page and, when nothing but a ``callback`` is asked for, build the
Request with ``Request._link`` (no re-validation of what was checked here:
``tests/test_request.py`` keeps it equal to ``Request(url, callback=...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from selectolax.lexbor import LexborNode
from yarl import URL

from .errors import InvalidRequest
from .linkextractor import IGNORED_EXTENSIONS, is_binary_path
from .linkjoin import LinkBase
from .porting import check_request_kwargs
from .request import Request

if TYPE_CHECKING:
    from .response import Response

__all__ = ["follow_string", "join_link", "link_requests", "plain_link"]

_SCHEMES = ("http", "https")
_NOT_GIVEN: Any = object()
# Request arguments a link's Request takes on the fast path, each value checked here as
# Request() would (anything else, or a value of another type: Request() checks and says).
_LINK_KWARGS = frozenset(("callback", "errback", "meta", "priority", "dont_filter"))


def _fast_kwargs(kwargs: dict[str, Any]) -> bool:
    """Whether ``kwargs`` can be applied to a link's Request without Request()'s checks."""
    if len(kwargs) == 1:  # the README's callback=, or one other argument
        callback = kwargs.get("callback", _NOT_GIVEN)
        if callback is not _NOT_GIVEN:
            return callback is None or callable(callback)
    if not kwargs.keys() <= _LINK_KWARGS:
        return False
    callback, errback = kwargs.get("callback"), kwargs.get("errback")
    return (
        (callback is None or callable(callback))
        and (errback is None or callable(errback))
        and type(kwargs.get("meta", {})) is dict
        and type(kwargs.get("priority", 0)) is int
        and type(kwargs.get("dont_filter", False)) is bool
    )


def _link_request(request: Request, kwargs: dict[str, Any]) -> Request:
    """``request`` with the arguments of :func:`_fast_kwargs` other than ``callback``."""
    if len(kwargs) > 1 or "callback" not in kwargs:
        request.errback = kwargs.get("errback")
        request.meta = kwargs.get("meta", request.meta)
        request.priority = kwargs.get("priority", 0)
        request.dont_filter = kwargs.get("dont_filter", False)
    return request


def join_link(base: URL, href: str) -> URL:
    """``base.join(URL(href))`` for a stripped ``href``, without the join when it is not needed.

    RFC 3986 resolves an absolute ``http(s)://host...`` reference to itself with its dot
    segments removed, which parsing it does already: the join (~2.5 µs, a third of a
    link's cost) is skipped. Links holding ``@`` or ``[`` (userinfo, IPv6) still take it,
    as does anything else; ``tests/test_response.py`` compares both ways on random links.
    """
    if href.startswith(("http://", "https://")) and "@" not in href and "[" not in href:
        url = URL(href)
        if url.raw_host:
            return url
    return base.join(URL(href))


def follow_string(links: LinkBase, href: str, kwargs: dict[str, Any]) -> Request | None:
    """``Response.follow(href, **kwargs)`` of a string, when the link is plain (see
    :func:`plain_link`); None: take the full path. ``URL()`` may raise ValueError/TypeError.

    The README's per-anchor loop calls this ~30 times a page: a plain link is resolved as
    a string (crawler/linkjoin.py), others by :func:`join_link` and :func:`plain_link` in
    one call, an absolute link's scheme and host checked once.
    """
    callback: Callable[..., Any] | None = None
    if kwargs:
        if not _fast_kwargs(kwargs):
            return None
        callback = kwargs.get("callback")
    href = href.strip()
    plain = links.resolve(href)
    if plain is not None:
        request = Request._plain(plain[0], plain[1], callback)
        return _link_request(request, kwargs) if kwargs else request
    base = links.url
    if href.startswith(("http://", "https://")) and "@" not in href and "[" not in href:
        url = URL(href)
        if not url.raw_host:
            return None
    else:
        url = base.join(URL(href))
        if url.scheme not in _SCHEMES or not url.raw_host:
            return None
    return _url_link(url, kwargs)


def plain_link(url: URL, kwargs: dict[str, Any]) -> Request | None:
    """A GET for the joined ``url`` if it is a plain link (http(s), a host, a usable port)
    and ``kwargs`` are valid link arguments (callback, errback, meta, priority,
    dont_filter); None: build it the full way (Request() says what is wrong)."""
    if kwargs and not _fast_kwargs(kwargs):
        return None
    if url.scheme not in _SCHEMES or not url.raw_host:
        return None
    return _url_link(url, kwargs)


def _url_link(url: URL, kwargs: dict[str, Any]) -> Request | None:
    """A GET for an http(s) ``url`` with a host, if its port can be connected to
    (``kwargs``: checked by :func:`_fast_kwargs` already)."""
    try:
        if url.port == 0:
            return None
    except ValueError:  # out of range
        return None
    request = Request._link(url, kwargs.get("callback"))
    return _link_request(request, kwargs) if kwargs else request


def link_requests(response: Response, links: list[Any], kwargs: dict[str, Any]) -> list[Request]:
    """``follow_all()``'s requests: join, check, build; links that cannot be crawled are skipped
    (and binary ones counted, unless the crawl follows them)."""
    links_base = response.link_base
    base = links_base.url
    # Plain link-following (valid link arguments only) skips re-validating each URL.
    fast = not kwargs or _fast_kwargs(kwargs)
    if not fast:  # once per call: an unknown argument must not drop every link silently
        check_request_kwargs(kwargs, response.url)
    callback = kwargs.get("callback")
    binary = IGNORED_EXTENSIONS if response.limits.skip_binary else None
    requests = []
    for href in links:
        if isinstance(href, LexborNode):
            href = href.attributes.get("href") or ""
        href = href.strip()
        if not href or href[0] == "#":
            continue
        if fast:
            plain = links_base.resolve(href)
            if plain is not None:
                url_text, host, path = plain
                if binary and is_binary_path(path, binary):
                    response.note_binary_link(url_text.partition("#")[0])
                    continue
                request = Request._plain(url_text, host, callback)
                requests.append(_link_request(request, kwargs) if kwargs else request)
                continue
        try:
            url = join_link(base, href)
            if url.scheme not in _SCHEMES or not url.raw_host:
                continue
            if binary and is_binary_path(url.raw_path, binary):
                response.note_binary_link(str(url.with_fragment(None)))
                continue
            if fast:
                if url.port == 0:  # an out-of-range port raises ValueError
                    continue
                request = Request._link(url, callback)
                requests.append(_link_request(request, kwargs) if kwargs else request)
            else:
                requests.append(Request(url, **kwargs))  # type: ignore[arg-type]
        except (ValueError, TypeError, InvalidRequest):
            continue
    source = response.request
    if source.has_url_credentials:  # rare: a site crawled as http://user:pw@host/
        requests = [source.lend_url_credentials(r) for r in requests]
    return requests
