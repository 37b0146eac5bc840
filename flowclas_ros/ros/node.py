# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas_node: camera frames in; anomaly score, heatmap, mask and diagnostics out.

Subscriber callbacks only stamp the message, check its header and store it. One worker thread
converts, scores and publishes, so receiving and diagnostics never wait for inference; with
several cameras it serves whichever frame has waited longest. Outputs nobody subscribes to are
not computed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from PIL import Image as PILImage
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from flowclas_ros.core.data.imagemsg import (
    check_compressed,
    compressed_to_rgb,
    image_pixels,
    image_to_rgb,
)
from flowclas_ros.core.device import resolve_device
from flowclas_ros.core.errors import ConfigError, FlowclasError, InputError
from flowclas_ros.core.inference import Detector
from flowclas_ros.core.masks import MaskRule
from flowclas_ros.core.visualize import heatmap, overlay
from flowclas_ros.ros.conversions import array_to_image, scaled_camera_info
from flowclas_ros.ros.diagnostics import ERROR, STALE, WARN, CameraStats, Limits
from flowclas_ros.ros.params import PARAMS, NodeParams

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

try:  # Iron and newer pass the publisher's sequence number, which reveals frames DDS dropped.
    from rclpy.subscription import MessageInfo  # noqa: F401

    _WITH_INFO = True
except ImportError:  # Humble
    _WITH_INFO = False

NODE_NAME = 'flowclas'
OUTPUTS = ('score', 'heatmap', 'mask', 'overlay')


@dataclass
class _Frame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() when the callback ran


class _Camera:
    """Topics, pending frames and counters of one camera namespace."""

    def __init__(self, node: FlowClasNode, namespace: str, params: NodeParams) -> None:
        prefix = f'{namespace.strip("/")}/' if namespace.strip('/') else ''
        compressed = params.input_transport == 'compressed'
        topic = f'{prefix}image/compressed' if compressed else f'{prefix}image'
        self.convert = compressed_to_rgb if compressed else image_to_rgb
        self.check = check_compressed if compressed else image_pixels
        self.pending: deque[_Frame] = deque()
        self.last_start = -math.inf
        self.last_arrival: float | None = None
        self.interval: float | None = None  # smoothed time between frames, s
        self.waited_for: _Frame | None = None
        self.camera_info: CameraInfo | None = None
        reliability = (
            ReliabilityPolicy.RELIABLE
            if params.input_reliability == 'reliable'
            else ReliabilityPolicy.BEST_EFFORT
        )
        # In every-frame mode a shallow DDS history would drop frames where nothing counts them.
        depth = max(params.input_depth, params.max_queue if params.process_every_frame else 1)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability)
        if _WITH_INFO:
            callback = lambda msg, info: node.on_frame(self, msg, info)  # noqa: E731
        else:
            callback = lambda msg: node.on_frame(self, msg, None)  # noqa: E731
        self.last_sequence: int | None = None
        self.subscription = node.create_subscription(
            CompressedImage if compressed else Image,
            topic,
            callback,
            qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=lambda event: node.on_incompatible_qos(self, event)
            ),
        )
        self.resolved_topic = self.subscription.topic_name
        self.stats = CameraStats(f'{node.get_name()}: {self.resolved_topic}')
        self.info_subscription = node.create_subscription(
            CameraInfo, f'{prefix}camera_info', self._on_camera_info, qos
        )
        out_qos = QoSProfile(depth=2)
        self.publishers = {
            name: node.create_publisher(Image, f'{prefix}anomaly/{name}', out_qos)
            for name in OUTPUTS
        }
        self.info_publisher = node.create_publisher(
            CameraInfo, f'{prefix}anomaly/camera_info', out_qos
        )

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def wanted(self, publish_overlay: bool) -> set[str]:
        names = {n for n in OUTPUTS if self.publishers[n].get_subscription_count() > 0}
        return names if publish_overlay else names - {'overlay'}


