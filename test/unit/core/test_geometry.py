# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Depth decoding, back-projection and regions, against scenes worked out by hand."""

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

from flowclas_ros.core import geometry
from flowclas_ros.core.errors import InputError
from flowclas_ros.core.geometry import (
    POINT_DTYPE,
    REGION_DTYPE,
    DepthImage,
    Intrinsics,
    back_project,
    check_registered,
    cloud_fields,
    depth_image,
    find_regions,
    region_boxes,
)


def _msg(values, encoding, pad=0, bigendian=False):
    """An Image-like message from the encoding's definition (rows of bytes, ``pad`` junk)."""
    raw = values.astype(values.dtype.newbyteorder('>' if bigendian else '<'))
    rows = raw.reshape(values.shape[0], -1).view(np.uint8)
    data = np.concatenate([rows, np.full((rows.shape[0], pad), 0xEE, np.uint8)], axis=1)
    return SimpleNamespace(
        height=values.shape[0],
        width=values.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=rows.shape[1] + pad,
        data=data.tobytes(),
    )


K = Intrinsics(fx=4.0, fy=4.0, cx=3.5, cy=2.5, width=8, height=6)


def test_depth_images_decode_to_metres_with_invalid_readings_flagged():
    mm = np.array([[0, 1500, 65535], [2000, 1, 3]], np.uint16)
    for pad, big in ((0, False), (3, True)):
        depth = depth_image(_msg(mm, '16UC1', pad, big))
        z, valid = depth.metres(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0]))
        np.testing.assert_allclose(z, [0.0, 1.5, 65.535, 2.0], rtol=1e-6)
        np.testing.assert_array_equal(valid, [False, True, True, True])
    m = np.array([[np.nan, np.inf, -1.0, 0.0, 2.25]], np.float32)
    z, valid = depth_image(_msg(m, '32FC1', pad=4)).metres(np.zeros(5, int), np.arange(5))
    np.testing.assert_array_equal(valid, [False, False, False, False, True])
    assert z[4] == 2.25


@pytest.mark.parametrize(
    ('msg', 'reason'),
    [
        (_msg(np.zeros((2, 2, 3), np.uint8), 'rgb8'), 'depth_encoding'),
        (_msg(np.zeros((2, 2), np.uint16), 'mono16'), 'depth_encoding'),
        (
            SimpleNamespace(
                **(vars(_msg(np.zeros((4, 4), np.uint16), '16UC1')) | {'data': b'12'})
            ),
            'truncated',
        ),  # fmt: skip
        (
            SimpleNamespace(**(vars(_msg(np.zeros((4, 4), np.float32), '32FC1')) | {'step': 8})),
            'bad_step',
        ),  # fmt: skip
        (
            SimpleNamespace(**(vars(_msg(np.zeros((4, 4), np.uint16), '16UC1')) | {'height': 0})),
            'empty_image',
        ),  # fmt: skip
    ],
)
def test_unusable_depth_images_raise_one_clear_error(msg, reason):
    with pytest.raises(InputError) as err:
        depth_image(msg)
    assert err.value.reason == reason
    if reason == 'depth_encoding':
        assert '16UC1 (millimetres) or 32FC1 (metres)' in str(err.value)


def test_intrinsics_scale_like_image_proc_and_refuse_a_broken_k():
    k = Intrinsics.from_k([600, 0, 320, 0, 610, 240, 0, 0, 1], 640, 480)
    assert k.scaled(320, 240) == Intrinsics(300.0, 305.0, 160.0, 120.0, 320, 240)
    assert k.scaled(640, 480) is k
    for bad in ([0, 0, 1, 0, 1, 1, 0, 0, 1], [1, 0, float('nan'), 0, 1, 1, 0, 0, 1], [1, 2]):
        with pytest.raises(InputError, match='bad_camera_info'):
            Intrinsics.from_k(bad, 640, 480)
    with pytest.raises(InputError, match='bad_camera_info'):
        Intrinsics.from_k([1, 0, 1, 0, 1, 1, 0, 0, 1], 0, 480)


def test_registered_depth_may_differ_in_scale_but_not_in_aspect():
    check_registered((240, 320), (480, 640))
    check_registered((480, 640), (480, 640))
    with pytest.raises(InputError, match='depth_size'):
        check_registered((400, 640), (480, 640))


