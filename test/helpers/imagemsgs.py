# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Encoders for test images, written from the encodings' definitions (not from the node)."""

import numpy as np
from sensor_msgs.msg import Image


def pack(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """``(H, W, C)`` pixels -> Image, row by row, ``pad`` junk bytes after each row."""
    raw = pixels.astype(pixels.dtype.newbyteorder('>' if bigendian else '<'))
    rows = raw.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    msg = Image()
    msg.height, msg.width = pixels.shape[:2]
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian)
    msg.step = rows.shape[1] + pad
    msg.data = np.concatenate([rows, junk], axis=1).tobytes()
    return msg


def to_yuv422(rgb: np.ndarray, uyvy: bool) -> np.ndarray:
    """BT.601 video-range 4:2:2 from the standard's forward equations; ``(H, W, 2)`` bytes."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    u, v = u[:, 0::2], v[:, 0::2]  # chroma of the even pixel of each pair
    y0, y1 = y[:, 0::2], y[:, 1::2]
    order = (u, y0, v, y1) if uyvy else (y0, u, y1, v)
    packed = np.stack(order, axis=2).round().clip(0, 255).astype(np.uint8)
    return packed.reshape(rgb.shape[0], rgb.shape[1], 2)


def encode(rgb: np.ndarray, encoding: str, pad: int = 0) -> Image:
    """An RGB image in ``encoding``; gray encodings take the red channel."""
    alpha = np.full(rgb.shape[:2] + (1,), 7, np.uint8)
    pixels = {
        'rgb8': lambda: rgb,
        'bgr8': lambda: rgb[..., ::-1],
        '8UC3': lambda: rgb[..., ::-1],
        'rgba8': lambda: np.concatenate([rgb, alpha], axis=2),
        'bgra8': lambda: np.concatenate([rgb[..., ::-1], alpha], axis=2),
        'mono8': lambda: rgb[..., :1],
        '8UC1': lambda: rgb[..., :1],
        'mono16': lambda: rgb[..., :1].astype(np.uint16) << 8 | 0x5A,
        'yuv422': lambda: to_yuv422(rgb, uyvy=True),
        'yuv422_yuy2': lambda: to_yuv422(rgb, uyvy=False),
        '32FC3': lambda: rgb.astype(np.float32) / 255,
        '32FC1': lambda: rgb[..., :1].astype(np.float32) / 255,
    }[encoding]()
    return pack(np.ascontiguousarray(pixels), encoding, pad)
