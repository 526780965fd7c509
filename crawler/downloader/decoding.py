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

from ..errors import BadResponse, ResponseTooLarge
from ..loglines import cap, short_url

__all__ = ["ACCEPT_ENCODING", "MAX_LAYERS", "STEP_BYTES", "BodyDecoder"]

STEP_BYTES = 64 * 1024
MAX_LAYERS = 3
MAX_MEMBERS = 64
_GZIP_MAGIC = b"\x1f\x8b"

_ERRORS: tuple[type[BaseException], ...] = (zlib.error, ValueError, EOFError)
try:  # output_buffer_limit arrived in Brotli 1.2; an older one could not be bounded
    import brotli

    try:
        brotli.Decompressor().process(b"", output_buffer_limit=1)
        _HAS_BROTLI = True
    except TypeError:  # Brotli < 1.2
        _HAS_BROTLI = False
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

    @property
    def done(self) -> bool:
        """The stream ended: whatever comes after it is ignored."""

    @property
    def truncated(self) -> bool:
        """A stream began and has not ended (asked once the body is over)."""


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

    @property
    def done(self) -> bool:
        return self._done

    @property
    def truncated(self) -> bool:
        return self._obj is not None

    def feed(self, data: bytes) -> Iterator[bytes]:
        pending = False  # the last step filled its output: there may be more without input
        while (data or pending) and not self._done:
            if self._obj is None:
                if self._members and not (self._gzip and _GZIP_MAGIC.startswith(data[:2])):
                    self._done = True  # after the end: not another member, so ignored
                    return
                self._obj = self._start(data)
            obj = self._obj
            out = obj.decompress(data, STEP_BYTES)
            data = obj.unconsumed_tail
            pending = len(out) == STEP_BYTES
            if out:
                yield out
            if obj.eof:  # another gzip member may follow (checked on its first bytes)
                data, self._obj, pending = obj.unused_data, None, False


class _BrotliLayer:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()
        self._started = False

    @property
    def done(self) -> bool:
        return bool(self._obj.is_finished())

    @property
    def truncated(self) -> bool:
        return self._started and not self._obj.is_finished()

    def feed(self, data: bytes) -> Iterator[bytes]:
        obj = self._obj
        if obj.is_finished():
            return  # trailing bytes after the stream end are ignored
        self._started = self._started or bool(data)
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
        self._started = False

    @property
    def done(self) -> bool:
        return False  # another frame may follow

    @property
    def truncated(self) -> bool:
        return self._started and not self._obj.eof

    def feed(self, data: bytes) -> Iterator[bytes]:
        obj = self._obj
        self._started = self._started or bool(data)
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
    chunk itself when there is nothing to decode), and an empty piece after every
    step of an outer layer of a stack, so the caller regains control (to give the
    event loop a turn) however little the inner layers put out. Every layer's
    output counts as ``work``; past ``max_work`` bytes of it the body is refused as
    :class:`ResponseTooLarge`: an outer layer cannot decode gigabytes that an
    inner one throws away. ``finish()`` says whether a stream was cut short.
    A malformed body raises :class:`BadResponse`.
    """

    def __init__(self, content_encoding: str | None, url: str, max_work: int = 0) -> None:
        self._url = url
        self._max_work = max_work
        self.work = 0
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
        """Decoded pieces of ``chunk`` (at most STEP_BYTES each; empty ones are heartbeats)."""
        try:
            yield from self._push(0, chunk)
        except _ERRORS as exc:
            raise self._error(str(exc) or type(exc).__name__) from None

    def finish(self) -> None:
        """The body is over: raise :class:`BadResponse` if a compressed stream was cut short."""
        if any(layer.truncated for layer in self._layers):
            raise self._error("the compressed stream is truncated")

    def _push(self, index: int, data: bytes) -> Iterator[bytes]:
        layers = self._layers
        if index == len(layers):
            if data:
                yield data
            return
        inner = layers[index + 1 :]
        for piece in layers[index].feed(data):
            if any(layer.done for layer in inner):
                return  # an inner stream ended: what this layer holds is ignored anyway
            self.work += len(piece)
            if self._max_work and self.work > self._max_work:
                raise ResponseTooLarge(
                    f"response from {short_url(self._url)} decodes to over {self._max_work}"
                    f" bytes across its {', '.join(self.encodings)} layers",
                    self._url,
                )
            if index + 1 < len(layers):
                yield b""  # a heartbeat: an inner layer may swallow this piece whole
            yield from self._push(index + 1, piece)

    def _error(self, reason: str) -> BadResponse:
        encoding = ", ".join(self.encodings)
        return BadResponse(
            f"cannot decode the {encoding} body of {short_url(self._url)}: {cap(reason, 200)}",
            self._url,
        )
