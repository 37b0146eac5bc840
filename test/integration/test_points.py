# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""anomaly/points, anomaly/regions and their markers from a node process over real DDS.

A publisher sends colour and registered depth of a known scene (a plane at 2 m, a nearer
patch); an independent subscriber decodes the PointCloud2 bytes with NumPy alone and checks
every point against the pinhole model. ``threshold: 0.0`` marks every pixel, so every pixel
with a valid depth in range (after the stride) must come back as a point.
"""

import time

from imagemsgs import encode, pack
from models import make_model, smooth_image
import numpy as np
import pytest
from rosnode import next_stamp, start_node, wait_for
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

pytestmark = pytest.mark.ros
OK, WARN = 0, 1
H, W = 48, 64
FX = FY = 50.0
CX, CY = 31.5, 23.5
STATUS = 'flowclas: /geo/cam/image'
FRAME = 'camera_color_optical_frame'


@pytest.fixture(scope='module')
def node(tmp_path_factory, client):
    model_dir = make_model(tmp_path_factory.mktemp('model') / 'm64', 64)
    logs = tmp_path_factory.mktemp('logs')
    params = {'model_dir': str(model_dir), 'cameras': ['cam', 'plain'], 'threshold': 0.0}
    node = start_node(
        logs, client, 'geo', 'cam/image', points_stride=1, diagnostics_period_s=0.2, **params
    )
    yield node
    assert node.stop() == 0, node.text()


@pytest.fixture(scope='module')
def io(client, node):
    """Publishers of camera cam and subscriptions to its geometry outputs."""
    pubs = {
        'image': client.publisher('/geo/cam/image', Image),
        'info': client.publisher('/geo/cam/camera_info', CameraInfo),
        'depth': client.publisher('/geo/cam/depth', Image),
    }
    subs = {
        'points': client.subscribe('/geo/cam/anomaly/points', PointCloud2),
        'regions': client.subscribe('/geo/cam/anomaly/regions', PointCloud2),
        'markers': client.subscribe('/geo/cam/anomaly/regions/markers', MarkerArray),
    }
    return pubs, subs


def _info():
    info = CameraInfo(width=W, height=H)
    info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    return info


def _scene_mm(h=H, w=W):
    """16UC1: a plane at 2 m, a patch at 1.5 m, five pixels without a reading, one at 12 m."""
    mm = np.full((h, w), 2000, np.uint16)
    mm[h // 4 : h // 2, w // 4 : w // 2] = 1500
    mm[h - 8, :5] = 0
    mm[h - 3, w - 4] = 12000
    return mm


def _decode(msg):
    """PointCloud2 -> structured array with NumPy alone, from the message's field table."""
    formats = {7: '<f4', 6: '<u4'}
    dtype = np.dtype(
        {
            'names': [f.name for f in msg.fields],
            'formats': [formats[f.datatype] for f in msg.fields],
            'offsets': [f.offset for f in msg.fields],
            'itemsize': msg.point_step,
        }
    )
    assert not msg.is_bigendian
    assert len(msg.data) == msg.row_step * msg.height == msg.point_step * msg.width
    return np.frombuffer(bytes(msg.data), dtype)


def _expected(z, fx, fy, cx, cy, stride=1, lo=0.1, hi=10.0):
    """Every pixel of the stride grid with depth in range, in raster order (pinhole model)."""
    v, u = np.mgrid[0 : z.shape[0] : stride, 0 : z.shape[1] : stride]
    z = z[::stride, ::stride].astype(np.float64)
    keep = np.isfinite(z) & (z >= lo) & (z <= hi) & (z > 0)
    z, u, v = z[keep], u[keep], v[keep]
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=1)


def _by_stamp(messages, stamp):
    def sec(m):
        return (m.markers[0] if isinstance(m, MarkerArray) else m).header.stamp.sec

    return next((m for m in messages if sec(m) == stamp), None)


