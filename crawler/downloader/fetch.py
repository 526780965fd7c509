"""Send one Request through an aiohttp session and build the Response.

This is the one place where aiohttp exceptions become crawler.errors. The body
is read as a stream and decoded here (see ``decoding.py``), so the size cap
counts decoded bytes and a bomb is refused after at most MAX_RESPONSE_SIZE of
output; the whole exchange, decoding included, runs under one deadline.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..errors import (
    BadResponse,
    BlockedAddress,
    FetchError,
    NetworkError,
    ProxyError,
    RequestTimeout,
    ResponseTooLarge,
    TlsError,
)
from ..loglines import cap, short_url
from ..request import Request
from ..response import Response
from .decoding import MAX_LAYERS, BodyDecoder
from .guard import BlockedAddressError
from .proxies import is_socks, redact
from .sessions import split_headers
from .socks import SocksError
from .tracing import CURRENT_TIMINGS, now

__all__ = ["BodyLimit", "fetch"]


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """How much of a body to accept: refuse past ``max_bytes``, or keep only its start.

    ``max_bytes`` counts decoded bytes (0 = unlimited). With ``truncate`` a longer
    body is cut there instead of refused (robots.txt: RFC 9309 reads 500 KiB).
    """

    max_bytes: int
    truncate: bool = False


# Decoded pieces between two turns of the event loop (STEP_BYTES each: ~1 MiB).
_STEPS_PER_TURN = 16
_MAX_REASON = 300
_BODILESS = frozenset((204, 304))
_PROXY_AUTH = frozenset(("proxy-authorization",))


async def fetch(
    session: aiohttp.ClientSession,
    request: Request,
    limit: BodyLimit,
    *,
    timeout_s: float | None = None,
    read_timeout_s: float | None = None,
    headers: Mapping[str, str] | None = None,
    proxy: str | None = None,
    ssl: Any = None,
    timings: dict[str, float] | None = None,
) -> Response:
    """One HTTP exchange for ``request`` with ``session``; a :class:`FetchError` on failure.

    Redirects are not followed here (see ``redirects.py``): a 3xx is returned.
    ``timeout_s`` replaces the session's REQUEST_TIMEOUT (what is left of it for a
    later hop), ``read_timeout_s`` its READ_TIMEOUT. aiohttp's timer bounds the
    connection, the headers and every read; decoding between reads is bounded by
    the size cap (see ``decoding.py``). ``headers`` replace
    ``request.headers`` (the downloader adds credentials for the origin).
    ``proxy`` and ``ssl`` are the already-resolved choices for this request (a SOCKS
    ``proxy`` is ``session``'s connector already: it is only named in errors here);
    ``timings`` (stamped here and by the instrumented connector, see ``tracing.py``)
    becomes ``response.timings``.
    """
    kwargs: dict[str, Any] = {"allow_redirects": False}
    if timeout_s is not None:
        read = min(read_timeout_s or timeout_s, timeout_s)
        kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout_s, sock_read=read)
    if timings is not None:
        kwargs["trace_request_ctx"] = timings  # for a user's timing_trace_config()
    headers = request.headers if headers is None else headers
    http_proxy = proxy if proxy and not is_socks(proxy) else None
    if headers:
        if any(name.lower() == "proxy-authorization" for name in headers):
            headers, taken = split_headers(headers, _PROXY_AUTH)
            proxy_auth = taken.getall("Proxy-Authorization")[-1]
            if http_proxy:
                # for the proxy only: aiohttp would send a plain header to the origin too
                # (inside an https tunnel, where no proxy reads it); SOCKS never reads it
                kwargs["proxy_headers"] = {"Proxy-Authorization": proxy_auth}
        kwargs["headers"] = headers
    if request.cookies:
        kwargs["cookies"] = request.cookies
    if request.data is not None:
        kwargs["data"] = request.data
    elif request.json is not None:
        kwargs["json"] = request.json
    if http_proxy:
        kwargs["proxy"] = http_proxy
    if ssl is not None:
        kwargs["ssl"] = ssl
    url = request.url
    # perf_counter stamps (tracing.py), inline: a few bytecodes a request; the connector's
    # connect/dns go into the dict the ContextVar names.
    CURRENT_TIMINGS.set(timings)
    if timings is not None and "_start" not in timings:
        timings["_start"] = now()  # the first hop: ``total`` spans the redirects
    try:
        async with session.request(request.method, request.yarl_url, **kwargs) as resp:
            if timings is not None:  # ttfb: of the last hop, from the first hop's start
                timings["ttfb"] = now() - timings["_start"]
            if resp.status == 407:  # only a proxy says this (for https, aiohttp raises)
                raise ProxyError(
                    f"proxy {redact(proxy) or '(from the environment)'} refused"
                    f" {short_url(url)}:"
                    f" HTTP 407 {resp.reason or 'Proxy Authentication Required'}"
                    " (check the credentials in the proxy URL)",
                    url,
                )
            body = await _read_body(resp, limit, url, request.method)
            return Response(
                resp.url,
                resp.status,
                resp.headers,
                body,
                request,
                raw_headers=resp.raw_headers,
                cookies=resp.cookies,
                timings=timings,
            )
    except FetchError:
        raise
    except Exception as exc:
        raise _translate(exc, url, proxy) from None


def _translate(exc: Exception, url: str, proxy: str | None) -> FetchError:
    """The crawler.errors equivalent of an aiohttp (or timeout) exception."""
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return RequestTimeout(f"timed out fetching {short_url(url)}", url)
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, BlockedAddressError
    ):
        return BlockedAddress(f"not fetching {short_url(url)}: {exc.os_error.strerror}", url)
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError)):
        return TlsError(f"TLS failure for {short_url(url)}: {_reason(exc)}", url)
    shown = redact(proxy) or "(from the environment)"
    if isinstance(exc, SocksError):
        return _socks_error(exc, url, shown)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return ProxyError(
            f"cannot connect to proxy {shown} for {short_url(url)}: {_reason(exc)}", url
        )
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        hint = " (check the credentials in the proxy URL)" if exc.status == 407 else ""
        return ProxyError(
            f"proxy {shown} refused {short_url(url)}:"
            f" HTTP {exc.status} {_reason(exc.message)}{hint}",
            url,
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        return BadResponse(
            f"invalid HTTP response from {short_url(url)}: {_reason(exc.message)}", url
        )
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        if _is_tls_alert(exc):  # e.g. TLS 1.3: a rejected client certificate shows up on read
            return TlsError(f"TLS failure for {short_url(url)}: {_reason(exc)}", url)
        return NetworkError(f"network error fetching {short_url(url)}: {_reason(exc)}", url)
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchError(f"invalid URL {short_url(url)}: {_reason(exc)}", url)
    if isinstance(exc, aiohttp.ClientError):
        return FetchError(f"request to {short_url(url)} failed: {_reason(exc)}", url)
    raise exc


def _socks_error(exc: SocksError, url: str, shown: str) -> ProxyError:
    reason = _reason(str(exc))
    if not exc.reached:
        return ProxyError(f"cannot connect to proxy {shown} for {short_url(url)}: {reason}", url)
    if exc.auth:
        return ProxyError(
            f"proxy {shown} refused {short_url(url)}: {reason}"
            " (check the credentials in the proxy URL)",
            url,
        )
    return ProxyError(f"proxy {shown} could not reach {short_url(url)}: {reason}", url)


async def _read_body(
    resp: aiohttp.ClientResponse, limit: BodyLimit, url: str, method: str
) -> bytes:
    """The decoded body, refused (or cut, with ``limit.truncate``) past ``limit.max_bytes``.

    On refusal the connection is closed, not pooled: the rest of the body is
    never read. A response that has no body (HEAD, 1xx, 204, 304) is not
    checked, whatever its Content-Length or Content-Encoding say.
    """
    if method == "HEAD" or resp.status < 200 or resp.status in _BODILESS:
        return b""
    max_bytes = limit.max_bytes
    encoding = resp.headers.get("Content-Encoding")
    length = resp.content_length
    if max_bytes and length is not None and length > max_bytes and not limit.truncate:
        resp.close()
        raise ResponseTooLarge(
            f"response from {short_url(url)} is {length} bytes, over MAX_RESPONSE_SIZE={max_bytes}",
            url,
        )
    if length is not None and not encoding:
        return await resp.read()  # exactly Content-Length bytes, known to be under the cap
    # Every layer of a stack counts: MAX_LAYERS x the cap bounds the decoding work.
    decoder = BodyDecoder(encoding, url, max_bytes * MAX_LAYERS)
    parts: list[bytes] = []
    total = steps = 0
    try:
        async for chunk in resp.content.iter_any():
            for piece in decoder.feed(chunk):
                steps += 1
                if steps % _STEPS_PER_TURN == 0:
                    await asyncio.sleep(0)  # a long decode must not starve the other requests
                if not piece:
                    continue
                total += len(piece)
                if max_bytes and total > max_bytes:
                    if not limit.truncate:
                        raise ResponseTooLarge(
                            f"response from {short_url(url)} exceeded"
                            f" MAX_RESPONSE_SIZE={max_bytes} bytes"
                            + (" once decoded" if not decoder.identity else ""),
                            url,
                        )
                    parts.append(piece[: len(piece) - (total - max_bytes)])
                    resp.close()
                    return b"".join(parts)
                parts.append(piece)
        decoder.finish()
    except FetchError:
        resp.close()
        raise
    return b"".join(parts)


def _is_tls_alert(exc: BaseException) -> bool:
    """True if a connection error was the peer's TLS alert (aiohttp re-wraps the SSLError)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) or str(seen).startswith(("[SSL", "[Errno 1] [SSL")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException | str) -> str:
    # aiohttp messages may embed a proxy URL with credentials, or quote raw bytes at length.
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    return redact(cap(text, _MAX_REASON))
