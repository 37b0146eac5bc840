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
