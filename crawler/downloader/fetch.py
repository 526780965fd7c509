"""Send one Request through an aiohttp session and build the Response.

This is the one place where aiohttp exceptions become crawler.errors.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from ..errors import (
    BadResponse,
    FetchError,
    NetworkError,
    RequestTimeout,
    ResponseTooLarge,
    TlsError,
    TooManyRedirects,
)
from ..request import Request
from ..response import RedirectHop, Response

__all__ = ["fetch"]


async def fetch(
    session: aiohttp.ClientSession,
    request: Request,
    max_bytes: int,
    max_redirects: int,
) -> Response:
    """Fetch ``request`` with ``session``; raise a :class:`FetchError` subclass on failure."""
    kwargs: dict[str, Any] = {
        "allow_redirects": request.allow_redirects,
        "max_redirects": max_redirects,
    }
    if request.headers:
        kwargs["headers"] = request.headers
    if request.cookies:
        kwargs["cookies"] = request.cookies
    if request.data is not None:
        kwargs["data"] = request.data
    elif request.json is not None:
        kwargs["json"] = request.json
    if request.proxy is not None:
        kwargs["proxy"] = request.proxy
    if request.ssl is not None:
        kwargs["ssl"] = request.ssl
    url = request.url
    try:
        async with session.request(request.method, request.yarl_url, **kwargs) as resp:
            body = await _read_body(resp, max_bytes, url)
            history = tuple(RedirectHop(str(h.url), h.status, h.headers) for h in resp.history)
            return Response(
                resp.url,
                resp.status,
                resp.headers,
                body,
                request,
                history=history,
                raw_headers=resp.raw_headers,
                cookies=resp.cookies,
            )
    except FetchError:
        raise
    except aiohttp.TooManyRedirects as exc:
        raise TooManyRedirects(
            f"too many redirects for {url} (more than {max_redirects}; a loop?)"
            f" last: {_hops(exc)}",
            url,
        ) from None
    except (TimeoutError, asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        raise RequestTimeout(f"timed out fetching {url}", url) from None
    except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as exc:
        raise TlsError(f"TLS failure for {url}: {_reason(exc)}", url) from None
    except aiohttp.ClientResponseError as exc:
        raise BadResponse(f"invalid HTTP response from {url}: {exc.message}", url) from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
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


def _reason(exc: BaseException) -> str:
    # aiohttp messages may embed a proxy URL with credentials; strip userinfo.
    text = str(exc) or type(exc).__name__
    return _strip_credentials(text)


def _hops(exc: aiohttp.TooManyRedirects) -> str:
    history = getattr(exc, "history", ()) or ()
    return " -> ".join(str(h.url) for h in history[-3:]) or "?"


def _strip_credentials(text: str) -> str:
    import re

    return re.sub(r"(?<=://)[^/@\s:]+:[^/@\s]+@", "***@", text)
