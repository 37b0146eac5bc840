# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The rooms of one node, wired together, and the transitions that bring them up and down.

The plain node runs configure and activate at once; the managed node runs each when a lifecycle
manager asks. Either way the same rooms do the work: parameters and model (``reload``), cameras
(``intake``), the worker (``worker``, ``pipeline``) and diagnostics (``status``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowclas_ros.ros.intake import Intake
from flowclas_ros.ros.pipeline import Pipeline
from flowclas_ros.ros.reload import Model, ParameterCallback, Parameters
from flowclas_ros.ros.status import Status
from flowclas_ros.ros.worker import Scheduler, Worker

if TYPE_CHECKING:
    from rclpy.node import Node

WORKER_JOIN_S = 5.0
# A thread still in torch when Python exits aborts the process (exit -6 on Ctrl-C).
LOAD_JOIN_S = 30.0


class Phase:
    """Where the node is in its lifecycle, and why the last configure failed ('' if it did not).

    ``unconfigured``, ``inactive``, ``active`` or ``finalized``; the plain node is always active.
    """

    def __init__(self, state: str) -> None:
        self.state = state
        self.configure_error = ''

    def configured(self) -> bool:
        """Whether a model is meant to be loaded (a reload parameter then reloads it)."""
        return self.state in ('inactive', 'active')


class Rooms:
    """Everything the plain and the managed node share, built in one place.

    ``node`` is the rclpy node the rooms create their topics, timers and parameters on. The
    worker thread runs from construction to ``destroy``; it idles while there are no cameras.
    """

    def __init__(self, node: Node, state: str) -> None:
        self._node = node
        self.phase = Phase(state)
        self.params = Parameters(node)
        if self.params.current.cpu_threads:
            import torch

            torch.set_num_threads(self.params.current.cpu_threads)
        self.model = Model(node.get_logger(), self.params)
        self.scheduler = Scheduler(self.params)
        self.pipeline = Pipeline(self.params, self.model, node.get_clock())
        self.worker = Worker(
            self.scheduler, self.pipeline.process, node.get_logger(), node.context.ok
        )
        self.intake = Intake(node, self.params, self.scheduler, self.worker)
        self.status = Status(node, self.params, self.model, self.intake, self.phase)
        self.callback = ParameterCallback(node, self.params, self.model, self.phase.configured)
        self.worker.start()

    def start(self) -> None:
        """The plain node: cameras open and listening, the model loading in the background."""
        self.intake.open()
        self.model.reload(self.params.current)
        self.intake.start()

    def configure(self) -> bool:
        """Check the parameters, load the model, open the cameras; False with the reason kept."""
        try:
            self.params.current = self.params.read()
        except ValueError as exc:
            return self._configure_failed(f'invalid parameters: {exc}')
        if not self.model.load(self.params.current):
            return self._configure_failed(f'cannot load model: {self.model.error}')
        self.intake.open()
        self.phase.state, self.phase.configure_error = 'inactive', ''
        return True

    def activate(self) -> None:
        self.intake.start()
        self.phase.state = 'active'

    def deactivate(self) -> None:
        self.intake.stop()
        self.phase.state = 'inactive'

    def release(self, state: str) -> None:
        """Cleanup, shutdown, error: cameras closed, reloads joined, the model freed."""
        self.intake.close()
        self.model.free(LOAD_JOIN_S)
        self.phase.state = state

    def destroy(self) -> None:
        """Stop the worker and wait for every load thread; before rclpy destroys the node."""
        self.worker.stop(WORKER_JOIN_S)
        self.model.join(LOAD_JOIN_S)

    def _configure_failed(self, reason: str) -> bool:
        self.phase.configure_error = reason
        self._node.get_logger().error(f'configure failed: {reason}')
        return False
