"""Send one Request through an aiohttp session and build the Response.

This is the one place where aiohttp exceptions become crawler.errors.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from ..errors import (
    BadResponse,
    FetchError,
    NetworkError,
    ProxyError,
    RequestTimeout,
    ResponseTooLarge,
    TlsError,
)
from ..request import Request
from ..response import Response
from .proxies import redact

__all__ = ["fetch"]


async def fetch(
    session: aiohttp.ClientSession,
    request: Request,
    max_bytes: int,
    *,
    proxy: str | None = None,
    ssl: Any = None,
    timings: dict[str, float] | None = None,
    timeout_s: float | None = None,
) -> Response:
    """One HTTP exchange for ``request`` with ``session``; a :class:`FetchError` on failure.

    Redirects are not followed here (see ``redirects.py``): a 3xx is returned.
    ``proxy`` and ``ssl`` are the already-resolved choices for this request;
    ``timings`` (filled by the timing TraceConfig) becomes ``response.timings``;
    ``timeout_s`` replaces the session's timeout (what is left for a later hop).
    """
    kwargs: dict[str, Any] = {"allow_redirects": False}
    if timeout_s is not None:
        kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout_s)
    if timings is not None:
        kwargs["trace_request_ctx"] = timings
    if request.headers:
        kwargs["headers"] = request.headers
    if request.cookies:
        kwargs["cookies"] = request.cookies
    if request.data is not None:
        kwargs["data"] = request.data
    elif request.json is not None:
        kwargs["json"] = request.json
    if proxy:
        kwargs["proxy"] = proxy
    if ssl is not None:
        kwargs["ssl"] = ssl
    url = request.url
    try:
        async with session.request(request.method, request.yarl_url, **kwargs) as resp:
            if resp.status == 407:  # only a proxy says this (for https, aiohttp raises instead)
                raise ProxyError(
                    f"proxy {redact(proxy) or '(from the environment)'} refused {url}:"
                    f" HTTP 407 {resp.reason or 'Proxy Authentication Required'}"
                    " (check the credentials in the proxy URL)",
                    url,
                )
            body = await _read_body(resp, max_bytes, url)
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
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise RequestTimeout(f"timed out fetching {url}", url) from None
    except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as exc:
        raise TlsError(f"TLS failure for {url}: {_reason(exc)}", url) from None
    except aiohttp.ClientProxyConnectionError as exc:
        raise ProxyError(
            f"cannot connect to proxy {redact(proxy) or '(from the environment)'} for {url}:"
            f" {_reason(exc)}",
            url,
        ) from None
    except aiohttp.ClientHttpProxyError as exc:
        hint = " (check the credentials in the proxy URL)" if exc.status == 407 else ""
        raise ProxyError(
            f"proxy {redact(proxy) or '(from the environment)'} refused {url}:"
            f" HTTP {exc.status} {redact(exc.message)}{hint}",
            url,
        ) from None
    except aiohttp.ClientResponseError as exc:
        raise BadResponse(f"invalid HTTP response from {url}: {exc.message}", url) from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        if _is_tls_alert(exc):  # e.g. TLS 1.3: a rejected client certificate shows up on read
            raise TlsError(f"TLS failure for {url}: {_reason(exc)}", url) from None
        raise NetworkError(f"network error fetching {url}: {_reason(exc)}", url) from None
    except aiohttp.InvalidURL as exc:
        raise FetchError(f"invalid URL {url}: {exc}", url) from None
    except aiohttp.ClientError as exc:
        raise FetchError(f"request to {url} failed: {_reason(exc)}", url) from None


async def _read_body(resp: aiohttp.ClientResponse, max_bytes: int, url: str) -> bytes:
    if not max_bytes:
        return await resp.read()
    length = resp.content_length
    if length is not None:
        if length > max_bytes:
            raise ResponseTooLarge(
                f"response from {url} is {length} bytes, over MAX_RESPONSE_SIZE={max_bytes}", url
            )
        return await resp.read()
    chunks = []
    total = 0
    async for chunk in resp.content.iter_any():
        total += len(chunk)
        if total > max_bytes:
            raise ResponseTooLarge(
                f"response from {url} exceeded MAX_RESPONSE_SIZE={max_bytes} bytes", url
            )
        chunks.append(chunk)
    return b"".join(chunks)


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


def _reason(exc: BaseException) -> str:
    # aiohttp messages may embed a proxy URL with credentials.
    return redact(str(exc) or type(exc).__name__)
