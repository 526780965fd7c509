"""BodyDecoder: bounded steps, every encoding, members, stacks, garbage."""

from __future__ import annotations

import gzip
import os
import zlib

import brotli
import pytest
from backports import zstd

from crawler.downloader.decoding import ACCEPT_ENCODING, MAX_MEMBERS, STEP_BYTES, BodyDecoder
from crawler.errors import BadResponse, ResponseTooLarge

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


def _empty_blocks_gzip(mib: int) -> bytes:
    """A gzip stream that never ends: a header, then ``mib`` MiB of empty stored blocks."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = packer.compress(b"") + packer.flush(zlib.Z_SYNC_FLUSH)
    block = packer.flush(zlib.Z_FULL_FLUSH)  # 00 00 00 ff ff: decodes to nothing
    return head + block * (mib * 1024 * 1024 // len(block))


def test_an_inner_layer_that_swallows_everything_still_counts_as_work() -> None:
    # br around a gzip stream of empty blocks: the outer layer decodes 64 MiB, the inner
    # one turns it into nothing. The work is capped, and the caller gets heartbeats.
    body = brotli.compress(_empty_blocks_gzip(64), quality=1)
    decoder = BodyDecoder("gzip, br", "http://a.test/", max_work=3 * 1024 * 1024)
    heartbeats = 0
    with pytest.raises(ResponseTooLarge, match="decodes to over 3145728 bytes"):
        for piece in decoder.feed(body):
            assert piece == b""
            heartbeats += 1
    assert heartbeats >= 3 * 1024 * 1024 // (2 * STEP_BYTES)


def test_an_ended_inner_stream_stops_the_outer_layers() -> None:
    inner = gzip.compress(b"the page") + bytes(50 * 1024 * 1024)  # then 50 MiB of zeros
    decoder = BodyDecoder("gzip, br", "http://a.test/", max_work=10 * 1024 * 1024)
    body = brotli.compress(inner, quality=1)
    assert b"".join(decoder.feed(body)) == b"the page"
    assert decoder.work < 10 * 1024 * 1024


def test_trailing_bytes_are_ignored_whichever_read_they_arrive_in() -> None:
    body = gzip.compress(b"body") + b"\r\njunk after the end"
    for split in range(1, len(body)):
        decoder = BodyDecoder("gzip", "http://a.test/")
        out = b"".join([*decoder.feed(body[:split]), *decoder.feed(body[split:])])
        decoder.finish()
        assert out == b"body", split


@pytest.mark.parametrize("encoding", list(ENCODERS))
def test_a_truncated_stream_is_a_bad_response(encoding: str) -> None:
    body = ENCODERS[encoding](PAYLOAD)
    decoder = BodyDecoder(encoding, "http://a.test/")
    list(decoder.feed(body[: len(body) // 2]))
    with pytest.raises(BadResponse, match="truncated"):
        decoder.finish()
    whole = BodyDecoder(encoding, "http://a.test/")
    list(whole.feed(body))
    whole.finish()  # a complete stream is fine
