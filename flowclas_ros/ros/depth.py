# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Depth in, geometry out: ``anomaly/points``, ``anomaly/regions`` and their rviz markers.

Per camera, a registered depth image (``depth``, and ``depth/camera_info`` when its own
intrinsics differ) is matched to each colour frame by stamp after inference, when the depth
frame has almost always arrived. message_filters is not on PyPI, so a small matcher does it.
The math is in ``core.geometry``; this module only subscribes, matches, counts and builds
messages. Everything that is dropped is counted in the camera's diagnostics.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
import math
import threading
import time
from typing import Any

import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
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

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

GEOMETRY_OUTPUTS = ('points', 'regions', 'markers')
_TOPICS = {
    'points': 'anomaly/points',
    'regions': 'anomaly/regions',
    'markers': 'anomaly/regions/markers',
}
_TYPES = {'points': PointCloud2, 'regions': PointCloud2, 'markers': MarkerArray}
_FIXED = {'reliable': ReliabilityPolicy.RELIABLE, 'best_effort': ReliabilityPolicy.BEST_EFFORT}
_RECENT_S = 1.0  # a depth stream heard from within this long is worth waiting for
_LOG_EVERY_S = 5.0  # each kind of bad depth input is logged at most this often


def stamp_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` in integer nanoseconds (exact, unlike a float)."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class StampMatcher:
    """The newest ``capacity`` items by stamp; a frame takes the nearest one within tolerance.

    An item stays after it matched (a colour camera faster than the depth camera matches one
    depth image twice); older items go then, since frames are served in stamp order. Items
    that leave without having matched are returned by ``add`` and ``match`` as counts.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._stamps: list[int] = []
        self._items: list[tuple[Any, bool]] = []  # (item, matched) in stamp order
        self._cond = threading.Condition()
        self.last_arrival: float | None = None  # time.monotonic() of the newest add

    def __len__(self) -> int:
        return len(self._stamps)

    def add(self, stamp: int, item: Any) -> int:
        """Store ``item``; the number of unmatched items this pushed out."""
        with self._cond:
            at = bisect.bisect_right(self._stamps, stamp)
            self._stamps.insert(at, stamp)
            self._items.insert(at, (item, False))
            self.last_arrival = time.monotonic()
            unused = self._drop(len(self._stamps) - self.capacity)
            self._cond.notify_all()
        return unused

    def clear(self) -> None:
        with self._cond:
            self._drop(len(self._stamps))

    def match(self, stamp: int, tolerance: int, wait_s: float = 0.0) -> tuple[Any | None, int]:
        """The item nearest ``stamp`` within ``tolerance`` (ns), and how many unmatched left.

        With ``wait_s``, when nothing matches yet but the stream is live and its newest stamp is
        older than ``stamp``, wait up to that long (wall time) for one to arrive.
        """
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                best = self._nearest(stamp, tolerance)
                if best is not None:
                    item = self._items[best][0]
                    self._items[best] = (item, True)
                    return item, self._drop(best)
                left = deadline - time.monotonic()
                live = self.last_arrival is not None and (
                    time.monotonic() - self.last_arrival < _RECENT_S
                )
                behind = not self._stamps or self._stamps[-1] < stamp
                if left <= 0 or not live or not behind:
                    return None, 0
                self._cond.wait(left)

    def _nearest(self, stamp: int, tolerance: int) -> int | None:
        at = bisect.bisect_left(self._stamps, stamp)
        near = [i for i in (at - 1, at) if 0 <= i < len(self._stamps)]
        if not near:
            return None
        best = min(near, key=lambda i: abs(self._stamps[i] - stamp))
        return best if abs(self._stamps[best] - stamp) <= tolerance else None

    def _drop(self, count: int) -> int:
        """Forget the ``count`` oldest items; how many of them never matched."""
        if count <= 0:
            return 0
        unused = sum(not matched for _, matched in self._items[:count])
        del self._stamps[:count], self._items[:count]
        return unused


def offered_reliability(node: Any, topic: str) -> ReliabilityPolicy | None:
    """Reliable when every publisher on ``topic`` offers it, best effort when one does not."""
    offered = [i.qos_profile.reliability for i in node.get_publishers_info_by_topic(topic)]
    if not offered:
        return None
    if all(r == ReliabilityPolicy.RELIABLE for r in offered):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


class Geometry:
    """One camera's depth input, stamp matcher and geometry outputs.

    Publishers live from configure to cleanup, subscriptions only while active, like the
    camera's own. ``node`` is the flowclas node (its publisher factory and logger).
    """

    def __init__(self, node: Any, prefix: str, stats: CameraStats, queue: int) -> None:
        self.node = node
        self.stats = stats
        self.topic = f'{prefix}depth'
        self.info_topic = f'{prefix}depth/camera_info'
        self.resolved_topic = _resolve(node, self.topic)
        self.queue = queue
        self.matcher = StampMatcher(max(8, queue))
        self.camera_info: CameraInfo | None = None
        self.subscription = None
        self.info_subscription = None
        self.reliability: ReliabilityPolicy | None = None
        self._told_no_depth = False
        self._logged: dict[str, float] = {}  # reason -> when it was last logged
        self.markers = MarkerPool()
        out_qos = QoSProfile(depth=2)
        self.publishers = {
            name: node.make_publisher(_TYPES[name], f'{prefix}{_TOPICS[name]}', out_qos)
            for name in GEOMETRY_OUTPUTS
        }
        stats.note('points_status', f'off: no depth image on {self.resolved_topic} yet')

    # ----- subscriptions ---------------------------------------------------------------------

    def subscribe(self, choice: str, fallback: ReliabilityPolicy) -> None:
        """Subscribe the depth image as ``input_reliability`` says (``auto``: follow offers)."""
        if choice == 'auto':
            self._subscribe(offered_reliability(self.node, self.resolved_topic) or fallback)
        else:
            self._subscribe(_FIXED.get(choice, fallback))
        if self.info_subscription is None:
            self.info_subscription = self.node.create_subscription(
                CameraInfo, self.info_topic, self._on_info, qos_profile_sensor_data
            )

    def follow(self) -> None:
        """``input_reliability: auto``: resubscribe when the depth publishers' offer changes."""
        if self.subscription is None:
            return
        offered = offered_reliability(self.node, self.resolved_topic)
        if offered is not None and offered != self.reliability:
            self._subscribe(offered)

    def _subscribe(self, reliability: ReliabilityPolicy) -> None:
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.queue)
        qos.reliability = reliability
        self.subscription = self.node.create_subscription(
            Image,
            self.topic,
            self.on_depth,
            qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible),
        )
        self.reliability = reliability

    def unsubscribe(self) -> None:
        for sub in (self.subscription, self.info_subscription):
            if sub is not None:
                self.node.destroy_subscription(sub)
        self.subscription = self.info_subscription = None
        self.reliability = None
        self.matcher.clear()

    def destroy(self) -> None:
        self.unsubscribe()
        for pub in self.publishers.values():
            self.node.drop_publisher(pub)

    def _on_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def _on_incompatible(self, event: object) -> None:
        self._reject(
            'depth_incompatible_qos',
            f'a publisher on {self.resolved_topic} offers QoS this subscription cannot accept',
        )

    def on_depth(self, msg: Image) -> None:
        """Check the depth image (header and size only) and keep it for matching."""
        self.stats.count('depth.received')
        try:
            depth = depth_image(msg)
        except InputError as exc:
            self._reject(exc.reason, str(exc))
            return
        unused = self.matcher.add(stamp_ns(msg.header.stamp), depth)
        if unused:
            self.stats.count('depth.unused', unused)

    def _reject(self, reason: str, message: str) -> None:
        """One bad depth input: counted, shown as the camera's last error, logged (throttled)."""
        key = reason if reason.startswith('depth_') else f'depth_{reason}'
        self.stats.on_warning(key, f'{self.resolved_topic}: {message}')
        now = time.monotonic()
        if now - self._logged.get(key, -math.inf) >= _LOG_EVERY_S:  # per reason, not per line
            self._logged[key] = now
            self.node.get_logger().error(f'{self.resolved_topic}: {message}')

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
        tolerance = round(params.depth_tolerance_s * 1e9)
        depth, unused = self.matcher.match(
            stamp_ns(header.stamp), tolerance, min(params.depth_tolerance_s, 0.1)
        )
        if unused:
            self.stats.count('depth.unused', unused)
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
            if self.matcher.last_arrival is None:
                if not self._told_no_depth:
                    self._told_no_depth = True
                    self.node.get_logger().info(
                        f'no depth image on {self.resolved_topic}: anomaly/points is not '
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
                    f'neither {_resolve(self.node, self.info_topic)} nor the colour '
                    'camera_info has arrived: depth cannot be back-projected',
                )
            own = (info.height, info.width) if info.width and info.height else None
            size = own or (depth.shape if info is self.camera_info else frame_shape)
            check_registered(size, frame_shape)
            k = Intrinsics.from_k(info.k, size[1], size[0])
        except InputError as exc:
            self._reject(exc.reason, str(exc))
            self.stats.note('points_status', f'off: {exc}')
            return None
        self.stats.note('points_status', 'on')
        return k.scaled(depth.shape[1], depth.shape[0])


def _resolve(node: Any, topic: str) -> str:
    try:
        return node.resolve_topic_name(topic)
    except AttributeError:  # Humble
        return f'{node.get_namespace().rstrip("/")}/{topic}'
