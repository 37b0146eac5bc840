# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Segments from another node: label images on <camera>/segments refine a node's scores.

A publisher stands in for a segmenter (SAM or any other): it sends a label image under a
frame's stamp, and the node's ``anomaly/score`` for that frame must equal the core's scores
refined over the same labels; frames without labels, or with labels that cannot be used, go
out unrefined and are counted.
"""

import time

from imagemsgs import encode, pack
from models import make_model, smooth_image
import numpy as np
import pytest
from rosnode import next_stamp, start_node, wait_for
from sensor_msgs.msg import Image

from flowclas_ros.core.data.imagemsg import image_pixels
from flowclas_ros.core.inference import Detector

pytestmark = pytest.mark.ros
H, W = 48, 64
STATUS = 'flowclas: /seg/cam/image'


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp('model') / 'm64', 64)


@pytest.fixture(scope='module')
def node(tmp_path_factory, client, model_dir):
    params = {'model_dir': str(model_dir), 'cameras': ['cam'], 'segments': 'topic'}
    node = start_node(
        tmp_path_factory.mktemp('logs'), client, 'seg', 'cam/image', diagnostics_period_s=0.2,
        **params,
    )  # fmt: skip
    yield node
    assert node.stop() == 0, node.text()


@pytest.fixture(scope='module')
def io(client, node):
    image = client.publisher('/seg/cam/image', Image)
    segments = client.publisher('/seg/cam/segments', Image)
    scores = client.subscribe('/seg/cam/anomaly/score', Image)
    return image, segments, scores


def _labels(h=H, w=W):
    """Four quadrants, the last one left out (0 = no segment)."""
    labels = np.zeros((h, w), np.uint16)
    labels[: h // 2, : w // 2], labels[: h // 2, w // 2 :], labels[h // 2 :, : w // 2] = 1, 2, 3
    return labels


def _score(client, io, rgb, labels_msg, timeout=30.0):
    """The score of ``rgb`` sent under a fresh stamp, after its labels (if any) have arrived."""
    image, segments, scores = io
    stamp = next_stamp()
    frame = encode(rgb, 'rgb8')
    frame.header.stamp.sec = stamp
    if labels_msg is not None:
        labels_msg.header.stamp.sec = stamp
        seen = int(_values(client).get('segments.received', '0'))
        wait_for(
            lambda: (
                segments.publish(labels_msg)
                or int(_values(client).get('segments.received', '0')) > seen
            ),
            timeout,
            f'the labels of frame {stamp} at the node',
        )
    end, last = time.monotonic() + timeout, 0.0
    while time.monotonic() < end:
        if time.monotonic() - last > 0.5:  # again until discovery is done
            image.publish(frame)
            last = time.monotonic()
        msg = next((m for m in scores if m.header.stamp.sec == stamp), None)
        if msg is not None:
            return image_pixels(msg)[..., 0]
        time.sleep(0.02)
    raise AssertionError(f'no score for frame {stamp}')


def _values(client):
    return client.diagnostics(STATUS)[2]


def test_labels_on_the_segments_topic_refine_the_scores_as_the_core_does(client, io, model_dir):
    rgb = smooth_image(H, W, seed=3)
    labels = _labels()
    detector = Detector.load(model_dir, device='cpu')
    refined = detector.detect(rgb, False, lambda _: labels)[0]
    plain = detector(rgb)
    assert not np.allclose(refined, plain, atol=1e-4)  # the labels change the scores

    got = _score(client, io, rgb, pack(labels[..., None], 'mono16'))
    np.testing.assert_allclose(got, refined, atol=1e-5)
    # Labels at half the frame's size are scaled to it.
    half = _labels(H // 2, W // 2)
    got = _score(client, io, rgb, pack(half[..., None].astype(np.uint8), '8UC1'))
    expected = detector.detect(rgb, False, lambda _: half)[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    values = wait_for(
        lambda: int((v := _values(client)).get('segments.matched', '0')) >= 2 and v,
        10,
        'two matched label images in diagnostics',
    )
    assert float(values['stage.refine_ms']) >= 0


def test_frames_without_usable_labels_go_out_unrefined_and_are_counted(client, io, model_dir):
    rgb = smooth_image(H, W, seed=4)
    plain = Detector.load(model_dir, device='cpu')(rgb)
    before = _values(client)

    # No labels for this stamp.
    np.testing.assert_allclose(_score(client, io, rgb, None), plain, atol=1e-5)
    wait_for(
        lambda: (
            int(_values(client).get('segments.unmatched', '0'))
            > int(before.get('segments.unmatched', '0'))
        ),
        10,
        'an unmatched frame in diagnostics',
    )
    # Labels of another aspect ratio (not this camera's), and labels in a colour encoding.
    wide = pack(_labels(H, 2 * W)[..., None], 'mono16')
    np.testing.assert_allclose(_score(client, io, rgb, wide), plain, atol=1e-5)
    colour = encode(smooth_image(H, W, seed=5), 'rgb8')
    np.testing.assert_allclose(_score(client, io, rgb, colour), plain, atol=1e-5)
    values = wait_for(
        lambda: (
            (v := _values(client)).get('warning.segments_size')
            and v.get('warning.segments_encoding')
            and v
        ),
        10,
        'both rejections in diagnostics',
    )
    assert int(values['segments.received']) >= 2
    assert 'rgb8' in values['last_error'] or 'colour frame' in values['last_error']
