# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Spinning a node in a background thread, for tools that publish from their main thread."""

from __future__ import annotations

import threading

from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


class SpinThread:
    """An executor spinning in its own thread until ``stop()``, which joins it.

    ``Executor.shutdown()`` does not wait for the thread that spins. A thread still inside rclpy
    when Python exits is ended in the middle of C++ frames and the process aborts ("terminate
    called without an active exception", exit -6) after its work is done, so the thread must be
    joined before rclpy shuts down.
    """

    def __init__(self, node: Node, context: Context | None = None) -> None:
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name='rclpy-spin', daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # A short timeout only bounds how long stop() waits; callbacks still run at once.
        while not self._stop.is_set() and self.executor.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except InvalidHandle:
                # An entity destroyed from another thread between the executor's gathering of
                # entities and its wait: rclpy then raises while it builds the wait set. The next
                # turn gathers again without it; letting it raise would end this thread for good.
                continue

    def stop(self, timeout: float = 10.0) -> None:
        """Stop spinning and wait for the thread; call before destroying the node."""
        self._stop.set()
        self.executor.wake()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f'the spin thread did not stop within {timeout} s')
        self.executor.shutdown()
