# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Bag tools on real bags: a labelled split as rosbag2 (raw and compressed, sqlite3 and MCAP).

The bag path must give exactly the folder path's metrics: same pixels (compressed bags carry
the original JPEG bytes), same model, same evaluation code.
"""

import json
from pathlib import Path

from models import labelled_split, make_model
import numpy as np
import pytest
from tools import run_module as run

from flowclas_ros.core.data.bags import BagFrames, BagWriter, read_images, write_sample_bag
from flowclas_ros.core.data.imagemsg import image_fields
from flowclas_ros.core.data.images import read_rgb
from flowclas_ros.core.data.synthetic import make_surface_dataset
from flowclas_ros.core.flowclas.model import load_model
from flowclas_ros.core.inference import Detector

POOLED = ('ap', 'auroc', 'fpr95', 'aupro', 'n_images', 'n_pos_pixels', 'n_neg_pixels')


def evaluate(*args: str, json_path: Path) -> dict:
    r = run('flowclas_ros.cli.eval', *args, '--json', str(json_path))
    assert r.returncode == 0, r.stderr
    return json.loads(json_path.read_text())


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp('model') / 'm64', 64)


@pytest.fixture(scope='module')
def split(tmp_path_factory) -> Path:
    return labelled_split(tmp_path_factory.mktemp('split'), per_class=8)


@pytest.fixture(scope='module')
def folder_metrics(model, split, tmp_path_factory):
    out = tmp_path_factory.mktemp('folder') / 'm.json'
    return evaluate('--model', str(model), '--data', str(split), json_path=out)


@pytest.mark.slow
@pytest.mark.parametrize(
    ('compressed', 'storage'), [(False, 'sqlite3'), (True, 'mcap'), (True, 'sqlite3')]
)
def test_bag_metrics_equal_folder_metrics(
    model, split, folder_metrics, tmp_path, compressed, storage
):
    bag = tmp_path / 'val_bag'
    n = write_sample_bag(split, bag, compressed=compressed, storage=storage)
    assert n == folder_metrics['n_images'] == 48
    topic = '/camera/image_raw' + ('/compressed' if compressed else '')
    out_bag = tmp_path / 'out'
    by_order = evaluate(
        *('--model', str(model), '--bag', str(bag), '--topic', topic),
        *('--masks', str(split / 'masks'), '--out-bag', str(out_bag), '--storage', storage),
        json_path=tmp_path / 'order.json',
    )
    for key in POOLED:
        assert by_order[key] == folder_metrics[key], key
    assert by_order['per_class'] == folder_metrics['per_class']
    assert by_order['per_image'] == [
        dict(row, stamp_ns=other['stamp_ns'])
        for row, other in zip(folder_metrics['per_image'], by_order['per_image'], strict=True)
    ]

    # The node's outputs, stamped like the input frames, one per frame.
    stamps = [m.stamp_ns for m in read_images(bag, topic)]
    for name in ('score', 'heatmap', 'mask'):
        assert [m.stamp_ns for m in read_images(out_bag, f'/anomaly/{name}')] == stamps
    first = next(read_images(out_bag, '/anomaly/score'))
    detector = Detector(load_model(model))
    expected = detector(read_rgb(sorted((split / 'images').iterdir())[0]))
    score = np.frombuffer(first.msg.data, '<f4').reshape(expected.shape)
    np.testing.assert_allclose(score, expected, atol=1e-5)

    if storage == 'sqlite3' and not compressed:
        return
    # Ground truth from the bag's own mask topic, matched by stamp.
    by_stamp = evaluate(
        *('--model', str(model), '--bag', str(bag), '--topic', topic),
        *('--mask-topic', '/camera/truth', '--out-bag', str(tmp_path / 'out2')),
        json_path=tmp_path / 'stamp.json',
    )
    for key in POOLED:
        assert by_stamp[key] == folder_metrics[key], key


@pytest.fixture(scope='module')
def surface(tmp_path_factory):
    return make_surface_dataset(
        tmp_path_factory.mktemp('surface'), n_train=12, n_test_per_class=2, size=(64, 64)
    )


def test_corrupt_frames_are_counted_and_skipped(model, surface, tmp_path):
    bag = tmp_path / 'corrupt'
    png = (surface / 'test' / 'images' / 'scratch_000.png').read_bytes()
    with BagWriter(bag) as writer:
        for i, data in enumerate([png, b'not an image', png[: len(png) // 3], png]):
            stamp = {'stamp_ns': 10**9 * (i + 1), 'frame_id': 'cam', 'log_ns': 10**9 * (i + 1)}
            fields = {'format': 'png', 'data': data}
            writer.write('/cam/compressed', 'sensor_msgs/msg/CompressedImage', **stamp, **fields)
    r = run(
        'flowclas_ros.cli.eval',
        *('--model', str(model), '--bag', str(bag), '--topic', '/cam/compressed'),
    )
    assert r.returncode == 0, r.stderr
    assert 'wrote 2 frames' in r.stdout
    assert "{'corrupt_compressed': 2}" in r.stdout
    assert len(list(read_images(Path(f'{bag}_anomaly'), '/anomaly/mask'))) == 2


@pytest.mark.slow
def test_bag_errors_are_one_line(model, split, tmp_path):
    bag = tmp_path / 'b'
    write_sample_bag(split, bag, limit=2)
    cases = [
        (['--bag', str(tmp_path / 'nope'), '--topic', '/x'], 'does not exist'),
        (['--bag', str(bag), '--topic', '/x'], 'image topics: /camera/image_raw, /camera/truth'),
        (
            ['--bag', str(bag), '--topic', '/camera/image_raw', '--masks', str(split / 'masks')],
            '48 masks',
        ),
        (['--bag', str(bag)], 'needs one of --topic'),
    ]
    for args, words in cases:
        r = run('flowclas_ros.cli.eval', '--model', str(model), *args)
        assert r.returncode == 2, r.stderr
        assert words in r.stderr
        assert 'Traceback' not in r.stderr


def test_train_from_a_bag(surface, tmp_path):
    bag = tmp_path / 'normal'
    write_sample_bag(surface / 'train', bag, compressed=True, storage='mcap')
    model = tmp_path / 'from_bag'
    r = run(
        'flowclas_ros.cli.train',
        *('--bag', str(bag), '--topic', '/camera/image_raw/compressed', '--every', '2'),
        *('--out', str(model), '--epochs', '1', '--input-size', '64', '64', '--quiet'),
    )
    assert r.returncode == 0, r.stderr
    assert 'training on 6 frames' in r.stdout
    detector = Detector(load_model(model))
    scores = detector(read_rgb(surface / 'test' / 'images' / 'stain_000.png'))
    assert scores.shape == (64, 64)
    assert np.isfinite(scores).all()


def test_truncated_recorded_scores_are_counted(tmp_path):
    bag = tmp_path / 'recorded'
    with BagWriter(bag) as writer:
        for i in range(3):
            fields = image_fields(np.full((4, 6), 0.5, np.float32), '32FC1')
            if i == 1:
                fields['data'] = fields['data'][:10]
            stamp = {'stamp_ns': i + 1, 'frame_id': 'cam', 'log_ns': i + 1}
            writer.write('/score', 'sensor_msgs/msg/Image', **stamp, **fields)
            writer.write_image('/truth', np.zeros((4, 6), np.uint8), 'mono8', **stamp)
    frames = BagFrames(bag, '/score', mask_topic='/truth', scores=True)
    assert [f.stamp_ns for f in frames()] == [1, 3]
    assert frames.rejected == {'truncated': 1}


def test_undeserializable_messages_are_counted(model, tmp_path):
    bag = tmp_path / 'garbled'
    frame = np.zeros((64, 64, 3), np.uint8)
    with BagWriter(bag) as writer:
        writer.write_image('/cam', frame, 'rgb8', 1, 'cam', 1)
        writer.write_raw('/cam', 'sensor_msgs/msg/Image', 2, b'\x00\x01\x00\x00garbage')
        writer.write_image('/cam', frame, 'rgb8', 3, 'cam', 3)
    r = run('flowclas_ros.cli.eval', '--model', str(model), '--bag', str(bag), '--topic', '/cam')
    assert r.returncode == 0, r.stderr
    assert 'wrote 2 frames' in r.stdout
    assert "{'corrupt_message': 1}" in r.stdout
