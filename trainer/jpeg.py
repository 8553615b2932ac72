"""A JPEG frame's declared size, read from its header before anything is decoded.

A shard frame is only decoded once its header has been read and its size found plausible: a damaged or
crafted JPEG whose header declares 60000x60000 pixels would otherwise make the decoder allocate gigabytes
(PIL refuses it with ``DecompressionBombError``, OpenCV with an assertion or, below its own limit, a
multi-second decode of garbage). Reading the size is a walk over the marker segments up to the first
start-of-frame (SOF) marker, about two microseconds a frame. A file that does not end in the end-of-image
marker was cut short: OpenCV would decode it with a warning and grey where the data stop.
"""

import struct

# Frames that extract writes are video frames (at most 4K in practice); 2**26 pixels (8192x8192) leaves room.
MAX_FRAME_PIXELS = 1 << 26
# SOF0-SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM and RST0-7 have no length field


class JpegHeaderError(ValueError):
    """A JPEG header that cannot be read, or that declares an implausible size."""


def jpeg_size(data: bytes) -> tuple[int, int]:
    """The ``(height, width)`` a JPEG declares, checked against :data:`MAX_FRAME_PIXELS`.

    Args:
        data: The JPEG file's bytes.

    Returns:
        ``(height, width)``, both >= 1.

    Raises:
        JpegHeaderError: Not a JPEG, a header cut short before its frame size, a zero size, a size above
            :data:`MAX_FRAME_PIXELS`, or no end-of-image marker (the message says which, in a few words).
    """
    if data[:2] != b"\xff\xd8":
        raise JpegHeaderError("is not a JPEG (no start-of-image marker)")
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise JpegHeaderError(f"has a damaged header (no marker at byte {i})")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _SOF:
            if i + 9 > n:
                break
            height, width = struct.unpack_from(">HH", data, i + 5)
            if height < 1 or width < 1:
                raise JpegHeaderError(f"declares {width}x{height} pixels")
            if height * width > MAX_FRAME_PIXELS:
                raise JpegHeaderError(
                    f"declares {width}x{height} pixels, more than any video frame (limit {MAX_FRAME_PIXELS})"
                )
            if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):  # libjpeg would fill the rest with grey
                raise JpegHeaderError(f"is cut short ({n} bytes, no end-of-image marker)")
            return height, width
        elif marker in _STANDALONE:
            i += 2
        elif marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            raise JpegHeaderError("has no frame header before its image data")
        else:
            i += 2 + struct.unpack_from(">H", data, i + 2)[0]
    raise JpegHeaderError(f"is cut short ({n} bytes) before its frame header")
