# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark: flowclas_node under a long run, overload and malformed traffic, over real DDS.

    .venv/bin/python scripts/stress_node.py soak [--frames 10000] [--rate 30]
    .venv/bin/python scripts/stress_node.py overload [--seconds 60] [--factors 2 4]
    .venv/bin/python scripts/stress_node.py fuzz [--count 1000]

- soak: 640x480 rgb8 frames at a camera rate; node RSS after warm-up and at the end, and the
  end-to-end latency (publish to score arrival) p50/p99 per 1,000 frames.
- overload: first the node's unloaded latency and capacity (frames at a quarter of what it can
  score), then publishing at each factor times its capacity; latency p50 against the unloaded
  one, and whether every frame received has exactly one outcome.
- fuzz: random malformed Image and CompressedImage messages (``core.data.malformed``), four in
  five, among good ones, published directly, replayed from a bag by ``flowclas-replay`` and
  evaluated offline by ``flowclas-eval --bag``; every bad one must be counted under its reason,
  every good one scored.

The default model is EfficientNet-Lite0 at 160x160 (fixed) with an untrained flow, small enough
to keep up with 30 Hz on a 2-core CPU; its cost does not depend on the flow's weights.
"""

from __future__ import annotations

import argparse
from collections import Counter
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench_node import default_model, make_frames
import numpy as np

from flowclas_ros.core.jsonio import write_json

OUTCOMES = ('processed', 'superseded', 'skipped', 'rejected')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('mode', choices=('soak', 'overload', 'fuzz'))
    p.add_argument('--model', help='model directory (default: untrained Lite0, 160x160 fixed)')
    p.add_argument('--frames', type=int, default=10000, help='soak: frames to publish')
    p.add_argument('--rate', type=float, default=30.0, help='soak: publish rate, Hz')
    p.add_argument('--seconds', type=float, default=60.0, help='overload: seconds per factor')
    p.add_argument('--factors', type=float, nargs='+', default=[2.0, 4.0])
    p.add_argument('--count', type=int, default=1000, help='fuzz: messages per transport')
    p.add_argument(
        '-p', '--param', action='append', default=[], help='node parameter NAME:=VALUE (repeat)'
    )
    p.add_argument('--json', help='also write the numbers here')
    return p.parse_args(argv)


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


class Harness:
    """The node in its own process, and a client node that publishes and listens."""

    def __init__(self, model: Path, params: list[str], transport: str = 'raw') -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CompressedImage, Image

        from flowclas_ros.ros.spin import SpinThread

        self.domain = 150 + os.getpid() % 80
        self.topic = '/stress/image' + ('/compressed' if transport == 'compressed' else '')
        self.node = subprocess.Popen(
            [
                sys.executable,
                '-m',
                'flowclas_ros.ros.node',
                '--ros-args',
                '-r',
                '__ns:=/stress',
                '-p',
                f'model_dir:={model}',
                '-p',
                'diagnostics_period_s:=0.5',
                '-p',
                f'input_transport:={transport}',
                *[a for p in params for a in ('-p', p)],
            ],
            env=os.environ | {'ROS_DOMAIN_ID': str(self.domain)},
        )
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, domain_id=self.domain)
        self.client = rclpy.create_node('flowclas_stress', context=self.context)
        self.lock = threading.Lock()
        self.arrivals: dict[int, float] = {}  # stamp ns -> monotonic arrival
        self.sent: dict[int, float] = {}  # stamp ns -> monotonic publish
        self.values: dict[str, str] = {}
        self.msg_type = CompressedImage if transport == 'compressed' else Image
        self.client.create_subscription(Image, '/stress/anomaly/score', self._on_score, 10)
        self.client.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.pub = self.client.create_publisher(self.msg_type, self.topic, QoSProfile(depth=1000))
        self.spin = SpinThread(self.client, self.context)
        self._stamp = 10**9

    def _on_score(self, msg: object) -> None:
        now = time.monotonic()
        with self.lock:
            self.arrivals[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = now

    def _on_diag(self, msg: object) -> None:
        for status in msg.status:
            if status.name.endswith(self.topic):
                with self.lock:
                    self.values = {kv.key: kv.value for kv in status.values}

    def publish(self, fields: dict) -> int:
        """Publish a message with a fresh stamp; returns the stamp (ns)."""
        msg = self.msg_type(**fields)
        self._stamp += 1
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(self._stamp, 10**9)
        with self.lock:
            self.sent[self._stamp] = time.monotonic()
        self.pub.publish(msg)
        return self._stamp

    def counters(self) -> dict[str, int]:
        with self.lock:
            return {
                k: int(v)
                for k, v in self.values.items()
                if k.startswith(('frames_', 'rejected.', 'skipped.'))
            }

    def warm_up(self, fields: dict) -> None:
        end = time.monotonic() + 120
        while not self.arrivals and time.monotonic() < end:
            self.publish(fields)
            time.sleep(0.3)
        if not self.arrivals:
            raise SystemExit('stress: the node produced no output within 120 s')
        time.sleep(1.0)

    def settled(self, timeout: float = 30.0) -> dict[str, int]:
        """Counters once every frame received has an outcome (and they stopped changing)."""
        end, last = time.monotonic() + timeout, None
        while time.monotonic() < end:
            time.sleep(1.0)
            c = self.counters()
            if (
                c
                and c == last
                and sum(c.get(f'frames_{k}', 0) for k in OUTCOMES) == c['frames_received']
            ):
                return c
            last = c
        return self.counters()

    def latencies_ms(self, stamps: list[int]) -> list[float]:
        with self.lock:
            return [(self.arrivals[s] - self.sent[s]) * 1000 for s in stamps if s in self.arrivals]

    def close(self) -> None:
        self.spin.stop()
        self.client.destroy_node()
        import rclpy

        rclpy.shutdown(context=self.context)
        self.node.terminate()
        self.node.wait(10)


def _rgb_fields(frame: np.ndarray) -> dict:
    from flowclas_ros.core.data.imagemsg import image_fields

    return image_fields(frame, 'rgb8')


def _paced(h: Harness, messages: list[dict], count: int, rate: float) -> list[int]:
    stamps, start = [], time.monotonic()
    for i in range(count):
        stamps.append(h.publish(messages[i % len(messages)]))
        time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    return stamps


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float('nan')


def soak(args: argparse.Namespace, model: Path) -> dict:
    messages = [_rgb_fields(f) for f in make_frames(30, 480, 640)]
    h = Harness(model, args.param)
    try:
        h.warm_up(messages[0])
        rss_start = rss_mb(h.node.pid)
        blocks, last = [], h.counters()
        for block in range(args.frames // 1000):
            stamps = _paced(h, messages, 1000, args.rate)
            time.sleep(1.0)
            lat = h.latencies_ms(stamps)
            now = h.counters()
            delta = {k[7:]: now.get(k, 0) - last.get(k, 0) for k in now if k.startswith('frames_')}
            last = now
            blocks.append(
                {
                    'block': block + 1,
                    'scored': len(lat),
                    'p50_ms': _pct(lat, 50),
                    'p99_ms': _pct(lat, 99),
                    'rss_mb': rss_mb(h.node.pid),
                    'node': delta,
                }
            )
            b = blocks[-1]
            print(
                f'frames {block * 1000 + 1:5d}-{(block + 1) * 1000:5d}: {b["scored"]:4d} scored, '
                f'p50 {b["p50_ms"]:6.1f} ms, p99 {b["p99_ms"]:6.1f} ms, RSS {b["rss_mb"]:.0f} MB; '
                f'node: {delta.get("received", 0)} received, {delta.get("lost", 0)} lost in DDS, '
                f'{delta.get("superseded", 0)} superseded',
                flush=True,
            )
        counters = h.settled()
    finally:
        h.close()
    # Growth after warm-up: from the end of the first block (caches and pools filled) on.
    warm = blocks[0]['rss_mb']
    result = {'rss_start_mb': rss_start, 'rss_end_mb': blocks[-1]['rss_mb'],
              'rss_growth_after_first_block_pct': 100 * (blocks[-1]['rss_mb'] - warm) / warm,
              'p99_last_vs_second_pct': 100 * (blocks[-1]['p99_ms'] / blocks[1]['p99_ms'] - 1),
              'blocks': blocks, 'counters': counters}  # fmt: skip
    growth = result['rss_growth_after_first_block_pct']
    print(
        f'RSS {rss_start:.0f} MB after warm-up, {warm:.0f} MB after 1,000 frames, '
        f'{result["rss_end_mb"]:.0f} MB at the end ({growth:+.1f} %); '
        f'p99 of the last 1,000 vs the second: {result["p99_last_vs_second_pct"]:+.1f} %'
    )
    return result


def overload(args: argparse.Namespace, model: Path) -> dict:
    messages = [_rgb_fields(f) for f in make_frames(30, 480, 640)]
    h = Harness(model, args.param)
    runs = []
    try:
        h.warm_up(messages[0])
        # Capacity from a short paced run at a low rate, then unloaded latency at a quarter of it.
        stamps = _paced(h, messages, 20, 2.0)
        capacity = 1000 / statistics.median(h.latencies_ms(stamps))
        stamps = _paced(h, messages, max(20, int(capacity * 10 / 4)), capacity / 4)
        time.sleep(1.0)
        unloaded = _pct(h.latencies_ms(stamps), 50)
        print(f'capacity about {capacity:.1f} frames/s; unloaded end-to-end p50 {unloaded:.1f} ms')
        for factor in args.factors:
            before = h.settled()
            rate = factor * capacity
            stamps = _paced(h, messages, int(rate * args.seconds), rate)
            after = h.settled()
            lat = h.latencies_ms(stamps)
            delta = {
                k: after.get(k, 0) - before.get(k, 0) for k in after if k.startswith('frames_')
            }
            outcomes = sum(delta.get(f'frames_{k}', 0) for k in OUTCOMES)
            runs.append(
                {
                    'factor': factor,
                    'rate_hz': rate,
                    'sent': len(stamps),
                    'scored': len(lat),
                    'p50_ms': _pct(lat, 50),
                    'p99_ms': _pct(lat, 99),
                    'p50_vs_unloaded': _pct(lat, 50) / unloaded,
                    'counters': delta,
                    'outcomes_add_up': outcomes == delta['frames_received'],
                }
            )
            r = runs[-1]
            print(
                f'{factor:g}x ({rate:.1f} Hz, {args.seconds:g} s): {r["sent"]} sent, '
                f'{delta["frames_received"]} received, {delta["frames_processed"]} processed, '
                f'{delta["frames_superseded"]} superseded, {delta["frames_skipped"]} skipped, '
                f'{delta["frames_rejected"]} rejected, {delta["frames_lost"]} lost; '
                f'p50 {r["p50_ms"]:.1f} ms ({r["p50_vs_unloaded"]:.2f}x unloaded), '
                f'p99 {r["p99_ms"]:.1f} ms; outcomes add up: {r["outcomes_add_up"]}',
                flush=True,
            )
    finally:
        h.close()
    return {'capacity_hz': capacity, 'unloaded_p50_ms': unloaded, 'runs': runs}


def _fuzz_bag(path: Path, topic: str, frames: list, compressed: bool) -> None:
    """The frames in a bag, one per millisecond, with undeserializable messages after them."""
    from flowclas_ros.core.data.bags import COMPRESSED, IMAGE, BagWriter

    msgtype = COMPRESSED if compressed else IMAGE
    with BagWriter(path) as writer:
        for i, (fields, _) in enumerate(frames):
            ns = (i + 1) * 10**6
            writer.write(topic, msgtype, ns, stamp_ns=ns, frame_id='cam', **fields)
        for i, cdr in enumerate((b'', b'\x00\x01\x00\x00', b'\x00\x01\x00\x00\xff\xff')):
            writer.write_raw(topic, msgtype, 10**9 + i, cdr)


def _eval_bag(model: Path, bag: Path, topic: str, out: Path) -> dict:
    import ast

    r = subprocess.run(
        [sys.executable, '-m', 'flowclas_ros.cli.eval', '--model', str(model), '--bag', str(bag),
         '--topic', topic, '--out-bag', str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    prefix = 'skipped undecodable frames:'
    line = next((x for x in r.stdout.splitlines() if x.startswith(prefix)), prefix + ' {}')
    written = next(x for x in r.stdout.splitlines() if x.startswith('wrote '))
    return {
        'rejected': ast.literal_eval(line[len(prefix) :].strip()),
        'scored': int(written.split()[1]),
    }


def fuzz(args: argparse.Namespace, model: Path) -> dict:
    """The same malformed frames published directly, replayed from a bag, and evaluated offline."""
    from flowclas_ros.core.data.malformed import fuzz_stream

    results = {}
    for transport in ('raw', 'compressed'):
        compressed = transport == 'compressed'
        frames = list(fuzz_stream(args.count, seed=1, compressed=compressed))
        want = Counter(reason for _, reason in frames if reason is not None)
        n_good = len(frames) - sum(want.values())
        params = [*args.param, 'process_every_frame:=true', f'max_queue:={args.count}']
        with tempfile.TemporaryDirectory() as tmp:
            for route in ('dds', 'replay'):
                h = Harness(model, params, transport)
                try:
                    good = next(f for f, reason in frames if reason is None)
                    h.warm_up(good)
                    before, rss_before = h.settled(), rss_mb(h.node.pid)
                    if route == 'dds':
                        for fields, _ in frames:
                            h.publish(fields)
                            time.sleep(0.002)
                    else:
                        bag = Path(tmp) / 'fuzz'
                        _fuzz_bag(bag, h.topic, frames, compressed)
                        subprocess.run(
                            [sys.executable, '-m', 'flowclas_ros.cli.replay', str(bag),
                             '--wait-subscribers', '30'],
                            env=os.environ | {'ROS_DOMAIN_ID': str(h.domain)}, check=True,
                            capture_output=True,
                        )  # fmt: skip
                    after, rss_after = h.settled(60.0), rss_mb(h.node.pid)
                    alive = h.node.poll() is None
                finally:
                    h.close()
                got = {
                    r: after.get(f'rejected.{r}', 0) - before.get(f'rejected.{r}', 0) for r in want
                }
                scored = after['frames_processed'] - before['frames_processed']
                results[f'{transport}_{route}'] = {
                    'sent': len(frames), 'bad': sum(want.values()), 'good': n_good,
                    'good_scored': scored, 'rejected_expected': dict(want),
                    'rejected_counted': got, 'node_alive': alive,
                    'rss_before_mb': rss_before, 'rss_after_mb': rss_after,
                }  # fmt: skip
                print(
                    f'{transport} via {route}: {len(frames)} frames, {sum(want.values())} '
                    f'malformed, counted by reason '
                    f'{"exactly" if got == dict(want) else f"WRONG {got} vs {dict(want)}"}; '
                    f'{scored}/{n_good} good frames scored; node alive: {alive}; '
                    f'RSS {rss_before:.0f} -> {rss_after:.0f} MB',
                    flush=True,
                )
            offline = _eval_bag(
                model,
                Path(tmp) / 'fuzz',
                '/stress/image' + ('/compressed' if compressed else ''),
                Path(tmp) / 'out',
            )
        expected = dict(want) | {'corrupt_message': 3}
        results[f'{transport}_eval_bag'] = offline | {'rejected_expected': expected}
        print(
            f'{transport} via flowclas-eval --bag: counted by reason '
            f'{"exactly" if offline["rejected"] == expected else f"WRONG {offline}"} '
            f'(with 3 undeserializable messages); {offline["scored"]}/{n_good} good frames scored',
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_model(Path(tmp) / 'model', 160)
        result = {'soak': soak, 'overload': overload, 'fuzz': fuzz}[args.mode](args, model)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
