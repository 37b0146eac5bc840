# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-replay: play a bag live with its original timing, and record what comes back.

A stand-in for ``ros2 bag play`` / ``ros2 bag record`` where the ROS 2 CLI is not installed
(a pip-only environment), built on rclpy and ``rosbags``. Messages are published as the bag
holds them (serialized, never decoded), so any message type whose Python package is installed
replays. With ``--record`` the outputs of a running node are written to a new bag until each
recorded topic has as many messages as image frames were played, or nothing arrived for
``--idle`` seconds.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
import queue
import sys
import time
from typing import Any

from flowclas_ros.cli.common import run_tool
from flowclas_ros.core.data.bags import COMPRESSED, IMAGE, BagWriter, bag_topics, read_raw
from flowclas_ros.core.errors import DataError


def message_class(msgtype: str) -> type:
    """``sensor_msgs/msg/Image`` -> the rclpy message class (its package must be installed)."""
    package, _, name = msgtype.rpartition('/msg/')
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except (ImportError, AttributeError) as exc:
        raise DataError(f'message type {msgtype} is not installed for rclpy') from exc


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='flowclas-replay', description=__doc__)
    p.add_argument('bag', help='rosbag2 (sqlite3 or MCAP) or ROS 1 bag')
    p.add_argument('--topics', nargs='+', help='topics to play (default: all)')
    p.add_argument('--rate', type=float, default=1.0, help='playback speed factor')
    p.add_argument('--loop', action='store_true', help='play again and again until Ctrl-C')
    p.add_argument('--clock', action='store_true', help='publish /clock (for use_sim_time)')
    p.add_argument(
        '--wait-subscribers',
        type=float,
        default=10.0,
        metavar='S',
        help='wait up to S seconds for a subscriber on every image topic before playing',
    )
    p.add_argument(
        '--delay',
        type=float,
        default=1.0,
        metavar='S',
        help='then wait S seconds more, so the nodes also discover the recorder',
    )
    p.add_argument('--depth', type=int, default=100, help='publisher queue depth (reliable)')
    p.add_argument('--record', help='write these topics, as they arrive, to this new bag')
    p.add_argument('--record-topics', nargs='+', default=[], help='topics for --record')
    p.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    p.add_argument('--idle', type=float, default=5.0, help='stop recording after S quiet seconds')
    return p


class Recorder:
    """Raw subscriptions whose messages go into a bag, stamped with their arrival time.

    Callbacks only queue; the playing thread writes (sqlite3 connections stay in the thread
    that made them).
    """

    def __init__(self, node: Any, path: str, topics: list[str], storage: str, qos: Any) -> None:
        self.counts = dict.fromkeys(topics, 0)
        self.last = time.monotonic()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer = BagWriter(path, storage)
        self._node = node
        self._qos = qos
        self._pending = list(topics)
        self._subscriptions: list[Any] = []

    @property
    def connected(self) -> bool:
        """Every recorded topic is subscribed to and has a publisher."""
        return not self._pending and all(s.get_publisher_count() for s in self._subscriptions)

    def service(self) -> None:
        """Subscribe to recorded topics that have appeared; write what has arrived."""
        if self._pending:
            types = dict(self._node.get_topic_names_and_types())
            for topic in [t for t in self._pending if t in types]:
                self._subscribe(topic, types[topic][0])
                self._pending.remove(topic)
        while not self._queue.empty():
            topic, msgtype, arrival_ns, data = self._queue.get_nowait()
            self._writer.write_raw(topic, msgtype, arrival_ns, data)
            self.counts[topic] += 1
            self.last = time.monotonic()

    def _subscribe(self, topic: str, msgtype: str) -> None:
        def arrived(data: bytes) -> None:
            self._queue.put((topic, msgtype, time.time_ns(), data))

        self._subscriptions.append(
            self._node.create_subscription(
                message_class(msgtype), topic, arrived, self._qos, raw=True
            )
        )

    def close(self) -> None:
        self.service()
        self._writer.close()


