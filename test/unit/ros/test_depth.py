# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The stamp matcher and the geometry messages, on hand-built data (no node, no spinning)."""

import threading
import time

import numpy as np
import pytest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from flowclas_ros.core.geometry import POINT_DTYPE, REGION_DTYPE
from flowclas_ros.ros.conversions import array_to_cloud
from flowclas_ros.ros.markers import MarkerPool
from flowclas_ros.ros.matched import StampMatcher

pytestmark = pytest.mark.ros
MS = 1_000_000  # ns


def test_matcher_takes_the_nearest_stamp_within_tolerance():
    m = StampMatcher(capacity=4)
    for stamp in (100, 133, 166):
        assert m.add(stamp * MS, f'd{stamp}') == 0
    assert m.match(140 * MS, 20 * MS) == ('d133', 1)  # 100 never matched: counted
    assert m.match(150 * MS, 20 * MS) == ('d166', 0)  # 133 matched before: not counted
    assert m.match(170 * MS, 20 * MS) == ('d166', 0)  # a faster colour camera reuses it
    assert m.match(300 * MS, 20 * MS) == (None, 0)
    assert len(m) == 1


def test_matcher_counts_what_falls_out_unmatched_and_keeps_stamp_order():
    m = StampMatcher(capacity=2)
    assert m.add(2 * MS, 'b') == 0
    assert m.add(1 * MS, 'a') == 0  # late arrival: sorted in
    assert m.add(3 * MS, 'c') == 1  # 'a' pushed out, never matched
    assert m.match(2 * MS, 0) == ('b', 0)
    m.clear()
    assert len(m) == 0


def test_matcher_waits_briefly_for_a_depth_frame_still_on_its_way():
    m = StampMatcher(capacity=4)
    m.add(100 * MS, 'old')
    late = threading.Timer(0.05, lambda: m.add(200 * MS, 'new'))
    late.start()
    start = time.monotonic()
    assert m.match(200 * MS, 5 * MS, wait_s=2.0) == ('new', 1)
    assert time.monotonic() - start < 1.0
    late.join()
    # Nothing newer is coming when the newest is already past the frame: no wait.
    start = time.monotonic()
    assert m.match(150 * MS, 5 * MS, wait_s=2.0) == (None, 0)
    assert time.monotonic() - start < 0.5
    # A stream never heard from is not waited for either.
    start = time.monotonic()
    assert StampMatcher(4).match(1, 0, wait_s=2.0) == (None, 0)
    assert time.monotonic() - start < 0.5


def _decode(msg):
    """PointCloud2 bytes -> structured array, from the message's own field table."""
    formats = {7: '<f4', 6: '<u4'}
    dtype = np.dtype(
        {
            'names': [f.name for f in msg.fields],
            'formats': [formats[f.datatype] for f in msg.fields],
            'offsets': [f.offset for f in msg.fields],
            'itemsize': msg.point_step,
        }
    )
    return np.frombuffer(bytes(msg.data), dtype, count=msg.width * msg.height)


def test_clouds_carry_the_dtype_layout_and_the_header():
    header = Header(frame_id='camera_color_optical_frame')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    points = np.zeros(3, POINT_DTYPE)
    points['x'], points['score'] = [1, 2, 3], [0.5, 0.6, 0.7]
    msg = array_to_cloud(points, header)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 3, 16, 48)
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'score']
    assert msg.is_dense
    assert not msg.is_bigendian
    assert msg.header.frame_id == 'camera_color_optical_frame'
    np.testing.assert_array_equal(_decode(msg), points)
    regions = np.zeros(2, REGION_DTYPE)
    regions['distance'] = [np.nan, 2.0]
    regions['area'] = [7, 9]
    msg = array_to_cloud(regions, header)
    assert not msg.is_dense  # a region without depth has NaN coordinates
    assert _decode(msg)['area'].tolist() == [7, 9]
    assert array_to_cloud(np.zeros(0, POINT_DTYPE), header).width == 0


def test_markers_clear_first_then_one_box_and_label_per_region_with_depth():
    pool = MarkerPool()
    header = Header(frame_id='cam')
    regions = np.zeros(3, REGION_DTYPE)
    regions['distance'] = [2.0, np.nan, 1.0]
    regions['peak'] = [0.9, 0.8, 0.1]
    centres = np.array([[0.1, 0.2, 2.0], [0, 0, 0], [0.3, 0.4, 1.0]])
    sizes = np.array([[0.5, 0.4, 0.05], [0, 0, 0], [0.2, 0.1, 0.05]])
    msg = pool.build(header, regions, centres, sizes, (0.0, 1.0), 1.5)
    clear, *rest = msg.markers
    assert clear.action == Marker.DELETEALL
    assert clear.ns == ''  # an empty namespace clears every namespace of the display
    boxes = [m for m in rest if m.type == Marker.CUBE]
    labels = [m for m in rest if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(labels) == 2  # the region without a distance is not placed
    assert (boxes[0].pose.position.z, boxes[0].scale.x) == (2.0, 0.5)
    assert boxes[0].color.r > boxes[1].color.r  # hotter colour for the higher peak
    assert boxes[0].header.frame_id == 'cam'
    assert (boxes[0].lifetime.sec, boxes[0].lifetime.nanosec) == (1, 500_000_000)
    assert labels[1].text == '0.10 @ 1.00 m'
    assert len({(m.ns, m.id) for m in rest}) == 4
    # The next frame with none: only the DELETEALL, so the old boxes vanish.
    assert (
        len(pool.build(header, regions[:0], centres[:0], sizes[:0], (0.0, 1.0), 1.0).markers) == 1
    )
