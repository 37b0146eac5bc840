# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark (not a test): the node's depth and points stages for one frame.

    .venv/bin/python scripts/bench_points.py [--width 640] [--height 480] [--marked 0.05]
        [--blobs 5] [--stride 2] [--repeats 300] [--json FILE]

Runs the node's own per-camera code (``ros.depth.Geometry.messages``: stamp match, points,
regions, markers, PointCloud2 and MarkerArray messages) on a 640x480 mask with ``--marked`` of
its pixels set in ``--blobs`` square anomalies and a 16UC1 depth image (a plane at 2 m, the
anomalies nearer, 1 % of pixels without a reading). Every output has a subscriber, as in the
worst case on a robot; prints the minimum, median and 95th percentile of ``stage.depth_ms``
and ``stage.points_ms`` as the node would report them, and of the two together.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from flowclas_ros.core.jsonio import dumps, write_json


def scene(height: int, width: int, marked: float, blobs: int, seed: int = 0):
    """A mask with ``blobs`` squares covering ``marked`` of the frame, scores, and depth (mm)."""
    rng = np.random.default_rng(seed)
    side = max(1, round((marked * height * width / blobs) ** 0.5))
    mask = np.zeros((height, width), bool)
    depth = np.full((height, width), 2000, np.uint16)
    placed = 0
    while placed < blobs:
        v, u = rng.integers(0, height - side), rng.integers(0, width - side)
        if mask[max(0, v - 1) : v + side + 1, max(0, u - 1) : u + side + 1].any():
            continue  # keep the blobs apart, so there are ``blobs`` regions
        mask[v : v + side, u : u + side] = True
        depth[v : v + side, u : u + side] = rng.integers(800, 1800)
        placed += 1
    depth[rng.random((height, width)) < 0.01] = 0
    scores = np.where(mask, 0.8, 0.2).astype(np.float32) + rng.random(mask.shape, np.float32) / 10
    return mask, scores, depth


class Laps:
    """The node's stage timer: each call closes the stage that began at the last one."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.ms: dict[str, float] = {}

    def __call__(self, stage: str) -> None:
        now = time.monotonic()
        self.ms[stage] = (now - self.last) * 1000
        self.last = now


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--marked', type=float, default=0.05, help='fraction of pixels marked')
    p.add_argument('--blobs', type=int, default=5, help='anomalies (connected regions)')
    p.add_argument('--stride', type=int, default=2, help='points_stride')
    p.add_argument('--repeats', type=int, default=300)
    p.add_argument('--json', help='also write the numbers here')
    args = p.parse_args(argv)

    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from flowclas_ros.ros.conversions import array_to_image
    from flowclas_ros.ros.depth import Geometry
    from flowclas_ros.ros.diagnostics import CameraStats
    from flowclas_ros.ros.params import NodeParams

    class BenchNode(Node):
        """A real rclpy node with the two publisher hooks the flowclas node gives Geometry."""

        def make_publisher(self, msg_type, topic, qos):  # noqa: ANN001, ANN202
            return self.create_publisher(msg_type, topic, qos)

        def drop_publisher(self, publisher):  # noqa: ANN001, ANN202
            self.destroy_publisher(publisher)

    context = rclpy.Context()
    rclpy.init(args=[], context=context, domain_id=200)
    node = BenchNode('bench_points', context=context)
    try:
        h, w = args.height, args.width
        mask, scores, mm = scene(h, w, args.marked, args.blobs)
        geometry = Geometry(node, '', CameraStats('bench'), queue=1)
        params = NodeParams().replace({'points_stride': args.stride})
        info = CameraInfo(width=w, height=h)
        info.k = [600.0, 0.0, (w - 1) / 2, 0.0, 600.0, (h - 1) / 2, 0.0, 0.0, 1.0]
        arrays = {'mask': mask.astype(np.uint8) * 255, 'score': scores}
        header = Header(frame_id='camera_color_optical_frame')
        depth_msg = array_to_image(mm[..., None], '16UC1', header)
        wanted = {'points', 'regions', 'markers'}
        stages: dict[str, list[float]] = {'depth': [], 'points': []}
        n_points = n_regions = 0
        for i in range(args.repeats + 10):
            header.stamp.sec = i + 1
            depth_msg.header.stamp.sec = i + 1
            geometry.depth.on_message(depth_msg)  # as the subscription callback would
            lap = Laps()
            out = geometry.messages(wanted, header, arrays, (h, w), info, params, lap)
            if i >= 10:  # the first frames warm caches and the marker pool
                for stage, ms in lap.ms.items():
                    stages[stage].append(ms)
        n_points = out[0][1].width
        n_regions = out[1][1].width
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)

    total = np.add(stages['depth'], stages['points'])
    result = {
        'frame': f'{w}x{h}',
        'marked': args.marked,
        'regions': n_regions,
        'points': n_points,
        'points_stride': args.stride,
        'repeats': args.repeats,
        **{
            f'{name}_ms': {
                'min': round(float(np.min(v)), 3),
                'median': round(float(np.median(v)), 3),
                'p95': round(float(np.percentile(v, 95)), 3),
            }
            for name, v in (('depth', stages['depth']), ('points', stages['points']),
                            ('depth_and_points', total))
        },
    }  # fmt: skip
    print(dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
