# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Bag -> flowclas-replay -> live node over DDS -> recorder -> metrics, against offline ones."""

import json
import os
from pathlib import Path
import subprocess
import sys

from models import make_model
from rosnode import ENV, NodeProcess

from flowclas_ros.core.data.bags import read_images, write_sample_bag

VAL = Path(__file__).resolve().parents[3] / 'shared' / 'data' / 'magnetic_tile' / 'val'
CLASSES = ('blowhole', 'break', 'crack', 'fray', 'uneven', 'free')


def run(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ) | ENV,
    )


def metrics(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / f'{name}.json'
    r = run('flowclas_ros.cli.eval', *args, '--json', str(out))
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def test_replayed_bag_through_the_live_node_matches_offline(tmp_path):
    # Four frames of every class, so both normal and anomalous pixels are there.
    split = tmp_path / 'split'
    for sub in ('images', 'masks'):
        (split / sub).mkdir(parents=True)
    for cls in CLASSES:
        for image in sorted((VAL / 'images').glob(f'{cls}_*'))[:4]:
            (split / 'images' / image.name).symlink_to(image)
            mask = VAL / 'masks' / f'{image.stem}.png'
            (split / 'masks' / mask.name).symlink_to(mask)
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
            'flowclas_ros.ros.replay',
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
