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
import faulthandler
import gc
import math
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.subscription import Subscription
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from flowclas_ros.core.data.imagemsg import (
    check_compressed,
    compressed_to_rgb,
    image_pixels,
    image_to_rgb,
)
from flowclas_ros.core.device import hardware_name, resolve_device
from flowclas_ros.core.errors import FlowclasError, InputError
from flowclas_ros.core.inference import Detector
from flowclas_ros.core.masks import MaskRule, missing
from flowclas_ros.ros.conversions import array_to_image, scaled_camera_info
from flowclas_ros.ros.depth import Geometry
from flowclas_ros.ros.diagnostics import ERROR, OK, STALE, WARN, CameraStats, Limits
from flowclas_ros.ros.params import PARAMS, NodeParams

try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

# Iron and newer call a two-argument callback with the message info: the publisher's sequence
# number (which reveals frames DDS dropped) and its send time.
_WITH_INFO = hasattr(Subscription, 'CallbackType')

NODE_NAME = 'flowclas'
OUTPUTS = ('score', 'heatmap', 'mask', 'overlay')
_ENCODINGS = {'score': '32FC1', 'heatmap': 'rgb8', 'mask': 'mono8', 'overlay': 'rgb8'}
_RELIABILITY = {
    'reliable': ReliabilityPolicy.RELIABLE,
    'best_effort': ReliabilityPolicy.BEST_EFFORT,
}
_NAMES = {v: k for k, v in _RELIABILITY.items()}


@dataclass
class _Frame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() when the callback ran
    transit_ms: float  # publisher's send to the callback (NaN where rclpy does not say)


class _Laps:
    """Per-stage times of one frame: each call closes the stage that began at the last one."""

    def __init__(self, start: float) -> None:
        self.last = start
        self.ms: dict[str, float] = {}

    def __call__(self, stage: str) -> None:
        now = time.monotonic()
        self.ms[stage] = (now - self.last) * 1000
        self.last = now


def _input_topic(namespace: str, params: NodeParams) -> tuple[str, str]:
    """A camera's topic prefix and its image topic, relative to the node."""
    prefix = f'{namespace.strip("/")}/' if namespace.strip('/') else ''
    if params.input_transport == 'compressed':
        return prefix, f'{prefix}image/compressed'
    return prefix, f'{prefix}image'


def _resolve(node: Node, topic: str) -> str:
    try:
        return node.resolve_topic_name(topic)
    except AttributeError:  # Humble: no remapping shown, the namespace is enough for a name
        return f'{node.get_namespace().rstrip("/")}/{topic}'


