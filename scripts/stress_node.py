# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark: flowclas_node under a long run, overload, malformed traffic and restarts, over DDS.

    .venv/bin/python scripts/stress_node.py soak [--frames 10000] [--rate 30] [--out DIR]
    .venv/bin/python scripts/stress_node.py overload [--seconds 60] [--factors 2 4]
    .venv/bin/python scripts/stress_node.py fuzz [--count 1000]
    .venv/bin/python scripts/stress_node.py cycles [--count 100] [--out DIR]

- soak: 640x480 rgb8 frames at a camera rate; per 1,000 frames, the share the node received,
  the end-to-end latency (publish to score arrival) p50/p99 and the node's RSS, written as
  ``soak.csv`` and plotted as ``soak.png`` in ``--out``.
- overload: first the node's unloaded latency and capacity (frames at a quarter of what it can
  score), then publishing at each factor times its capacity; latency p50 against the unloaded
  one, and whether every frame received has exactly one outcome.
- fuzz: random malformed Image and CompressedImage messages (``core.data.malformed``), four in
  five, among good ones, published directly, replayed from a bag by ``flowclas-replay`` and
  evaluated offline by ``flowclas-eval --bag``; every bad one must be counted under its reason,
  every good one scored.
- cycles: start the node, wait for its first score, Ctrl-C it; every exit code or signal is
  recorded, and the log of every run that did not exit 0 is kept in ``--out``.

