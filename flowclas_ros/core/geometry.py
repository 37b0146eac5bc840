# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Anomalies as geometry: registered depth in metres, masked pixels in 3D, regions with stats.

What a robot stack consumes is geometry (Nav2 costmaps take points, planners take regions),
so the mask is back-projected through a depth image registered to the camera. The pinhole
model follows ``depth_image_proc``: pixel ``(u, v)`` at integer coordinates,
``x = (u - cx) z / fx``, ``y = (v - cy) z / fy``, ``z`` the depth, in the camera's optical
frame. Depth is ``16UC1`` millimetres or ``32FC1`` metres; 0, NaN, inf (and negative values)
mean "no reading". Everything is vectorised NumPy (no per-point Python) and ROS-free: messages
come in as any object with an Image's fields, clouds go out as bytes and a field table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from flowclas_ros.core.data.imagemsg import image_pixels
from flowclas_ros.core.errors import InputError

# encoding -> metres per stored unit (the REP 118 conventions of RealSense, ZED, OAK, ...).
DEPTH_UNITS = {'16UC1': 0.001, '32FC1': 1.0}

# One anomalous pixel in 3D: its position (m, optical frame) and its calibrated score.
POINT_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('score', '<f4')])

# One connected region of the mask. Box and area are in mask (output image) pixels, box
# corners inclusive. ``x y z``: centroid of its pixels with depth in range; ``distance``:
# their median depth (z, as depth cameras report distance); ``depth_area``: how many of its
# pixels had such depth. Without depth, or with none valid, the four metric fields are NaN.
REGION_DTYPE = np.dtype(
    [
        ('x', '<f4'),
        ('y', '<f4'),
        ('z', '<f4'),
        ('distance', '<f4'),
        ('peak', '<f4'),
        ('mean', '<f4'),
        ('area', '<u4'),
        ('depth_area', '<u4'),
        ('u_min', '<u4'),
        ('v_min', '<u4'),
        ('u_max', '<u4'),
        ('v_max', '<u4'),
    ]
)

# sensor_msgs/PointField datatype constants, by NumPy type.
_FIELD_TYPES = {
    np.dtype('int8'): 1,
    np.dtype('uint8'): 2,
    np.dtype('int16'): 3,
    np.dtype('uint16'): 4,
    np.dtype('int32'): 5,
    np.dtype('uint32'): 6,
    np.dtype('float32'): 7,
    np.dtype('float64'): 8,
}
EIGHT_CONNECTED = np.ones((3, 3), bool)  # regions of masks, points and trims alike
_MAX_RUNS = 4096  # above this many runs, ndimage.label is faster than joining runs
_FEW_REGIONS = 16  # up to this many, a median per region is faster than one sort


