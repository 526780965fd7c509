"""Content-Encoding decoding in bounded steps, so MAX_RESPONSE_SIZE counts decoded bytes.

The sessions ask aiohttp not to decode bodies (``auto_decompress=False``) and
the downloader decodes here instead, because a crawler must:

* cap what a body *decodes* to: an 800-byte brotli body can decode to 1 GiB;
* decode in steps of at most :data:`STEP_BYTES`, so the caller can count, stop
  at the cap, and give the event loop a turn between steps;
* undo stacked encodings (``Content-Encoding: gzip, br``) layer by layer, but
  no more than :data:`MAX_LAYERS` of them, and at most :data:`MAX_MEMBERS`
  concatenated gzip members.

gzip, deflate (zlib-wrapped or raw, as servers send both), br (with the Brotli
package, 1.2 or later for its output limit) and zstd (``backports.zstd`` or
Python 3.14's ``compression.zstd``) are decoded; only those are advertised in
``Accept-Encoding``. A body in an encoding we do not know is passed on as it
came, like a browser's "download" rather than a guess.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any, Protocol

from ..errors import BadResponse
from ..loglines import short_url

__all__ = ["ACCEPT_ENCODING", "MAX_LAYERS", "STEP_BYTES", "BodyDecoder"]

STEP_BYTES = 64 * 1024
MAX_LAYERS = 3
MAX_MEMBERS = 64
_GZIP_MAGIC = b"\x1f\x8b"

_ERRORS: tuple[type[BaseException], ...] = (zlib.error, ValueError, EOFError)
try:  # output_buffer_limit arrived in Brotli 1.2; an older one could not be bounded
    import brotli

    _HAS_BROTLI = "output_buffer_limit" in (brotli.Decompressor.process.__doc__ or "")
    _ERRORS += (brotli.error,)
except ImportError:  # pragma: no cover - Brotli is optional
    _HAS_BROTLI = False

_ZstdDecompressor: Any
try:
    from compression.zstd import ZstdDecompressor as _ZstdDecompressor  # type: ignore
    from compression.zstd import ZstdError  # type: ignore

    _ERRORS += (ZstdError,)
except ImportError:
    try:
        from backports.zstd import ZstdDecompressor as _ZstdDecompressor  # type: ignore
        from backports.zstd import ZstdError  # type: ignore

        _ERRORS += (ZstdError,)
    except ImportError:  # pragma: no cover - zstd is optional
        _ZstdDecompressor = None

_DECODABLE = (
    ("gzip", "x-gzip", "deflate")
    + (("br",) if _HAS_BROTLI else ())
    + (("zstd",) if _ZstdDecompressor is not None else ())
)
ACCEPT_ENCODING = ", ".join(e for e in _DECODABLE if e != "x-gzip")


class _Layer(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...


class _ZlibLayer:
    """gzip (with concatenated members) or deflate, at most STEP_BYTES out per step."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding != "deflate"
        self._obj: Any = None
        self._members = 0
        self._done = False

    def _start(self, first: bytes) -> Any:
        self._members += 1
        if self._members > MAX_MEMBERS:
            raise ValueError(f"more than {MAX_MEMBERS} gzip members")
        if self._gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # RFC 9110 says zlib-wrapped; some servers send raw deflate (as aiohttp, sniff)
        wrapped = first[0] & 0x0F == 8
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        pending = False  # the last step filled its output: there may be more without input
        while (data or pending) and not self._done:
            if self._obj is None:
                self._obj = self._start(data)
            obj = self._obj
            out = obj.decompress(data, STEP_BYTES)
            data = obj.unconsumed_tail
            pending = len(out) == STEP_BYTES
            if out:
                yield out
            if obj.eof:
                data, self._obj, pending = obj.unused_data, None, False
                # another gzip member may follow; anything else after the end is ignored
                if data and not (self._gzip and _GZIP_MAGIC.startswith(data[:2])):
                    self._done = True


class _BrotliLayer:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        obj = self._obj
        if obj.is_finished():
            return  # trailing bytes after the stream end are ignored
        out = obj.process(data, output_buffer_limit=STEP_BYTES)
        if out:
            yield out
        # A full output buffer means more may be pending even when can_accept_more_data()
        # already says True: drain with empty input until a short (or empty) piece.
        while not obj.is_finished() and (len(out) >= STEP_BYTES or not obj.can_accept_more_data()):
            out = obj.process(b"", output_buffer_limit=STEP_BYTES)
            if not out:
                break
            yield out


class _ZstdLayer:
    """zstd frames (several, concatenated, are allowed), STEP_BYTES out per step."""

    def __init__(self) -> None:
        self._obj = _ZstdDecompressor()
        self._frames = 1

    def feed(self, data: bytes) -> Iterator[bytes]:
        obj = self._obj
        while True:
            out = obj.decompress(data, STEP_BYTES)
            data = b""
            if out:
                yield out
            if obj.eof:
                rest = obj.unused_data
                if not rest:
                    return
                self._frames += 1
                if self._frames > MAX_MEMBERS:
                    raise ValueError(f"more than {MAX_MEMBERS} zstd frames")
                obj = self._obj = _ZstdDecompressor()
                data = rest
            elif obj.needs_input:
                return


def _layer(encoding: str) -> _Layer:
    if encoding == "br":
        return _BrotliLayer()
    if encoding == "zstd":
        return _ZstdLayer()
    return _ZlibLayer(encoding)


class BodyDecoder:
    """Undoes a response's ``Content-Encoding`` one bounded step at a time.

    ``feed(chunk)`` yields decoded pieces of at most :data:`STEP_BYTES` (or the
    chunk itself when there is nothing to decode); the caller counts them and
    stops when it has enough. A malformed body raises :class:`BadResponse`.
    """

    def __init__(self, content_encoding: str | None, url: str) -> None:
        self._url = url
        tokens = [t.strip().lower() for t in (content_encoding or "").split(",")]
        tokens = [t for t in tokens if t and t != "identity"]
        if any(t not in _DECODABLE for t in tokens):
            tokens = []  # we cannot undo every layer: pass the body on as it came
        if len(tokens) > MAX_LAYERS:
            raise BadResponse(
                f"response from {short_url(url)} has {len(tokens)} Content-Encoding layers;"
                f" at most {MAX_LAYERS} are decoded",
                url,
            )
        self.encodings = tuple(tokens)
        # the last encoding listed was applied last, so it is undone first
        self._layers = [_layer(t) for t in reversed(tokens)]

    @property
    def identity(self) -> bool:
        """True when the body is passed through as it came."""
        return not self._layers

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """Decoded pieces of ``chunk`` (at most STEP_BYTES each)."""
        try:
            yield from self._push(0, chunk)
        except _ERRORS as exc:
            raise self._error(exc) from None

    def _push(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._layers):
            if data:
                yield data
            return
        for piece in self._layers[index].feed(data):
            yield from self._push(index + 1, piece)

    def _error(self, exc: BaseException) -> BadResponse:
        encoding = ", ".join(self.encodings)
        reason = str(exc)[:200] or type(exc).__name__
        return BadResponse(
            f"cannot decode the {encoding} body of {short_url(self._url)}: {reason}", self._url
        )