Both the harness (the camera) and the node get the Fast DDS profile the launch file gives the
node (``--fastdds-profile`` to change it). The default model is EfficientNet-Lite0 at 160x160
(fixed) with an untrained flow, small enough to keep up with 30 Hz on a 2-core CPU with one
torch thread (``-p cpu_threads:=1``); its cost does not depend on the flow's weights.
"""

from __future__ import annotations

import argparse
from collections import Counter
import os
from pathlib import Path
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench_node import add_fastdds_profile, default_model, make_frames, use_fastdds_profile
import numpy as np

from flowclas_ros.core.jsonio import write_json

OUTCOMES = ('processed', 'superseded', 'skipped', 'rejected')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('mode', choices=('soak', 'overload', 'fuzz', 'cycles'))
    p.add_argument('--model', help='model directory (default: untrained Lite0, 160x160 fixed)')
    p.add_argument('--frames', type=int, default=10000, help='soak: frames to publish')
    p.add_argument('--rate', type=float, default=30.0, help='soak: publish rate, Hz')
    p.add_argument('--seconds', type=float, default=60.0, help='overload: seconds per factor')
    p.add_argument('--factors', type=float, nargs='+', default=[2.0, 4.0])
    p.add_argument(
        '--count', type=int, help='fuzz: messages per transport (1000); cycles: cycles (100)'
    )
    p.add_argument('--out', help='soak: CSV and plot here; cycles: logs of unclean exits here')
    p.add_argument(
        '-p', '--param', action='append', default=[], help='node parameter NAME:=VALUE (repeat)'
    )
    add_fastdds_profile(p)
    p.add_argument('--json', help='also write the numbers here')
    return p.parse_args(argv)


def rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


class Harness:
    """The node in its own process, and a client node that publishes and listens."""

    def __init__(
        self, model: Path, params: list[str], transport: str = 'raw', log: Path | None = None
    ) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CompressedImage, Image

        from flowclas_ros.ros.spin import SpinThread

        self.domain = 150 + os.getpid() % 80
        self._log = log.open('w') if log else None
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
            stdout=self._log,
            stderr=subprocess.STDOUT if log else None,
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
        if self._log:
            self._log.close()


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


def _new_dir(path: Path) -> Path:
    """A folder for this run's files: an earlier run's results are never overwritten."""
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise SystemExit(f'{path} is not empty: give --out a new folder')
    return path


SOAK_COLUMNS = ('block', 'sent', 'received', 'lost', 'superseded', 'delivery_pct', 'p50_ms',
                'p99_ms', 'rss_mb')  # fmt: skip


def soak(args: argparse.Namespace, model: Path) -> dict:
    messages = [_rgb_fields(f) for f in make_frames(30, 480, 640)]
    out = _new_dir(Path(args.out)) if args.out else None
    if out:
        (out / 'soak.csv').write_text(','.join(SOAK_COLUMNS) + '\n')
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
            b = {'block': block + 1, 'sent': len(stamps), 'received': delta.get('received', 0),
                 'lost': delta.get('lost', 0), 'superseded': delta.get('superseded', 0),
                 'delivery_pct': 100 * delta.get('received', 0) / len(stamps),
                 'p50_ms': _pct(lat, 50), 'p99_ms': _pct(lat, 99), 'rss_mb': rss_mb(h.node.pid),
                 'scored': len(lat), 'node': delta}  # fmt: skip
            blocks.append(b)
            if out:
                with (out / 'soak.csv').open('a') as f:
                    f.write(','.join(f'{b[c]:.1f}' if isinstance(b[c], float) else str(b[c])
                                     for c in SOAK_COLUMNS) + '\n')  # fmt: skip
            print(
                f'frames {block * 1000 + 1:6d}-{(block + 1) * 1000:6d}: {b["scored"]:4d} scored, '
                f'p50 {b["p50_ms"]:6.1f} ms, p99 {b["p99_ms"]:6.1f} ms, RSS {b["rss_mb"]:.0f} MB; '
                f'node: {b["received"]} received, {b["lost"]} lost in DDS, '
                f'{b["superseded"]} superseded',
                flush=True,
            )
        counters = h.settled()
    finally:
        h.close()
    # Growth after warm-up: from the end of the first block (caches and pools filled) on.
    warm = blocks[0]['rss_mb']
    result = {'rss_start_mb': rss_start, 'rss_end_mb': blocks[-1]['rss_mb'],
              'rss_growth_after_first_block_pct': 100 * (blocks[-1]['rss_mb'] - warm) / warm,
              'p99_last_vs_first_pct': 100 * (blocks[-1]['p99_ms'] / blocks[0]['p99_ms'] - 1),
              'min_block_delivery_pct': min(b['delivery_pct'] for b in blocks),
              'blocks': blocks, 'counters': counters}  # fmt: skip
    growth = result['rss_growth_after_first_block_pct']
    print(
        f'RSS {rss_start:.0f} MB after warm-up, {warm:.0f} MB after 1,000 frames, '
        f'{result["rss_end_mb"]:.0f} MB at the end ({growth:+.1f} %); '
        f'p99 of the last 1,000 vs the first: {result["p99_last_vs_first_pct"]:+.1f} %; '
        f'lowest delivery in a block: {result["min_block_delivery_pct"]:.1f} %'
    )
    if out:
        plot_soak(blocks, out / 'soak.png')
    return result


def plot_soak(blocks: list[dict], path: Path) -> None:
    """Delivery, latency and RSS per 1,000 frames: a person should see three flat lines."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    x = [b['block'] * 1000 for b in blocks]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(x, [b['delivery_pct'] for b in blocks])
    axes[0].set_ylim(0, 105)
    axes[0].set_ylabel('delivered, %')
    axes[1].plot(x, [b['p50_ms'] for b in blocks], label='p50')
    axes[1].plot(x, [b['p99_ms'] for b in blocks], label='p99')
    axes[1].set_ylim(bottom=0)
    axes[1].set_ylabel('end to end, ms')
    axes[1].legend()
    axes[2].plot(x, [b['rss_mb'] for b in blocks])
    axes[2].set_ylim(bottom=0)
    axes[2].set_ylabel('node RSS, MB')
    axes[2].set_xlabel('frames published')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cycles(args: argparse.Namespace, model: Path) -> dict:
    """Start the node, see it score a frame, Ctrl-C it; every exit code and signal recorded."""
    frame = _rgb_fields(make_frames(1, 480, 640)[0])
    out = _new_dir(Path(args.out or tempfile.mkdtemp(prefix='flowclas-cycles-')))
    runs = []
    for i in range(args.count or 100):
        log = out / f'cycle_{i:03d}.log'
        start = time.monotonic()
        h = Harness(model, args.param, log=log)
        try:
            try:
                h.warm_up(frame)
                up_s = time.monotonic() - start
            except SystemExit:  # no output: record how the node ended, go on
                up_s = float('nan')
            h.node.send_signal(signal.SIGINT)
            try:
                code: int | str = h.node.wait(30)
            except subprocess.TimeoutExpired:
                h.node.kill()
                code = 'hung'
        finally:
            h.close()
        exit_text = _describe_exit(code)
        runs.append({'cycle': i, 'up_s': round(up_s, 2), 'exit': exit_text})
        if code == 0:
            log.unlink()
        print(f'cycle {i + 1:3d}: scored after {up_s:.1f} s, {exit_text}', flush=True)
    result = {'cycles': len(runs), 'exits': dict(Counter(r['exit'] for r in runs)), 'runs': runs,
              'logs': str(out)}  # fmt: skip
    print(f'{len(runs)} cycles, exits: {result["exits"]} (logs of the others in {out})')
    return result


def _describe_exit(code: int | str) -> str:
    if isinstance(code, int) and code < 0:
        return f'signal {signal.Signals(-code).name}'
    return f'exit {code}'


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
    args.count = args.count or 1000
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
    use_fastdds_profile(args.fastdds_profile)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_model(Path(tmp) / 'model', 160)
        modes = {'soak': soak, 'overload': overload, 'fuzz': fuzz, 'cycles': cycles}
        result = modes[args.mode](args, model)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
