# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Probe: camera-sized frames between two plain rclpy processes, delivery per 1,000 frames.

No flowclas code is involved: this isolates what DDS itself does with 640x480 rgb8 frames at
a camera rate, one setting at a time (docs/reliability.md, the delivery collapse).

    .venv/bin/python scripts/dds_probe.py [--frames 10000] [--rate 30]
        [--pub-qos reliable:1000] [--sub-qos reliable:1]
        [--pub-profile none|large_frames|PATH] [--sub-profile ...] [--transports UDPv4]

QoS is ``reliable:DEPTH`` or ``best_effort:DEPTH``. A profile is given to one side only
(``large_frames`` is the package's ``config/fastdds_large_frames.xml``); ``--transports`` sets
``FASTDDS_BUILTIN_TRANSPORTS`` for both.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from launchfile import launch_fastdds_env
import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', type=int, default=10000)
    p.add_argument('--rate', type=float, default=30.0, help='Hz')
    p.add_argument('--pub-qos', default='reliable:1000')
    p.add_argument('--sub-qos', default='reliable:1')
    p.add_argument('--pub-profile', default='none')
    p.add_argument('--sub-profile', default='none')
    p.add_argument('--transports', help='FASTDDS_BUILTIN_TRANSPORTS for both sides')
    p.add_argument('--role', choices=('pub', 'sub'), help=argparse.SUPPRESS)
    p.add_argument('--domain', type=int, default=100 + os.getpid() % 100, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _qos(text: str):  # noqa: ANN202
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    kind, depth = text.split(':')
    reliability = {
        'reliable': ReliabilityPolicy.RELIABLE,
        'best_effort': ReliabilityPolicy.BEST_EFFORT,
    }
    return QoSProfile(depth=int(depth), reliability=reliability[kind])


def publish(args: argparse.Namespace) -> None:
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init(domain_id=args.domain)
    node = rclpy.create_node('probe_publisher')
    pub = node.create_publisher(Image, 'probe/image', _qos(args.pub_qos))
    msg = Image(height=480, width=640, encoding='rgb8', step=1920)
    msg.data = np.random.default_rng(0).integers(0, 256, 480 * 640 * 3, np.uint8).tobytes()
    while pub.get_subscription_count() == 0:
        time.sleep(0.1)
    time.sleep(1.0)
    start = time.monotonic()
    for i in range(args.frames):
        msg.header.frame_id = str(i)
        pub.publish(msg)
        time.sleep(max(0.0, start + (i + 1) / args.rate - time.monotonic()))
    time.sleep(3.0)
    rclpy.shutdown()


def subscribe(args: argparse.Namespace) -> None:
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init(domain_id=args.domain)
    node = rclpy.create_node('probe_subscriber')
    got = np.zeros(args.frames, bool)
    last = [float('inf')]

    def on_frame(msg: Image) -> None:
        got[int(msg.header.frame_id)] = True
        last[0] = time.monotonic()

    node.create_subscription(Image, 'probe/image', on_frame, _qos(args.sub_qos))
    while time.monotonic() - last[0] < 6.0 or last[0] == float('inf'):
        rclpy.spin_once(node, timeout_sec=0.5)
    blocks = [int(got[i : i + 1000].sum()) for i in range(0, args.frames, 1000)]
    print(f'delivered per 1,000 frames: {blocks}; {int(got.sum())} of {args.frames}', flush=True)
    rclpy.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role:
        (publish if args.role == 'pub' else subscribe)(args)
        return 0
    common = os.environ | (
        {'FASTDDS_BUILTIN_TRANSPORTS': args.transports} if args.transports else {}
    )
    me = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
          '--domain', str(args.domain)]  # fmt: skip
    sub = subprocess.Popen(
        [*me, '--role', 'sub'], env=common | launch_fastdds_env(args.sub_profile)
    )
    time.sleep(2.0)
    pub = subprocess.Popen(
        [*me, '--role', 'pub'], env=common | launch_fastdds_env(args.pub_profile)
    )
    pub.wait()
    return sub.wait()


if __name__ == '__main__':
    raise SystemExit(main())
