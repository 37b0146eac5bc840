# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The shipped Fast DDS profile (``config/fastdds_large_frames.xml``) between two processes.

A publisher with the profile delivers 640x480 rgb8 frames to a subscriber with Fast DDS's
defaults (this process), in one piece through shared memory: a few milliseconds from publish
to callback, where the built-in transports take about 12 ms here. A malformed or ignored
profile falls back to those defaults and fails the bound. With the built-in transports,
delivery also collapses after 5,000-7,500 frames (docs/reliability.md); with the launch
file's default profile every block of 1,000 must arrive (``FLOWCLAS_TEST_FASTDDS_PROFILE=none``
runs that test on the old default, where it fails).
"""

from collections import Counter
import os
import statistics
import subprocess
import sys
import time

from launchfile import launch_fastdds_env
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(
        os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp') != 'rmw_fastrtps_cpp',
        reason='a Fast DDS profile',
    ),
]
# argv: frames, rate (Hz). Frame i carries str(i) as its frame_id; it starts once matched.
PUBLISHER = """
import sys, time
import numpy as np, rclpy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node('profile_publisher')
pub = node.create_publisher(Image, 'frames', 10)
msg = Image(height=480, width=640, encoding='rgb8', step=1920)
msg.data = np.full(480 * 640 * 3, 7, np.uint8).tobytes()
count, rate = int(sys.argv[1]), float(sys.argv[2])
while pub.get_subscription_count() == 0:
    time.sleep(0.05)
start = time.monotonic()
for i in range(count):
    msg.header.frame_id = str(i)
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)
    time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
time.sleep(2.0)
"""


def _receive(env: dict[str, str], count: int, rate: float, enough: int) -> list[tuple[int, float]]:
    """(index, publish-to-callback ms) of the frames a publisher with ``env`` sends to us."""
    domain = 180 + os.getpid() % 40
    publisher = subprocess.Popen(
        [sys.executable, '-c', PUBLISHER, str(count), str(rate)],
        env=os.environ | env | {'ROS_DOMAIN_ID': str(domain)},
    )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('profile_subscriber', context=context)
    frames: list[tuple[int, float]] = []
    sizes: set[int] = set()

    def on_frame(msg: Image) -> None:
        now = node.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        frames.append((int(msg.header.frame_id), (now - stamp) / 1e6))
        sizes.add(len(msg.data))

    # Reliable, as the node's input subscribes to a reliable camera.
    node.create_subscription(Image, 'frames', on_frame, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        end = time.monotonic() + count / rate + 30
        while len(frames) < enough and time.monotonic() < end and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        publisher.kill()
        publisher.wait()
    assert sizes <= {640 * 480 * 3}
    return frames


def test_profile_delivers_large_frames_quickly_to_default_subscribers():
    frames = _receive(launch_fastdds_env('large_frames'), 240, 20.0, 60)
    times = [ms for _, ms in frames[10:]]  # after discovery settles
    assert len(times) >= 40, f'only {len(times)} frames arrived'
    assert statistics.median(times) < 6.0, f'median delivery {statistics.median(times):.1f} ms'


@pytest.mark.slow
def test_launch_default_keeps_delivering_large_frames():
    """12,000 frames at 60 Hz (3.3 min); the built-in transports collapsed after 5,500-7,500."""
    count = 12000
    choice = os.environ.get('FLOWCLAS_TEST_FASTDDS_PROFILE')  # None: the launch default
    frames = _receive(launch_fastdds_env(choice), count, 60.0, count)
    got = Counter(i // 1000 for i, _ in frames)
    blocks = [got.get(b, 0) for b in range(count // 1000)]
    assert min(blocks) >= 950, f'frames delivered per 1,000: {blocks}'
