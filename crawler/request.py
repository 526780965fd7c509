"""The Request: what to fetch and what to do with the answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from .errors import InvalidRequest

__all__ = ["Request"]

_SCHEMES = frozenset(("http", "https"))
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def parse_url(url: str | URL) -> URL:
    """Parse and check an absolute http(s) URL, raising InvalidRequest with the reason."""
    if isinstance(url, URL):
        parsed = url
    else:
        if not isinstance(url, str):
            raise InvalidRequest(f"Request URL must be a str, got {type(url).__name__}: {url!r}")
        try:
            parsed = URL(url.strip())
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"malformed URL {url!r}: {exc}") from None
    if parsed.scheme not in _SCHEMES:
        raise InvalidRequest(
            f"unsupported URL {str(parsed)!r}: the scheme must be http or https"
            " (relative links need response.follow() or response.urljoin())"
        )
    if not parsed.host:
        raise InvalidRequest(f"malformed URL {str(parsed)!r}: it has no host")
    try:
        port = parsed.port  # an out-of-range port raises here, once, at the edge
    except ValueError as exc:
        raise InvalidRequest(f"malformed URL {str(parsed)!r}: {exc}") from None
    if port == 0:
        raise InvalidRequest(f"malformed URL {str(parsed)!r}: port 0 cannot be connected to")
    return parsed


@dataclass(slots=True, eq=False)
class Request:
    """One HTTP request the crawl should make, and the callbacks for its outcome.

    ``callback(response)`` handles the response (default: the spider's ``parse``);
    ``errback(failure)`` is called with the exception when the request finally fails.
    ``meta`` travels with the request to ``response.meta``. Higher ``priority`` is
    fetched first; ``dont_filter=True`` skips de-duplication.
    """

    url: str
    callback: Callable[..., Any] | None = None
    method: str = "GET"
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    cookies: Mapping[str, str] | None = field(default=None, repr=False)
    data: Any = None
    json: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    dont_filter: bool = False
    errback: Callable[..., Any] | None = None
    proxy: str | None = field(default=None, repr=False)  # may hold credentials
    ssl: Any = None
    allow_redirects: bool = True
    depth: int = 0
    _url: URL = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._url = parse_url(self.url)
        self.url = str(self._url)
        method = self.method.upper() if isinstance(self.method, str) else self.method
        if method not in _METHODS:
            raise InvalidRequest(f"unsupported HTTP method {self.method!r} for {self.url}")
        self.method = method
        if self.data is not None and self.json is not None:
            raise InvalidRequest(f"Request({self.url}) got both data= and json=; pass only one")
        if self.callback is not None and not callable(self.callback):
            raise InvalidRequest(f"callback for {self.url} is not callable: {self.callback!r}")
        if self.errback is not None and not callable(self.errback):
            raise InvalidRequest(f"errback for {self.url} is not callable: {self.errback!r}")

    @property
    def host(self) -> str:
        """The lower-cased host name: the unit of politeness (concurrency and delay)."""
        return self._url.host or ""

    @property
    def yarl_url(self) -> URL:
        """The parsed URL (a ``yarl.URL``), parsed once when the request was made."""
        return self._url

    @classmethod
    def _link(cls, url: URL, callback: Callable[..., Any] | None = None) -> Request:
        """A GET for an already-joined absolute http(s) ``url`` (the link-following hot path).

        Same result as ``Request(url, callback=callback)`` without re-validating what
        the caller has checked (scheme, host); ``tests/test_request.py`` keeps them equal.
        """
        request = cls.__new__(cls)
        request.url = str(url)
        request._url = url
        request.callback = callback
        request.method = "GET"
        request.headers = None
        request.cookies = None
        request.data = None
        request.json = None
        request.meta = {}
        request.priority = 0
        request.dont_filter = False
        request.errback = None
        request.proxy = None
        request.ssl = None
        request.allow_redirects = True
        request.depth = 0
        return request

    def replace(self, **changes: Any) -> Request:
        """Return a copy with some fields changed (the URL is re-validated)."""
        values = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if not name.startswith("_")
        }
        values["meta"] = dict(self.meta)
        values.update(changes)
        return Request(**values)
