"""An agency's logo for its receipts: a PNG or JPEG of at most 200 KB, accepted only when its header decodes.

The type is settled from the bytes, never from the file name or the browser's word: a PNG's signature and IHDR
chunk (its CRC checked), or a JPEG's start marker and a frame header giving the image's size."""

from __future__ import annotations

import struct
import zlib

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
