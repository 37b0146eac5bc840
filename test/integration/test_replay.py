# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Bag -> flowclas-replay -> live node over DDS -> recorder -> metrics, against offline ones."""

import json
import os
from pathlib import Path
import subprocess

from models import labelled_split, make_model
import numpy as np
import pytest
from rosnode import ENV, NodeProcess
from tools import run_module

from flowclas_ros.core.data.bags import BagWriter, read_images, read_raw, write_sample_bag

pytestmark = pytest.mark.ros


def run(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_module(module, *args, timeout=timeout, env=dict(os.environ) | ENV)


def metrics(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / f'{name}.json'
    r = run('flowclas_ros.cli.eval', *args, '--json', str(out))
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
def test_replayed_bag_through_the_live_node_matches_offline(tmp_path):
    # Four frames of each class in two sizes: normal and anomalous pixels, PNG and JPEG.
    split = labelled_split(tmp_path, per_class=4)
    bag = tmp_path / 'run'
    n = write_sample_bag(split, bag, topic='/rover/image', truth_topic='/rover/truth', fps=5)
    assert n == 24
    model = make_model(tmp_path / 'model', 64)

    node = NodeProcess(
        tmp_path,
        'rover',
        model_dir=str(model),
        process_every_frame=True,
        max_queue=50,
    )
    recorded = tmp_path / 'recorded'
    try:
        r = run(
            'flowclas_ros.cli.replay',
            *(str(bag), '--wait-subscribers', '60', '--idle', '20'),
            *(
                '--record',
                str(recorded),
                '--record-topics',
                '/rover/anomaly/score',
                '/rover/truth',
            ),
        )
    finally:
        code = node.stop()
    assert r.returncode == 0, r.stderr + node.text()
    assert code in (0, -15), node.text()
    assert "'/rover/anomaly/score': 24" in r.stdout, r.stdout + node.text()

    stamps = [m.stamp_ns for m in read_images(bag, '/rover/image')]
    assert [m.stamp_ns for m in read_images(recorded, '/rover/anomaly/score')] == stamps

    live = metrics(
        tmp_path,
        'live',
        *('--model', str(model), '--bag', str(recorded)),
        *('--scores-topic', '/rover/anomaly/score', '--mask-topic', '/rover/truth'),
    )
    offline = metrics(
        tmp_path,
        'offline',
        *('--model', str(model), '--bag', str(bag), '--topic', '/rover/image'),
        *('--mask-topic', '/rover/truth'),
    )
    assert live['n_images'] == offline['n_images'] == 24
    assert live['n_pos_pixels'] == offline['n_pos_pixels'] > 0
    for key in ('ap', 'auroc', 'fpr95', 'aupro'):
        assert abs(live[key] - offline[key]) <= 1e-3, (key, live[key], offline[key])


def _ros1_bag(path: Path, frames: list[np.ndarray]) -> None:
    """A ROS 1 bag on /cam: the frames as rgb8 Images, and a truncated message after the first."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    types = store.types
    with Writer(path) as writer:
        conn = writer.add_connection('/cam', 'sensor_msgs/msg/Image', typestore=store)
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            header = types['std_msgs/msg/Header'](
                seq=i, stamp=types['builtin_interfaces/msg/Time'](sec=i, nanosec=0), frame_id='c'
            )
            msg = types['sensor_msgs/msg/Image'](
                header=header,
                height=h,
                width=w,
                encoding='rgb8',
                is_bigendian=0,
                step=3 * w,
                data=frame.reshape(-1),
            )
            raw = store.serialize_ros1(msg, 'sensor_msgs/msg/Image')
            writer.write(conn, (2 * i + 1) * 10**8, raw)
            if i == 0:
                writer.write(conn, 2 * 10**8, raw[:20])


def _ros2_bag(path: Path, frames: list[np.ndarray]) -> None:
    with BagWriter(path) as writer:
        for i, frame in enumerate(frames):
            writer.write_image('/cam', frame, 'rgb8', i * 10**9, 'c', (2 * i + 1) * 10**8)
            if i == 0:
                writer.write_raw('/cam', 'sensor_msgs/msg/Image', 2 * 10**8, b'\x00\x01\x00\x00x')


@pytest.mark.slow
@pytest.mark.parametrize('make_bag', [_ros1_bag, _ros2_bag], ids=['ros1', 'ros2'])
def test_replay_skips_and_counts_messages_that_cannot_be_deserialized(tmp_path, make_bag):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (6, 8, 3), dtype=np.uint8) for _ in range(2)]
    bag = tmp_path / ('in.bag' if make_bag is _ros1_bag else 'in')
    make_bag(bag, frames)

    skipped: dict[str, int] = {}
    assert len(list(read_raw(bag, skipped=skipped))) == 2
    assert skipped == {'/cam': 1}
    # The decoding path that flowclas-eval and flowclas-train take.
    decoded = [m.rgb() for m in read_images(bag, '/cam') if m.msg is not None]
    assert len(decoded) == 2
    for a, b in zip(decoded, frames, strict=True):
        np.testing.assert_array_equal(a, b)

    # The replay node records its own publications: ROS 1 data arrives as valid ROS 2 CDR.
    recorded = tmp_path / 'recorded'
    r = run(
        'flowclas_ros.cli.replay',
        *(str(bag), '--wait-subscribers', '10', '--idle', '5'),
        *('--record', str(recorded), '--record-topics', '/cam'),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "skipped messages that cannot be deserialized: {'/cam': 1}" in r.stdout
    got = [m.rgb() for m in read_images(recorded, '/cam')]
    assert len(got) == 2
    for a, b in zip(got, frames, strict=True):
        np.testing.assert_array_equal(a, b)