def _send(pubs, subs, depth_msg, want='points', rgb=None, info=True, timeout=30.0):
    """Publish depth, camera_info and colour under one fresh stamp until ``want`` has it."""
    stamp = next_stamp()
    color = encode(rgb if rgb is not None else smooth_image(H, W), 'rgb8')
    color.header.frame_id = FRAME
    msgs = [m for m in (depth_msg, color) if m is not None]
    for m in msgs:
        m.header.stamp.sec, m.header.stamp.nanosec = stamp, 0
    if depth_msg is not None:
        depth_msg.header.frame_id = 'depth_frame_that_must_not_be_used'
    end, last = time.monotonic() + timeout, 0.0
    while time.monotonic() < end:
        if time.monotonic() - last > 1.0:
            if info:
                pubs['info'].publish(_info())
            for m in msgs:
                pubs['depth' if m is depth_msg else 'image'].publish(m)
            last = time.monotonic()
        found = _by_stamp(subs[want], stamp)
        if found is not None:
            return stamp, found
        time.sleep(0.02)
    raise AssertionError(f'no {want} for frame {stamp}')


def _values(client):
    return client.diagnostics(STATUS)[2]


def test_every_point_lies_where_the_pinhole_model_puts_it(client, io):
    pubs, subs = io
    mm = _scene_mm()
    stamp, cloud = _send(pubs, subs, pack(mm[..., None], '16UC1', pad=6))
    assert cloud.header.frame_id == FRAME
    assert (cloud.header.stamp.sec, cloud.header.stamp.nanosec) == (stamp, 0)
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'score']
    points = _decode(cloud)
    expected = _expected(mm / 1000.0, FX, FY, CX, CY)
    assert points.size == H * W - 5 - 1  # every pixel but the 5 without depth and the far one
    got = np.stack([points['x'], points['y'], points['z']], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-3)  # 1 mm at 2 m
    assert ((points['score'] >= 0) & (points['score'] <= 1)).all()
    # The patch is nearer: the obstacle's points sit at 1.5 m.
    assert np.isclose(points['z'], 1.5).sum() == (H // 4) * (W // 4)
    values = wait_for(
        lambda: (v := _values(client)).get('points.frames_with_invalid_depth', '0') != '0' and v,
        10,
        'invalid depth in diagnostics',
    )
    assert int(values['points.invalid_depth']) >= 5
    assert int(values['points.out_of_range']) >= 1
    assert int(values['depth.matched']) >= 1
    assert values['points_status'] == 'on'
    assert float(values['stage.points_ms']) >= 0


def test_stride_32fc1_and_depth_at_half_the_colour_size(client, io):
    pubs, subs = io
    (result,) = client.set_parameters('/geo/flowclas', points_stride=2)
    assert result.successful
    try:
        m = _scene_mm(H // 2, W // 2).astype(np.float32) / 1000
        m[0, 0], m[0, 1], m[1, 0] = np.nan, np.inf, 0.0  # no readings in 32FC1
        _, cloud = _send(pubs, subs, pack(m[..., None], '32FC1'))
        points = _decode(cloud)
        # Colour camera_info scaled to the depth image: K halves.
        expected = _expected(m, FX / 2, FY / 2, CX / 2, CY / 2, stride=2)
        got = np.stack([points['x'], points['y'], points['z']], axis=1)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-3)
    finally:
        client.set_parameters('/geo/flowclas', points_stride=1)


def test_regions_and_markers_of_the_scene(client, io):
    pubs, subs = io
    mm = _scene_mm()
    stamp, regions_msg = _send(pubs, subs, pack(mm[..., None], '16UC1'), want='regions')
    names = [f.name for f in regions_msg.fields]
    assert names[:4] == ['x', 'y', 'z', 'distance']
    assert {'peak', 'mean', 'area', 'depth_area', 'u_min', 'v_min', 'u_max', 'v_max'} <= set(names)
    (region,) = _decode(regions_msg)  # threshold 0: one region, the whole frame
    assert (region['u_min'], region['v_min'], region['u_max'], region['v_max']) == (
        0, 0, W - 1, H - 1,
    )  # fmt: skip
    assert region['area'] == H * W
    assert region['depth_area'] == H * W - 6
    assert region['distance'] == pytest.approx(2.0)  # most of the frame is the plane
    markers = wait_for(lambda: _by_stamp(subs['markers'], stamp), 10, 'markers')
    assert markers.markers[0].action == Marker.DELETEALL
    boxes = [m for m in markers.markers if m.type == Marker.CUBE]
    assert len(boxes) == 1
    assert boxes[0].header.frame_id == FRAME
    assert boxes[0].pose.position.z == pytest.approx(2.0)
    assert boxes[0].scale.x == pytest.approx(W * 2.0 / FX)


def test_unmatched_and_bad_depth_are_counted_and_the_node_goes_on(client, io, node):
    pubs, subs = io
    before = int(_values(client).get('depth.unmatched', 0))
    # A colour frame whose depth never comes: regions go out without distances, no points.
    stamp, regions_msg = _send(pubs, subs, None, want='regions')
    assert np.isnan(_decode(regions_msg)['distance']).all()
    wait_for(
        lambda: int(_values(client).get('depth.unmatched', 0)) > before, 10, 'unmatched count'
    )
    assert _by_stamp(subs['points'], stamp) is None
    good = pack(_scene_mm()[..., None], '16UC1')
    truncated = pack(_scene_mm()[..., None], '16UC1')
    truncated.data = bytes(truncated.data)[:-10]
    bad_step = pack(_scene_mm()[..., None], '16UC1')
    bad_step.step = W
    not_registered = pack(np.full((H, H, 1), 2000, np.uint16), '16UC1')  # square: not a scale
    bad = {
        'depth_encoding': encode(smooth_image(H, W), 'rgb8'),
        'depth_truncated': truncated,
        'depth_bad_step': bad_step,
        'depth_size': not_registered,
    }
    for key, msg in bad.items():
        msg.header.stamp.sec = next_stamp()
        pubs['depth'].publish(msg)
        if key == 'depth_size':  # noticed when matched to a colour frame
            _send(pubs, subs, msg, want='regions')
        wait_for(
            lambda key=key: int(_values(client).get(f'warning.{key}', 0)) >= 1,
            10,
            f'warning.{key}',
        )
    level, message, values = client.diagnostics(STATUS)
    assert level == WARN
    log = node.text()
    assert log.count('16UC1 (millimetres) or 32FC1 (metres)') == 1  # one clear error each
    assert 'truncated' in log
    assert 'bad_step' in log
    assert node.proc.poll() is None
    _, cloud = _send(pubs, subs, good)  # and points flow again
    assert _decode(cloud).size == H * W - 6


def test_without_depth_points_are_off_and_said_once_not_as_an_error(client, node):
    pub = client.publisher('/geo/plain/image', Image)
    regions = client.subscribe('/geo/plain/anomaly/regions', PointCloud2)
    points = client.subscribe('/geo/plain/anomaly/points', PointCloud2)
    status = 'flowclas: /geo/plain/image'
    for _ in range(3):
        stamp = next_stamp()
        msg = encode(smooth_image(H, W), 'rgb8')
        msg.header.stamp.sec = stamp
        wait_for(lambda msg=msg, s=stamp: pub.publish(msg) or _by_stamp(regions, s), 30, 'regions')
    level, message, values = wait_for(
        lambda: (d := client.diagnostics(status)) and d[2]['frames_processed'] != '0' and d,
        10,
        'diagnostics of the camera without depth',
    )
    assert level == OK, message
    assert values['points_status'] == 'off: no depth image on /geo/plain/depth yet'
    assert 'depth.unmatched' not in values
    assert points == []
    assert node.text().count('no depth image on /geo/plain/depth') == 1
