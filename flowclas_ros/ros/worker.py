# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The worker room: frames waiting per camera, which one is served next, and the one thread.

Subscriber callbacks only hand frames to the ``Scheduler``; the ``Worker`` thread takes them one
at a time, so receiving and diagnostics never wait for inference. ``Laps`` times each stage.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
import threading
import time
from typing import TYPE_CHECKING

from flowclas_ros.core.errors import InputError

if TYPE_CHECKING:
    from rclpy.impl.rcutils_logger import RcutilsLogger
    from sensor_msgs.msg import CompressedImage, Image

    from flowclas_ros.ros.intake import Camera
    from flowclas_ros.ros.reload import Parameters


@dataclass
class Frame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() when the callback ran
    transit_ms: float  # publisher's send to the callback (NaN where rclpy does not say)


class Laps:
    """Per-stage times of one frame: each call closes the stage that began at the last one."""

    def __init__(self, start: float) -> None:
        self.last = start
        self.ms: dict[str, float] = {}

    def __call__(self, stage: str) -> None:
        now = time.monotonic()
        self.ms[stage] = (now - self.last) * 1000
        self.last = now


class Slot:
    """One camera's frames waiting for the worker, and how often they come.

    Only the scheduler touches it, under its lock: the newest frame (or, in every-frame mode, a
    queue) and the smoothed frame interval that ``prefer_fresh_frames`` needs.
    """

    def __init__(self) -> None:
        self.pending: deque[Frame] = deque()
        self.last_arrival: float | None = None
        self.interval: float | None = None  # smoothed time between frames, s
        self.waited_for: Frame | None = None

    def note_arrival(self, now: float) -> None:
        """Update the frame interval; a pause in the stream is not a frame interval."""
        if self.last_arrival is not None:
            gap = now - self.last_arrival
            if gap < 1.0:
                ema = self.interval
                self.interval = gap if ema is None else 0.9 * ema + 0.1 * gap
        self.last_arrival = now


class Scheduler:
    """Which camera's frame the worker takes next; with several, the one that waited longest.

    Holds the cameras (the intake swaps them in and out) and wakes the worker when a frame comes.
    """

    def __init__(self, params: Parameters) -> None:
        self._params = params
        self._cond = threading.Condition()
        self._stopping = False
        self.cameras: list[Camera] = []

    def swap_cameras(self, cameras: list[Camera]) -> list[Camera]:
        """Serve ``cameras`` from now on; the ones served until now."""
        with self._cond:
            old, self.cameras = self.cameras, cameras
        return old

    def offer(self, camera: Camera, frame: Frame) -> None:
        """A checked frame: it replaces the waiting one, or joins the queue in every-frame mode."""
        params = self._params.current
        slot = camera.slot
        with self._cond:
            slot.note_arrival(frame.received)
            if params.process_every_frame:
                if len(slot.pending) >= params.max_queue:
                    camera.stats.on_skipped('queue_full')
                    return
            elif slot.pending:
                slot.pending.clear()
                camera.stats.on_superseded()
            slot.pending.append(frame)
            self._cond.notify()

    def clear(self) -> None:
        """Drop every waiting frame (input stopped)."""
        with self._cond:
            for camera in self.cameras:
                camera.slot.pending.clear()

    def stop(self) -> None:
        """Make ``next`` return None, now and from now on."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def next(self) -> tuple[Camera, Frame] | None:
        """Block until a frame is due; None once stopped."""
        with self._cond:
            while not self._stopping:
                waiting = [c for c in self.cameras if c.slot.pending]
                if not waiting:
                    self._cond.wait()
                    continue
                camera = min(waiting, key=lambda c: c.slot.pending[0].received)
                delay = self._fresh_frame_delay(camera.slot, len(waiting))
                if delay > 0:
                    self._cond.wait(delay)  # offer replaces the frame and wakes us
                    continue
                return camera, camera.slot.pending.popleft()
        return None

    def _fresh_frame_delay(self, slot: Slot, n_waiting: int) -> float:
        """How long to wait for the camera's next frame instead of taking a stale one.

        When inference is slower than the camera, the newest frame has waited up to a frame
        interval by the time the worker is free. If it has waited more than half an interval,
        the next frame is less than half an interval away, and waiting for it gives a lower
        latency and a fresher output on average (the "update or wait" result on the age of
        information) for a few per cent fewer outputs. Only when nothing else is waiting.
        """
        frame = slot.pending[-1]
        params = self._params.current
        if (
            not params.prefer_fresh_frames
            or params.process_every_frame
            or n_waiting > 1
            or slot.interval is None
            or frame is slot.waited_for
        ):
            return 0.0
        now = time.monotonic()
        if now - frame.received <= slot.interval / 2:
            return 0.0
        slot.waited_for = frame
        return max(0.0, frame.received + 1.25 * slot.interval - now)


class Worker:
    """The one thread that converts, scores and publishes, a frame at a time.

    ``process`` is the per-frame pipeline; a bad frame is counted on its camera and the thread
    goes on. ``alive`` says whether ROS still runs: failures while it shuts down end the thread.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        process: Callable[[Camera, Frame], None],
        logger: RcutilsLogger,
        alive: Callable[[], bool],
    ) -> None:
        self._scheduler = scheduler
        self._process = process
        self._logger = logger
        self._alive = alive
        self._busy = threading.Lock()  # held while a frame is processed
        self._thread = threading.Thread(target=self._work, name='flowclas-worker', daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_idle(self) -> None:
        """Return once the frame in progress, if any, is done."""
        with self._busy:
            pass

    def stop(self, timeout: float) -> None:
        """No more frames; wait up to ``timeout`` s for the thread to end."""
        self._scheduler.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _work(self) -> None:
        while (item := self._scheduler.next()) is not None:
            camera, frame = item
            try:
                with self._busy:
                    self._process(camera, frame)
            except InputError as exc:
                camera.stats.on_rejected(exc.reason, str(exc))
            except Exception as exc:  # noqa: BLE001 - the node must outlive any one frame
                if not self._alive():  # shutting down: publishing fails, nothing to count
                    return
                camera.stats.on_rejected('internal_error', f'{type(exc).__name__}: {exc}')
                self._logger.error(
                    f'frame failed: {type(exc).__name__}: {exc}', throttle_duration_sec=5.0
                )
