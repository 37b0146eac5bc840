# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The intake room: camera topics, their QoS, and frames handed on to the scheduler.

A subscriber callback only stamps the message, counts what DDS lost, checks the header and
hands the frame on: a malformed frame never displaces a good pending one, and nothing here
waits for inference. ``input_reliability: auto`` follows what the publishers offer.
"""

from __future__ import annotations

from collections.abc import Callable
import math
import time
from typing import Any

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from flowclas_ros.core.data.imagemsg import (
    check_compressed,
    compressed_to_rgb,
    image_pixels,
    image_to_rgb,
    label_image,
)
from flowclas_ros.core.errors import InputError
from flowclas_ros.ros.depth import Geometry
from flowclas_ros.ros.diagnostics import CameraStats
from flowclas_ros.ros.matched import RELIABILITY, MatchedInput, offered_reliability, resolve
from flowclas_ros.ros.params import NodeParams
from flowclas_ros.ros.reload import Parameters
from flowclas_ros.ros.worker import Frame, Scheduler, Slot, Worker

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

# Iron and newer call a two-argument callback with the message info: the publisher's sequence
# number (which reveals frames DDS dropped) and its send time.
_WITH_INFO = hasattr(Subscription, 'CallbackType')

OUTPUTS = ('score', 'heatmap', 'mask', 'overlay')
RELIABILITY_NAMES = {v: k for k, v in RELIABILITY.items()}

OnFrame = Callable[['Camera', Any, Any], None]
OnQosEvent = Callable[['Camera', object], None]


def input_topic(namespace: str, params: NodeParams) -> tuple[str, str]:
    """A camera's topic prefix and its image topic, relative to the node."""
    prefix = f'{namespace.strip("/")}/' if namespace.strip('/') else ''
    if params.input_transport == 'compressed':
        return prefix, f'{prefix}image/compressed'
    return prefix, f'{prefix}image'


def _node_name(info: Any) -> str:
    return f'{info.node_namespace.rstrip("/")}/{info.node_name}'


def _policy(value: Any) -> str:
    """A QoS policy's name as ROS writes it (``reliable``, ``transient_local``)."""
    return getattr(value, 'name', str(value)).lower()


def _transit_ms(info: dict) -> float:
    """The publisher's send to now, ms; NaN where rclpy does not give the send time."""
    sent = info.get('source_timestamp') or 0  # ns, the publisher's system clock
    return (time.time_ns() - sent) / 1e6 if sent else math.nan


