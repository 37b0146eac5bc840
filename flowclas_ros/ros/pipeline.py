# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""One frame's way through the node, on the worker thread: convert, score, publish, count.

Outputs nobody subscribes to are not computed; each stage's time goes to the camera's
diagnostics (``stage.<name>_ms``).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from rclpy.time import Time

from flowclas_ros.core.errors import InputError
from flowclas_ros.core.flowclas.refine import segmenter
from flowclas_ros.core.geometry import check_registered
from flowclas_ros.core.masks import MaskRule, missing
from flowclas_ros.ros.conversions import array_to_image, scaled_camera_info
from flowclas_ros.ros.worker import Laps

if TYPE_CHECKING:
    import numpy as np
    from rclpy.clock import Clock

    from flowclas_ros.core.inference import Detector, Segmenter
    from flowclas_ros.ros.intake import Camera
    from flowclas_ros.ros.params import NodeParams
    from flowclas_ros.ros.reload import Model, Parameters
    from flowclas_ros.ros.worker import Frame

ENCODINGS = {'score': '32FC1', 'heatmap': 'rgb8', 'mask': 'mono8', 'overlay': 'rgb8'}


class Pipeline:
    """What the worker does with a frame; reads the parameters and model current at its start."""

    def __init__(self, params: Parameters, model: Model, clock: Clock) -> None:
        self._params = params
        self._model = model
        self._clock = clock

    def process(self, camera: Camera, frame: Frame) -> None:
        """Score ``frame`` and publish what is subscribed; raises ``InputError`` to reject it."""
        params, detector = self._params.current, self._model.detector
        outputs = self._outputs(camera, frame, params, detector)
        if outputs is None:
            return
        camera.last_start = frame.received
        lap = Laps(frame.received)
        lap('queue')
        rgb = camera.convert(frame.msg)
        lap('convert')
        rule = MaskRule.from_settings(params)
        wanted, geometry = _mask_check(camera, rule, detector, *outputs)
        need = wanted | {'mask', 'score'} if geometry else wanted
        header, shape = frame.msg.header, rgb.shape[:2]
        segments = _segmenter(camera, header, params, detector)
        arrays = detector.render(rgb, need, rule, tuple(params.score_range), lap, segments)
        messages = []
        if geometry:
            messages = camera.geometry.messages(
                geometry, header, arrays, shape, camera.camera_info, params, lap
            )
        messages += _images(camera, arrays, wanted, header)
        messages += _camera_info(camera, detector, shape, header)
        lap('serialize')
        for publisher, msg in messages:
            publisher.publish(msg)
        lap('publish')
        self._count(camera, frame, lap)

    def _outputs(
        self, camera: Camera, frame: Frame, params: NodeParams, detector: Detector | None
    ) -> tuple[set[str], set[str]] | None:
        """The image and geometry outputs to make, or None (counted) when the frame is skipped."""
        if detector is None:
            if self._model.loading:
                camera.stats.on_skipped('model_loading')
                return None
            raise InputError('no_model', self._model.error)
        wanted = camera.wanted(params.publish_overlay)
        geometry = camera.geometry.wanted()  # points, regions, markers: need mask and score
        if not wanted and not geometry:
            camera.stats.on_skipped('no_subscribers')
            return None
        if params.max_rate_hz > 0 and frame.received - camera.last_start < 1 / params.max_rate_hz:
            camera.stats.on_skipped('rate_limited')
            return None
        return wanted, geometry

    def _count(self, camera: Camera, frame: Frame, lap: Laps) -> None:
        """The frame is out: its latency, its stages and how old its stamp is now."""
        stamp = Time.from_msg(frame.msg.header.stamp)
        age_ms = (self._clock.now() - stamp).nanoseconds / 1e6
        stages = {'transit': frame.transit_ms} if math.isfinite(frame.transit_ms) else {}
        camera.stats.on_processed(time.monotonic() - frame.received, stages | lap.ms, age_ms)


def _segmenter(
    camera: Camera, header: object, params: NodeParams, detector: Detector
) -> Segmenter | None:
    """Where this frame's segments come from (``segments``); each use is counted."""
    if params.segments == 'none':
        return None
    if params.segments == 'superpixels':
        return segmenter('superpixels', detector.device)
    source = camera.segments

    def from_topic(rgb: np.ndarray) -> np.ndarray | None:
        labels = source.match(header.stamp, params.segments_tolerance_s, params.segments_wait_s)
        if labels is not None:
            try:
                check_registered(labels.shape, rgb.shape[:2], 'segments')
            except InputError as exc:
                source.reject(exc.reason, str(exc))
                labels = None
        camera.stats.count('segments.matched' if labels is not None else 'segments.unmatched')
        return labels

    return from_topic


def _mask_check(
    camera: Camera, rule: MaskRule, detector: Detector, wanted: set[str], geometry: set[str]
) -> tuple[set[str], set[str]]:
    """Drop the mask, and the geometry made from it, when the model lacks what the rule needs."""
    unavailable = missing(rule, detector.model.config.calibration, has_norms=True)
    if ('mask' in wanted or geometry) and unavailable:
        camera.stats.on_warning('mask_unavailable', f'no mask: {unavailable}')
        return wanted - {'mask'}, set()
    return wanted, geometry


def _images(
    camera: Camera, arrays: dict[str, np.ndarray], wanted: set[str], header: object
) -> list[tuple[object, object]]:
    return [
        (camera.publishers[name], array_to_image(array, ENCODINGS[name], header))
        for name, array in arrays.items()
        if name in wanted
    ]


def _camera_info(
    camera: Camera, detector: Detector, shape: tuple[int, int], header: object
) -> list[tuple[object, object]]:
    """The colour camera_info scaled to the outputs' size, when one has arrived."""
    if camera.camera_info is None:
        return []
    info = scaled_camera_info(camera.camera_info, *detector.output_size(*shape))
    info.header = header
    return [(camera.info_publisher, info)]