def cloud_fields(dtype: np.dtype) -> list[tuple[str, int, int]]:
    """``(name, offset, PointField datatype)`` per field of a little-endian structured dtype.

    The cloud's ``data`` is then ``array.tobytes()`` and its ``point_step`` ``dtype.itemsize``.
    """
    out = []
    for name in dtype.names:
        field_type, offset = dtype.fields[name][:2]
        out.append((name, offset, _FIELD_TYPES[field_type.newbyteorder('=')]))
    return out


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width x height`` pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Any, width: int, height: int) -> Intrinsics:
        """From a row-major 3x3 ``K`` (``camera_info.k``); refuses a K no ray can go through."""
        k = [float(v) for v in k]
        if len(k) != 9 or not np.isfinite(k).all() or k[0] <= 0 or k[4] <= 0:
            raise InputError('bad_camera_info', f'K must have fx, fy > 0 and be finite, got {k}')
        if width <= 0 or height <= 0:
            raise InputError('bad_camera_info', f'camera_info size is {height}x{width}')
        return cls(k[0], k[4], k[2], k[5], int(width), int(height))

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera resampled to ``width x height`` (K scaled as ``image_proc`` does)."""
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)


@dataclass(frozen=True)
class DepthImage:
    """A depth image as stored (a view of the message's bytes) and its unit."""

    values: np.ndarray  # (H, W) uint16 or float32, possibly byte-swapped or strided
    metres_per_unit: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def metres(
        self, rows: np.ndarray, cols: np.ndarray, flat: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Depth at ``(rows, cols)`` as float32 metres, and where it is a reading at all.

        ``flat``, the same pixels as raster indices, reads a contiguous image faster.
        """
        values = self.values
        if flat is not None and values.flags.c_contiguous:
            z = np.take(values.reshape(-1), flat).astype(np.float32)
        else:
            z = values[rows, cols].astype(np.float32)
        if self.metres_per_unit != 1.0:
            z *= np.float32(self.metres_per_unit)
        with np.errstate(invalid='ignore'):
            valid = (z > 0) & (z < np.inf)  # NaN compares false: 0, NaN, inf, < 0 all out
        return z, valid


def depth_image(msg: Any) -> DepthImage:
    """``sensor_msgs/Image`` depth -> ``DepthImage``; ``InputError`` for anything unusable."""
    unit = DEPTH_UNITS.get(msg.encoding)
    if unit is None:
        raise InputError(
            'depth_encoding',
            f'depth encoding {msg.encoding!r} is not 16UC1 (millimetres) or 32FC1 (metres)',
        )
    return DepthImage(image_pixels(msg)[..., 0], unit)


def check_registered(
    shape: tuple[int, int], color_shape: tuple[int, int], what: str = 'depth'
) -> None:
    """Refuse an image (depth, segment labels) not registered to the colour frame by scaling.

    A registered image covers the colour camera's field of view, so its size may differ only
    by a common scale; another aspect ratio means it is not registered to this camera.
    """
    (dh, dw), (ch, cw) = shape, color_shape
    if abs(dw * ch - dh * cw) > 0.02 * cw * ch:  # aspect ratios more than 2 % apart
        raise InputError(
            f'{what}_size',
            f'{what} {dh}x{dw} is not a scaled copy of the {ch}x{cw} colour frame '
            '(is it registered to the colour camera?)',
        )


def _rows_cols(flat: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``divmod(flat, width)``, several times faster: integer division is slow in NumPy.

    Exact: ``(flat + 0.5) / width`` is at least ``0.5 / width`` from an integer, far more than
    float64's rounding error at any image size.
    """
    rows = ((flat + 0.5) * (1.0 / width)).astype(np.intp)
    return rows, flat - rows * width


def _nearest(source: int, target: int) -> np.ndarray:
    """For each pixel of a ``source``-long axis, the pixel of a ``target``-long one it lies in."""
    if source == target:
        return np.arange(source)
    idx = ((np.arange(source) + 0.5) * (target / source)).astype(np.intp)
    return np.minimum(idx, target - 1)


@dataclass
class Points:
    """The masked pixels in 3D (``POINT_DTYPE``, raster order), and what was dropped."""

    cloud: np.ndarray
    marked: int  # marked pixels looked at (after the stride)
    invalid: int  # of those, without a depth reading (0, NaN, inf)
    out_of_range: int  # of those, with depth outside the range


def back_project(
    mask: np.ndarray,
    scores: np.ndarray,
    depth: DepthImage,
    intrinsics: Intrinsics,
    stride: int = 1,
    depth_range: tuple[float, float] = (0.0, np.inf),
) -> Points:
    """Marked pixels of ``mask`` with depth in ``depth_range`` (m) -> points.

    Works on the depth image's pixel grid, every ``stride``-th pixel in each direction from
    (0, 0); ``intrinsics`` must be the depth image's. ``mask`` (bool) and ``scores`` may have
    another size (the node's output scale): each depth pixel reads its nearest mask pixel.
    """
    dh, dw = depth.shape
    rows = np.arange(0, dh, stride)
    cols = np.arange(0, dw, stride)
    if mask.shape == (dh, dw):
        mr, mc, grid = rows, cols, mask[::stride, ::stride]
    else:
        mr = _nearest(dh, mask.shape[0])[::stride]
        mc = _nearest(dw, mask.shape[1])[::stride]
        grid = mask[mr[:, None], mc]
    i, j = _rows_cols(np.flatnonzero(grid), grid.shape[1])
    v, u = rows[i], cols[j]
    z, valid = depth.metres(v, u)
    lo, hi = depth_range
    keep = valid & (z >= lo) & (z <= hi)
    n_valid = int(np.count_nonzero(valid))
    z = z[keep]
    cloud = np.empty(z.size, POINT_DTYPE)
    cloud['x'] = (u[keep].astype(np.float32) - np.float32(intrinsics.cx)) * z / intrinsics.fx
    cloud['y'] = (v[keep].astype(np.float32) - np.float32(intrinsics.cy)) * z / intrinsics.fy
    cloud['z'] = z
    cloud['score'] = scores[mr[i[keep]], mc[j[keep]]]
    return Points(cloud, int(i.size), int(i.size) - n_valid, n_valid - z.size)


def find_regions(
    mask: np.ndarray,
    scores: np.ndarray,
    depth: DepthImage | None = None,
    intrinsics: Intrinsics | None = None,
    depth_range: tuple[float, float] = (0.0, np.inf),
    max_regions: int | None = None,
) -> tuple[np.ndarray, int]:
    """8-connected regions of ``mask`` (bool) with their stats (``REGION_DTYPE``).

    Regions come strongest first (by peak score, then raster order of their first pixel); at
    most ``max_regions`` of them, the rest are only counted (the second value). With ``depth``
    and its ``intrinsics`` each region pixel reads its nearest depth pixel (depth may have
    another size than the mask) and the metric fields are filled from those in range.

    Statistics are gathered per horizontal run of marked pixels first, then per region, so
    the per-pixel work is a few passes over the marked pixels; only medians sort them.
    """
    runs = _Runs(mask)
    count = runs.count
    if count == 0:
        return np.zeros(0, REGION_DTYPE), 0
    s = np.take(scores.reshape(-1), runs.flat)
    out = np.zeros(count, REGION_DTYPE)
    out['area'] = runs.per_region(np.add, runs.length)
    out['u_min'] = runs.per_region(np.minimum, runs.start)
    out['u_max'] = runs.per_region(np.maximum, runs.end)
    out['v_min'] = runs.per_region(np.minimum, runs.row)
    out['v_max'] = runs.per_region(np.maximum, runs.row)
    out['peak'] = runs.per_region(np.maximum, np.maximum.reduceat(s, runs.first))
    sums = runs.per_region(np.add, np.add.reduceat(s.astype(np.float64), runs.first))
    out['mean'] = sums / out['area']
    for name in ('x', 'y', 'z', 'distance'):
        out[name] = np.nan
    if depth is not None and intrinsics is not None:
        _depth_stats(out, runs, mask.shape, depth, intrinsics, depth_range)
    rank = np.argsort(-out['peak'], kind='stable')
    dropped = 0
    if max_regions is not None and count > max_regions:
        rank, dropped = rank[:max_regions], count - max_regions
    return out[rank], dropped


class _Runs:
    """The marked pixels of a mask as horizontal runs, each labelled with its 8-connected region.

    Labels (1..count) are numbered as ``ndimage.label`` numbers them (by first pixel in raster
    order). ``ndimage.label`` scans every pixel of the frame (about 1.4 ms at 640x480 here); a
    few anomalies mark a few per cent of it, so runs of adjacent rows that touch (diagonals
    included) are merged by a vectorised union-find instead, a few hundred runs in a fraction
    of that time. Masks of very many runs are labelled by ``ndimage``.
    """

    def __init__(self, mask: np.ndarray) -> None:
        width = mask.shape[1]
        self.flat = flat = np.flatnonzero(mask)  # raster order
        self.rows, self.cols = rows, cols = _rows_cols(flat, width)
        step = np.flatnonzero((np.diff(flat) != 1) | (cols[1:] == 0)) + 1
        self.first = np.concatenate(([0], step))  # index into flat of each run's first pixel
        last = np.concatenate((step - 1, [flat.size - 1]))
        if flat.size == 0:
            self.first = last = np.zeros(0, np.intp)
        self.length = last - self.first + 1
        self.row, self.start, self.end = rows[self.first], cols[self.first], cols[last]
        if self.first.size > _MAX_RUNS:
            labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
            self.label = labels.ravel()[flat[self.first]]
            self.count = int(count)
        else:
            self.label, self.count = self._join(width)
        # Runs grouped by region (raster order within each), for per-region reductions.
        self.order = np.argsort(self.label, kind='stable')
        per = np.bincount(self.label, minlength=self.count + 1)[1:]
        self.group_starts = np.cumsum(per) - per

    def _join(self, width: int) -> tuple[np.ndarray, int]:
        n = self.first.size
        if n == 0:
            return np.zeros(0, np.intp), 0
        # Runs of the row above that touch each run form a contiguous range [lo, hi) of runs.
        key = self.row * (width + 2)
        above = key - (width + 2)
        lo = np.searchsorted(key + self.end, above + self.start - 1, 'left')
        hi = np.searchsorted(key + self.start, above + self.end + 1, 'right')
        touching = np.maximum(hi - lo, 0)
        below = np.repeat(np.arange(n), touching)
        upper = np.repeat(lo - (np.cumsum(touching) - touching), touching) + np.arange(below.size)
        parent = np.arange(n)
        while True:  # hook each edge's larger root under the smaller, then flatten the trees
            a, b = parent[upper], parent[below]
            differ = a != b
            if not differ.any():
                break
            a, b = a[differ], b[differ]
            np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))
            while not np.array_equal(flat_parent := parent[parent], parent):
                parent = flat_parent
        # Each root is its component's first run: numbering roots in order numbers components
        # by first pixel in raster order.
        number = np.cumsum(parent == np.arange(n))
        return number[parent], int(number[-1])

    def per_region(self, ufunc: np.ufunc, per_run: np.ndarray) -> np.ndarray:
        """``ufunc`` over each region's runs of a per-run value: one value per region."""
        return ufunc.reduceat(per_run[self.order], self.group_starts)

    def pixel_labels(self) -> np.ndarray:
        """The region label of every marked pixel, in raster order."""
        return np.repeat(self.label, self.length)


