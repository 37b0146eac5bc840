# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Depth in, geometry out: ``anomaly/points``, ``anomaly/regions`` and their rviz markers.

Per camera, a registered depth image (``depth``, and ``depth/camera_info`` when its own
intrinsics differ) is matched to each colour frame by stamp after inference, when the depth
frame has almost always arrived (``ros.matched``). The math is in ``core.geometry``; this
module only subscribes, matches, counts and builds messages. Everything that is dropped is
counted in the camera's diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, PointCloud2
from visualization_msgs.msg import MarkerArray

from flowclas_ros.core.errors import InputError
from flowclas_ros.core.geometry import (
    DepthImage,
    Intrinsics,
    back_project,
    check_registered,
    depth_image,
    find_regions,
    region_boxes,
)
from flowclas_ros.ros.conversions import array_to_cloud
from flowclas_ros.ros.diagnostics import CameraStats
from flowclas_ros.ros.markers import MarkerPool
from flowclas_ros.ros.matched import MatchedInput, resolve

GEOMETRY_OUTPUTS = ('points', 'regions', 'markers')
_TOPICS = {
    'points': 'anomaly/points',
    'regions': 'anomaly/regions',
    'markers': 'anomaly/regions/markers',
}
_TYPES = {'points': PointCloud2, 'regions': PointCloud2, 'markers': MarkerArray}


class Geometry:
    """One camera's depth input and geometry outputs.

    Publishers live from configure to cleanup, subscriptions only while active, like the
    camera's own. ``node`` is the flowclas node (its publisher factory and logger).
    """

    def __init__(self, node: Any, prefix: str, stats: CameraStats, queue: int) -> None:
        self.node = node
        self.stats = stats
        self.depth = MatchedInput(node, f'{prefix}depth', 'depth', depth_image, stats, queue)
        self.info_topic = f'{prefix}depth/camera_info'
        self.camera_info: CameraInfo | None = None
        self.info_subscription = None
        self._told_no_depth = False
        self.markers = MarkerPool()
        out_qos = QoSProfile(depth=2)
        self.publishers = {
            name: node.make_publisher(_TYPES[name], f'{prefix}{_TOPICS[name]}', out_qos)
            for name in GEOMETRY_OUTPUTS
        }
        stats.note('points_status', f'off: no depth image on {self.depth.resolved_topic} yet')

    # ----- subscriptions ---------------------------------------------------------------------

    def subscribe(self, choice: str, fallback: ReliabilityPolicy) -> None:
        """Subscribe the depth image as ``input_reliability`` says, and its camera_info."""
        self.depth.subscribe(choice, fallback)
        if self.info_subscription is None:
            self.info_subscription = self.node.create_subscription(
                CameraInfo, self.info_topic, self._on_info, qos_profile_sensor_data
            )

    def unsubscribe(self) -> None:
        self.depth.unsubscribe()
        if self.info_subscription is not None:
            self.node.destroy_subscription(self.info_subscription)
        self.info_subscription = None

    def destroy(self) -> None:
        self.unsubscribe()
        for pub in self.publishers.values():
            self.node.drop_publisher(pub)

    def _on_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    # ----- per frame -------------------------------------------------------------------------

    def wanted(self) -> set[str]:
        return {n for n, p in self.publishers.items() if p.get_subscription_count() > 0}

    def messages(
        self,
        wanted: set[str],
        header: Any,
        arrays: dict[str, np.ndarray],
        frame_shape: tuple[int, int],
        color_info: CameraInfo | None,
        params: Any,
        lap: Callable[[str], None],
    ) -> list[tuple[Any, Any]]:
        """The geometry messages of one frame (``arrays`` holds its ``mask`` and ``score``)."""
        tolerance = params.depth_tolerance_s
        depth = self.depth.match(header.stamp, tolerance, min(tolerance, 0.1))
        lap('depth')
        intrinsics = self._intrinsics(depth, frame_shape, color_info)
        if intrinsics is None:
            depth = None
        depth_range = (params.points_min_depth_m, params.points_max_depth_m)
        mask = arrays['mask'] > 0
        scores = arrays['score']
        out = []
        if 'points' in wanted and depth is not None:
            points = back_project(
                mask, scores, depth, intrinsics, params.points_stride, depth_range
            )
            self.stats.count('points.published')
            self.stats.count('points.invalid_depth', points.invalid)
            self.stats.count('points.out_of_range', points.out_of_range)
            if points.invalid:
                self.stats.count('points.frames_with_invalid_depth')
            out.append((self.publishers['points'], array_to_cloud(points.cloud, header)))
        if wanted & {'regions', 'markers'}:
            regions, dropped = find_regions(
                mask, scores, depth, intrinsics, depth_range, params.max_regions
            )
            if dropped:
                self.stats.count('regions.dropped', dropped)
            if 'regions' in wanted:
                out.append((self.publishers['regions'], array_to_cloud(regions, header)))
            if 'markers' in wanted:
                markers = self._markers(header, regions, mask.shape, intrinsics, params)
                out.append((self.publishers['markers'], markers))
        lap('points')
        return out

    def _markers(
        self,
        header: Any,
        regions: np.ndarray,
        mask_shape: tuple[int, int],
        intrinsics: Intrinsics | None,
        params: Any,
    ) -> MarkerArray:
        if intrinsics is None:  # no depth: only clear what the last frame drew
            regions = regions[:0]
            centres = sizes = np.zeros((0, 3))
        else:
            centres, sizes = region_boxes(regions, mask_shape, intrinsics)
        return self.markers.build(
            header, regions, centres, sizes, tuple(params.score_range), params.marker_lifetime_s
        )

    def _intrinsics(
        self,
        depth: DepthImage | None,
        frame_shape: tuple[int, int],
        color_info: CameraInfo | None,
    ) -> Intrinsics | None:
        """The depth image's intrinsics for this frame, or None (with the reason counted)."""
        if depth is None:
            if self.depth.matcher.last_arrival is None:
                if not self._told_no_depth:
                    self._told_no_depth = True
                    self.node.get_logger().info(
                        f'no depth image on {self.depth.resolved_topic}: anomaly/points is not '
                        'published until one arrives; regions go out without distances'
                    )
            else:
                self.stats.count('depth.unmatched')
                self.stats.note('points_status', 'off: no depth image within depth_tolerance_s')
            return None
        self.stats.count('depth.matched')
        info = self.camera_info or color_info
        try:
            check_registered(depth.shape, frame_shape)
            if info is None:
                raise InputError(
                    'no_camera_info',
                    f'neither {resolve(self.node, self.info_topic)} nor the colour '
                    'camera_info has arrived: depth cannot be back-projected',
                )
            own = (info.height, info.width) if info.width and info.height else None
            size = own or (depth.shape if info is self.camera_info else frame_shape)
            check_registered(size, frame_shape)
            k = Intrinsics.from_k(info.k, size[1], size[0])
        except InputError as exc:
            self.depth.reject(exc.reason, str(exc))
            self.stats.note('points_status', f'off: {exc}')
            return None
        self.stats.note('points_status', 'on')
        return k.scaled(depth.shape[1], depth.shape[0])
