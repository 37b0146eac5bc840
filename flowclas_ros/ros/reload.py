# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The parameters room: declared values, changes at run time, the model loaded in the background.

A change is checked against all current values and applied whole (``Parameters.current`` is
replaced, never edited), so the worker always reads one consistent set. A change to a ``reload``
parameter loads the model again in a thread while the current one keeps serving; every such
thread is kept, and joined before the model is freed and before the node is destroyed.
"""

from __future__ import annotations

from collections.abc import Callable
import gc
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)

from flowclas_ros.core.device import hardware_name, resolve_device
from flowclas_ros.core.errors import FlowclasError
from flowclas_ros.core.inference import Detector
from flowclas_ros.ros.params import PARAMS, NodeParams

if TYPE_CHECKING:
    from rclpy.impl.rcutils_logger import RcutilsLogger
    from rclpy.node import Node
    from rclpy.parameter import Parameter


def descriptor(meta: dict) -> ParameterDescriptor:
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


class Parameters:
    """The node's parameters, declared with their descriptors; ``current`` is the checked set.

    Invalid values at start leave the defaults in ``current`` and the reason in ``error``: the
    plain node exits with it, the managed one fails configure with it.
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        for name, meta in PARAMS.items():
            node.declare_parameter(name, getattr(NodeParams(), name), descriptor(meta))
        self.error = ''
        try:
            self.current = self.read()
        except ValueError as exc:
            self.current, self.error = NodeParams(), str(exc)

    def values(self) -> dict:
        """The values ROS holds now, checked or not."""
        return {name: self._node.get_parameter(name).value for name in PARAMS}

    def read(self, changes: dict | None = None) -> NodeParams:
        """The values ROS holds, with ``changes`` on top, checked; raises ``ValueError``."""
        return NodeParams().replace(self.values() | (changes or {}))


class Model:
    """The detector and what diagnostics say about it: device, hardware, directory, last error.

    One load at a time; background reloads run in threads that are all tracked, so cleanup and
    shutdown can drop those not yet started and wait for the one in torch (a thread still in
    torch when Python exits aborts the process).
    """

    def __init__(self, logger: RcutilsLogger, params: Parameters) -> None:
        self._logger = logger
        self._params = params
        self.detector: Detector | None = None
        self.device = ''
        self.hardware = ''
        self.model_dir = ''
        self.error = ''
        self._lock = threading.Lock()  # one load or free at a time
        self._threads_lock = threading.Lock()  # guards the fields below
        self._threads: list[threading.Thread] = []
        self._loads = 0  # loads asked for and not finished, background ones included
        self._generation = 0  # reloads asked for under an older generation are dropped

    @property
    def loading(self) -> bool:
        """Whether a load is under way or waiting for one (the detector may still serve)."""
        return self._loads > 0

    def set_output_scale(self, scale: float) -> None:
        """A live parameter: applies to the next frame without a reload."""
        detector = self.detector
        if detector is not None:
            detector.output_scale = scale

    def load(self, params: NodeParams) -> bool:
        """Load now (configure); False, the reason in ``error``, when that fails."""
        self._count(1)
        try:
            with self._lock:
                return self._load(params)
        finally:
            self._count(-1)

    def reload(self, params: NodeParams) -> None:
        """Load in the background; the current model serves until the new one is ready."""
        with self._threads_lock:
            self._loads += 1
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(
                target=self._reload,
                args=(params, self._generation),
                name='flowclas-reload',
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def join(self, timeout: float) -> None:
        """Drop the reloads not yet started and wait up to ``timeout`` s for all threads."""
        with self._threads_lock:
            self._generation += 1
            threads, self._threads = self._threads, []
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._threads_lock:
            self._threads = [t for t in threads if t.is_alive()] + self._threads

    def free(self, timeout: float) -> None:
        """Drop the model and give its memory back (and the GPU's cache, where there is one)."""
        self.join(timeout)
        with self._lock:
            device, self.device = self.device, ''
            self.detector, self.model_dir, self.hardware = None, '', ''
        gc.collect()
        if device.startswith('cuda'):
            import torch

            torch.cuda.empty_cache()

    def _count(self, step: int) -> None:
        with self._threads_lock:
            self._loads += step

    def _reload(self, params: NodeParams, generation: int) -> None:
        try:
            with self._lock:
                if generation == self._generation:  # not dropped by join() meanwhile
                    self._load(params)
        finally:
            self._count(-1)

    def _load(self, params: NodeParams) -> bool:
        """Load and warm up the model, then swap it in; the caller holds ``_lock``."""
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
                grid_shifts=params.grid_shifts,
            )
            # The first call is several times slower (allocation, kernel choice): pay it now.
            detector(np.zeros((*detector.model.config.input_size, 3), np.uint8))
            hardware = hardware_name(device)
        except Exception as exc:  # noqa: BLE001 - any load failure is a status, not a crash
            self.error = str(exc) if isinstance(exc, FlowclasError) else repr(exc)
            self._logger.error(f'cannot load model: {exc}')
            return False
        detector.output_scale = self._params.current.output_scale  # may have changed meanwhile
        self.detector, self.device, self.hardware = detector, device, hardware
        self.model_dir, self.error = params.model_dir, ''
        self._logger.info(f'model {params.model_dir} loaded on {device} ({hardware})')
        return True


class ParameterCallback:
    """``ros2 param set``: check a change against all current values, then apply it.

    ``restart`` parameters are read-only in their descriptors, so ROS refuses them first; a
    ``reload`` change reloads the model when ``configured()`` says there is one to serve.
    """

    def __init__(
        self, node: Node, params: Parameters, model: Model, configured: Callable[[], bool]
    ) -> None:
        self._params = params
        self._model = model
        self._configured = configured
        node.add_on_set_parameters_callback(self.on_set_parameters)

    def on_set_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        values = {p.name: p.value for p in changes if p.name in PARAMS}
        old = self._params.current
        try:
            new = self._params.read(values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self._params.current = new
        self._model.set_output_scale(new.output_scale)
        changed = [n for n in values if getattr(new, n) != getattr(old, n)]
        if self._configured() and any(PARAMS[n]['when'] == 'reload' for n in changed):
            self._model.reload(new)
        return SetParametersResult(successful=True)
