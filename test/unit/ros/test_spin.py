# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""A tool that spins in a background thread exits cleanly, however busy that thread was."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ros

# A 1 ms timer keeps the spin thread inside rclpy almost all the time. With
# ``Executor.shutdown()`` alone in place of ``stop()`` this program aborted in 40 of 40 runs.
PROGRAM = textwrap.dedent(
    """
    import time
    import rclpy
    from flowclas_ros.ros.spin import SpinThread

    rclpy.init()
    node = rclpy.create_node('spin_test')
    ticks = []
    node.create_timer(0.001, lambda: ticks.append(1))
    spin = SpinThread(node)
    time.sleep(0.3)
    start = time.monotonic()
    spin.stop()
    print(len(ticks), time.monotonic() - start)
    node.destroy_node()
    rclpy.try_shutdown()
    """
)


def test_stop_joins_the_thread_so_the_process_exits_cleanly():
    env = dict(os.environ, ROS_DOMAIN_ID=str(20 + os.getpid() % 80))
    for _ in range(3):
        r = subprocess.run(
            [sys.executable, '-c', PROGRAM], capture_output=True, text=True, timeout=60, env=env
        )
        assert r.returncode == 0, r.stderr
        assert 'terminate' not in r.stderr
        ticks, stop_s = r.stdout.split()
        assert int(ticks) > 20  # callbacks ran while spinning
        assert float(stop_s) < 1.0


def test_an_entity_destroyed_while_the_executor_gathers_does_not_end_the_spin_thread():
    """The CI failure of stop 49: a test destroyed a publisher while the client's thread spun.

    A waitable that destroys the publisher as the executor enters it stands in for the other
    thread, landing deterministically in the window between gathering and waiting.
    """
    import threading
    import time

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.waitable import NumberOfEntities, Waitable
    from std_msgs.msg import String

    from flowclas_ros.ros.spin import SpinThread

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=20 + os.getpid() % 80)
    node = rclpy.create_node('spin_destroy_test', context=context)
    raised: list[BaseException] = []
    hook, threading.excepthook = threading.excepthook, lambda a: raised.append(a.exc_value)

    class DestroyOnEnter(Waitable):
        def __init__(self):
            super().__init__(node.default_callback_group)
            self.victim = None

        def __enter__(self):
            if self.victim is not None:
                victim, self.victim = self.victim, None
                node.destroy_publisher(victim)

        def __exit__(self, *exc):
            return None

        def get_num_entities(self):
            return NumberOfEntities()

        def add_to_wait_set(self, wait_set):
            return None

        def is_ready(self, wait_set):
            return False

    trigger = DestroyOnEnter()
    node.add_waitable(trigger)  # gathered before the publishers' event handlers below
    ticks: list[int] = []
    node.create_timer(0.01, lambda: ticks.append(1))
    spin = SpinThread(node, context)
    try:
        best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        for _ in range(3):
            trigger.victim = node.create_publisher(String, '/spin_destroy', best_effort)
            spin.executor.wake()
            deadline = time.monotonic() + 5
            while trigger.victim is not None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert trigger.victim is None
        before = len(ticks)
        time.sleep(0.2)
        assert raised == []
        assert len(ticks) > before  # still spinning
    finally:
        threading.excepthook = hook
        spin.stop()
        node.destroy_node()
        rclpy.shutdown(context=context)
