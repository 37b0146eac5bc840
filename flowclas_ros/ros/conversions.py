# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""NumPy -> rclpy messages; decoding lives in ``core.data.imagemsg`` (no ROS needed there).

No cv_bridge: it breaks with NumPy 2 on Humble and Jazzy.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from flowclas_ros.core.data.imagemsg import image_fields
from flowclas_ros.core.geometry import cloud_fields


def array_to_image(array: np.ndarray, encoding: str, header: object) -> Image:
    """A C-contiguous ``(H, W[, C])`` array -> ``sensor_msgs/Image`` (little-endian)."""
    msg = Image(**image_fields(array, encoding))
    msg.header = header
    return msg


_FIELDS: dict[np.dtype, list[PointField]] = {}


def array_to_cloud(array: np.ndarray, header: object) -> PointCloud2:
    """A 1-D little-endian structured array -> an unordered ``sensor_msgs/PointCloud2``.

    One point per element, its fields named and typed as the dtype's, the bytes copied once;
    ``is_dense`` says whether every float in it is finite.
    """
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, int(array.size)
    fields = _FIELDS.get(array.dtype)
    if fields is None:  # messages are slow to build in rclpy: one table per layout
        fields = _FIELDS[array.dtype] = [
            PointField(name=name, offset=offset, datatype=datatype, count=1)
            for name, offset, datatype in cloud_fields(array.dtype)
        ]
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = array.dtype.itemsize
    msg.row_step = array.dtype.itemsize * int(array.size)
    msg.data = np.ascontiguousarray(array).tobytes()
    floats = [n for n in array.dtype.names if array.dtype[n].kind == 'f']
    msg.is_dense = bool(all(np.isfinite(array[n]).all() for n in floats))
    return msg


def scaled_camera_info(info: CameraInfo, height: int, width: int) -> CameraInfo:
    """``info`` for the same camera resampled to ``height x width`` (K, P and ROI scaled)."""
    sx = width / info.width if info.width else 1.0
    sy = height / info.height if info.height else 1.0
    out = CameraInfo()
    out.header = info.header
    out.height, out.width = height, width
    out.distortion_model = info.distortion_model
    out.d = list(info.d)
    out.r = list(info.r)
    k = list(info.k)
    k[0], k[1], k[2] = k[0] * sx, k[1] * sx, k[2] * sx
    k[4], k[5] = k[4] * sy, k[5] * sy
    out.k = k
    p = list(info.p)
    p[0], p[1], p[2], p[3] = p[0] * sx, p[1] * sx, p[2] * sx, p[3] * sx
    p[5], p[6], p[7] = p[5] * sy, p[6] * sy, p[7] * sy
    out.p = p
    out.binning_x, out.binning_y = info.binning_x, info.binning_y
    out.roi.x_offset = round(info.roi.x_offset * sx)
    out.roi.y_offset = round(info.roi.y_offset * sy)
    out.roi.width = round(info.roi.width * sx)
    out.roi.height = round(info.roi.height * sy)
    out.roi.do_rectify = info.roi.do_rectify
    return out
