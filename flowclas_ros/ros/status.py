# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The node's ``/diagnostics``: one status per camera, on a timer of its own.

The counting is in ``diagnostics.CameraStats``; this adds what is node-wide (lifecycle state,
model, device) and the problems that override every camera's own level.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticArray

from flowclas_ros.ros.diagnostics import ERROR, OK, STALE, WARN, CameraStats, Limits
from flowclas_ros.ros.intake import RELIABILITY_NAMES, input_topic
from flowclas_ros.ros.matched import resolve

if TYPE_CHECKING:
    from rclpy.node import Node

    from flowclas_ros.ros.intake import Intake
    from flowclas_ros.ros.lifecycle import Phase
    from flowclas_ros.ros.params import NodeParams
    from flowclas_ros.ros.reload import Model, Parameters


class Status:
    """Publishes the diagnostics every ``diagnostics_period_s`` (a restart parameter)."""

    def __init__(
        self, node: Node, params: Parameters, model: Model, intake: Intake, phase: Phase
    ) -> None:
        self._node = node
        self._params = params
        self._model = model
        self._intake = intake
        self._phase = phase
        self._publisher = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        node.create_timer(params.current.diagnostics_period_s, self.publish)

    def problem(self) -> tuple[bytes, str] | None:
        """The node-wide level and message that override the per-camera ones, if any."""
        state, model = self._phase.state, self._model
        if state == 'unconfigured':
            if self._phase.configure_error:
                return ERROR, f'configure failed: {self._phase.configure_error}'
            return STALE, 'unconfigured: configure to load the model'
        if state == 'finalized':
            return STALE, 'finalized'
        if model.detector is None:
            if model.loading:
                return STALE, 'loading the model'
            return ERROR, f'no model: {model.error}'
        if model.error:
            return (
                WARN,
                f'model reload failed, still serving {model.model_dir}: {model.error}',
            )
        if state == 'inactive':
            return OK, 'inactive: frames are not taken in'
        return None

    def publish(self) -> None:
        p, model = self._params.current, self._model
        limits = Limits(p.expected_rate_hz, p.max_latency_ms, p.input_timeout_s, p.input_warn_s)
        info = {
            'lifecycle_state': self._phase.state,
            'backend': p.backend,
            'precision': p.precision,
            'device': model.device or p.device,
            'hardware': model.hardware,
            'model_dir': model.model_dir,
            'input_reliability': p.input_reliability,
            'mode': 'every_frame' if p.process_every_frame else 'newest_frame',
            'mask_mode': p.mask_mode,
        }
        problem = self.problem()
        now = time.monotonic()
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        for camera_stats, values in self._reports(p, info):
            status = camera_stats.report(now, limits, problem, values)
            status.hardware_id = model.hardware or info['device']
            msg.status.append(status)
        self._publisher.publish(msg)

    def _reports(self, p: NodeParams, info: dict) -> list[tuple[CameraStats, dict]]:
        """Each camera's counters and values; before configure, one per camera all the same."""
        cameras = self._intake.cameras
        if not cameras:
            return [
                (CameraStats(f'{self._node.get_name()}: {self._topic(ns, p)}'), info)
                for ns in p.cameras
            ]
        return [
            (c.stats, info | {'input_reliability': f'auto: {RELIABILITY_NAMES[c.reliability]}'})
            if p.input_reliability == 'auto' and c.reliability is not None
            else (c.stats, info)
            for c in cameras
        ]

    def _topic(self, namespace: str, p: NodeParams) -> str:
        return resolve(self._node, input_topic(namespace, p)[1])