class Camera:
    """Topics, waiting frames and counters of one camera namespace.

    Publishers exist from configure to cleanup; the subscriptions only while active. ``node``
    is the flowclas node: rclpy's calls plus ``make_publisher``/``drop_publisher``, which the
    managed node turns into lifecycle publishers.
    """

    def __init__(
        self,
        node: Node,
        namespace: str,
        params: NodeParams,
        on_frame: OnFrame,
        on_incompatible_qos: OnQosEvent,
    ) -> None:
        self.node = node
        self._on_frame = on_frame
        self._on_incompatible_qos = on_incompatible_qos
        prefix, self.topic = input_topic(namespace, params)
        compressed = params.input_transport == 'compressed'
        self.msg_type = CompressedImage if compressed else Image
        self.info_topic = f'{prefix}camera_info'
        self.convert = compressed_to_rgb if compressed else image_to_rgb
        self.check = check_compressed if compressed else image_pixels
        # In every-frame mode a shallow DDS history would drop frames where nothing counts them.
        self.depth = max(params.input_depth, params.max_queue if params.process_every_frame else 1)
        self.slot = Slot()
        self.last_start = -math.inf  # when the last frame processed was received (rate limit)
        self.camera_info: CameraInfo | None = None
        self.last_sequence: int | None = None
        self.last_stamp = (0, 0)  # header stamp (sec, nanosec) of the newest frame received
        self.stall_logged: float | None = None  # last_receive of the stall already logged
        self.subscription = None
        self.info_subscription = None
        self.reliability: ReliabilityPolicy | None = None
        self.resolved_topic = resolve(node, self.topic)
        self.stats = CameraStats(f'{node.get_name()}: {self.resolved_topic}')
        out_qos = QoSProfile(depth=2)
        self.publishers = {
            name: node.make_publisher(Image, f'{prefix}anomaly/{name}', out_qos)
            for name in OUTPUTS
        }
        self.info_publisher = node.make_publisher(
            CameraInfo, f'{prefix}anomaly/camera_info', out_qos
        )
        self.geometry = Geometry(node, prefix, self.stats, self.depth)
        # Label images of this camera's frames from a segmenter the robot runs (segments: topic).
        self.segments = MatchedInput(
            node, f'{prefix}segments', 'segments', label_image, self.stats, self.depth
        )

    def subscribe(self, reliability: ReliabilityPolicy) -> None:
        """(Re)create the image subscription with ``reliability``; camera_info takes any."""
        node = self.node
        if self.subscription is not None:
            node.destroy_subscription(self.subscription)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.depth)
        qos.reliability = reliability
        if _WITH_INFO:
            callback = lambda msg, info: self._on_frame(self, msg, info)  # noqa: E731
        else:
            callback = lambda msg: self._on_frame(self, msg, None)  # noqa: E731
        self.subscription = node.create_subscription(
            self.msg_type,
            self.topic,
            callback,
            qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=lambda event: self._on_incompatible_qos(self, event)
            ),
        )
        self.reliability = reliability
        self.last_sequence = None
        if self.info_subscription is None:
            # Small and only the newest matters: best effort matches every publisher.
            self.info_subscription = node.create_subscription(
                CameraInfo, self.info_topic, self._on_camera_info, qos_profile_sensor_data
            )

    def unsubscribe(self) -> None:
        for sub in (self.subscription, self.info_subscription):
            if sub is not None:
                self.node.destroy_subscription(sub)
        self.subscription = self.info_subscription = None
        self.reliability = None
        self.geometry.unsubscribe()
        self.segments.unsubscribe()

    def offered_reliability(self) -> ReliabilityPolicy | None:
        return offered_reliability(self.node, self.resolved_topic)

    def stall_line(self, idle_s: float) -> str:
        """One line on a stalled input: the publishers with their QoS and the last stamp."""
        infos = self.node.get_publishers_info_by_topic(self.resolved_topic)
        if infos:
            offered = '; '.join(
                f'{_node_name(i)} ({_policy(i.qos_profile.reliability)}, '
                f'{_policy(i.qos_profile.durability)}, depth {i.qos_profile.depth})'
                for i in infos
            )
            publishers = f'{len(infos)} publisher(s): {offered}'
        else:
            publishers = 'no publishers'
        sec, nanosec = self.last_stamp
        return (
            f'no frames on {self.resolved_topic} for {idle_s:.1f} s '
            f'(last stamp {sec}.{nanosec:09d}); {publishers}'
        )

    def count_lost(self, sequence: int) -> None:
        """Count the frames DDS dropped: gaps in the publisher's sequence numbers (0: unknown)."""
        if sequence <= 0:
            return
        last, self.last_sequence = self.last_sequence, sequence
        # A step back means a new or a second publisher: start counting again.
        if last is not None and sequence > last + 1:
            self.stats.on_lost(sequence - last - 1)

    def destroy(self) -> None:
        self.unsubscribe()
        for pub in (*self.publishers.values(), self.info_publisher):
            self.node.drop_publisher(pub)
        self.geometry.destroy()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def wanted(self, publish_overlay: bool) -> set[str]:
        names = {n for n in OUTPUTS if self.publishers[n].get_subscription_count() > 0}
        return names if publish_overlay else names - {'overlay'}


