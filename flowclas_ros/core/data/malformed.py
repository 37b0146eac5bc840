# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Random malformed camera frames, each with the reason the decoders must reject it for.

Fuzzing the node, the bag tools and the decoders with one generator: every case is built to
break exactly one rule (the first that ``image_pixels`` or ``compressed_to_rgb`` checks), so a
test can demand the exact count per reason. Declared sizes go up to 2^32 - 1 while the data
stays small, which catches anything that allocates from a header before checking it.
Frames are dicts of message fields; the ROS layer or a bag writer turns them into messages.
"""

from __future__ import annotations

from collections.abc import Iterator
import io
import struct
from typing import Any
import zlib

import numpy as np
from PIL import Image as PILImage

from flowclas_ros.core.data.imagemsg import ENCODINGS, MAX_PIXELS, bytes_per_pixel, image_fields

_U32 = (1 << 32) - 1
_YUV = ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv')
RAW_REASONS = (
    'unknown_encoding',
    'empty_image',
    'bad_size',
    'bad_step',
    'truncated',
    'non_finite_pixels',
)
COMPRESSED_REASONS = ('empty_image', 'corrupt_compressed', 'unknown_format', 'too_large')


def _size(rng: np.random.Generator) -> int:
    """Mostly camera-like, sometimes enormous."""
    return int(rng.integers(1, 200)) if rng.random() < 0.7 else int(rng.integers(1, _U32))


def _raw(rng: np.random.Generator, reason: str) -> dict[str, Any]:
    if reason == 'bad_size':  # packed 4:2:2 with an odd width
        encoding = str(rng.choice(_YUV))
        h, w = int(rng.integers(1, 50)), int(rng.integers(0, 100)) * 2 + 1
    else:
        encoding = str(rng.choice(ENCODINGS))
        h, w = _size(rng), _size(rng)
        if reason != 'bad_step':  # keep a step that fits the row representable in a uint32
            w = min(w, (_U32 - 8) // bytes_per_pixel(encoding))
        if encoding in _YUV:
            w = max(2, w - w % 2)
    row = w * bytes_per_pixel(encoding)
    step = int(rng.integers(0, row)) if reason == 'bad_step' else row + int(rng.integers(0, 8))
    step = min(step, _U32)
    fields = {'height': h, 'width': w, 'encoding': encoding, 'is_bigendian': 0, 'step': step}
    if reason == 'unknown_encoding':
        fields['encoding'] = str(rng.choice(['nv21', 'bayer_rggb8', '', 'RGB8', 'jpeg', 'rgb16']))
    elif reason == 'empty_image':
        fields['height' if rng.random() < 0.5 else 'width'] = 0
    need = step * h
    if reason == 'truncated':
        data_len = int(rng.integers(0, min(need, 1 << 16)))
    elif reason == 'bad_size':
        data_len = need
    else:
        data_len = int(rng.integers(0, 1 << 12))
    fields['data'] = rng.integers(0, 256, data_len, dtype=np.uint8).tobytes()
    return fields


def _non_finite(rng: np.random.Generator) -> dict[str, Any]:
    encoding = str(rng.choice(['32FC1', '32FC3']))
    channels = bytes_per_pixel(encoding) // 4
    h, w = int(rng.integers(1, 64)), int(rng.integers(1, 64))
    pixels = rng.random((h, w, channels), dtype=np.float32)
    pixels.flat[int(rng.integers(0, pixels.size))] = rng.choice([np.nan, np.inf, -np.inf])
    return image_fields(pixels, encoding)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares a size (valid header and CRCs) but holds almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
        )

    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(64))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', idat) + chunk(b'IEND', b'')


def _encoded(rgb: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format=fmt)
    return buffer.getvalue()


def _compressed(rng: np.random.Generator, reason: str) -> dict[str, Any]:
    rgb = good_rgb(rng)
    if reason == 'empty_image':
        data = b''
    elif reason == 'corrupt_compressed':
        if rng.random() < 0.5:
            data = rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
        else:  # a real JPEG cut short, header intact or not
            jpeg = _encoded(rgb, 'JPEG')
            data = jpeg[: int(rng.integers(1, len(jpeg) // 2))]
    elif reason == 'unknown_format':
        data = _encoded(rgb, str(rng.choice(['BMP', 'GIF', 'TIFF'])))
    else:  # too_large: a header only, declaring more pixels than a camera makes
        side = int(np.sqrt(MAX_PIXELS)) + 1
        data = _png_header(int(rng.integers(side, 1 << 16)), int(rng.integers(side, 1 << 16)))
    return {
        'format': str(rng.choice(['jpeg', 'png', 'rgb8; jpeg compressed bgr8', ''])),
        'data': data,
    }


def good_rgb(rng: np.random.Generator) -> np.ndarray:
    """A small smooth RGB frame of random size (what a camera might send)."""
    h, w = int(rng.integers(32, 97)), int(rng.integers(32, 97))
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(PILImage.fromarray(small).resize((w, h), PILImage.BILINEAR))


def good_fields(rng: np.random.Generator, compressed: bool) -> dict[str, Any]:
    """A valid frame: rgb8 raw, or PNG/JPEG compressed."""
    rgb = good_rgb(rng)
    if compressed:
        fmt = str(rng.choice(['jpeg', 'png']))
        return {'format': fmt, 'data': _encoded(rgb, fmt.upper())}
    return image_fields(rgb, 'rgb8')


def fuzz_stream(
    count: int, seed: int = 0, compressed: bool = False, bad_share: float = 0.8
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """``count`` frames as (fields, reason); ``reason`` is None for a good frame."""
    rng = np.random.default_rng(seed)
    reasons = COMPRESSED_REASONS if compressed else RAW_REASONS
    for _ in range(count):
        if rng.random() >= bad_share:
            yield good_fields(rng, compressed), None
            continue
        reason = str(rng.choice(reasons))
        if compressed:
            yield _compressed(rng, reason), reason
        elif reason == 'non_finite_pixels':
            yield _non_finite(rng), reason
        else:
            yield _raw(rng, reason), reason
