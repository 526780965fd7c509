"""Request bodies: compressing an upload once, before it is sent.

aiohttp sends ``data=`` as given when the request already has a
``Content-Encoding`` header, so a body compressed here is never compressed
twice::

    body, headers = compress_body(payload, "gzip")
    Request(url, method="POST", data=body, headers={**headers, "Content-Type": "application/json"})
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

from ..errors import InvalidRequest

__all__ = ["UPLOAD_ENCODINGS", "compress_body"]

UPLOAD_ENCODINGS = ("gzip", "deflate", "br")


def _brotli() -> Any:
    try:
        import brotli
    except ImportError:
        try:
            import brotlicffi as brotli
        except ImportError:
            raise InvalidRequest(
                "compress_body(encoding='br') needs a Brotli library: pip install brotli"
            ) from None
    return brotli


def compress_body(data: bytes | str, encoding: str = "gzip") -> tuple[bytes, dict[str, str]]:
    """``data`` compressed with ``encoding`` (gzip, deflate or br) and its Content-Encoding header.

    A ``str`` is encoded as UTF-8 first. ``deflate`` is the zlib format HTTP means by it.
    """
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidRequest(
            f"compress_body() takes bytes or str, got {type(data).__name__}"
            " (serialise dicts first, e.g. with orjson.dumps)"
        )
    name = encoding.strip().lower() if isinstance(encoding, str) else encoding
    if name == "gzip":
        body = gzip.compress(bytes(data))
    elif name == "deflate":
        body = zlib.compress(bytes(data))
    elif name == "br":
        body = _brotli().compress(bytes(data))
    else:
        raise InvalidRequest(
            f"unsupported upload encoding {encoding!r}: use one of {', '.join(UPLOAD_ENCODINGS)}"
        )
    return body, {"Content-Encoding": name}
