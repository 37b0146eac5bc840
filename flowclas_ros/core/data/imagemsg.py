# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""``sensor_msgs/Image`` and ``CompressedImage`` <-> NumPy, without ROS or cv_bridge.

Functions take any object with the message's fields, so the same code decodes messages from
rclpy (the node) and from ``rosbags`` (bag tools), and is tested on hand-built messages.
Every way a frame can be unusable raises ``InputError`` with a short reason the node counts.
"""

from __future__ import annotations

import io
from typing import Any
import warnings

import numpy as np
from PIL import Image as PILImage

from flowclas_ros.core.errors import InputError

# encoding -> (channels, dtype); multi-byte types take their byte order from is_bigendian.
_LAYOUTS = {
    'rgb8': (3, np.uint8),
    'bgr8': (3, np.uint8),
    'rgba8': (4, np.uint8),
    'bgra8': (4, np.uint8),
    'mono8': (1, np.uint8),
    '8UC1': (1, np.uint8),
    '8UC3': (3, np.uint8),
    'mono16': (1, np.uint16),
    '16UC1': (1, np.uint16),
    'yuv422': (2, np.uint8),
    'uyvy': (2, np.uint8),
    'yuv422_yuy2': (2, np.uint8),
    'yuyv': (2, np.uint8),
    '32FC1': (1, np.float32),
    '32FC3': (3, np.float32),
}
ENCODINGS = tuple(_LAYOUTS)


def bytes_per_pixel(encoding: str) -> int:
    """Bytes one pixel takes in a known ``encoding``."""
    channels, dtype = _LAYOUTS[encoding]
    return channels * np.dtype(dtype).itemsize


def image_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> uint8 RGB ``(H, W, 3)``.

    mono16 keeps its top 8 bits (as cv_bridge does); 32FC1/32FC3 are read as intensities in
    [0, 1] and clipped, NaN rejected; 8UC3 is taken as BGR, the OpenCV order drivers publish it
    in.
    """
    return _to_rgb(image_pixels(msg), msg.encoding)


# Label images (a segmenter's output; 0 = no segment): one integer channel.
LABEL_ENCODINGS = ('mono8', '8UC1', 'mono16', '16UC1')