def play(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from flowclas_ros.ros.spin import SpinThread

    topics = _chosen_topics(args.bag, args.topics)
    rclpy.init(args=sys.argv)
    node = rclpy.create_node('flowclas_replay')
    qos = QoSProfile(depth=args.depth, reliability=ReliabilityPolicy.RELIABLE)
    publishers = {
        t: node.create_publisher(message_class(m), t, qos) for t, (m, _) in topics.items()
    }
    recorder = None
    if args.record:
        recorder = Recorder(node, args.record, args.record_topics, args.storage, qos)
    spin = SpinThread(node)
    try:
        image_topics = [t for t, (m, _) in topics.items() if m in (IMAGE, COMPRESSED)]
        _wait_for_peers([publishers[t] for t in image_topics], recorder, args.wait_subscribers)
        time.sleep(args.delay)
        tick = _clock(node) if args.clock else None
        played, skipped = 0, {}
        while True:
            played += _play_once(
                args.bag, list(topics), publishers, tick, args.rate, recorder, skipped
            )
            if not args.loop:
                break
        print(f'played {played} messages from {args.bag}')
        if skipped:
            print(f'skipped messages that cannot be deserialized: {skipped}')
        if recorder is not None:
            # What a node makes one output for: the frames played of the busiest image topic.
            frames = max((topics[t][1] - skipped.get(t, 0) for t in image_topics), default=0)
            _drain(recorder, frames, args.idle)
            print(f'recorded {recorder.counts} to {args.record}')
    finally:
        spin.stop()
        if recorder is not None:
            recorder.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _chosen_topics(bag: str, chosen: list[str] | None) -> dict[str, tuple[str, int]]:
    """The bag's topics to play (all, or those named), each with its type and count."""
    topics = bag_topics(bag)
    if chosen:
        missing = sorted(set(chosen) - set(topics))
        if missing:
            raise DataError(f'{", ".join(missing)} not in {bag}; topics: {", ".join(topics)}')
        topics = {t: topics[t] for t in chosen}
    if not any(count for _, count in topics.values()):
        raise DataError(f'nothing to play in {bag}')
    return topics


def _wait_for_peers(publishers: list[Any], recorder: Any, timeout_s: float) -> None:
    """Wait for a subscriber on every image topic and, when recording, the recorded outputs.

    A node skips outputs nobody subscribes to, so the recorder must be matched too.
    """

    def ready() -> bool:
        if recorder is not None:
            recorder.service()
        subscribed = all(p.get_subscription_count() for p in publishers)
        return subscribed and (recorder is None or recorder.connected)

    deadline = time.monotonic() + timeout_s
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not ready():
        print(f'no subscriber or recorded publisher after {timeout_s} s; playing')


def _drain(recorder: Any, frames: int, idle_s: float) -> None:
    """Record until every output has ``frames`` messages or none came for ``idle_s``."""
    while time.monotonic() - recorder.last < idle_s:
        recorder.service()
        if min(recorder.counts.values()) >= frames:
            break
        time.sleep(0.05)


def _clock(node: Any) -> Any:
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    publisher = node.create_publisher(Clock, '/clock', 10)

    def tick(ns: int) -> None:
        publisher.publish(Clock(clock=Time(sec=ns // 10**9, nanosec=ns % 10**9)))

    return tick


def _play_once(
    bag: str,
    topics: list[str],
    publishers: dict,
    tick: Any,
    rate: float,
    recorder: Any,
    skipped: dict[str, int],
) -> int:
    """Publish every message at its bag time (scaled by ``rate``); returns how many."""
    start_bag, start_wall, sent = None, time.monotonic(), 0
    for topic, _, log_ns, data in read_raw(bag, topics, skipped):
        start_bag = log_ns if start_bag is None else start_bag
        delay = start_wall + (log_ns - start_bag) / 1e9 / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if recorder is not None:
            recorder.service()
        if tick is not None:
            tick(log_ns)
        publishers[topic].publish(bytes(data))
        sent += 1
    return sent


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.rate <= 0:
        parser().error('--rate must be positive')
    if args.record and not args.record_topics:
        parser().error('--record needs --record-topics')
    if args.record and Path(args.record).exists():
        parser().error(f'{args.record} exists; bags are never overwritten')
    return run_tool('flowclas-replay', lambda: play(args))


if __name__ == '__main__':
    raise SystemExit(main())
