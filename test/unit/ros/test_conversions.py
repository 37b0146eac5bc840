# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Image message conversions on hand-built messages (no node, no spinning)."""

import io

from imagemsgs import encode, pack
import numpy as np
from PIL import Image as PILImage
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage
from std_msgs.msg import Header

from flowclas_ros.core.data.imagemsg import compressed_to_rgb, image_to_rgb
from flowclas_ros.core.errors import InputError
from flowclas_ros.ros.conversions import array_to_image, scaled_camera_info

H, W = 6, 8

pytestmark = pytest.mark.ros


def _rgb(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _gray(rgb):
    return np.repeat(rgb[..., :1], 3, axis=2)


@pytest.mark.parametrize('pad', [0, 5])
@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', '8UC3', 'rgba8', 'bgra8'])
def test_colour_encodings_are_exact(encoding, pad):
    rgb = _rgb()
    np.testing.assert_array_equal(image_to_rgb(encode(rgb, encoding, pad)), rgb)


@pytest.mark.parametrize('encoding', ['mono8', '8UC1', 'mono16'])
def test_gray_encodings(encoding):
    rgb = _rgb()
    np.testing.assert_array_equal(image_to_rgb(encode(rgb, encoding, pad=3)), _gray(rgb))


@pytest.mark.parametrize('bigendian', [False, True])
def test_mono16_keeps_the_high_byte_in_either_byte_order(bigendian):
    rgb = _gray(_rgb())
    low = np.random.default_rng(1).integers(0, 256, (H, W, 1))
    mono16 = (rgb[..., :1].astype(np.uint16) << 8) | low.astype(np.uint16)
    msg = pack(mono16, 'mono16', pad=2, bigendian=bigendian)
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize('encoding', ['yuv422', 'yuv422_yuy2'])
def test_yuv422_round_trip(encoding):
    # Pixel pairs share chroma, so give each pair one colour; brightness may differ within it.
    rgb = np.repeat(_rgb()[:, ::2], 2, axis=1)
    decoded = image_to_rgb(encode(rgb, encoding, pad=4)).astype(int)
    assert np.abs(decoded - rgb).max() <= 3


def test_float_images():
    rgb = _rgb()
    out = image_to_rgb(pack(rgb.astype(np.float32) / 255, '32FC3'))
    np.testing.assert_array_equal(out, rgb)
    out = image_to_rgb(pack(rgb[..., :1].astype(np.float32) / 255 * 2, '32FC1'))
    assert out.max() == 255  # values above 1 clip


@pytest.mark.parametrize(
    ('change', 'reason'),
    [
        (lambda m: setattr(m, 'encoding', 'bayer_grbg16'), 'unknown_encoding'),
        (lambda m: setattr(m, 'encoding', ''), 'unknown_encoding'),
        (lambda m: setattr(m, 'step', W * 3 - 1), 'bad_step'),
        (lambda m: setattr(m, 'data', bytes(m.data)[:-1]), 'truncated'),
        (lambda m: setattr(m, 'height', 0), 'empty_image'),
        (lambda m: (setattr(m, 'width', 0), setattr(m, 'step', 0)), 'empty_image'),
    ],
)
def test_bad_images_raise_with_a_reason(change, reason):
    msg = pack(_rgb(), 'rgb8')
    change(msg)
    with pytest.raises(InputError) as info:
        image_to_rgb(msg)
    assert info.value.reason == reason


def test_nan_pixels_are_rejected():
    pixels = np.zeros((H, W, 1), np.float32)
    pixels[2, 3] = np.nan
    with pytest.raises(InputError) as info:
        image_to_rgb(pack(pixels, '32FC1'))
    assert info.value.reason == 'non_finite_pixels'


def test_odd_width_yuv_is_rejected():
    msg = pack(np.zeros((2, 3, 2), np.uint8), 'yuv422')
    with pytest.raises(InputError, match='even width'):
        image_to_rgb(msg)


def _compressed(rgb, fmt):
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format=fmt)
    msg = CompressedImage()
    msg.format = fmt.lower()
    msg.data = buf.getvalue()
    return msg


def test_png_is_lossless_and_jpeg_close():
    rgb = _rgb()
    np.testing.assert_array_equal(compressed_to_rgb(_compressed(rgb, 'PNG')), rgb)
    smooth = np.repeat(np.repeat(_rgb()[:2, :2], 8, 0), 8, 1)
    decoded = compressed_to_rgb(_compressed(smooth, 'JPEG')).astype(int)
    assert decoded.shape == smooth.shape
    assert np.abs(decoded - smooth).mean() < 8


def test_sixteen_bit_png_keeps_the_high_byte():
    gray = np.random.default_rng(2).integers(0, 65536, (H, W), dtype=np.uint16)
    buf = io.BytesIO()
    PILImage.fromarray(gray).save(buf, format='PNG')
    msg = CompressedImage(format='png', data=buf.getvalue())
    np.testing.assert_array_equal(compressed_to_rgb(msg)[..., 0], (gray >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    ('data', 'reason'),
    [
        (b'', 'empty_image'),
        (b'\xff\xd8\xff\xe0 definitely not a jpeg', 'corrupt_compressed'),
        (None, 'corrupt_compressed'),  # a real JPEG cut in half
    ],
)
def test_corrupt_compressed_frames(data, reason):
    if data is None:
        data = bytes(_compressed(_rgb(), 'JPEG').data)[:100]
    with pytest.raises(InputError) as info:
        compressed_to_rgb(CompressedImage(format='jpeg', data=data))
    assert info.value.reason == reason


def test_other_codecs_are_refused():
    buf = io.BytesIO()
    PILImage.fromarray(_rgb()).save(buf, format='BMP')
    with pytest.raises(InputError) as info:
        compressed_to_rgb(CompressedImage(format='bmp', data=buf.getvalue()))
    assert info.value.reason == 'unknown_format'


def test_array_to_image_round_trips_and_keeps_the_header():
    header = Header(frame_id='cam')
    header.stamp.sec, header.stamp.nanosec = 12, 34
    scores = np.random.default_rng(3).random((H, W), dtype=np.float32)
    msg = array_to_image(scores, '32FC1', header)
    assert (msg.encoding, msg.step, msg.height, msg.width) == ('32FC1', W * 4, H, W)
    assert msg.header.frame_id == 'cam'
    assert msg.header.stamp.nanosec == 34
    np.testing.assert_array_equal(np.frombuffer(msg.data, '<f4').reshape(H, W), scores)
    np.testing.assert_array_equal(image_to_rgb(array_to_image(_rgb(), 'rgb8', header)), _rgb())


def test_camera_info_scales_intrinsics():
    info = CameraInfo(width=640, height=480, distortion_model='plumb_bob')
    info.k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    info.p = [500.0, 0.0, 320.0, 10.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    out = scaled_camera_info(info, 240, 320)
    assert (out.width, out.height) == (320, 240)
    assert list(out.k) == [250.0, 0.0, 160.0, 0.0, 255.0, 120.0, 0.0, 0.0, 1.0]
    assert list(out.p)[:4] == [250.0, 0.0, 160.0, 5.0]
    assert out.distortion_model == 'plumb_bob'
