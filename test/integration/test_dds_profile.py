# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The shipped Fast DDS profile (``config/fastdds_large_frames.xml``) between two processes.

A publisher with the profile delivers 640x480 rgb8 frames to a subscriber with Fast DDS's
defaults (this process), in one piece through shared memory: a few milliseconds from publish
to callback, where the built-in transports take about 12 ms here. A malformed or ignored
profile falls back to those defaults and fails the bound.
"""

import os
from pathlib import Path
import statistics
import subprocess
import sys
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

pytestmark = pytest.mark.ros
PROFILE = Path(__file__).resolve().parents[2] / 'config' / 'fastdds_large_frames.xml'
PUBLISHER = """
import sys, time
import numpy as np, rclpy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node('profile_publisher')
pub = node.create_publisher(Image, 'frames', 10)
msg = Image(height=480, width=640, encoding='rgb8', step=1920)
msg.data = np.full(480 * 640 * 3, 7, np.uint8).tobytes()
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)
    time.sleep(0.05)
"""


def _delivery_ms(domain: int, env: dict[str, str], seconds: float = 12.0) -> list[float]:
    """Publish-to-callback times of the frames a publisher with ``env`` sends to us."""
    publisher = subprocess.Popen(
        [sys.executable, '-c', PUBLISHER, str(seconds)],
        env=os.environ | env | {'ROS_DOMAIN_ID': str(domain)},
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('profile_subscriber', context=context)
    times: list[float] = []
    sizes: set[int] = set()

    def on_frame(msg: Image) -> None:
        now = node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        times.append((now - stamp) / 1e6)
        sizes.add(len(msg.data))

    node.create_subscription(Image, 'frames', on_frame, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        end = time.monotonic() + seconds + 5
        while len(times) < 60 and time.monotonic() < end and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        publisher.kill()
        publisher.wait()
    assert sizes <= {640 * 480 * 3}
    return times[10:]  # after discovery settles


@pytest.mark.skipif(
    os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp') != 'rmw_fastrtps_cpp',
    reason='a Fast DDS profile',
)
def test_profile_delivers_large_frames_quickly_to_default_subscribers():
    path = str(PROFILE)
    env = {'FASTDDS_DEFAULT_PROFILES_FILE': path, 'FASTRTPS_DEFAULT_PROFILES_FILE': path}
    times = _delivery_ms(180 + os.getpid() % 40, env)
    assert len(times) >= 40, f'only {len(times)} frames arrived'
    assert statistics.median(times) < 6.0, f'median delivery {statistics.median(times):.1f} ms'
