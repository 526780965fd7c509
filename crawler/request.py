"""The Request: what to fetch and what to do with the answer."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict
from yarl import URL

from .errors import InvalidRequest
from .linkjoin import plain_absolute
from .loglines import short_url

__all__ = ["Request"]

_SCHEMES = frozenset(("http", "https"))
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def parse_url(url: str | URL) -> URL:
    """Parse and check an absolute http(s) URL, raising InvalidRequest with the reason."""
    if isinstance(url, URL):
        parsed = url
    else:
        if not isinstance(url, str):
            raise InvalidRequest(
                f"Request URL must be a str, got {type(url).__name__}: {short_url(repr(url))}"
            )
        try:
            parsed = URL(url.strip())
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"malformed URL {short_url(url)!r}: {exc}") from None
    if parsed.scheme not in _SCHEMES:
        raise InvalidRequest(
            f"unsupported URL {short_url(parsed)!r}: the scheme must be http or https"
            " (relative links need response.follow() or response.urljoin())"
        )
    if not parsed.host:
        raise InvalidRequest(f"malformed URL {short_url(parsed)!r}: it has no host")
    try:
        port = parsed.port  # an out-of-range port raises here, once, at the edge
    except ValueError as exc:
        raise InvalidRequest(f"malformed URL {short_url(parsed)!r}: {exc}") from None
    if port == 0:
        raise InvalidRequest(f"malformed URL {short_url(parsed)!r}: port 0 cannot be connected to")
    return parsed


def _basic_auth(url: URL) -> str:
    """The ``Authorization`` value for the (percent-decoded) user and password in ``url``."""
    token = f"{url.user or ''}:{url.password or ''}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def _has_authorization(headers: Mapping[str, str] | None) -> bool:
    return headers is not None and any(name.lower() == "authorization" for name in headers)


def _with_header(headers: Mapping[str, str] | None, name: str, value: str) -> Mapping[str, str]:
    """A copy of ``headers`` (the caller's mapping is never changed) plus ``name: value``."""
    if headers is None:
        return {name: value}
    if isinstance(headers, dict):
        return {**headers, name: value}
    copy = CIMultiDict(headers)  # a multidict keeps its repeated headers
    copy.add(name, value)
    return copy


def _without_authorization(headers: Mapping[str, str], value: str) -> Mapping[str, str] | None:
    """``headers`` without an ``Authorization: value`` entry (None when nothing is left)."""
    pairs = [
        (k, v) for k, v in headers.items() if not (k.lower() == "authorization" and v == value)
    ]
    if not pairs:
        return None
    return dict(pairs) if isinstance(headers, dict) else CIMultiDict(pairs)


@dataclass(slots=True, eq=False)
class Request:
    """One HTTP request the crawl should make, and the callbacks for its outcome.

    ``callback(response)`` handles the response (default: the spider's ``parse``);
    ``errback(failure)`` is called with the exception when the request finally fails.
    ``meta`` travels with the request to ``response.meta``. Higher ``priority`` is
    fetched first; ``dont_filter=True`` skips de-duplication. ``render=True`` fetches it
    in a headless browser (docs/rendering.md); persistent frontiers keep the flag.

    A URL with ``user:password@`` is fetched with those credentials as HTTP Basic
    auth for that origin: they move into an ``Authorization`` header (an explicit
    one wins) and out of ``url``, so fingerprints, items, stats and logs never
    carry the password.
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
    # Fetch through a headless browser (crawler.render) instead of aiohttp: keyword-only
    # so positional calls written before it existed keep their meaning.
    render: bool = field(default=False, kw_only=True)
    # Parsed on first use for a link built from a plain string (crawler/linkjoin.py): most
    # followed links are duplicates, dropped by fingerprint before anything needs it.
    _url: URL | None = field(init=False, repr=False)
    _host: str | None = field(default=None, init=False, repr=False)
    # The Authorization value taken from the URL's userinfo: scoped to that origin by replace().
    _url_auth: str | None = field(default=None, init=False, repr=False)
    # The URL of the page whose callback made this request (None for start requests): shown
    # in -L DEBUG lines; never sent, and not kept by a persistent or shared frontier.
    referer: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        plain = plain_absolute(self.url) if self.url.__class__ is str else None
        if plain is not None:  # parsed when first asked for (yarl_url): ~1.5 µs less
            self.url, self._host = plain[0], plain[1]
            self._url = None
        else:
            url = parse_url(self.url)
            if url.raw_user is not None or url.raw_password is not None:
                url = self._take_credentials(url)
            self._url = url
            self.url = str(url)
        method = self.method.upper() if isinstance(self.method, str) else self.method
        if method not in _METHODS:
            raise InvalidRequest(
                f"unsupported HTTP method {self.method!r:.100} for {short_url(self.url)}"
            )
        self.method = method
        if self.data is not None and self.json is not None:
            raise InvalidRequest(
                f"Request({short_url(self.url)}) got both data= and json=; pass only one"
            )
        if self.callback is not None and not callable(self.callback):
            raise InvalidRequest(
                f"callback for {short_url(self.url)} is not callable: {self.callback!r:.100}"
            )
        if self.errback is not None and not callable(self.errback):
            raise InvalidRequest(
                f"errback for {short_url(self.url)} is not callable: {self.errback!r:.100}"
            )

    def _take_credentials(self, url: URL) -> URL:
        """``url`` without its userinfo, which becomes the Basic ``Authorization`` header."""
        if not _has_authorization(self.headers):  # an explicit header wins; drop the URL's
            self._url_auth = _basic_auth(url)
            self.headers = _with_header(self.headers, "Authorization", self._url_auth)
        return url.with_user(None)

    @property
    def has_url_credentials(self) -> bool:
        """True if this request's Authorization came from ``user:password@`` in its URL."""
        return self._url_auth is not None

    def lend_url_credentials(self, link: Request) -> Request:
        """Give ``link`` this request's URL credentials if it is on the same origin and
        has no Authorization of its own (a site crawled as ``http://user:pw@host/``
        stays logged in on its own links, and only there); returns ``link``."""
        auth = self._url_auth
        if auth is None or link._url_auth is not None or _has_authorization(link.headers):
            return link
        try:
            same = link.yarl_url.origin() == self.yarl_url.origin()
        except ValueError:
            return link
        if same:
            link.headers = _with_header(link.headers, "Authorization", auth)
            link._url_auth = auth
        return link

    @property
    def host(self) -> str:
        """The lower-cased host name: the unit of politeness (concurrency and delay)."""
        host = self._host
        if host is None:
            host = self._host = self.yarl_url.host or ""
        return host

    @property
    def yarl_url(self) -> URL:
        """The parsed URL (a ``yarl.URL``): parsed once, when made or first asked for."""
        url = self._url
        if url is None:  # a plain link's string is in yarl's own form already: no re-quoting
            url = self._url = URL(self.url, encoded=True)
        return url

    @classmethod
    def _get(cls, callback: Callable[..., Any] | None) -> Request:
        """A GET with every field at its default but the URL, which the caller sets."""
        request = cls.__new__(cls)
        request._host = None
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
        request.render = False
        request._url_auth = None
        request.referer = None
        return request

    @classmethod
    def _link(cls, url: URL, callback: Callable[..., Any] | None = None) -> Request:
        """A GET for an already-joined absolute http(s) ``url`` (the link-following hot path).

        Same result as ``Request(url, callback=callback)`` without re-validating what
        the caller has checked (scheme, host); ``tests/test_request.py`` keeps them equal.
        """
        request = cls._get(callback)
        request._url = url
        request.url = str(url)
        if url.raw_user is not None or url.raw_password is not None:
            request._url = request._take_credentials(url)  # rare: not worth a slower hot path
            request.url = str(request._url)
        return request

    @classmethod
    def _plain(cls, url: str, host: str, callback: Callable[..., Any] | None) -> Request:
        """A GET for a plain link resolved as a string (crawler/linkjoin.py): ``url`` is
        what ``str(URL(url))`` prints, with no userinfo; its URL is parsed when first asked."""
        request = cls._get(callback)
        request.url = url
        request._url = None
        request._host = host
        return request

    def replace(self, **changes: Any) -> Request:
        """Return a copy with some fields changed (the URL is re-validated).

        Credentials that came from the URL stay with its origin: the copy keeps them
        for a URL of the same origin, takes new ones from a credentialed URL, and
        drops them for another origin.
        """
        values = {
            name: getattr(self, name)
            for name, spec in self.__dataclass_fields__.items()
            if spec.init
        }
        values["meta"] = dict(self.meta)
        values.update(changes)
        inherited = self._url_auth if "headers" not in changes else None
        if inherited is not None and self.headers is not None:
            values["headers"] = _without_authorization(self.headers, inherited)
        request = Request(**values)
        if inherited is not None and request._url_auth is None:
            if request.yarl_url.origin() == self.yarl_url.origin():
                request.headers = _with_header(request.headers, "Authorization", inherited)
                request._url_auth = inherited
        return request