class Intake:
    """The node's cameras: opened at configure, subscribed while active, closed at cleanup.

    Checked frames go to ``scheduler``; stopping the input waits for ``worker`` to finish the
    frame in progress, so nothing is published after deactivate returns.
    """

    def __init__(
        self, node: Node, params: Parameters, scheduler: Scheduler, worker: Worker
    ) -> None:
        self._node = node
        self._params = params
        self._scheduler = scheduler
        self._worker = worker
        node.create_timer(1.0, self.on_timer)

    @property
    def cameras(self) -> list[Camera]:
        return self._scheduler.cameras

    def open(self) -> None:
        """Create each camera's publishers (no subscriptions yet)."""
        params = self._params.current
        cameras = [
            Camera(self._node, ns, params, self.on_frame, self.on_incompatible_qos)
            for ns in params.cameras
        ]
        self._scheduler.swap_cameras(cameras)

    def start(self) -> None:
        """Subscribe; ``auto`` starts reliable when no publisher is there yet (most cameras)."""
        params = self._params.current
        chosen = params.input_reliability
        for camera in self.cameras:
            offered = camera.offered_reliability() if chosen == 'auto' else None
            camera.subscribe(offered or RELIABILITY.get(chosen, ReliabilityPolicy.RELIABLE))
            camera.geometry.subscribe(chosen, camera.reliability)
            camera.segments.subscribe(chosen, camera.reliability)
        topics = ', '.join(c.resolved_topic for c in self.cameras)
        mode = 'every frame' if params.process_every_frame else 'newest frame'
        self._node.get_logger().info(f'listening on {topics} ({chosen}, {mode})')

    def stop(self) -> None:
        """No more frames in; returns once the frame in progress, if any, is done."""
        for camera in self.cameras:
            camera.unsubscribe()
        self._scheduler.clear()
        self._worker.wait_idle()

    def close(self) -> None:
        """Stop the input and destroy every camera's publishers."""
        self.stop()
        for camera in self._scheduler.swap_cameras([]):
            camera.destroy()

    def on_frame(self, camera: Camera, msg: Image | CompressedImage, info: dict | None) -> None:
        """A subscription callback: count, check the header, hand the frame to the scheduler."""
        now = time.monotonic()
        camera.last_stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        camera.stats.on_receive(now)
        info = info or {}
        transit_ms = _transit_ms(info)
        camera.count_lost(info.get('publication_sequence_number') or 0)
        try:  # Header checks only: a malformed frame must never displace a good pending one.
            camera.check(msg)
        except InputError as exc:
            camera.stats.on_rejected(exc.reason, str(exc))
            return
        self._scheduler.offer(camera, Frame(msg, now, transit_ms))

    def on_incompatible_qos(self, camera: Camera, event: object) -> None:
        reliability = self._params.current.input_reliability
        if reliability == 'auto':
            return  # follow_publishers switches within a second
        self._node.get_logger().warning(
            f'a publisher on {camera.resolved_topic} offers QoS this subscription cannot accept '
            f'(input_reliability={reliability}); set input_reliability to '
            f'best_effort for best-effort cameras'
        )
        camera.stats.on_warning('incompatible_qos', f'incompatible QoS on {camera.resolved_topic}')

    def on_timer(self) -> None:
        """Every second: watch the input, follow the publishers."""
        self.watch_input()
        self.follow_publishers()

    def watch_input(self) -> None:
        """Log once per stall when a camera that had frames has none for ``input_warn_s``."""
        warn_s, now = self._params.current.input_warn_s, time.monotonic()
        for camera in self.cameras:
            last = camera.stats.last_receive
            if camera.subscription is None or last is None or last == camera.stall_logged:
                continue
            if now - last > warn_s:
                camera.stall_logged = last  # a frame moves last_receive on: a new stall
                self._node.get_logger().warning(camera.stall_line(now - last))

    def follow_publishers(self) -> None:
        """``input_reliability: auto``: match what the publishers offer now (a 1 s timer)."""
        if self._params.current.input_reliability != 'auto':
            return
        for camera in self.cameras:
            if camera.subscription is None:
                continue
            camera.geometry.depth.follow()
            camera.segments.follow()
            offered = camera.offered_reliability()
            if offered is not None and offered != camera.reliability:
                self._node.get_logger().info(
                    f'{camera.resolved_topic}: publishers now offer '
                    f'{RELIABILITY_NAMES[offered]}; subscribing {RELIABILITY_NAMES[offered]}'
                )
                camera.subscribe(offered)
