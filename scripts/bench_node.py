# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark: flowclas_node's receive-to-publish latency against the core's inference time.

Starts the node in its own process, publishes 640x480 rgb8 frames at a camera rate over real
DDS, and listens to score, heatmap and mask. The node reports, per frame, receive-to-publish
latency, the time of the core call (``Detector``) inside it, their difference (what the ROS
layer adds: waiting for the worker, conversion, mask and colour map, messages, publishing) and
the time of each of those stages. For reference the core is also timed alone on the same
frames, with no ROS traffic around it (before and after the node's run, pooled), and the
end-to-end latency (publish to score arrival) is divided by it.

    .venv/bin/python scripts/bench_node.py [--model DIR] [--rate 30] [--seconds 20]
        [--fastdds-profile large_frames|none|PATH]

Without ``--model``, an untrained model at a fixed 320x320 with 4 flow steps is used (the cost
does not depend on the flow's weights): EfficientNet-Lite0 alone, or with ``--encoders
default`` the default's two encoders (docs/performance.md has both).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING

from launchfile import launch_fastdds_env
import numpy as np

from flowclas_ros.core.jsonio import write_json

if TYPE_CHECKING:
    from flowclas_ros.core.inference import Detector


def add_fastdds_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        '--fastdds-profile',
        help="Fast DDS profile of the bench (the camera) and the node, as the launch file's "
        'fastdds_profile takes it: large_frames, none (as the environment says) or a path '
        "(default: the launch file's default)",
    )


def use_fastdds_profile(choice: str | None) -> None:
    """Give this process and the node it starts what the launch file gives the node.

    ``choice`` as the launch argument ``fastdds_profile`` (None: its default), resolved by the
    launch file's own code, so the benches measure what a launched node does. Set before the
    first participant is made.
    """
    os.environ.update(launch_fastdds_env(choice))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', help='model directory (default: untrained, see --encoders)')
    p.add_argument(
        '--encoders',
        choices=('lite0', 'default'),
        default='lite0',
        help='without --model: EfficientNet-Lite0 alone, or the default Lite0 + DINOv2',
    )
    p.add_argument('--rate', type=float, default=30.0, help='publish rate, Hz')
    p.add_argument('--seconds', type=float, default=20.0, help='measured publishing time')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--frames', type=int, default=30, help='distinct frames, published in turn')
    p.add_argument(
        '-p', '--param', action='append', default=[], help='node parameter NAME:=VALUE (repeat)'
    )
    add_fastdds_profile(p)
    p.add_argument('--json', help='also write the numbers here')
    return p.parse_args(argv)


def default_model(directory: Path, encoders: str, side: int = 320) -> Path:
    """An untrained model at ``side`` x ``side``, fixed, 4 flow steps.

    320x320 is what the latency table in docs/performance.md was measured with (the default
    native policy runs a 640x480 camera at 512x384, about twice the pixels).
    """
    from flowclas_ros.core.config import BackboneConfig, FlowConfig, ModelConfig, default_backbone
    from flowclas_ros.core.flowclas.model import build_model, save_model

    backbone = default_backbone() if encoders == 'default' else BackboneConfig()
    config = ModelConfig(
        backbone=backbone, input_size=[side, side], size_policy='fixed', flow=FlowConfig(steps=4)
    )
    save_model(build_model(config), directory)
    return directory


def make_frames(n: int, height: int, width: int) -> list[np.ndarray]:
    """Smooth random scenes (a coarse colour grid, upsampled, plus noise)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        base = np.asarray(coarse.resize((width, height), Image.BILINEAR), np.int16)
        noise = rng.integers(-6, 7, base.shape)
        frames.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return frames


def run_node(args: argparse.Namespace, model: Path, frames: list[np.ndarray]) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    import rclpy
    from sensor_msgs.msg import Image

    from flowclas_ros.ros.conversions import array_to_image
    from flowclas_ros.ros.spin import SpinThread

    domain = 150 + os.getpid() % 80
    use_fastdds_profile(args.fastdds_profile)
    env = os.environ | {'ROS_DOMAIN_ID': str(domain)}
    window = 2.0
    node = subprocess.Popen(
        [sys.executable, '-m', 'flowclas_ros.ros.node', '--ros-args', '-r', '__ns:=/bench',
         '-p', f'model_dir:={model}', '-p', f'diagnostics_period_s:={window}',
         *[a for p in args.param for a in ('-p', p)]],
        env=env,
    )  # fmt: skip
    context = rclpy.Context()
    rclpy.init(args=[], context=context, domain_id=domain)
    bench = rclpy.create_node('flowclas_bench', context=context)
    lock = threading.Lock()
    arrivals: dict[int, float] = {}
    windows: list[tuple[int, dict[str, float]]] = []  # (frames, the node's medians)
    measuring = threading.Event()

    def on_score(msg: Image) -> None:
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with lock:
            arrivals[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = now - stamp

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith('/bench/image') and measuring.is_set():
                values = {kv.key: kv.value for kv in status.values}
                n = int(float(values['output_rate_hz']) * window + 0.5)
                if n and values['latency_median_ms'] != 'nan':
                    medians = {
                        k.removeprefix('stage.').removesuffix('_ms'): float(v)
                        for k, v in values.items()
                        if k.startswith('stage.') and v != 'nan'
                    }
                    medians['latency'] = float(values['latency_median_ms'])
                    medians['overhead'] = float(values['overhead_median_ms'])
                    windows.append((n, medians))

    bench.create_subscription(Image, '/bench/anomaly/score', on_score, 10)
    for name in ('heatmap', 'mask'):
        bench.create_subscription(Image, f'/bench/anomaly/{name}', lambda _: None, 10)
    bench.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    pub = bench.create_publisher(Image, '/bench/image', 10)
    spin = SpinThread(bench, context)
    messages = [array_to_image(f, 'rgb8', Image().header) for f in frames]

    def publish(i: int) -> int:
        msg = messages[i % len(messages)]
        msg.header.stamp = bench.get_clock().now().to_msg()
        pub.publish(msg)
        return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec

    try:
        # Warm-up: until outputs flow (discovery, model load, first inferences).
        end = time.monotonic() + 120
        while not arrivals and time.monotonic() < end:
            publish(0)
            time.sleep(0.2)
        if not arrivals:
            raise SystemExit('bench: the node produced no output within 120 s')
        time.sleep(1.0)
        with lock:
            arrivals.clear()
        sent = []
        measuring.set()
        period = 1 / args.rate
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < args.seconds:
            sent.append(publish(i))
            i += 1
            time.sleep(max(0.0, start + i * period - time.monotonic()))
        time.sleep(window + 1.0)
        measuring.clear()
        with lock:
            latencies = [arrivals[s] * 1000 for s in sent if s in arrivals]
    finally:
        spin.stop()
        bench.destroy_node()
        rclpy.shutdown(context=context)
        died = node.poll()
        node.terminate()
        node.wait(10)
    if died is not None:
        raise SystemExit(f'bench: the node exited during the run (code {died})')

    # Medians over frames of the node's own measures, from its per-window medians.
    def median_over_frames(key: str) -> float:
        values = [w[key] for n, w in windows if key in w for _ in range(n)]
        return statistics.median(values) if values else float('nan')

    from flowclas_ros.ros.diagnostics import STAGES

    return {
        'frames_sent': len(sent),
        'frames_out': len(latencies),
        'publish_rate_hz': len(sent) / args.seconds,
        'output_rate_hz': len(latencies) / args.seconds,
        'node_latency_median_ms': median_over_frames('latency'),
        'node_inference_median_ms': median_over_frames('inference'),
        'node_overhead_median_ms': median_over_frames('overhead'),
        'stage_median_ms': {k: median_over_frames(k) for k in STAGES},
        'end_to_end_median_ms': statistics.median(latencies),
        'end_to_end_p95_ms': float(np.percentile(latencies, 95)),
    }


def time_core(detector: Detector, frames: list[np.ndarray], repeats: int = 3) -> list[float]:
    """The core call's times (ms) on ``frames``, after three warm-up calls."""
    for frame in frames[:3]:
        detector(frame)
    times = []
    for _ in range(repeats):
        for frame in frames:
            start = time.perf_counter()
            detector(frame)
            times.append((time.perf_counter() - start) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    frames = make_frames(args.frames, args.height, args.width)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model or default_model(Path(tmp) / 'model', args.encoders))
        from flowclas_ros.core.inference import Detector

        # Timed before and after the node's run, pooled: this machine's speed drifts.
        detector = Detector.load(model, device='cpu')
        before = time_core(detector, frames)
        result = run_node(args, model, frames)
        after = time_core(detector, frames)
    result['core_alone_before_after_ms'] = [statistics.median(before), statistics.median(after)]
    result['core_alone_median_ms'] = statistics.median(before + after)
    result['end_to_end_over_core_alone'] = (
        result['end_to_end_median_ms'] / result['core_alone_median_ms']
    )
    r = result
    before_ms, after_ms = r['core_alone_before_after_ms']
    profile = os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE', 'none')
    print(
        f'{args.width}x{args.height} rgb8 at {args.rate:g} Hz for {args.seconds:g} s '
        f'(Fast DDS profile: {profile}): '
        f'{r["frames_sent"]} sent, {r["frames_out"]} scored ({r["output_rate_hz"]:.1f} Hz)\n'
        f'  node receive-to-publish, median          {r["node_latency_median_ms"]:7.1f} ms\n'
        f'  core inference in the node, median       {r["node_inference_median_ms"]:7.1f} ms\n'
        f'  overhead (latency less inference, per frame) {r["node_overhead_median_ms"]:4.1f} ms\n'
        f'  core inference alone (no ROS), median    {r["core_alone_median_ms"]:7.1f} ms '
        f'(before / after the node: {before_ms:.1f} / {after_ms:.1f})\n'
        f'  end to end (publish to score arrival)    {r["end_to_end_median_ms"]:7.1f} ms median, '
        f'{r["end_to_end_p95_ms"]:.1f} ms p95\n'
        f'  end to end / core alone                  {r["end_to_end_over_core_alone"]:7.2f}\n'
        '  per stage, median: '
        + ', '.join(f'{k} {v:.2f} ms' for k, v in r['stage_median_ms'].items())
    )
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