class _Camera:
    """Topics, pending frames and counters of one camera namespace.

    Publishers exist from configure to cleanup; the subscriptions only while active.
    """

    def __init__(self, node: _FlowClas, namespace: str, params: NodeParams) -> None:
        self.node = node
        prefix, self.topic = _input_topic(namespace, params)
        compressed = params.input_transport == 'compressed'
        self.msg_type = CompressedImage if compressed else Image
        self.info_topic = f'{prefix}camera_info'
        self.convert = compressed_to_rgb if compressed else image_to_rgb
        self.check = check_compressed if compressed else image_pixels
        # In every-frame mode a shallow DDS history would drop frames where nothing counts them.
        self.depth = max(params.input_depth, params.max_queue if params.process_every_frame else 1)
        self.pending: deque[_Frame] = deque()
        self.last_start = -math.inf
        self.last_arrival: float | None = None
        self.interval: float | None = None  # smoothed time between frames, s
        self.waited_for: _Frame | None = None
        self.camera_info: CameraInfo | None = None
        self.last_sequence: int | None = None
        self.subscription = None
        self.info_subscription = None
        self.reliability: ReliabilityPolicy | None = None
        self.resolved_topic = _resolve(node, self.topic)
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

    def subscribe(self, reliability: ReliabilityPolicy) -> None:
        """(Re)create the image subscription with ``reliability``; camera_info takes any."""
        node = self.node
        if self.subscription is not None:
            node.destroy_subscription(self.subscription)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.depth)
        qos.reliability = reliability
        if _WITH_INFO:
            callback = lambda msg, info: node.on_frame(self, msg, info)  # noqa: E731
        else:
            callback = lambda msg: node.on_frame(self, msg, None)  # noqa: E731
        self.subscription = node.create_subscription(
            self.msg_type,
            self.topic,
            callback,
            qos,
            event_callbacks=SubscriptionEventCallbacks(
                incompatible_qos=lambda event: node.on_incompatible_qos(self, event)
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

    def offered_reliability(self) -> ReliabilityPolicy | None:
        """Reliable when every publisher offers it, best effort when one does not, else None."""
        offered = [
            i.qos_profile.reliability
            for i in self.node.get_publishers_info_by_topic(self.resolved_topic)
        ]
        if not offered:
            return None
        if all(r == ReliabilityPolicy.RELIABLE for r in offered):
            return ReliabilityPolicy.RELIABLE
        return ReliabilityPolicy.BEST_EFFORT

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


def _descriptor(meta: dict) -> ParameterDescriptor:
    """What ``ros2 param describe`` shows: the doc, the range or choices, read-only or not.

    Types stay dynamic so that ``1`` in YAML is accepted for a float; ``NodeParams`` checks them.
    """
    d = ParameterDescriptor(
        description=f'{meta["doc"]} [{meta["when"]}]',
        dynamic_typing=True,
        read_only=meta['when'] == 'restart',
    )
    if meta['choices']:
        d.additional_constraints = f'one of: {", ".join(meta["choices"])}'
    low, high = meta['low'], meta['high']
    if isinstance(low, int):
        d.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
    elif isinstance(low, float):
        d.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    return d


class _FlowClas:
    """What the plain and the managed node share; mixed in before ``Node``/``LifecycleNode``.

    A subclass sets ``lifecycle_state`` and brings cameras and model up and down.
    """

    lifecycle_state = 'unconfigured'

    def _setup(self) -> str:
        """Declare parameters, start the worker and diagnostics; the parameter error, if any."""
        for name, meta in PARAMS.items():
            self.declare_parameter(name, getattr(NodeParams(), name), _descriptor(meta))
        error = ''
        try:
            self.params = NodeParams().replace(self._ros_values())
        except ValueError as exc:
            self.params, error = NodeParams(), str(exc)
        if self.params.cpu_threads:
            import torch

            torch.set_num_threads(self.params.cpu_threads)
        self._cond = threading.Condition()
        self._busy = threading.Lock()  # held while a frame is processed
        self._stopping = False
        self._detector: Detector | None = None
        self._device = ''
        self._hardware = ''
        self._model_error = ''
        self._configure_error = ''
        self._loading = False
        self._loader: threading.Thread | None = None
        self._model_dir = ''
        self._reload_lock = threading.Lock()
        self.cameras: list[_Camera] = []
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(self.params.diagnostics_period_s, self._publish_diagnostics)
        self.create_timer(1.0, self._follow_publishers)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name='flowclas-worker', daemon=True)
        self._worker.start()
        return error

    def _ros_values(self) -> dict:
        return {name: self.get_parameter(name).value for name in PARAMS}

    def make_publisher(self, msg_type: type, topic: str, qos: QoSProfile) -> object:
        return self.create_publisher(msg_type, topic, qos)

    def drop_publisher(self, publisher: object) -> None:
        self.destroy_publisher(publisher)

    # ----- bringing up and down --------------------------------------------------------------

    def _open_cameras(self) -> None:
        cameras = [_Camera(self, ns, self.params) for ns in self.params.cameras]
        with self._cond:
            self.cameras = cameras

    def _start_input(self) -> None:
        """Subscribe; ``auto`` starts reliable when no publisher is there yet (most cameras)."""
        chosen = self.params.input_reliability
        for camera in self.cameras:
            offered = camera.offered_reliability() if chosen == 'auto' else None
            camera.subscribe(offered or _RELIABILITY.get(chosen, ReliabilityPolicy.RELIABLE))
            camera.geometry.subscribe(chosen, camera.reliability)
        topics = ', '.join(c.resolved_topic for c in self.cameras)
        mode = 'every frame' if self.params.process_every_frame else 'newest frame'
        self.get_logger().info(f'listening on {topics} ({chosen}, {mode})')

    def _stop_input(self) -> None:
        """No more frames in; returns once the frame in progress, if any, is done."""
        for camera in self.cameras:
            camera.unsubscribe()
        with self._cond:
            for camera in self.cameras:
                camera.pending.clear()
        with self._busy:
            pass

    def _close_cameras(self) -> None:
        self._stop_input()
        with self._cond:
            cameras, self.cameras = self.cameras, []
        for camera in cameras:
            camera.destroy()

    def _free_model(self) -> None:
        """Drop the model and give its memory back (and the GPU's cache, where there is one)."""
        with self._reload_lock:
            device, self._device = self._device, ''
            self._detector, self._model_dir, self._hardware = None, '', ''
        gc.collect()
        if device.startswith('cuda'):
            import torch

            torch.cuda.empty_cache()

    # ----- model -----------------------------------------------------------------------------

    def _reload(self) -> None:
        """Load the model in the background; the current one serves until the new one is ready."""
        self._loading = True
        self._loader = threading.Thread(target=self._load, args=(self.params,), daemon=True)
        self._loader.start()

    def _load(self, params: NodeParams) -> bool:
        """Load and warm up the model, then swap it in; False (reason kept) when that fails."""
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
                    refine=params.refine,
                )
                # The first call is several times slower (allocation, kernel choice): pay it now.
                detector(np.zeros((*detector.model.config.input_size, 3), np.uint8))
                hardware = hardware_name(device)
            except Exception as exc:  # noqa: BLE001 - any load failure is a status, not a crash
                self._model_error = str(exc) if isinstance(exc, FlowclasError) else repr(exc)
                self.get_logger().error(f'cannot load model: {exc}')
                return False
            else:
                detector.output_scale = self.params.output_scale  # may have changed meanwhile
                self._detector, self._device, self._hardware = detector, device, hardware
                self._model_dir, self._model_error = params.model_dir, ''
                self.get_logger().info(f'model {params.model_dir} loaded on {device} ({hardware})')
                return True
            finally:
                self._loading = False

    # ----- parameters ------------------------------------------------------------------------

    def _on_set_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        """Check a change against all current values; ``restart`` ones are read-only anyway."""
        values = {p.name: p.value for p in changes if p.name in PARAMS}
        old = self.params
        try:
            new = NodeParams().replace(self._ros_values() | values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.params = new
        if self._detector is not None:
            self._detector.output_scale = new.output_scale
        changed = [n for n in values if getattr(new, n) != getattr(old, n)]
        if self.lifecycle_state in ('inactive', 'active') and any(
            PARAMS[n]['when'] == 'reload' for n in changed
        ):
            self._reload()
        return SetParametersResult(successful=True)

    def _follow_publishers(self) -> None:
        """``input_reliability: auto``: match what the publishers offer now."""
        if self.params.input_reliability != 'auto':
            return
        for camera in self.cameras:
            if camera.subscription is None:
                continue
            camera.geometry.follow()
            offered = camera.offered_reliability()
            if offered is not None and offered != camera.reliability:
                self.get_logger().info(
                    f'{camera.resolved_topic}: publishers now offer {_NAMES[offered]}; '
                    f'subscribing {_NAMES[offered]}'
                )
                camera.subscribe(offered)

    # ----- input -----------------------------------------------------------------------------

    def on_frame(self, camera: _Camera, msg: Image | CompressedImage, info: dict | None) -> None:
        now = time.monotonic()
        camera.stats.on_receive(now)
        info = info or {}
        sent = info.get('source_timestamp') or 0  # ns, the publisher's system clock
        transit_ms = (time.time_ns() - sent) / 1e6 if sent else math.nan
        sequence = info.get('publication_sequence_number') or 0
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
            camera.pending.append(_Frame(msg, now, transit_ms))
            self._cond.notify()

    def on_incompatible_qos(self, camera: _Camera, event: object) -> None:
        if self.params.input_reliability == 'auto':
            return  # _follow_publishers switches within a second
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
                with self._busy:
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
        geometry = camera.geometry.wanted()  # points, regions, markers: need mask and score
        if not wanted and not geometry:
            camera.stats.on_skipped('no_subscribers')
            return
        if params.max_rate_hz > 0 and frame.received - camera.last_start < 1 / params.max_rate_hz:
            camera.stats.on_skipped('rate_limited')
            return
        camera.last_start = frame.received
        lap = _Laps(frame.received)
        lap('queue')
        rgb = camera.convert(frame.msg)
        lap('convert')
        rule = MaskRule.from_settings(params)
        unavailable = missing(rule, detector.model.config.calibration, has_norms=True)
        if ('mask' in wanted or geometry) and unavailable:  # the model lacks what the rule needs
            camera.stats.on_warning('mask_unavailable', f'no mask: {unavailable}')
            wanted, geometry = wanted - {'mask'}, set()
        need = wanted | {'mask', 'score'} if geometry else wanted
        arrays = detector.render(rgb, need, rule, tuple(params.score_range), lap)
        header = frame.msg.header
        messages = []
        if geometry:
            messages = camera.geometry.messages(
                geometry, header, arrays, rgb.shape[:2], camera.camera_info, params, lap
            )
        messages += [
            (camera.publishers[name], array_to_image(array, _ENCODINGS[name], header))
            for name, array in arrays.items()
            if name in wanted
        ]
        if camera.camera_info is not None:
            info = scaled_camera_info(camera.camera_info, *detector.output_size(*rgb.shape[:2]))
            info.header = header
            messages.append((camera.info_publisher, info))
        lap('serialize')
        for publisher, msg in messages:
            publisher.publish(msg)
        lap('publish')
        stamp = Time.from_msg(header.stamp)
        age_ms = (self.get_clock().now() - stamp).nanoseconds / 1e6
        stages = {'transit': frame.transit_ms} if math.isfinite(frame.transit_ms) else {}
        camera.stats.on_processed(time.monotonic() - frame.received, stages | lap.ms, age_ms)

    # ----- diagnostics -----------------------------------------------------------------------

    def _problem(self) -> tuple[bytes, str] | None:
        """The node-wide level and message that override the per-camera ones, if any."""
        state = self.lifecycle_state
        if state == 'unconfigured':
            if self._configure_error:
                return ERROR, f'configure failed: {self._configure_error}'
            return STALE, 'unconfigured: configure to load the model'
        if state == 'finalized':
            return STALE, 'finalized'
        if self._detector is None:
            if self._loading:
                return STALE, 'loading the model'
            return ERROR, f'no model: {self._model_error}'
        if self._model_error:
            return (
                WARN,
                f'model reload failed, still serving {self._model_dir}: {self._model_error}',
            )
        if state == 'inactive':
            return OK, 'inactive: frames are not taken in'
        return None

    def _publish_diagnostics(self) -> None:
        p = self.params
        limits = Limits(p.expected_rate_hz, p.max_latency_ms, p.input_timeout_s)
        info = {
            'lifecycle_state': self.lifecycle_state,
            'backend': p.backend,
            'precision': p.precision,
            'device': self._device or p.device,
            'hardware': self._hardware,
            'model_dir': self._model_dir,
            'input_reliability': p.input_reliability,
            'mode': 'every_frame' if p.process_every_frame else 'newest_frame',
            'mask_mode': p.mask_mode,
        }
        problem = self._problem()
        now = time.monotonic()
        reports = [  # camera statuses; before configure, one per camera all the same
            (c.stats, info | {'input_reliability': f'auto: {_NAMES[c.reliability]}'})
            if p.input_reliability == 'auto' and c.reliability is not None
            else (c.stats, info)
            for c in self.cameras
        ] or [
            (CameraStats(f'{self.get_name()}: {_resolve(self, _input_topic(ns, p)[1])}'), info)
            for ns in p.cameras
        ]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        for camera_stats, values in reports:
            status = camera_stats.report(now, limits, problem, values)
            status.hardware_id = self._hardware or info['device']
            msg.status.append(status)
        self._diagnostics.publish(msg)

    def destroy_node(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._worker.join(timeout=5)
        # A thread still in torch when Python exits aborts the process (exit -6 on Ctrl-C).
        if self._loader is not None:
            self._loader.join(timeout=30)
        super().destroy_node()


class FlowClasNode(_FlowClas, Node):
    """One model serving one or more cameras; see ``config/flowclas.yaml`` for parameters."""

    lifecycle_state = 'active'  # not managed: always

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - rclpy Node options
        Node.__init__(self, NODE_NAME, **kwargs)
        error = self._setup()
        if error:
            self.destroy_node()
            raise ValueError(error)  # reported by main()
        self._open_cameras()
        self._reload()
        self._start_input()


class FlowClasLifecycleNode(_FlowClas, LifecycleNode):
    """The managed node: configure loads the model, activate lets frames in and results out.

    Parameters are declared at construction, so a lifecycle manager's parameter file applies
    before configure; configure checks them and fails with the reason instead of exiting.
    """

    def __init__(self, **kwargs) -> None:  # noqa: ANN003 - rclpy Node options
        LifecycleNode.__init__(self, NODE_NAME, **kwargs)
        self._setup()

    def make_publisher(self, msg_type: type, topic: str, qos: QoSProfile) -> object:
        return self.create_lifecycle_publisher(msg_type, topic, qos)

    def drop_publisher(self, publisher: object) -> None:
        self.destroy_lifecycle_publisher(publisher)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.params = NodeParams().replace(self._ros_values())
        except ValueError as exc:
            return self._configure_failed(f'invalid parameters: {exc}')
        if not self._load(self.params):
            return self._configure_failed(f'cannot load model: {self._model_error}')
        self._open_cameras()
        self.lifecycle_state, self._configure_error = 'inactive', ''
        return super().on_configure(state)

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self._configure_error = reason
        self.get_logger().error(f'configure failed: {reason}')
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # lifecycle publishers on first
        self._start_input()
        self.lifecycle_state = 'active'
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        self.lifecycle_state = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release('unconfigured')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release('finalized')
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release('unconfigured')
        return TransitionCallbackReturn.SUCCESS

    def _release(self, state: str) -> None:
        self._close_cameras()
        self._free_model()
        self.lifecycle_state = state


def _spin(make: type[_FlowClas], program: str, args: list[str] | None) -> int:
    # A crash in native code (DDS, torch) then leaves every thread's Python stack in the log
    # instead of a process that vanished without a word.
    faulthandler.enable()
    rclpy.init(args=args)
    node = None
    try:
        node = make()
        rclpy.spin(node)
    except (ValueError, InvalidParameterValueException) as exc:
        print(f'{program}: error: invalid parameters: {exc}', file=sys.stderr)
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


def main(args: list[str] | None = None) -> int:
    return _spin(FlowClasNode, 'flowclas_node', args)


def main_lifecycle(args: list[str] | None = None) -> int:
    return _spin(FlowClasLifecycleNode, 'flowclas_lifecycle_node', args)


if __name__ == '__main__':
    raise SystemExit(main())