def _depth_stats(
    out: np.ndarray,
    runs: _Runs,
    mask_shape: tuple[int, int],
    depth: DepthImage,
    k: Intrinsics,
    depth_range: tuple[float, float],
) -> None:
    """Centroid, median depth and depth_area of each region, in place (``k``: the depth's)."""
    same = depth.shape == mask_shape
    dv = runs.rows if same else _nearest(mask_shape[0], depth.shape[0])[runs.rows]
    du = runs.cols if same else _nearest(mask_shape[1], depth.shape[1])[runs.cols]
    z, valid = depth.metres(dv, du, runs.flat if same else None)
    lo, hi = depth_range
    ok = valid & (z >= lo) & (z <= hi)
    # float64 sums; pixels without depth in range add nothing to them.
    z = np.where(ok, z.astype(np.float64), 0.0)
    n = runs.per_region(np.add, np.add.reduceat(ok, runs.first, dtype=np.intp))
    out['depth_area'] = n
    placed = np.flatnonzero(n)
    if placed.size == 0:
        return
    sum_z, sum_uz, sum_vz = (
        runs.per_region(np.add, np.add.reduceat(values, runs.first))[placed]
        for values in (z, du * z, dv * z)
    )
    counts = n[placed]
    mean_z = sum_z / counts
    out['x'][placed] = (sum_uz / counts - k.cx * mean_z) / k.fx
    out['y'][placed] = (sum_vz / counts - k.cy * mean_z) / k.fy
    out['z'][placed] = mean_z
    lab, z = runs.pixel_labels()[ok], z[ok]
    if placed.size <= _FEW_REGIONS:  # a partition each beats one sort of every pixel
        grouped = np.argsort(lab, kind='stable')
        starts = np.cumsum(n) - n
        for i in placed.tolist():
            c = int(n[i])
            mid = [c // 2] if c % 2 else [c // 2 - 1, c // 2]
            values = z[grouped[starts[i] : starts[i] + c]]
            out['distance'][i] = np.partition(values, mid)[mid].mean()
        return
    # Many: one sort of (label, z) as one key, exact in float64 at these sizes.
    span = float(z.max()) + 1.0
    key = np.sort(lab * span + z)
    starts = (np.cumsum(n) - n)[placed]
    low, high = starts + (counts - 1) // 2, starts + counts // 2
    out['distance'][placed] = (key[low] + key[high]) / 2 - (placed + 1) * span


def region_boxes(
    regions: np.ndarray, mask_shape: tuple[int, int], intrinsics: Intrinsics
) -> tuple[np.ndarray, np.ndarray]:
    """Each region's pixel box back-projected at its median distance: centres and sizes (m).

    ``(N, 3)`` each, in the optical frame (x right, y down, z forward); ``intrinsics`` of any
    image size registered to the mask. What rviz draws as one box per region.
    """
    k = intrinsics.scaled(mask_shape[1], mask_shape[0])
    d = regions['distance'].astype(np.float64)
    u0, u1 = regions['u_min'].astype(np.float64), regions['u_max'].astype(np.float64)
    v0, v1 = regions['v_min'].astype(np.float64), regions['v_max'].astype(np.float64)
    centres = np.stack(
        [((u0 + u1) / 2 - k.cx) * d / k.fx, ((v0 + v1) / 2 - k.cy) * d / k.fy, d], axis=1
    )
    sizes = np.stack(
        [(u1 - u0 + 1) * d / k.fx, (v1 - v0 + 1) * d / k.fy, np.full_like(d, 0.05)], axis=1
    )
    return centres, sizes