def _pinhole(v, u, z, k):
    return (u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy


def test_back_projection_puts_every_marked_pixel_where_the_pinhole_model_does():
    mm = np.full((6, 8), 2000, np.uint16)
    mm[1:3, 1:3] = 1500  # a nearer patch
    mm[0, 7] = 0  # no reading
    mm[5, 0] = 20000  # beyond the range
    mask = np.ones((6, 8), bool)
    mask[3, 3] = False
    scores = np.arange(48, dtype=np.float32).reshape(6, 8) / 48
    pts = back_project(mask, scores, DepthImage(mm, 0.001), K, 1, (0.1, 10.0))
    expected = []
    for v in range(6):  # raster order, written out pixel by pixel
        for u in range(8):
            z = mm[v, u] / 1000
            if mask[v, u] and 0 < z <= 10:
                expected.append((*_pinhole(v, u, z, K), z, scores[v, u]))
    assert pts.cloud.dtype == POINT_DTYPE
    np.testing.assert_allclose(pts.cloud.tolist(), expected, atol=1e-6)
    assert (pts.marked, pts.invalid, pts.out_of_range) == (47, 1, 1)
    # The patch: (u, v) = (1, 1) at 1.5 m, after the 7 points of row 0 and (1, 0).
    assert pts.cloud[8].tolist()[:3] == pytest.approx([-0.9375, -0.5625, 1.5])


def test_stride_and_a_mask_of_another_size():
    mm = np.full((6, 8), 1000, np.uint16)
    full = np.ones((6, 8), bool)
    strided = back_project(full, np.ones((6, 8), np.float32), DepthImage(mm, 0.001), K, 2)
    assert strided.cloud.size == 3 * 4
    np.testing.assert_allclose(strided.cloud['x'][:4], (np.arange(0, 8, 2) - 3.5) / 4)
    # Mask and scores at half the depth's size (output_scale 0.5): each depth pixel reads
    # the mask pixel it lies in.
    half = np.zeros((3, 4), bool)
    half[0, 1] = True  # covers depth rows 0-1, columns 2-3
    scores = np.full((3, 4), 0.25, np.float32)
    pts = back_project(half, scores, DepthImage(mm, 0.001), K, 1)
    assert pts.cloud.size == 4
    np.testing.assert_allclose(pts.cloud['x'], (np.array([2, 3, 2, 3]) - 3.5) / 4)
    np.testing.assert_allclose(pts.cloud['y'], (np.array([0, 0, 1, 1]) - 2.5) / 4)
    assert set(pts.cloud['score']) == {0.25}


def _scene():
    """Two regions on an 8x6 frame (K above), 16UC1 depth, worked out by hand below."""
    mask = np.zeros((6, 8), bool)
    scores = np.zeros((6, 8), np.float32)
    mm = np.full((6, 8), 2000, np.uint16)
    # A: a 2x2 block at u 1-2, v 1-2, 1.5 m, one pixel without a reading.
    mask[1:3, 1:3] = True
    scores[1:3, 1:3] = [[0.6, 0.7], [0.8, 0.9]]
    mm[1:3, 1:3] = [[1500, 1500], [1500, 0]]
    # B: (v, u) = (2, 6), (3, 5), (4, 5), (4, 6): joined through the diagonal (2, 6)-(3, 5).
    for (v, u), s, d in zip(
        [(2, 6), (3, 5), (4, 5), (4, 6)],
        [0.95, 0.5, 0.5, 0.55],
        [2000, 2000, 1000, 20000],
        strict=True,
    ):
        mask[v, u], scores[v, u], mm[v, u] = True, s, d
    return mask, scores, DepthImage(mm, 0.001)


def test_regions_of_a_hand_computed_scene():
    mask, scores, depth = _scene()
    regions, dropped = find_regions(mask, scores, depth, K, (0.1, 10.0))
    assert regions.dtype == REGION_DTYPE
    assert dropped == 0
    b, a = regions  # strongest first: B peaks at 0.95
    assert (b['u_min'], b['v_min'], b['u_max'], b['v_max'], b['area']) == (5, 2, 6, 4, 4)
    assert (a['u_min'], a['v_min'], a['u_max'], a['v_max'], a['area']) == (1, 1, 2, 2, 4)
    assert (b['peak'], b['mean']) == pytest.approx((0.95, 0.625))
    assert (a['peak'], a['mean']) == pytest.approx((0.9, 0.75))
    # A: three readings at 1.5 m, at (v, u) = (1, 1), (1, 2), (2, 1).
    assert a['depth_area'] == 3
    assert a['distance'] == pytest.approx(1.5)
    assert (a['x'], a['y'], a['z']) == pytest.approx((-0.8125, -0.4375, 1.5))
    # B: 2, 2 and 1 m in range (20 m is not): median 2 m; centroid of
    # (1.25, -0.25, 2), (0.75, 0.25, 2), (0.375, 0.375, 1).
    assert b['depth_area'] == 3
    assert b['distance'] == pytest.approx(2.0)
    assert (b['x'], b['y'], b['z']) == pytest.approx((2.375 / 3, 0.125, 5 / 3))


def test_regions_without_depth_and_the_limit_on_their_number():
    mask, scores, _ = _scene()
    regions, dropped = find_regions(mask, scores)
    assert regions['area'].tolist() == [4, 4]
    assert np.isnan(regions['distance']).all()
    assert np.isnan(regions['x']).all()
    assert regions['depth_area'].tolist() == [0, 0]
    top, dropped = find_regions(mask, scores, max_regions=1)
    assert (top.size, dropped, top['peak'][0]) == (1, 1, np.float32(0.95))
    empty, dropped = find_regions(np.zeros((6, 8), bool), scores)
    assert (empty.size, dropped) == (0, 0)


def test_median_of_an_even_count_and_depth_at_another_size():
    mask = np.zeros((6, 8), bool)
    mask[0, 0:4] = True
    mm = np.zeros((6, 8), np.uint16)
    mm[0, 0:4] = [4000, 1000, 3000, 2000]
    (region,), _ = find_regions(mask, np.ones((6, 8), np.float32), DepthImage(mm, 0.001), K)
    assert region['distance'] == pytest.approx(2.5)
    # Depth at twice the mask's size: mask pixel (0, 1) reads depth pixel (1, 3).
    big = np.full((12, 16), 3000, np.uint16)
    big[1, 3] = 1000
    k2 = K.scaled(16, 12)
    small = np.zeros((6, 8), bool)
    small[0, 1] = True
    (region,), _ = find_regions(small, np.ones((6, 8), np.float32), DepthImage(big, 0.001), k2)
    assert region['distance'] == pytest.approx(1.0)
    assert region['x'] == pytest.approx((3 - k2.cx) * 1.0 / k2.fx)


@pytest.mark.parametrize('density', [0.02, 0.1, 0.3, 0.9])
@pytest.mark.parametrize('max_runs', [4096, 1])  # joined runs, and ndimage for many runs
def test_runs_label_as_ndimage_does(density, max_runs, monkeypatch):
    monkeypatch.setattr(geometry, '_MAX_RUNS', max_runs)
    rng = np.random.default_rng(int(density * 100))
    for _ in range(40):
        mask = rng.random(tuple(rng.integers(1, 50, 2))) < density
        runs = geometry._Runs(mask)
        flat, lab, count = runs.flat, runs.pixel_labels(), runs.count
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        assert count == n
        np.testing.assert_array_equal(flat, np.flatnonzero(mask))
        np.testing.assert_array_equal(lab, labels.ravel()[flat])
    snake = np.zeros((40, 40), bool)  # one component that winds through every row
    snake[::2] = True
    snake[1::4, -1] = snake[3::4, 0] = True
    assert geometry._Runs(snake).count == 1


@pytest.mark.parametrize('spots', [3, 30])  # a median per region, and one sort for many
def test_region_medians_and_centroids_match_a_direct_computation(spots):
    rng = np.random.default_rng(spots)
    mask = np.zeros((60, 80), bool)
    for i in range(spots):
        v, u = divmod(i, 8)
        mask[v * 6 : v * 6 + 4, u * 10 : u * 10 + rng.integers(1, 8)] = True
    mm = rng.integers(0, 5000, (60, 80)).astype(np.uint16)  # some 0: no reading
    k = Intrinsics(70.0, 72.0, 39.5, 29.5, 80, 60)
    regions, _ = find_regions(
        mask, np.ones((60, 80), np.float32), DepthImage(mm, 0.001), k, (0.5, 4.0)
    )
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    assert regions.size == count == spots
    for r in regions:
        sel = labels[r['v_min'] : r['v_max'] + 1, r['u_min'] : r['u_max'] + 1] > 0
        vv, uu = np.nonzero(sel)
        vv, uu = vv + r['v_min'], uu + r['u_min']
        z = mm[vv, uu] / 1000
        ok = (z > 0) & (z >= 0.5) & (z <= 4.0)
        assert r['depth_area'] == ok.sum()
        if ok.any():
            assert r['distance'] == pytest.approx(np.median(z[ok]), abs=1e-6)
            x = (uu[ok] - k.cx) * z[ok] / k.fx
            assert r['x'] == pytest.approx(x.mean(), abs=1e-5)
        else:
            assert np.isnan(r['distance'])


def test_cloud_layout_is_the_dtype():
    assert cloud_fields(POINT_DTYPE) == [('x', 0, 7), ('y', 4, 7), ('z', 8, 7), ('score', 12, 7)]
    fields = dict((n, (o, t)) for n, o, t in cloud_fields(REGION_DTYPE))
    assert fields['distance'] == (12, 7)
    assert fields['area'] == (24, 6)
    assert REGION_DTYPE.itemsize == 48


def test_region_boxes_are_the_pixel_box_at_the_median_distance():
    mask, scores, depth = _scene()
    regions, _ = find_regions(mask, scores, depth, K, (0.1, 10.0))
    centres, sizes = region_boxes(regions, mask.shape, K)
    # A: u 1-2, v 1-2 at 1.5 m: centre pixel (1.5, 1.5), 2 px wide.
    np.testing.assert_allclose(centres[1], [(1.5 - 3.5) * 1.5 / 4, (1.5 - 2.5) * 1.5 / 4, 1.5])
    np.testing.assert_allclose(sizes[1][:2], [2 * 1.5 / 4, 2 * 1.5 / 4])
    # Intrinsics of a depth image twice the mask's size give the same boxes.
    c2, s2 = region_boxes(regions, mask.shape, K.scaled(16, 12))
    np.testing.assert_allclose(c2, centres)
    np.testing.assert_allclose(s2, sizes)