def label_image(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` of segment labels -> ``(H, W)`` integers; ``InputError`` if not."""
    if msg.encoding not in LABEL_ENCODINGS:
        raise InputError(
            'segments_encoding',
            f'segment labels must be {", ".join(LABEL_ENCODINGS)}, got {msg.encoding!r}',
        )
    return image_pixels(msg)[..., 0]


def image_pixels(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> its pixels ``(H, W, C)`` in the encoding's own dtype (a view).

    ``step`` padding and ``is_bigendian`` are respected; every malformed message raises
    ``InputError``.
    """
    encoding = msg.encoding
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise InputError(
            'unknown_encoding', f'encoding {encoding!r} is not one of {", ".join(ENCODINGS)}'
        )
    channels, dtype = layout
    height, width, step = msg.height, msg.width, msg.step
    if height == 0 or width == 0:
        raise InputError('empty_image', f'image is {height}x{width}')
    itemsize = np.dtype(dtype).itemsize
    row = width * channels * itemsize
    if encoding in ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv') and width % 2:
        raise InputError('bad_size', f'{encoding} needs an even width, got {width}')
    if step < row:
        raise InputError('bad_step', f'step {step} does not fit {width} px of {encoding}')
    size = step * height
    data = msg.data
    if len(data) < size:
        raise InputError('truncated', f'{len(data)} bytes for {height} rows of step {step}')
    buf = np.frombuffer(data, np.uint8, count=size).reshape(height, step)[:, :row]
    order = '>' if msg.is_bigendian else '<'
    pixels = buf.view(np.dtype(dtype).newbyteorder(order) if itemsize > 1 else dtype)
    return pixels.reshape(height, width, channels)


def _to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    if encoding in ('rgb8', 'rgba8'):
        return pixels[..., :3]
    if encoding in ('bgr8', 'bgra8', '8UC3'):
        return pixels[..., 2::-1]
    if encoding in ('mono8', '8UC1'):
        return np.repeat(pixels, 3, axis=2)
    if encoding in ('mono16', '16UC1'):
        return np.repeat((pixels >> 8).astype(np.uint8), 3, axis=2)
    if encoding in ('32FC1', '32FC3'):
        if not np.isfinite(pixels).all():
            raise InputError('non_finite_pixels', f'{encoding} image holds NaN or inf')
        rgb = (np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8)
        return np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb
    return _yuv422_to_rgb(pixels, uyvy=encoding in ('yuv422', 'uyvy'))


def _yuv422_to_rgb(pixels: np.ndarray, uyvy: bool) -> np.ndarray:
    """Packed 4:2:2 (two bytes a pixel, chroma shared by pixel pairs), BT.601 video range."""
    h, w = pixels.shape[:2]
    pairs = pixels.reshape(h, w // 2, 4).astype(np.float32)
    if uyvy:
        u, y0, v, y1 = (pairs[..., i] for i in range(4))
    else:
        y0, u, y1, v = (pairs[..., i] for i in range(4))
    y = np.stack([y0, y1], axis=2).reshape(h, w) - 16
    u = np.repeat(u - 128, 2, axis=1)
    v = np.repeat(v - 128, 2, axis=1)
    r = 1.164 * y + 1.596 * v
    g = 1.164 * y - 0.392 * u - 0.813 * v
    b = 1.164 * y + 2.017 * u
    return (np.clip(np.stack([r, g, b], axis=2), 0, 255) + 0.5).astype(np.uint8)


MAX_PIXELS = 1 << 26
"""Largest compressed frame decoded (67 MP, above any camera): a forged header cannot make the
decoder allocate gigabytes. Raw frames need no such limit: their declared size must match data
that has already arrived."""


def _open_compressed(msg: Any) -> PILImage.Image:
    """Read only the header: the codec from the content, and a size worth decoding."""
    data = bytes(msg.data)
    if not data:
        raise InputError('empty_image', 'compressed frame has no data')
    try:
        with warnings.catch_warnings():  # Pillow warns from 89 MP; MAX_PIXELS rejects those.
            warnings.simplefilter('ignore', PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
    except PILImage.DecompressionBombError as exc:
        raise InputError('too_large', f'compressed frame: {exc}') from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError('corrupt_compressed', f'cannot decode ({msg.format!r}): {exc}') from exc
    if image.format not in ('JPEG', 'PNG'):
        raise InputError('unknown_format', f'{image.format} is not JPEG or PNG')
    width, height = image.size
    if width * height == 0:
        raise InputError('empty_image', f'compressed frame is {height}x{width}')
    if width * height > MAX_PIXELS:
        raise InputError('too_large', f'compressed frame declares {height}x{width} pixels')
    return image


def check_compressed(msg: Any) -> None:
    """Raise ``InputError`` for a compressed frame not worth decoding; cheap (header only)."""
    _open_compressed(msg).close()


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """JPEG or PNG ``sensor_msgs/CompressedImage`` -> uint8 RGB ``(H, W, 3)``.

    The content decides the codec (``format`` strings vary between transports); 16-bit PNGs
    keep their top 8 bits like mono16.
    """
    with _open_compressed(msg) as image:
        try:
            image.load()
            if image.mode.startswith('I'):
                gray = (np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.asarray(image.convert('RGB'))
        except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as exc:
            raise InputError(
                'corrupt_compressed', f'cannot decode ({msg.format!r}): {exc}'
            ) from exc


def image_fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """A ``(H, W[, C])`` array -> the fields of a little-endian ``sensor_msgs/Image``.

    ``data`` is ``bytes``: rclpy copies bytes about 100x faster than a memoryview.
    """
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder('<'))
    height, width = array.shape[:2]
    return {
        'height': height,
        'width': width,
        'encoding': encoding,
        'is_bigendian': 0,
        'step': array.strides[0],
        'data': array.tobytes(),
    }
