"""BodyDecoder: bounded steps, every encoding, members, stacks, garbage."""

from __future__ import annotations

import gzip
import os
import zlib

import brotli
import pytest
from backports import zstd

from crawler.downloader.decoding import ACCEPT_ENCODING, MAX_MEMBERS, STEP_BYTES, BodyDecoder
from crawler.errors import BadResponse

PAYLOAD = os.urandom(50_000) + bytes(3 * STEP_BYTES) + b"end"

ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


def decode(encoding: str | None, body: bytes, chunk: int = 1000) -> tuple[bytes, int]:
    """All decoded bytes of ``body`` fed ``chunk`` bytes at a time, and the largest piece."""
    decoder = BodyDecoder(encoding, "http://a.test/")
    pieces = [p for i in range(0, len(body), chunk) for p in decoder.feed(body[i : i + chunk])]
    return b"".join(pieces), max((len(p) for p in pieces), default=0)


@pytest.mark.parametrize("encoding", list(ENCODERS))
@pytest.mark.parametrize("chunk", [1, 7, 65536, 10**7])
def test_every_encoding_round_trips_in_bounded_pieces(encoding: str, chunk: int) -> None:
    if chunk == 1 and encoding in ("br", "zstd"):
        chunk = 3  # same property, a faster test
    body, largest = decode(encoding, ENCODERS[encoding](PAYLOAD), chunk)
    assert body == PAYLOAD
    assert largest <= 2 * STEP_BYTES  # brotli may overshoot its output limit a little


def test_raw_deflate_without_the_zlib_wrapper_is_decoded() -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = packer.compress(PAYLOAD) + packer.flush()
    assert decode("deflate", raw)[0] == PAYLOAD


def test_stacked_encodings_are_undone_last_first() -> None:
    body = brotli.compress(gzip.compress(PAYLOAD))  # gzip first, then br
    assert decode("gzip, br", body)[0] == PAYLOAD
    assert decode("GZIP , identity, Br", body)[0] == PAYLOAD


def test_concatenated_gzip_members_and_zstd_frames_are_all_decoded() -> None:
    assert decode("gzip", gzip.compress(b"ab") + gzip.compress(b"cd"), 3)[0] == b"abcd"
    assert decode("zstd", zstd.compress(b"ab") + zstd.compress(b"cd"))[0] == b"abcd"


def test_too_many_members_are_refused() -> None:
    body = gzip.compress(b"x") * (MAX_MEMBERS + 1)
    with pytest.raises(BadResponse, match=f"more than {MAX_MEMBERS} gzip members"):
        decode("gzip", body)


def test_garbage_after_the_end_is_ignored_but_garbage_instead_of_a_body_is_not() -> None:
    assert decode("gzip", gzip.compress(b"body") + b"\r\n trailing junk")[0] == b"body"
    assert decode("deflate", zlib.compress(b"body") + b"junk")[0] == b"body"
    for encoding in ENCODERS:
        with pytest.raises(BadResponse, match=rf"cannot decode the {encoding} body of http"):
            decode(encoding, b"this is not compressed at all" * 10)


def test_unknown_encodings_pass_the_body_through_and_too_many_layers_fail() -> None:
    assert decode("compress", b"as it came") == (b"as it came", 10)
    assert decode("gzip, x-unknown", b"as it came")[0] == b"as it came"
    assert decode(None, b"")[0] == b""
    with pytest.raises(BadResponse, match="4 Content-Encoding layers; at most 3"):
        BodyDecoder("gzip, gzip, br, gzip", "http://a.test/")


def test_only_decodable_encodings_are_advertised() -> None:
    assert ACCEPT_ENCODING == "gzip, deflate, br, zstd"