class FlowClasNode(Node):
    """One model serving one or more cameras; see ``config/flowclas.yaml`` for parameters."""

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - rclpy Node options
        super().__init__(NODE_NAME, **kwargs)
        defaults = NodeParams()
        for name, meta in PARAMS.items():
            descriptor = ParameterDescriptor(
                description=f'{meta["doc"]} [{meta["when"]}]', dynamic_typing=True
            )
            self.declare_parameter(name, getattr(defaults, name), descriptor)
        values = {name: self.get_parameter(name).value for name in PARAMS}
        self.params = defaults.replace(values)  # ValueError: reported by main()
        if self.params.cpu_threads:
            import torch

            torch.set_num_threads(self.params.cpu_threads)

        self._cond = threading.Condition()
        self._stopping = False
        self._detector: Detector | None = None
        self._device = ''
        self._model_error = ''
        self._loading = True
        self._model_dir = ''
        self._reload_lock = threading.Lock()
        self.cameras = [_Camera(self, ns, self.params) for ns in self.params.cameras]
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(self.params.diagnostics_period_s, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._worker = threading.Thread(target=self._work, name='flowclas-worker', daemon=True)
        self._worker.start()
        self._reload()
        topics = ', '.join(c.resolved_topic for c in self.cameras)
        mode = 'every frame' if self.params.process_every_frame else 'newest frame'
        self.get_logger().info(f'listening on {topics} ({self.params.input_reliability}, {mode})')

    # ----- model -----------------------------------------------------------------------------

    def _reload(self) -> None:
        """Load the model in the background; the current one serves until the new one is ready."""
        threading.Thread(target=self._load, args=(self.params,), daemon=True).start()

    def _load(self, params: NodeParams) -> None:
        with self._reload_lock:
            self._loading = True
            try:
                if not params.model_dir:
                    raise FlowclasError('parameter model_dir is not set')
                device = resolve_device(params.device)
                detector = Detector.load(
                    params.model_dir,
                    device=device,
                    backbone_weights=params.backbone_weights or None,
                    size_policy=params.input_size_policy,
                    output_scale=params.output_scale,
                    backend=params.backend,
                    precision=params.precision,
                    cache_dir=params.engine_cache_dir or None,
                    compile_mode=params.torch_compile,
                )
                # The first call is several times slower (allocation, kernel choice): pay it now.
                detector(np.zeros((*detector.model.config.input_size, 3), np.uint8))
            except Exception as exc:  # noqa: BLE001 - any load failure is a status, not a crash
                self._model_error = str(exc) if isinstance(exc, FlowclasError) else repr(exc)
                self.get_logger().error(f'cannot load model: {exc}')
            else:
                detector.output_scale = self.params.output_scale  # may have changed meanwhile
                self._detector, self._device = detector, device
                self._model_dir, self._model_error = params.model_dir, ''
                self.get_logger().info(f'model {params.model_dir} loaded on {device}')
            finally:
                self._loading = False

    # ----- parameters ------------------------------------------------------------------------

    def _on_set_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        values = {p.name: p.value for p in changes if p.name in PARAMS}
        old = self.params
        fixed = [
            n for n, v in values.items() if PARAMS[n]['when'] == 'restart' and v != getattr(old, n)
        ]
        if fixed:
            reason = f'{", ".join(fixed)} cannot change at run time; restart the node'
            return SetParametersResult(successful=False, reason=reason)
        try:
            new = old.replace(values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.params = new
        if self._detector is not None:
            self._detector.output_scale = new.output_scale
        if any(
            PARAMS[n]['when'] == 'reload' and getattr(new, n) != getattr(old, n) for n in values
        ):
            self._reload()
        return SetParametersResult(successful=True)

    # ----- input -----------------------------------------------------------------------------

    def on_frame(self, camera: _Camera, msg: Image | CompressedImage, info: dict | None) -> None:
        now = time.monotonic()
        camera.stats.on_receive(now)
        sequence = (info or {}).get('publication_sequence_number') or 0
        if sequence > 0:
            last, camera.last_sequence = camera.last_sequence, sequence
            # A step back means a new or a second publisher: start counting again.
            if last is not None and sequence > last + 1:
                camera.stats.on_lost(sequence - last - 1)
        try:  # Header checks only: a malformed frame must never displace a good pending one.
            camera.check(msg)
        except InputError as exc:
            camera.stats.on_rejected(exc.reason, str(exc))
            return
        with self._cond:
            if camera.last_arrival is not None:
                gap = now - camera.last_arrival
                if gap < 1.0:  # a pause in the stream is not a frame interval
                    ema = camera.interval
                    camera.interval = gap if ema is None else 0.9 * ema + 0.1 * gap
            camera.last_arrival = now
            if self.params.process_every_frame:
                if len(camera.pending) >= self.params.max_queue:
                    camera.stats.on_skipped('queue_full')
                    return
            elif camera.pending:
                camera.pending.clear()
                camera.stats.on_superseded()
            camera.pending.append(_Frame(msg, now))
            self._cond.notify()

    def on_incompatible_qos(self, camera: _Camera, event: object) -> None:
        self.get_logger().warning(
            f'a publisher on {camera.resolved_topic} offers QoS this subscription cannot accept '
            f'(input_reliability={self.params.input_reliability}); set input_reliability to '
            f'best_effort for best-effort cameras'
        )
        camera.stats.on_warning('incompatible_qos', f'incompatible QoS on {camera.resolved_topic}')

    # ----- processing ------------------------------------------------------------------------

    def _next(self) -> tuple[_Camera, _Frame] | None:
        with self._cond:
            while not self._stopping:
                waiting = [c for c in self.cameras if c.pending]
                if not waiting:
                    self._cond.wait()
                    continue
                camera = min(waiting, key=lambda c: c.pending[0].received)
                delay = self._fresh_frame_delay(camera, len(waiting))
                if delay > 0:
                    self._cond.wait(delay)  # on_frame replaces the frame and wakes us
                    continue
                return camera, camera.pending.popleft()
        return None

    def _fresh_frame_delay(self, camera: _Camera, n_waiting: int) -> float:
        """How long to wait for the camera's next frame instead of taking a stale one.

        When inference is slower than the camera, the newest frame has waited up to a frame
        interval by the time the worker is free. If it has waited more than half an interval,
        the next frame is less than half an interval away, and waiting for it gives a lower
        latency and a fresher output on average (the "update or wait" result on the age of
        information) for a few per cent fewer outputs. Only when nothing else is waiting.
        """
        frame = camera.pending[-1]
        if (
            not self.params.prefer_fresh_frames
            or self.params.process_every_frame
            or n_waiting > 1
            or camera.interval is None
            or frame is camera.waited_for
        ):
            return 0.0
        now = time.monotonic()
        if now - frame.received <= camera.interval / 2:
            return 0.0
        camera.waited_for = frame
        return max(0.0, frame.received + 1.25 * camera.interval - now)

    def _work(self) -> None:
        while (item := self._next()) is not None:
            camera, frame = item
            try:
                self._process(camera, frame)
            except InputError as exc:
                camera.stats.on_rejected(exc.reason, str(exc))
            except Exception as exc:  # noqa: BLE001 - the node must outlive any one frame
                if not self.context.ok():  # shutting down: publishing fails, nothing to count
                    return
                camera.stats.on_rejected('internal_error', f'{type(exc).__name__}: {exc}')
                self.get_logger().error(
                    f'frame failed: {type(exc).__name__}: {exc}', throttle_duration_sec=5.0
                )

    def _process(self, camera: _Camera, frame: _Frame) -> None:
        params, detector = self.params, self._detector
        if detector is None:
            if self._loading:
                camera.stats.on_skipped('model_loading')
                return
            raise InputError('no_model', self._model_error)
        wanted = camera.wanted(params.publish_overlay)
        if not wanted:
            camera.stats.on_skipped('no_subscribers')
            return
        if params.max_rate_hz > 0 and frame.received - camera.last_start < 1 / params.max_rate_hz:
            camera.stats.on_skipped('rate_limited')
            return
        camera.last_start = frame.received
        rgb = camera.convert(frame.msg)
        started = time.monotonic()
        rule = MaskRule.from_settings(params)
        scores, norms = detector.detect(rgb, 'mask' in wanted and rule.mode == 'nfa')
        inference = time.monotonic() - started
        header = frame.msg.header
        if 'score' in wanted:
            camera.publishers['score'].publish(array_to_image(scores, '32FC1', header))
        if 'mask' in wanted:
            try:
                mask = detector.mask(scores, norms, rule)
            except ConfigError as exc:  # the model lacks what the rule needs: others still go out
                camera.stats.on_warning('mask_unavailable', f'no mask: {exc}')
            else:
                camera.publishers['mask'].publish(array_to_image(mask, 'mono8', header))
        if wanted & {'heatmap', 'overlay'}:
            colour = heatmap(scores, *params.score_range)
            if 'heatmap' in wanted:
                camera.publishers['heatmap'].publish(array_to_image(colour, 'rgb8', header))
            if 'overlay' in wanted:
                base = _resize(rgb, scores.shape)
                camera.publishers['overlay'].publish(
                    array_to_image(overlay(base, colour), 'rgb8', header)
                )
        if scores.shape != rgb.shape[:2] and camera.camera_info is not None:
            info = scaled_camera_info(camera.camera_info, *scores.shape)
            info.header = header
            camera.info_publisher.publish(info)
        stamp = Time.from_msg(header.stamp)
        age_ms = (self.get_clock().now() - stamp).nanoseconds / 1e6
        camera.stats.on_processed(time.monotonic() - frame.received, inference, age_ms)

    # ----- diagnostics -----------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        p = self.params
        limits = Limits(p.expected_rate_hz, p.max_latency_ms, p.input_timeout_s)
        info = {
            'backend': p.backend,
            'precision': p.precision,
            'device': self._device or p.device,
            'model_dir': self._model_dir,
            'input_reliability': p.input_reliability,
            'mode': 'every_frame' if p.process_every_frame else 'newest_frame',
            'mask_mode': p.mask_mode,
        }
        problem = None
        if self._detector is None:
            problem = (
                (STALE, 'loading the model')
                if self._loading
                else (ERROR, f'no model: {self._model_error}')
            )
        elif self._model_error:
            problem = (
                WARN,
                f'model reload failed, still serving {self._model_dir}: {self._model_error}',
            )
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        now = time.monotonic()
        for camera in self.cameras:
            status = camera.stats.report(now, limits, problem, info)
            status.hardware_id = info['device']
            msg.status.append(status)
        self._diagnostics.publish(msg)

    def destroy_node(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._worker.join(timeout=5)
        super().destroy_node()


def _resize(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if rgb.shape[:2] == tuple(shape):
        return rgb
    return np.asarray(PILImage.fromarray(rgb).resize((shape[1], shape[0]), PILImage.BILINEAR))


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = FlowClasNode()
        rclpy.spin(node)
    except ValueError as exc:
        print(f'flowclas_node: error: invalid parameters: {exc}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A signal can shut the context down while spin builds its next wait set; rclpy then
        # raises an RCLError instead of returning. That is a clean stop, anything else is not.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
