"""An agency's logo for its receipts: a PNG or JPEG of at most 200 KB, accepted only when it decodes.

The type is settled from the bytes, never from the file name or the browser's word: a PNG's signature and IHDR
chunk (its CRC checked), or a JPEG's start marker and a frame header giving the image's size. At upload the whole
image is then decoded (``accepted_type``): a header that checks out can still front a truncated or corrupt body,
which a browser would show broken and a PDF would embed broken. No SVG: it can carry script."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

MAX_LOGO_BYTES = 200 * 1024
MAX_SIDE = 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The JPEG markers that start a frame (SOF0 to SOF15 but DHT, JPG and DAC) carry the image's height and width.
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def logo_type(data: bytes) -> str | None:
    """``image/png`` or ``image/jpeg`` when ``data`` is one (within the size limits), else None."""
    if not data or len(data) > MAX_LOGO_BYTES:
        return None
    if data.startswith(PNG_SIGNATURE):
        return "image/png" if _png_ok(data) else None
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg" if _jpeg_ok(data) else None
    return None


def accepted_type(data: bytes) -> str | None:
    """``logo_type``, and only if Pillow decodes the whole image as that type. Run once, at upload: decoding costs
    more than the header checks, and those bound the image's sides (``MAX_SIDE``) before Pillow allocates anything."""
    kind = logo_type(data)
    if kind is None or (kind == "image/png" and not _png_pixels_complete(data)):
        return None
    try:
        with Image.open(io.BytesIO(data), formats=[kind.removeprefix("image/").upper()]) as image:
            image.load()
    except Exception:  # hostile bytes make Pillow raise OSError, SyntaxError, ValueError, zlib.error and more
        return None
    return kind


# Samples per pixel of each PNG colour type; the sides of the seven Adam7 passes as (start, step) across and down.
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 8, 0, 8), (4, 8, 0, 8), (0, 4, 4, 8), (2, 4, 0, 4), (0, 2, 2, 4), (1, 2, 0, 2), (0, 1, 1, 2))


def _png_pixels_complete(data: bytes) -> bool:
    """Whether the PNG's compressed pixels are one whole zlib stream of exactly the size its header gives. Pillow
    cannot be asked this: WeasyPrint, once imported, makes every Pillow in the process accept truncated images
    (ImageFile.LOAD_TRUNCATED_IMAGES), filling the missing rows in; a cut JPEG still fails its decode."""
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    bits = depth * _CHANNELS[colour]
    passes = [(width, height)] if interlace == 0 else [
        ((width - x + dx - 1) // dx, (height - y + dy - 1) // dy) for x, dx, y, dy in _ADAM7
    ]  # fmt: skip
    expected = sum(h * (1 + (w * bits + 7) // 8) for w, h in passes if w > 0 and h > 0)
    stream = zlib.decompressobj()
    produced, at = 0, 8
    try:
        while at + 12 <= len(data):
            length, kind = struct.unpack(">I4s", data[at : at + 8])
            if kind == b"IDAT":
                chunk = data[at + 8 : at + 8 + length]
                # Counted in slices: a small stream that inflates to far more than the header says is not kept.
                while chunk and produced <= expected:
                    produced += len(stream.decompress(chunk, 1 << 20))
                    chunk = stream.unconsumed_tail
            at += 12 + length
    except zlib.error:
        return False
    return stream.eof and produced == expected


def _side_ok(width: int, height: int) -> bool:
    return 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE


def _png_ok(data: bytes) -> bool:
    header = data[8:33]
    if len(header) < 25:
        return False
    length, kind = struct.unpack(">I4s", header[:8])
    if length != 13 or kind != b"IHDR":
        return False
    body, crc = header[8:21], struct.unpack(">I", header[21:25])[0]
    if zlib.crc32(kind + body) != crc:
        return False
    width, height, depth, colour = struct.unpack(">IIBB", body[:10])
    return _side_ok(width, height) and depth in (1, 2, 4, 8, 16) and colour in (0, 2, 3, 4, 6) and b"IEND" in data[-12:]


def _jpeg_ok(data: bytes) -> bool:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return False
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if length < 2:
            return False
        if marker in SOF_MARKERS:
            if at + 9 > len(data):
                return False
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return _side_ok(width, height) and data.endswith(b"\xff\xd9")
        if marker == 0xDA:  # the scan starts before any frame header
            return False
        at += 2 + length
    return False
