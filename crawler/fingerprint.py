"""Request fingerprints: the identity used for de-duplication.

Two requests are the same when their canonical URLs match (scheme and host
lower-cased, default port and fragment dropped, query parameters sorted) and,
for methods other than GET, their method and body match too (a HEAD of a page does not
stop a later GET of it).
"""

from __future__ import annotations

import hashlib

import orjson
from yarl import URL

from .request import Request

__all__ = ["canonical_url", "fingerprint", "url_fingerprint"]


def canonical_url(url: URL) -> str:
    """The canonical form of ``url`` used for de-duplication."""
    return _canonical_text(str(url))


def _canonical_text(text: str) -> str:
    """Canonical form of a URL already normalised by yarl (``str(URL(...))``)."""
    if "#" in text:
        text = text.partition("#")[0]
    base, sep, query = text.partition("?")
    if base.count("/") == 2:
        base += "/"  # "http://a.test" and "http://a.test/" are the same page
    if not sep:
        return base
    if "&" in query:
        query = "&".join(sorted(part for part in query.split("&") if part))
    return f"{base}?{query}" if query else base


def url_fingerprint(url: URL) -> bytes:
    """Fingerprint of a GET for ``url`` (used for redirect targets)."""
    return hashlib.blake2b(canonical_url(url).encode(), digest_size=16).digest()


_blake2b = hashlib.blake2b


def fingerprint(request: Request) -> bytes:
    """The 16-byte de-duplication key of ``request``."""
    if request.method == "GET" and request.data is None and request.json is None:
        # request.url is str(yarl URL): normalised already, no need to format it again;
        # most links have no fragment, no query and a path: canonical as they are (once
        # per link, so the ~0.3 µs of _canonical_text are worth skipping).
        text = request.url
        if "#" in text or "?" in text or text.find("/", 8) < 0:  # no path: count("/") == 2
            text = _canonical_text(text)
        return _blake2b(text.encode(), digest_size=16).digest()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(request.method.encode())
    digest.update(b" ")
    digest.update(canonical_url(request.yarl_url).encode())
    digest.update(b"\n")
    digest.update(_body_bytes(request))
    return digest.digest()


def _body_bytes(request: Request) -> bytes:
    if request.json is not None:
        return orjson.dumps(request.json, option=orjson.OPT_SORT_KEYS)
    data = request.data
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, dict):
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str)
    return repr(data).encode()
